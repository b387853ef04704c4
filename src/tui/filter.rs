//! The filter language shared by every TUI view (and by headless commands' `--filter`).
//!
//! ```text
//! expr    := and ( ("or" | "||") and )*
//! and     := unary ( ["and" | "&&"] unary )*        juxtaposition means "and"
//! unary   := ("!" | "not") unary | "(" expr ")" | term
//! term    := [("src" | "dst") "."] KEY ":" value | value   a bare value is free text
//! value   := word | "quoted \"string\"" | /regex/
//! ```
//!
//! Keys: `ns pod workload svc node ip port proto app sni enc verdict finding`
//! (see `docs/filter.md` for what each matches). Endpoint keys (`ns pod workload svc node ip
//! port`) test either endpoint, or only the source (initiator) with `src.` and only the
//! destination (responder) with `dst.`. Text comparisons are case-insensitive.
//!
//! Guarantees: [`parse`] never panics, on any input; it rejects input longer than
//! [`MAX_LEN`] or nested deeper than [`MAX_DEPTH`]; invalid regexes, addresses and ports are
//! parse errors with the byte offset where they start, so the TUI can validate as the user
//! types. [`Expr`]'s `Display` prints a canonical form that parses back to an equal AST.
//! Evaluation ([`Expr::matches`]) is pure and allocation-free except for free-text matching
//! of addresses (formatted on the stack).

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use ipnet::IpNet;
use regex::{Regex, RegexBuilder};

use crate::cluster::identity::Identity;
use crate::dissect::Encryption;
use crate::findings::FindingKind;
use crate::report::server_name;
use crate::summary::FlowSummary;
use crate::tui::findings::{SnapshotFindings, kind_alias, kind_bit};

/// Longest filter accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting of parentheses and negations accepted.
pub const MAX_DEPTH: usize = 64;

/// A field a `key:value` term tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Ns,
    Pod,
    Workload,
    Svc,
    Node,
    Ip,
    Port,
    Proto,
    App,
    Sni,
    Enc,
    Verdict,
    Finding,
}

impl Key {
    pub const ALL: [Key; 13] = [
        Key::Ns,
        Key::Pod,
        Key::Workload,
        Key::Svc,
        Key::Node,
        Key::Ip,
        Key::Port,
        Key::Proto,
        Key::App,
        Key::Sni,
        Key::Enc,
        Key::Verdict,
        Key::Finding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Key::Ns => "ns",
            Key::Pod => "pod",
            Key::Workload => "workload",
            Key::Svc => "svc",
            Key::Node => "node",
            Key::Ip => "ip",
            Key::Port => "port",
            Key::Proto => "proto",
            Key::App => "app",
            Key::Sni => "sni",
            Key::Enc => "enc",
            Key::Verdict => "verdict",
            Key::Finding => "finding",
        }
    }

    fn from_name(name: &str) -> Option<Key> {
        let lower = name.to_ascii_lowercase();
        let key = match lower.as_str() {
            "namespace" => Key::Ns,
            "service" => Key::Svc,
            "host" => Key::Sni,
            "encryption" => Key::Enc,
            other => return Key::ALL.into_iter().find(|k| k.as_str() == other),
        };
        Some(key)
    }
}

impl Key {
    /// Keys naming something each endpoint has, so `src.` / `dst.` can pick one.
    pub fn is_endpoint(self) -> bool {
        matches!(
            self,
            Key::Ns | Key::Pod | Key::Workload | Key::Svc | Key::Node | Key::Ip | Key::Port
        )
    }
}

/// The endpoint a `src.` / `dst.` term tests: the flow's initiator or its responder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    Src,
    Dst,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Src => "src",
            End::Dst => "dst",
        }
    }

    /// Picks this end's item from a (source, destination) pair.
    pub fn pick<T>(self, pair: [T; 2]) -> T {
        let [src, dst] = pair;
        match self {
            End::Src => src,
            End::Dst => dst,
        }
    }
}

/// Does `test` hold for the chosen endpoint (`None`: for either)?
pub fn on_ends<T: Copy>(end: Option<End>, pair: [T; 2], test: impl Fn(T) -> bool) -> bool {
    match end {
        // Both sides without short-circuit: the search index runs this per row in a tight
        // loop, where a branch costs more than the second test.
        None => test(pair[0]) | test(pair[1]),
        Some(end) => test(end.pick(pair)),
    }
}

