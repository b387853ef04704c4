//! A tiny YAML writer with comments, for manifests `kubectl apply -f` accepts.
//!
//! Pure. serde_yaml cannot emit comments, and every suggested rule must say which flows it came
//! from, so manifests are built as a [`Y`] tree and written here: block style, two-space indent,
//! sequences indented under their key, scalars quoted (JSON style) whenever a plain scalar could
//! be misread (numbers, booleans, `null`, special characters). Comments are sanitized and kept
//! on one line. Output is a deterministic function of the tree.

use crate::sanitize::sanitize;

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Y {
    /// Mapping: entries in order, each with an optional comment line above it.
    Map(Vec<(String, Y, Option<String>)>),
    /// Sequence: items with an optional comment line above each.
    Seq(Vec<(Y, Option<String>)>),
    /// String scalar.
    Str(String),
    /// Integer scalar.
    Int(i64),
}

impl Y {
    /// A map from pairs without comments.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Y)>) -> Y {
        Y::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.into(), v, None))
                .collect(),
        )
    }

    /// A sequence without comments.
    pub fn seq(items: impl IntoIterator<Item = Y>) -> Y {
        Y::Seq(items.into_iter().map(|i| (i, None)).collect())
    }

    /// A string scalar.
    pub fn s(v: impl Into<String>) -> Y {
        Y::Str(v.into())
    }
}

/// Quotes a scalar unless it is unambiguously a plain string.
pub fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && !s
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '_')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null" | "nan" | "inf"
        )
        && !looks_numeric(s);
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
    }
}

fn looks_numeric(s: &str) -> bool {
    // 1e3, 0x1f, 0o17, 1_000, .5 and friends (YAML 1.1 and 1.2 readers disagree; quote them).
    let t = s.trim_start_matches(['-', '+']);
    t.parse::<f64>().is_ok()
        || t.starts_with("0x")
        || t.starts_with("0o")
        || t.starts_with("0b")
        || (t.chars().next().is_some_and(|c| c.is_ascii_digit())
            && t.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '_' | ':' | '.' | 'e' | 'E')))
}

fn comment(out: &mut String, indent: usize, text: &str) {
    for line in sanitize(text).split("\\x0a") {
        out.push_str(&" ".repeat(indent));
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

fn inline(node: &Y) -> Option<String> {
    match node {
        Y::Str(s) => Some(scalar(s)),
        Y::Int(i) => Some(i.to_string()),
        Y::Map(m) if m.is_empty() => Some("{}".to_string()),
        Y::Seq(s) if s.is_empty() => Some("[]".to_string()),
        _ => None,
    }
}

fn write_block(out: &mut String, node: &Y, indent: usize) {
    match node {
        Y::Map(entries) => {
            for (k, v, c) in entries {
                if let Some(c) = c {
                    comment(out, indent, c);
                }
                out.push_str(&" ".repeat(indent));
                out.push_str(&scalar(k));
                out.push(':');
                match inline(v) {
                    Some(s) => {
                        out.push(' ');
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => {
                        out.push('\n');
                        write_block(out, v, indent + 2);
                    }
                }
            }
        }
        Y::Seq(items) => {
            for (item, c) in items {
                if let Some(c) = c {
                    comment(out, indent, c);
                }
                match inline(item) {
                    Some(s) => {
                        out.push_str(&" ".repeat(indent));
                        out.push_str("- ");
                        out.push_str(&s);
                        out.push('\n');
                    }
                    None => {
                        let mut inner = String::new();
                        write_block(&mut inner, item, indent + 2);
                        // Replace the first line's indentation with "- ".
                        let prefix = " ".repeat(indent + 2);
                        let mut first = true;
                        for line in inner.lines() {
                            if first
                                && line.starts_with(&prefix)
                                && !line.trim_start().starts_with('#')
                            {
                                out.push_str(&" ".repeat(indent));
                                out.push_str("- ");
                                out.push_str(&line[indent + 2..]);
                                first = false;
                            } else {
                                out.push_str(line);
                            }
                            out.push('\n');
                        }
                    }
                }
            }
        }
        Y::Str(_) | Y::Int(_) => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&inline(node).unwrap_or_default());
            out.push('\n');
        }
    }
}

/// One YAML document (no `---`), with comment lines on top.
pub fn document(header: &[String], node: &Y) -> String {
    let mut out = String::new();
    for h in header {
        comment(&mut out, 0, h);
    }
    write_block(&mut out, node, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(scalar("frontend"), "frontend");
        assert_eq!(
            scalar("kubernetes.io/metadata.name"),
            "kubernetes.io/metadata.name"
        );
        assert_eq!(scalar("8080"), "\"8080\"");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("No"), "\"No\"");
        assert_eq!(scalar("1e3"), "\"1e3\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("-x"), "\"-x\"");
    }

    #[test]
    fn round_trips_through_serde_yaml() {
        let tree = Y::map([
            ("a", Y::s("x")),
            (
                "list",
                Y::Seq(vec![
                    (
                        Y::map([
                            ("k", Y::s("v")),
                            ("n", Y::Int(3)),
                            ("e", Y::map::<&str>([])),
                        ]),
                        Some("first\nitem".to_string()),
                    ),
                    (Y::s("8080"), None),
                    (Y::seq([Y::s("nested")]), None),
                ]),
            ),
        ]);
        let text = document(&["header".to_string()], &tree);
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["a"].as_str(), Some("x"));
        assert_eq!(v["list"][0]["n"].as_i64(), Some(3));
        assert_eq!(v["list"][1].as_str(), Some("8080"));
        assert_eq!(v["list"][2][0].as_str(), Some("nested"));
        assert!(text.contains("# first\\x0aitem") || text.contains("# first"));
    }
}
