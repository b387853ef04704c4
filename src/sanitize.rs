//! Makes strings that came off the wire or out of the cluster safe to show.
//!
//! Guarantee: the result of [`sanitize`] contains no control characters (C0, DEL, C1),
//! no escape sequences and no bidirectional-override characters, so it can be printed
//! to a terminal or embedded in a table cell without changing what else is shown.
//! Invalid UTF-8 is replaced, and the output is capped at `max_chars` characters.

/// Longest string (in characters) podwire keeps from the wire by default.
pub const DEFAULT_MAX_CHARS: usize = 256;

/// Sanitizes raw bytes from the wire (lossy UTF-8) with the default length cap.
pub fn sanitize_bytes(raw: &[u8]) -> String {
    sanitize_capped(&String::from_utf8_lossy(raw), DEFAULT_MAX_CHARS)
}

/// Sanitizes a string with the default length cap.
pub fn sanitize(raw: &str) -> String {
    sanitize_capped(raw, DEFAULT_MAX_CHARS)
}

/// Replaces every control, format-override or otherwise dangerous character with a visible
/// escape (`\xNN` / `\u{NNNN}`) and truncates to `max_chars` characters (marking the cut with `…`).
pub fn sanitize_capped(raw: &str, max_chars: usize) -> String {
    // Fast path for the common case (host names, SNIs): printable ASCII within the cap.
    if raw.len() <= max_chars && raw.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return raw.to_owned();
    }
    let mut out = String::with_capacity(raw.len().min(max_chars * 2));
    for (count, ch) in raw.chars().enumerate() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        if is_dangerous(ch) {
            let code = ch as u32;
            if code < 0x100 {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{{{code:04x}}}"));
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Makes text (from the wire or the cluster) usable inside a file name: ASCII letters, digits,
/// `.` and `-` are kept, every other character becomes `_`, leading dots are replaced (no
/// hidden files, no `..`), and the result is at most `max_chars` characters.
pub fn file_name_part(raw: &str, max_chars: usize) -> String {
    let mut out: String = raw
        .chars()
        .take(max_chars)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        out = out.replacen('.', "_", 1);
    }
    out
}

/// True for characters that can alter a terminal's state or how surrounding text is read.
fn is_dangerous(ch: char) -> bool {
    ch.is_control()
        || matches!(ch as u32,
            0x200b..=0x200f   // zero-width and directional marks
            | 0x2028..=0x202e // line/paragraph separators, embeddings and overrides
            | 0x2060..=0x206f // invisible operators, isolates
            | 0xfeff          // byte order mark
            | 0xfff9..=0xfffb) // interlinear annotations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_parts_are_safe() {
        assert_eq!(
            file_name_part("tcp-10.0.0.1-80-fe80::1-443", 64),
            "tcp-10.0.0.1-80-fe80__1-443"
        );
        assert_eq!(file_name_part("../../etc/passwd", 64), "_._.._etc_passwd");
        assert_eq!(file_name_part("a/b\x1b[31m\u{202e}", 64), "a_b__31m_");
        assert_eq!(file_name_part("é\n", 64), "__");
        assert_eq!(file_name_part("abcdef", 3), "abc");
    }

    #[test]
    fn escapes_terminal_control_sequences() {
        assert_eq!(sanitize("a\x1b[31mred"), "a\\x1b[31mred");
        assert_eq!(sanitize("line\nbreak\r"), "line\\x0abreak\\x0d");
        assert_eq!(sanitize("\u{9b}2J"), "\\x9b2J");
    }

    #[test]
    fn escapes_bidi_overrides() {
        assert_eq!(sanitize("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
    }

    #[test]
    fn keeps_ordinary_text_and_caps_length() {
        assert_eq!(sanitize("api.example.com"), "api.example.com");
        assert_eq!(sanitize_capped("abcdef", 3), "abc…");
        assert_eq!(sanitize_bytes(b"ok\xffok"), "ok\u{fffd}ok");
    }
}