/// A compiled regex, compared by its source.
#[derive(Debug, Clone)]
pub struct Rx {
    source: String,
    regex: Regex,
}

impl Rx {
    pub fn new(source: &str) -> Result<Rx, regex::Error> {
        let regex = RegexBuilder::new(source)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()?;
        Ok(Rx {
            source: source.to_string(),
            regex,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

impl PartialEq for Rx {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The value of a term.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text as typed, and its ASCII-lowercased form used for matching.
    Text {
        raw: String,
        lower: String,
    },
    Regex(Rx),
    /// `ip:` address or CIDR.
    Net(IpNet),
    /// `port:` number or inclusive range.
    Ports(u16, u16),
}

impl Value {
    pub fn text(raw: &str) -> Value {
        Value::Text {
            raw: raw.to_string(),
            lower: raw.to_ascii_lowercase(),
        }
    }
}

/// A leaf of the expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Field(Key, Value),
    /// An endpoint key tested on one endpoint only (`src.ns:shop`).
    Sided(End, Key, Value),
    /// Free text (or a regex) matched against every displayed field.
    Any(Value),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Term(Term),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// Why a filter does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// Byte offset in the input where the problem starts.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for FilterError {}

/// A filter as the TUI holds it: the text typed and, if it parses, the expression.
/// An empty text is the filter that matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub text: String,
    pub expr: Option<Expr>,
}

impl Filter {
    /// A headless command's `--filter` (clap value parser): the error names the offset.
    pub fn from_arg(text: &str) -> Result<Filter, String> {
        Filter::new(text).map_err(|e| format!("invalid filter {e} (see docs/filter.md)"))
    }

    pub fn new(text: &str) -> Result<Filter, FilterError> {
        Ok(Filter {
            text: text.to_string(),
            expr: parse(text)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.expr.is_none()
    }

    /// Refuses `finding:` terms where no findings are computed (headless flow output),
    /// saying where they work.
    pub fn without_findings(&self) -> Result<&Filter, String> {
        match &self.expr {
            Some(e) if e.mentions(Key::Finding) => Err(
                "`finding:` terms need the findings: use them with `podwire findings --filter` \
                 or in the TUI"
                    .into(),
            ),
            _ => Ok(self),
        }
    }

    /// Does the flow match? `finding:` terms match nothing here (no findings are known);
    /// see [`Filter::matches_in`].
    pub fn matches(&self, flow: &FlowSummary) -> bool {
        self.expr.as_ref().is_none_or(|e| e.matches(flow))
    }

    /// Does the flow match, `finding:` terms looked up in `findings`?
    pub fn matches_in(&self, flow: &FlowSummary, findings: &SnapshotFindings) -> bool {
        self.expr
            .as_ref()
            .is_none_or(|e| e.matches_in(flow, findings))
    }
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Not,
    And,
    Or,
    /// `key:` followed by its value.
    Field(String, Lit),
    Bare(Lit),
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Word(String),
    Quoted(String),
    Regex(String),
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '"')
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn quoted(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(err(start, "unterminated quoted string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return Err(err(start, "unterminated quoted string")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn regex(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        self.bump(); // opening slash
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(err(start, "unterminated /regex/")),
                Some('/') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('/') => out.push('/'),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => return Err(err(start, "unterminated /regex/")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !is_word_char(c) {
                break;
            }
            self.bump();
        }
        self.src[start..self.pos].to_string()
    }

    fn literal(&mut self) -> Result<Lit, FilterError> {
        match self.peek() {
            Some('"') => Ok(Lit::Quoted(self.quoted()?)),
            Some('/') => Ok(Lit::Regex(self.regex()?)),
            _ => Ok(Lit::Word(self.word())),
        }
    }

    fn tokens(mut self) -> Result<Vec<(usize, Tok)>, FilterError> {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.bump();
                continue;
            }
            let tok = match c {
                '(' => {
                    self.bump();
                    Tok::LParen
                }
                ')' => {
                    self.bump();
                    Tok::RParen
                }
                '!' => {
                    self.bump();
                    Tok::Not
                }
                '"' | '/' => Tok::Bare(self.literal()?),
                _ => {
                    // A word; `key:` followed directly by a value makes a field term.
                    let rest = &self.src[self.pos..];
                    let word_len = rest
                        .char_indices()
                        .find(|&(_, c)| !is_word_char(c) || c == ':')
                        .map_or(rest.len(), |(i, _)| i);
                    let after = rest[word_len..].chars().next();
                    if after == Some(':') && word_len > 0 {
                        let key = rest[..word_len].to_string();
                        self.pos += word_len + 1;
                        let value = self.literal()?;
                        Tok::Field(key, value)
                    } else {
                        let word = self.word();
                        match word.to_ascii_lowercase().as_str() {
                            "and" | "&&" => Tok::And,
                            "or" | "||" => Tok::Or,
                            "not" => Tok::Not,
                            _ => Tok::Bare(Lit::Word(word)),
                        }
                    }
                }
            };
            out.push((start, tok));
        }
        Ok(out)
    }
}

fn err(offset: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        offset,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------
// Parser

/// Parses a filter. `Ok(None)` for an empty (all-whitespace) filter.
pub fn parse(input: &str) -> Result<Option<Expr>, FilterError> {
    if input.len() > MAX_LEN {
        return Err(err(MAX_LEN, format!("filter longer than {MAX_LEN} bytes")));
    }
    let tokens = Lexer { src: input, pos: 0 }.tokens()?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        end: input.len(),
        depth: 0,
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.pos) {
        None => Ok(Some(expr)),
        Some((offset, Tok::RParen)) => Err(err(*offset, "unbalanced `)`")),
        Some((offset, _)) => Err(err(*offset, "unexpected token")),
    }
}

struct Parser {
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    self.pos += 1;
                }
                Some(Tok::Or | Tok::RParen) | None => return Ok(left),
                Some(_) => {}
            }
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(self.offset(), "nested too deeply"));
        }
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Expr, FilterError> {
        let offset = self.offset();
        let Some((_, tok)) = self.tokens.get(self.pos).cloned() else {
            return Err(err(offset, "expected a term"));
        };
        self.pos += 1;
        match tok {
            Tok::Not => Ok(Expr::Not(Box::new(self.unary()?))),
            Tok::LParen => {
                let inner = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(err(offset, "unclosed `(`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Tok::RParen => Err(err(offset, "unexpected `)`")),
            Tok::And | Tok::Or => Err(err(offset, "expected a term before `and`/`or`")),
            Tok::Bare(lit) => Ok(Expr::Term(Term::Any(any_value(lit, offset)?))),
            Tok::Field(key, lit) => {
                let (end, name) = match key.split_once('.') {
                    Some((p, rest)) if p.eq_ignore_ascii_case("src") => (Some(End::Src), rest),
                    Some((p, rest)) if p.eq_ignore_ascii_case("dst") => (Some(End::Dst), rest),
                    _ => (None, key.as_str()),
                };
                let Some(k) = Key::from_name(name) else {
                    let keys: Vec<&str> = Key::ALL.iter().map(|k| k.as_str()).collect();
                    return Err(err(
                        offset,
                        format!(
                            "unknown key `{}:` (keys: {}; quote text containing `:`)",
                            crate::sanitize::sanitize_capped(&key, 32),
                            keys.join(" ")
                        ),
                    ));
                };
                let value_offset = offset + key.len() + 1;
                let value = field_value(k, lit, value_offset)?;
                match end {
                    None => Ok(Expr::Term(Term::Field(k, value))),
                    Some(end) if k.is_endpoint() => Ok(Expr::Term(Term::Sided(end, k, value))),
                    Some(end) => Err(err(
                        offset,
                        format!(
                            "`{}.` goes with an endpoint key (ns pod workload svc node ip port), not `{}:`",
                            end.as_str(),
                            k.as_str()
                        ),
                    )),
                }
            }
        }
    }
}

fn regex_value(source: &str, offset: usize) -> Result<Value, FilterError> {
    Rx::new(source).map(Value::Regex).map_err(|e| {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or("invalid regex").trim();
        err(offset, format!("invalid regex: {last}"))
    })
}

fn any_value(lit: Lit, offset: usize) -> Result<Value, FilterError> {
    match lit {
        Lit::Word(w) | Lit::Quoted(w) => Ok(Value::text(&w)),
        Lit::Regex(r) => regex_value(&r, offset),
    }
}

fn field_value(key: Key, lit: Lit, offset: usize) -> Result<Value, FilterError> {
    let text = match lit {
        Lit::Regex(r) => return regex_value(&r, offset),
        Lit::Word(w) | Lit::Quoted(w) => w,
    };
    if text.is_empty() {
        return Err(err(offset, format!("`{}:` needs a value", key.as_str())));
    }
    let lower = text.to_ascii_lowercase();
    let allowed: &[&str] = match key {
        Key::Ip => {
            if let Ok(net) = lower.parse::<IpNet>() {
                return Ok(Value::Net(net));
            }
            return match lower.parse::<IpAddr>() {
                Ok(ip) => Ok(Value::Net(IpNet::from(ip))),
                Err(_) => Err(err(offset, "`ip:` wants an address or a CIDR (10.0.0.0/8)")),
            };
        }
        Key::Port => {
            let bad = || err(offset, "`port:` wants a number or a range (8000-8999)");
            let (lo, hi) = match lower.split_once('-') {
                Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                None => (lower.parse::<u16>(), lower.parse::<u16>()),
            };
            return match (lo, hi) {
                (Ok(lo), Ok(hi)) if lo <= hi => Ok(Value::Ports(lo, hi)),
                _ => Err(bad()),
            };
        }
        Key::Enc => &["plaintext", "encrypted", "unknown"],
        Key::Verdict => &["allowed", "denied", "none"],
        Key::Finding => crate::tui::findings::FILTER_VALUES,
        _ => &[],
    };
    if !allowed.is_empty() && !allowed.contains(&lower.as_str()) {
        return Err(err(
            offset,
            format!("`{}:` is one of {}", key.as_str(), allowed.join(", ")),
        ));
    }
    Ok(Value::text(&text))
}

// ---------------------------------------------------------------------------------------
// Printer: canonical form, fully parenthesised, parses back to the same AST.

fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['!', '/', '"'])
        && s.chars().all(|c| is_word_char(c) && c != ':')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "and" | "or" | "not" | "&&" | "||"
        )
}

