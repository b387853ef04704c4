//! Parser, printer and evaluator tests for the filter language.

use super::*;
use crate::tui::synthetic;
use proptest::prelude::*;

fn p(s: &str) -> Expr {
    match parse(s) {
        Ok(Some(e)) => e,
        other => panic!("{s:?} did not parse: {other:?}"),
    }
}

fn field(k: Key, v: &str) -> Expr {
    Expr::Term(Term::Field(k, Value::text(v)))
}

fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(Box::new(a), Box::new(b))
}

fn or(a: Expr, b: Expr) -> Expr {
    Expr::Or(Box::new(a), Box::new(b))
}

fn not(a: Expr) -> Expr {
    Expr::Not(Box::new(a))
}

#[test]
fn empty_is_none() {
    assert_eq!(parse("").unwrap(), None);
    assert_eq!(parse("   \t ").unwrap(), None);
}

#[test]
fn precedence_and_binds_tighter_than_or() {
    assert_eq!(
        p("ns:a or ns:b and app:tls"),
        or(
            field(Key::Ns, "a"),
            and(field(Key::Ns, "b"), field(Key::App, "tls"))
        )
    );
    assert_eq!(
        p("(ns:a or ns:b) app:tls"),
        and(
            or(field(Key::Ns, "a"), field(Key::Ns, "b")),
            field(Key::App, "tls")
        )
    );
    assert_eq!(p("ns:a && ns:b || ns:c"), p("(ns:a and ns:b) or ns:c"));
}

#[test]
fn negation_forms() {
    assert_eq!(p("!enc:encrypted"), not(field(Key::Enc, "encrypted")));
    assert_eq!(p("not enc:encrypted"), not(field(Key::Enc, "encrypted")));
    assert_eq!(p("!!ns:a"), not(not(field(Key::Ns, "a"))));
    assert_eq!(
        p("!(ns:a or ns:b)"),
        not(or(field(Key::Ns, "a"), field(Key::Ns, "b")))
    );
}

