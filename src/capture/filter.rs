//! Capture filter: a small, documented subset of tcpdump's filter language, evaluated in the
//! capture thread before a frame is queued (see `docs/capture.md`).
//!
//! Grammar (keywords are case-insensitive):
//!
//! ```text
//! expr    := and ( ("or" | "||") and )*
//! and     := unary ( ("and" | "&&") unary )*
//! unary   := ("not" | "!") unary | "(" expr ")" | primitive
//! primitive := [src|dst] host IP
//!            | [src|dst] net CIDR            (e.g. 10.244.0.0/16, fd00::/8)
//!            | [src|dst] port N
//!            | [src|dst] portrange N-M
//!            | tcp | udp | sctp | icmp | icmp6 | ip | ip6
//! ```
//!
//! Guarantees: parsing never panics and reports the offending token; matching is pure (no
//! I/O, no allocation) and total — a frame that does not decode to an IP packet matches no
//! primitive. A frame matches when the expression holds for its (innermost) IP packet, or,
//! for tunnelled frames (VXLAN, Geneve, IP-in-IP, …), for the outer carrier packet: so
//! `host 10.244.1.5` keeps a pod's overlay traffic and `port 8472` keeps the VXLAN carrier.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::decode::{self, Packet, ipproto};

/// Which address or port of a packet a primitive looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Either,
    Src,
    Dst,
}

/// One test on a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Primitive {
    Host(Dir, IpAddr),
    Net(Dir, IpNet),
    Port(Dir, u16),
    PortRange(Dir, u16, u16),
    Proto(u8),
    Ip4,
    Ip6,
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Prim(Primitive),
}

/// Why a filter did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capture filter: {message} (at token {position}: {token:?})")]
pub struct FilterError {
    pub message: String,
    pub position: usize,
    pub token: String,
}

/// A compiled capture filter.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
    text: String,
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Filter {
    /// Parses a filter expression.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let tokens = tokenize(text);
        if tokens.is_empty() {
            return Err(FilterError {
                message: "empty filter".into(),
                position: 0,
                token: String::new(),
            });
        }
        let mut parser = Parser { tokens, pos: 0 };
        let expr = parser.or()?;
        if parser.pos < parser.tokens.len() {
            return Err(parser.error("unexpected token (missing `and`/`or`?)"));
        }
        Ok(Filter {
            expr,
            text: text.trim().to_string(),
        })
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// True if a frame with this link type passes the filter.
    pub fn matches(&self, link: u32, data: &[u8]) -> bool {
        let Ok(decoded) = decode::decode(link, data) else {
            return false;
        };
        eval(&self.expr, &decoded.inner)
            || decoded
                .outer
                .as_ref()
                .is_some_and(|outer| eval(&self.expr, outer))
    }
}

fn eval(expr: &Expr, p: &Packet<'_>) -> bool {
    match expr {
        Expr::Or(a, b) => eval(a, p) || eval(b, p),
        Expr::And(a, b) => eval(a, p) && eval(b, p),
        Expr::Not(a) => !eval(a, p),
        Expr::Prim(prim) => primitive(prim, p),
    }
}

fn has_ports(p: &Packet<'_>) -> bool {
    matches!(p.proto, ipproto::TCP | ipproto::UDP | ipproto::SCTP)
        && matches!(
            p.fragment,
            decode::Fragment::None | decode::Fragment::First { .. }
        )
}

fn by_dir<T: Copy>(dir: Dir, src: T, dst: T, test: impl Fn(T) -> bool) -> bool {
    match dir {
        Dir::Either => test(src) || test(dst),
        Dir::Src => test(src),
        Dir::Dst => test(dst),
    }
}

fn primitive(prim: &Primitive, p: &Packet<'_>) -> bool {
    match *prim {
        Primitive::Host(dir, ip) => by_dir(dir, p.src, p.dst, |a| a == ip),
        Primitive::Net(dir, net) => by_dir(dir, p.src, p.dst, |a| net.contains(&a)),
        Primitive::Port(dir, port) => {
            has_ports(p) && by_dir(dir, p.src_port, p.dst_port, |x| x == port)
        }
        Primitive::PortRange(dir, lo, hi) => {
            has_ports(p) && by_dir(dir, p.src_port, p.dst_port, |x| (lo..=hi).contains(&x))
        }
        Primitive::Proto(proto) => p.proto == proto,
        Primitive::Ip4 => p.src.is_ipv4(),
        Primitive::Ip6 => p.src.is_ipv6(),
    }
}

fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' | ')' | '!' => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
                tokens.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<String> {
        self.tokens.get(self.pos).map(|t| t.to_ascii_lowercase())
    }

    fn error(&self, message: &str) -> FilterError {
        FilterError {
            message: message.into(),
            position: self.pos + 1,
            token: self
                .tokens
                .get(self.pos)
                .cloned()
                .unwrap_or_else(|| "end of filter".into()),
        }
    }

    fn next_value(&mut self, what: &str) -> Result<String, FilterError> {
        match self.tokens.get(self.pos) {
            Some(t) if !matches!(t.as_str(), "(" | ")" | "!") => {
                self.pos += 1;
                Ok(t.clone())
            }
            _ => Err(self.error(&format!("expected {what}"))),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while matches!(self.peek().as_deref(), Some("or" | "||")) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while matches!(self.peek().as_deref(), Some("and" | "&&")) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        match self.peek().as_deref() {
            Some("not" | "!") => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some("(") => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek().as_deref() != Some(")") {
                    return Err(self.error("expected `)`"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(_) => self.primitive().map(Expr::Prim),
            None => Err(self.error("expected a primitive")),
        }
    }

    fn primitive(&mut self) -> Result<Primitive, FilterError> {
        let mut dir = Dir::Either;
        let Some(mut word) = self.peek() else {
            return Err(self.error("expected a primitive"));
        };
        if word == "src" || word == "dst" {
            dir = if word == "src" { Dir::Src } else { Dir::Dst };
            self.pos += 1;
            word = self
                .peek()
                .ok_or_else(|| self.error("expected host, net, port or portrange"))?;
            if !matches!(word.as_str(), "host" | "net" | "port" | "portrange") {
                return Err(self.error("expected host, net, port or portrange after src/dst"));
            }
        }
        let start = self.pos;
        self.pos += 1;
        let prim = match word.as_str() {
            "host" => {
                let v = self.next_value("an IP address")?;
                let ip = v.parse().map_err(|_| {
                    self.pos -= 1;
                    self.error("not an IP address")
                })?;
                Primitive::Host(dir, ip)
            }
            "net" => {
                let v = self.next_value("a CIDR")?;
                let net = v
                    .parse::<IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        self.pos -= 1;
                        self.error("not a CIDR (like 10.244.0.0/16)")
                    })?;
                Primitive::Net(dir, net.trunc())
            }
            "port" => {
                let v = self.next_value("a port number")?;
                let port = v.parse().map_err(|_| {
                    self.pos -= 1;
                    self.error("not a port number (0-65535)")
                })?;
                Primitive::Port(dir, port)
            }
            "portrange" => {
                let v = self.next_value("a port range N-M")?;
                let parsed = v
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
                    .filter(|(a, b)| a <= b);
                let Some((lo, hi)) = parsed else {
                    self.pos -= 1;
                    return Err(self.error("not a port range (like 30000-32767)"));
                };
                Primitive::PortRange(dir, lo, hi)
            }
            "tcp" => Primitive::Proto(ipproto::TCP),
            "udp" => Primitive::Proto(ipproto::UDP),
            "sctp" => Primitive::Proto(ipproto::SCTP),
            "icmp" => Primitive::Proto(1),
            "icmp6" => Primitive::Proto(58),
            "ip" => Primitive::Ip4,
            "ip6" => Primitive::Ip6,
            _ => {
                self.pos = start;
                return Err(self.error(
                    "unknown primitive (supported: host, net, port, portrange, tcp, udp, sctp, icmp, icmp6, ip, ip6)",
                ));
            }
        };
        Ok(prim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::linktype;

    /// An Ethernet + IPv4 + TCP/UDP frame (checksums zero; the decoder does not check them).
    fn frame(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let l4_len = if proto == ipproto::TCP { 20 } else { 8 };
        let total = 20 + l4_len;
        let mut ip = vec![0x45, 0, 0, total as u8, 0, 1, 0x40, 0, 64, proto, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        if proto == ipproto::TCP {
            f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            f.extend_from_slice(&[0, 8, 0, 0]);
        }
        f
    }

    fn m(filter: &str, f: &[u8]) -> bool {
        Filter::parse(filter)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(linktype::ETHERNET, f)
    }

    #[test]
    fn primitives_and_combinators() {
        let http = frame([10, 244, 9, 2], [10, 244, 9, 3], ipproto::TCP, 40000, 80);
        let dns = frame([10, 244, 9, 2], [10, 96, 0, 10], ipproto::UDP, 40001, 53);
        assert!(m("host 10.244.9.3", &http));
        assert!(!m("host 10.244.9.3", &dns));
        assert!(m("src host 10.244.9.2", &http));
        assert!(!m("dst host 10.244.9.2", &http));
        assert!(m("net 10.244.0.0/16", &dns));
        assert!(m("dst net 10.96.0.0/12", &dns));
        assert!(!m("src net 10.96.0.0/12", &dns));
        assert!(m("port 80", &http));
        assert!(m("dst port 80", &http));
        assert!(!m("src port 80", &http));
        assert!(m("portrange 39000-40000", &http));
        assert!(m("tcp", &http) && !m("udp", &http));
        assert!(m("udp and port 53", &dns));
        assert!(m("tcp or udp", &dns));
        assert!(m("not tcp", &dns));
        assert!(m("!(tcp and port 80) and ip", &dns));
        assert!(!m("ip6", &dns));
        assert!(m("TCP AND (port 443 || port 80)", &http));
        assert!(m("tcp && not port 22", &http));
    }

    #[test]
    fn non_ip_frames_match_nothing() {
        let arp = {
            let mut f = vec![0u8; 42];
            f[12] = 0x08;
            f[13] = 0x06;
            f
        };
        assert!(!m("not tcp", &arp));
        assert!(!m("net 0.0.0.0/0", &arp));
    }

    #[test]
    fn errors_name_the_token() {
        for bad in [
            "",
            "host",
            "host nope",
            "net 10.0.0.0/33",
            "port 70000",
            "portrange 9-1",
            "tcp udp",
            "(tcp",
            "src tcp",
            "frobnicate",
            "tcp and",
            ")",
        ] {
            let e = Filter::parse(bad).expect_err(bad);
            assert!(!e.message.is_empty(), "{bad}: {e}");
        }
        let e = Filter::parse("tcp and host 1.2.3").expect_err("bad ip");
        assert_eq!(e.token, "1.2.3");
    }
}