fn write_value(f: &mut fmt::Formatter<'_>, value: &Value, field: bool) -> fmt::Result {
    match value {
        Value::Text { raw, .. } => {
            // A field's value may contain `:` (it is split at the first one).
            let plain = if field {
                !raw.is_empty() && !raw.starts_with(['/', '"']) && raw.chars().all(is_word_char)
            } else {
                is_plain_word(raw)
            };
            if plain {
                f.write_str(raw)
            } else {
                f.write_char('"')?;
                for c in raw.chars() {
                    if c == '"' || c == '\\' {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('"')
            }
        }
        Value::Regex(rx) => {
            f.write_char('/')?;
            let mut chars = rx.source.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '/' => f.write_str("\\/")?,
                    '\\' => {
                        f.write_char('\\')?;
                        if let Some(next) = chars.next() {
                            f.write_char(next)?;
                        }
                    }
                    c => f.write_char(c)?,
                }
            }
            f.write_char('/')
        }
        Value::Net(net) => write!(f, "{net}"),
        Value::Ports(lo, hi) if lo == hi => write!(f, "{lo}"),
        Value::Ports(lo, hi) => write!(f, "{lo}-{hi}"),
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Term(Term::Field(key, value)) => {
                write!(f, "{}:", key.as_str())?;
                write_value(f, value, true)
            }
            Expr::Term(Term::Sided(end, key, value)) => {
                write!(f, "{}.{}:", end.as_str(), key.as_str())?;
                write_value(f, value, true)
            }
            Expr::Term(Term::Any(value)) => write_value(f, value, false),
            Expr::Not(inner) => write!(f, "!{inner}"),
            Expr::And(a, b) => write!(f, "({a} and {b})"),
            Expr::Or(a, b) => write!(f, "({a} or {b})"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation

/// Namespace of an identity, when it has one.
pub fn identity_namespace(identity: &Identity) -> Option<&str> {
    match identity {
        Identity::Pod { namespace, .. } | Identity::Service { namespace, .. } => Some(namespace),
        Identity::HostNetwork { pod: Some(p), .. } | Identity::ClusterDns { pod: Some(p), .. } => {
            Some(&p.namespace)
        }
        Identity::ClusterDns { pod: None, .. } => Some("kube-system"),
        Identity::ApiServer { .. } => Some("default"),
        _ => None,
    }
}

/// Pod name of an identity, when it is (or is served by) one pod.
pub fn identity_pod(identity: &Identity) -> Option<&str> {
    match identity {
        Identity::Pod { name, .. } => Some(name),
        Identity::HostNetwork { pod: Some(p), .. } | Identity::ClusterDns { pod: Some(p), .. } => {
            Some(&p.name)
        }
        _ => None,
    }
}

/// Owning workload (kind, name) of an identity's pod.
pub fn identity_workload(identity: &Identity) -> Option<(&str, &str)> {
    match identity {
        Identity::Pod { workload, .. } => Some((&workload.kind, &workload.name)),
        Identity::HostNetwork { pod: Some(p), .. } | Identity::ClusterDns { pod: Some(p), .. } => {
            Some((&p.workload.kind, &p.workload.name))
        }
        _ => None,
    }
}

/// Service name of an identity.
pub fn identity_service(identity: &Identity) -> Option<&str> {
    match identity {
        Identity::Service { name, .. } => Some(name),
        Identity::ClusterDns { .. } => Some("kube-dns"),
        Identity::ApiServer { .. } => Some("kubernetes"),
        _ => None,
    }
}

/// Node of an identity.
pub fn identity_node(identity: &Identity) -> Option<&str> {
    match identity {
        Identity::Pod { node, .. }
        | Identity::ApiServer { node, .. }
        | Identity::Unknown { node, .. } => node.as_deref(),
        Identity::HostNetwork { node, .. } => Some(node),
        Identity::Node { name, .. } => Some(name),
        _ => None,
    }
}

fn identity_external_name(identity: &Identity) -> Option<&str> {
    match identity {
        Identity::External { name, .. } => name.as_deref(),
        _ => None,
    }
}

/// ASCII-case-insensitive substring test; `needle` is already lowercase.
fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if n.len() > h.len() {
        return false;
    }
    h.windows(n.len())
        .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

fn text_matches(value: &Value, hay: &str, exact: bool) -> bool {
    match value {
        Value::Text { lower, .. } => {
            if exact {
                hay.eq_ignore_ascii_case(lower)
            } else {
                contains_ci(hay, lower)
            }
        }
        Value::Regex(rx) => rx.regex.is_match(hay),
        Value::Net(_) | Value::Ports(..) => false,
    }
}

/// Formats an address on the stack.
struct AddrBuf {
    buf: [u8; 48],
    len: usize,
}

impl AddrBuf {
    fn empty() -> AddrBuf {
        AddrBuf {
            buf: [0; 48],
            len: 0,
        }
    }

    fn of(ip: IpAddr) -> AddrBuf {
        let mut b = AddrBuf::empty();
        let _ = write!(b, "{ip}");
        b
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for AddrBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn encryption_name(e: Encryption) -> &'static str {
    match e {
        Encryption::Encrypted => "encrypted",
        Encryption::Plaintext => "plaintext",
        Encryption::Unknown => "unknown",
    }
}

impl Expr {
    /// Does any term test `key`?
    pub fn mentions(&self, key: Key) -> bool {
        match self {
            Expr::Term(Term::Field(k, _) | Term::Sided(_, k, _)) => *k == key,
            Expr::Term(Term::Any(_)) => false,
            Expr::Not(e) => e.mentions(key),
            Expr::And(a, b) | Expr::Or(a, b) => a.mentions(key) || b.mentions(key),
        }
    }

    /// Does the flow match?
    pub fn matches(&self, flow: &FlowSummary) -> bool {
        self.matches_in(flow, &SnapshotFindings::default())
    }

    /// Does the flow match, `finding:` terms looked up in `findings`?
    pub fn matches_in(&self, flow: &FlowSummary, findings: &SnapshotFindings) -> bool {
        match self {
            Expr::Term(t) => term_matches(t, flow, findings),
            Expr::Not(e) => !e.matches_in(flow, findings),
            Expr::And(a, b) => a.matches_in(flow, findings) && b.matches_in(flow, findings),
            Expr::Or(a, b) => a.matches_in(flow, findings) || b.matches_in(flow, findings),
        }
    }
}

fn identities(flow: &FlowSummary) -> [Option<&Identity>; 2] {
    match &flow.enrichment {
        Some(e) => [Some(&e.src_identity), Some(&e.dst_identity)],
        None => [None, None],
    }
}

/// Does the chosen endpoint's identity (`None`: either's) have a field (picked by `get`)
/// matching `value`?
fn any_identity(
    flow: &FlowSummary,
    end: Option<End>,
    value: &Value,
    exact: bool,
    get: impl Fn(&Identity) -> Option<&str>,
) -> bool {
    on_ends(end, identities(flow), |identity| {
        identity
            .and_then(&get)
            .is_some_and(|s| text_matches(value, s, exact))
    })
}

fn term_matches(term: &Term, flow: &FlowSummary, findings: &SnapshotFindings) -> bool {
    let (end, key, value) = match term {
        Term::Field(k, v) => (None, *k, v),
        Term::Sided(e, k, v) => (Some(*e), *k, v),
        Term::Any(v) => return free_text(v, flow),
    };
    let addrs = [flow.src.addr, flow.dst.addr];
    let ports = [flow.src.port, flow.dst.port];
    match key {
        Key::Ns => any_identity(flow, end, value, true, identity_namespace),
        Key::Pod => any_identity(flow, end, value, false, identity_pod),
        Key::Workload => any_identity(flow, end, value, false, |i| {
            identity_workload(i).map(|w| w.1)
        }),
        Key::Svc => any_identity(flow, end, value, false, identity_service),
        Key::Node => any_identity(flow, end, value, false, identity_node),
        Key::Ip => match value {
            Value::Net(net) => on_ends(end, addrs, |ip| net.contains(&ip)),
            other => on_ends(end, addrs, |ip| {
                text_matches(other, AddrBuf::of(ip).as_str(), false)
            }),
        },
        Key::Port => match value {
            Value::Ports(lo, hi) => on_ends(end, ports, |p| (*lo..=*hi).contains(&p)),
            other => on_ends(end, ports, |p| {
                let mut b = AddrBuf::empty();
                let _ = write!(b, "{p}");
                text_matches(other, b.as_str(), true)
            }),
        },
        Key::Proto => text_matches(value, &flow.proto_name(), true),
        Key::App => {
            text_matches(value, flow.app.app.name(), true)
                || flow
                    .app
                    .service
                    .is_some_and(|s| text_matches(value, s, true))
        }
        Key::Sni => server_name_ref(flow).is_some_and(|s| text_matches(value, s, false)),
        Key::Enc => text_matches(value, encryption_name(flow.app.encryption), true),
        Key::Verdict => {
            let name = match flow.enrichment.as_ref().and_then(|e| e.verdict.as_ref()) {
                Some(v) if v.allowed => "allowed",
                Some(_) => "denied",
                None => "none",
            };
            text_matches(value, name, true)
        }
        Key::Finding => {
            let bits = findings.kinds(flow.serial);
            match value {
                Value::Text { lower, .. } if lower == "any" => bits != 0,
                _ => FindingKind::ALL.iter().any(|k| {
                    bits & kind_bit(*k) != 0
                        && (text_matches(value, k.as_str(), true)
                            || kind_alias(*k).is_some_and(|a| text_matches(value, a, true)))
                }),
            }
        }
    }
}

fn server_name_ref(flow: &FlowSummary) -> Option<&str> {
    if let Some(sni) = &flow.app.sni {
        return Some(sni);
    }
    match &flow.app.facts {
        Some(crate::dissect::Facts::Http(h)) => h.host.as_deref(),
        _ => None,
    }
}

/// Free text: any displayed field contains the text (or matches the regex).
fn free_text(value: &Value, flow: &FlowSummary) -> bool {
    let getters: [fn(&Identity) -> Option<&str>; 6] = [
        identity_namespace,
        identity_pod,
        |i| identity_workload(i).map(|w| w.1),
        identity_service,
        identity_node,
        identity_external_name,
    ];
    if getters
        .iter()
        .any(|g| any_identity(flow, None, value, false, g))
    {
        return true;
    }
    if text_matches(value, flow.app.app.name(), false)
        || text_matches(value, &flow.proto_name(), false)
        || text_matches(value, encryption_name(flow.app.encryption), false)
        || server_name_ref(flow).is_some_and(|s| text_matches(value, s, false))
    {
        return true;
    }
    // Text that cannot occur in an address spares formatting two addresses per row.
    if let Value::Text { lower, .. } = value
        && !lower
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
    {
        return false;
    }
    [flow.src.addr, flow.dst.addr]
        .into_iter()
        .any(|ip| text_matches(value, AddrBuf::of(ip).as_str(), false))
}

/// `server_name` for display (owned, sanitized by the dissectors).
pub fn display_server_name(flow: &FlowSummary) -> Option<String> {
    server_name(&flow.app)
}

// ---------------------------------------------------------------------------------------
// Completion helpers for the TUI

/// Keys for completion and help.
pub fn key_names() -> impl Iterator<Item = &'static str> {
    Key::ALL.iter().map(|k| k.as_str())
}

pub mod index;

#[cfg(test)]
mod tests;