#[test]
fn values_quoted_regex_ip_port() {
    assert_eq!(p("sni:\"a b\""), field(Key::Sni, "a b"));
    assert_eq!(
        p("\"x \\\" y\""),
        Expr::Term(Term::Any(Value::text("x \" y")))
    );
    match p("sni:/^api\\./") {
        Expr::Term(Term::Field(Key::Sni, Value::Regex(r))) => assert_eq!(r.source(), "^api\\."),
        other => panic!("{other:?}"),
    }
    match p("/a\\/b/") {
        Expr::Term(Term::Any(Value::Regex(r))) => assert_eq!(r.source(), "a/b"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        p("ip:10.0.0.0/8"),
        Expr::Term(Term::Field(
            Key::Ip,
            Value::Net("10.0.0.0/8".parse().unwrap())
        ))
    );
    assert_eq!(
        p("ip:fe80::1"),
        Expr::Term(Term::Field(
            Key::Ip,
            Value::Net("fe80::1/128".parse().unwrap())
        ))
    );
    assert_eq!(
        p("port:443"),
        Expr::Term(Term::Field(Key::Port, Value::Ports(443, 443)))
    );
    assert_eq!(
        p("port:8000-8999"),
        Expr::Term(Term::Field(Key::Port, Value::Ports(8000, 8999)))
    );
    assert_eq!(p("namespace:shop"), field(Key::Ns, "shop"));
    assert_eq!(p("host:x"), field(Key::Sni, "x"));
}

#[test]
fn errors_say_where() {
    let e = parse("ns:a and (app:tls").unwrap_err();
    assert!(e.message.contains("unclosed"), "{e}");
    assert_eq!(e.offset, 9);
    let e = parse("ns:a )").unwrap_err();
    assert_eq!(e.offset, 5);
    let e = parse("bogus:x").unwrap_err();
    assert!(e.message.contains("unknown key"), "{e}");
    let e = parse("app:tls port:http").unwrap_err();
    assert_eq!(e.offset, 13);
    assert!(parse("ip:10.0.0.300").is_err());
    assert!(parse("port:9-1").is_err());
    assert!(parse("port:70000").is_err());
    assert!(parse("enc:maybe").is_err());
    assert!(parse("verdict:perhaps").is_err());
    assert!(
        parse("sni:/(/")
            .unwrap_err()
            .message
            .contains("invalid regex")
    );
    assert!(parse("/unterminated").is_err());
    assert!(parse("\"unterminated").is_err());
    assert!(parse("ns:").is_err());
    assert!(parse("and").is_err());
    assert!(parse("ns:a or").is_err());
    assert!(parse("!").is_err());
    assert!(parse("()").is_err());
    assert!(
        parse(&"(".repeat(200))
            .unwrap_err()
            .message
            .contains("deeply")
    );
    assert!(parse(&"x ".repeat(3000)).is_err());
}

fn matching(filter: &str, rows: &[FlowSummary]) -> Vec<u64> {
    let f = Filter::new(filter).unwrap();
    rows.iter()
        .filter(|r| f.matches(r))
        .map(|r| r.serial)
        .collect()
}

#[test]
fn evaluates_fields() {
    let rows = synthetic::flows(60);
    let count = |s: &str| matching(s, &rows).len();
    // apps cycle with period 6
    assert_eq!(count("app:tls"), 10);
    assert_eq!(count("app:TLS"), 10);
    assert_eq!(count("!app:tls"), 50);
    assert_eq!(count("app:tls or app:http"), 20);
    assert_eq!(count("app:tls and app:http"), 0);
    assert_eq!(count("enc:plaintext"), 40);
    assert_eq!(count("enc:encrypted"), 10);
    assert_eq!(count("port:443"), 10);
    assert_eq!(count("port:5000-6400"), 20);
    assert_eq!(count("proto:udp"), 10);
    assert_eq!(count("verdict:denied"), 6); // i % 11 == 0 for i < 60
    assert_eq!(count("verdict:allowed"), 54);
    assert_eq!(
        count("ns:shop"),
        rows.iter()
            .filter(|r| r.serial % 5 == 0 || (r.serial / 5) % 5 == 0)
            .count()
    );
    assert_eq!(count("ns:sho"), 0, "ns is exact");
    assert!(count("pod:frontend") > 0);
    assert!(count("workload:cat") > 0);
    assert!(count("node:node-1") > 0);
    assert_eq!(
        count("sni:/^frontend\\./"),
        matching("app:tls workload:frontend", &rows)
            .iter()
            .filter(|s| {
                rows[**s as usize]
                    .app
                    .sni
                    .as_deref()
                    .is_some_and(|x| x.starts_with("frontend."))
            })
            .count()
    );
    assert_eq!(count("ip:10.244.0.0/16"), 60);
    assert_eq!(count("ip:10.244.0.5"), 1);
    // Without findings, `finding:` matches nothing.
    assert_eq!(count("finding:any"), 0);
    assert_eq!(count("svc:x"), 0);
}

#[test]
fn free_text_and_regex() {
    let rows = synthetic::flows(60);
    let count = |s: &str| matching(s, &rows).len();
    assert_eq!(count("redis"), 10);
    assert_eq!(count("REDIS"), 10);
    assert_eq!(count("10.244.0.7"), 1);
    assert!(count("payments") > 0);
    assert_eq!(count("/^redis$/"), 10);
    assert_eq!(count("\"no such thing\""), 0);
    assert_eq!(
        count("(app:tls or app:redis) !verdict:denied"),
        matching("app:tls or app:redis", &rows).len()
            - matching("(app:tls or app:redis) verdict:denied", &rows).len()
    );
}

#[test]
fn printing_is_canonical() {
    for s in [
        "ns:a or ns:b and app:tls",
        "!(ns:a or ns:\"b c\") /x\\/y/ port:1-2 ip:10.0.0.0/8",
        "\"and\" \"a:b\" sni:a:b \"quote\\\"d\"",
    ] {
        let e = p(s);
        assert_eq!(p(&e.to_string()), e, "{s} → {e}");
    }
}

fn leaf() -> impl Strategy<Value = Expr> {
    let text = "[a-zA-Z0-9 _.:\"\\\\/!()-]{1,8}";
    prop_oneof![
        (0usize..Key::ALL.len(), text).prop_filter_map("valid field", |(k, v)| {
            let key = Key::ALL[k];
            field_value(key, Lit::Quoted(v), 0)
                .ok()
                .map(|v| Expr::Term(Term::Field(key, v)))
        }),
        (0usize..Key::ALL.len(), any::<bool>(), text).prop_filter_map(
            "valid sided field",
            |(k, src, v)| {
                let key = Key::ALL[k];
                let end = if src { End::Src } else { End::Dst };
                (key.is_endpoint())
                    .then(|| field_value(key, Lit::Quoted(v), 0).ok())
                    .flatten()
                    .map(|v| Expr::Term(Term::Sided(end, key, v)))
            }
        ),
        text.prop_map(|v| Expr::Term(Term::Any(Value::text(&v)))),
        "[a-z.^$*+]{1,6}".prop_filter_map("valid regex", |r| Rx::new(&r)
            .ok()
            .map(|r| Expr::Term(Term::Any(Value::Regex(r))))),
        (0u16..1000, 0u16..1000).prop_map(|(a, b)| Expr::Term(Term::Field(
            Key::Port,
            Value::Ports(a.min(b), a.max(b))
        ))),
        (any::<u32>(), 0u8..=32).prop_map(|(ip, len)| {
            let net = IpNet::new(IpAddr::from(std::net::Ipv4Addr::from(ip)), len)
                .unwrap_or_else(|_| unreachable!());
            Expr::Term(Term::Field(Key::Ip, Value::Net(net)))
        }),
        prop_oneof![Just("plaintext"), Just("encrypted"), Just("unknown")]
            .prop_map(|v| field(Key::Enc, v)),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 32, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(not),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
            (inner.clone(), inner).prop_map(|(a, b)| or(a, b)),
        ]
    })
}

proptest! {
    #[test]
    fn print_parse_round_trip(e in expr()) {
        let printed = e.to_string();
        let parsed = parse(&printed);
        prop_assert_eq!(parsed, Ok(Some(e)), "printed: {}", printed);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,64}") {
        let _ = parse(&s);
    }

    #[test]
    fn parse_never_panics_on_filter_alphabet(s in "[a-z:/\"\\\\!() &|.0-9-]{0,48}") {
        if let Ok(Some(e)) = parse(&s) {
            // Whatever parses, prints to something that parses to the same thing.
            prop_assert_eq!(parse(&e.to_string()), Ok(Some(e)));
        }
    }

    #[test]
    fn negation_complements(e in expr(), i in 0u64..200) {
        let row = synthetic::flow(i);
        prop_assert_eq!(Expr::Not(Box::new(e.clone())).matches(&row), !e.matches(&row));
    }
}

#[test]
fn src_and_dst_pick_one_endpoint() {
    assert_eq!(
        p("src.ns:shop DST.port:443"),
        and(
            Expr::Term(Term::Sided(End::Src, Key::Ns, Value::text("shop"))),
            Expr::Term(Term::Sided(End::Dst, Key::Port, Value::Ports(443, 443)))
        )
    );
    assert_eq!(p("src.namespace:a").to_string(), "src.ns:a");
    let e = parse("dst.app:tls").unwrap_err();
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("endpoint key"), "{}", e.message);
    assert!(
        parse("via.ns:a")
            .unwrap_err()
            .message
            .contains("unknown key")
    );
    // A flow matches `ip:` on either end, `src.ip:` / `dst.ip:` on its own end only.
    let flow = synthetic::flow(3);
    let (src, dst) = (flow.src.addr, flow.dst.addr);
    assert_ne!(src, dst);
    for (text, expected) in [
        (format!("ip:{src}"), true),
        (format!("ip:{dst}"), true),
        (format!("src.ip:{src}"), true),
        (format!("dst.ip:{src}"), false),
        (format!("src.ip:{dst}"), false),
        (format!("dst.ip:{dst}"), true),
        (format!("dst.port:{}", flow.dst.port), true),
        (
            format!("src.port:{} dst.port:{}", flow.dst.port, flow.src.port),
            flow.src.port == flow.dst.port,
        ),
    ] {
        assert_eq!(p(&text).matches(&flow), expected, "{text}");
    }
}

#[test]
fn finding_terms_use_the_rules_engine() {
    use crate::findings::{FindingKind, RulesConfig};
    use crate::tui::findings::SnapshotFindings;
    let rows = synthetic::flows(60);
    let findings = SnapshotFindings::from_flows(&rows, None, &RulesConfig::default());
    assert!(!findings.findings.is_empty());
    let count = |s: &str| {
        let f = Filter::new(s).unwrap();
        rows.iter().filter(|r| f.matches_in(r, &findings)).count()
    };
    let named = |kind: FindingKind| {
        let serials: std::collections::BTreeSet<u64> = findings
            .findings
            .iter()
            .filter(|f| f.kind == kind)
            .flat_map(|f| f.flows.iter().copied())
            .collect();
        serials.len()
    };
    let any: std::collections::BTreeSet<u64> = findings
        .findings
        .iter()
        .flat_map(|f| f.flows.iter().copied())
        .collect();
    assert_eq!(count("finding:any"), any.len());
    for kind in FindingKind::ALL {
        assert_eq!(count(&format!("finding:{}", kind.as_str())), named(kind));
    }
    assert_eq!(
        count("finding:credentials"),
        named(FindingKind::CleartextCredentials)
    );
    assert_eq!(count("finding:denied"), named(FindingKind::EnforcementGap));
    assert_eq!(
        count("finding:/^cleartext-/"),
        count("finding:cleartext-internal or finding:cleartext-external or finding:credentials")
    );
}
