//! DNS over UDP and TCP: questions, A/AAAA/CNAME answers, rcode; and [`DnsNames`], the bounded
//! IP ↔ name map fed from DNS answers seen in the capture.
//!
//! Guarantees: name decompression follows only backward pointers (no loops) and at most 128
//! labels; every name is sanitized; lists are capped (16 questions, 32 answers per flow);
//! a DNS message cut short returns NeedMore over TCP and is dissected as far as it goes over
//! UDP (a datagram is all there is).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::{App, Ctx, Detected, Encryption, Facts, Parse};
use crate::sanitize::sanitize;

const MAX_QUESTIONS: usize = 16;
const MAX_ANSWERS: usize = 32;

/// A question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsQuestion {
    pub name: String,
    /// The type's mnemonic ("A", "AAAA", …) or `TYPEn`; known ones borrowed.
    pub qtype: Cow<'static, str>,
}

/// The data of an answer record podwire keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "data")]
pub enum DnsRdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
}

/// An answer record (A, AAAA or CNAME; other types are counted only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsAnswer {
    pub name: String,
    #[serde(flatten)]
    pub rdata: DnsRdata,
    pub ttl: u32,
}

/// Facts from the DNS messages of one flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsFacts {
    pub queries: Vec<DnsQuestion>,
    pub answers: Vec<DnsAnswer>,
    /// Response code of the last response ("NOERROR", "NXDOMAIN", ...).
    pub rcode: Option<Cow<'static, str>>,
    /// Messages dissected.
    pub messages: u32,
    /// Responses seen.
    pub responses: u32,
    /// Answer records of other types (MX, TXT, ...), counted.
    pub other_answers: u32,
    /// Some message was cut short (truncated capture or TC bit).
    pub truncated: bool,
}

impl DnsFacts {
    /// Merges another message's facts into this flow's (caps preserved, duplicates dropped).
    pub fn merge(&mut self, o: DnsFacts) {
        for q in o.queries {
            if self.queries.len() < MAX_QUESTIONS && !self.queries.contains(&q) {
                self.queries.push(q);
            }
        }
        for a in o.answers {
            if self.answers.len() < MAX_ANSWERS && !self.answers.contains(&a) {
                self.answers.push(a);
            }
        }
        if o.rcode.is_some() {
            self.rcode = o.rcode;
        }
        self.messages += o.messages;
        self.responses += o.responses;
        self.other_answers += o.other_answers;
        self.truncated |= o.truncated;
    }
}

fn qtype_name(t: u16) -> Cow<'static, str> {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        41 => "OPT".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        _ => format!("TYPE{t}").into(),
    }
}

fn rcode_name(r: u16) -> Cow<'static, str> {
    match r {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        _ => format!("RCODE{r}").into(),
    }
}

/// Reads a (possibly compressed) name at `off`; returns the name and the offset after it.
fn read_name(msg: &[u8], mut off: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end_after: Option<usize> = None;
    let mut labels = 0;
    loop {
        let len = *msg.get(off)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    off += 1;
                    break;
                }
                let label = msg.get(off + 1..off + 1 + len)?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&String::from_utf8_lossy(label));
                off += 1 + len;
            }
            0xc0 => {
                let ptr = ((len & 0x3f) << 8) | *msg.get(off + 1)? as usize;
                if ptr >= off {
                    return None; // forward or self pointer: refuse (no loops)
                }
                end_after.get_or_insert(off + 2);
                off = ptr;
            }
            _ => return None,
        }
        labels += 1;
        if labels > 128 || name.len() > 255 {
            return None;
        }
    }
    let next = end_after.unwrap_or(off);
    let name = if name.is_empty() {
        ".".to_string()
    } else {
        sanitize(&name)
    };
    Some((name, next))
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(o)?, *b.get(o + 1)?]))
}

/// Outcome of parsing one DNS message.
pub(crate) enum DnsMsg {
    /// Not DNS.
    Bad,
    /// Header and questions are fine; records may be cut.
    Ok(DnsFacts),
}

/// Parses one DNS message (without TCP length prefix).
pub(crate) fn parse_message(msg: &[u8]) -> DnsMsg {
    if msg.len() < 12 {
        return DnsMsg::Bad;
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let rcode = flags & 0xf;
    let qd = u16::from_be_bytes([msg[4], msg[5]]) as usize;
    let an = u16::from_be_bytes([msg[6], msg[7]]) as usize;
    let ns = u16::from_be_bytes([msg[8], msg[9]]) as usize;
    let ar = u16::from_be_bytes([msg[10], msg[11]]) as usize;
    if !matches!(opcode, 0 | 1 | 2 | 4 | 5) || qd > 32 || an + ns + ar > 512 {
        return DnsMsg::Bad;
    }
    if qd == 0 && !(qr && opcode != 0) && !(qr && an > 0) {
        return DnsMsg::Bad;
    }
    if !qr && (an > 0 && opcode == 0 || rcode != 0) {
        return DnsMsg::Bad;
    }
    let mut f = DnsFacts {
        messages: 1,
        truncated: flags & 0x0200 != 0,
        ..Default::default()
    };
    if qr {
        f.responses = 1;
        f.rcode = Some(rcode_name(rcode));
    }
    let mut off = 12;
    for _ in 0..qd {
        let Some((name, next)) = read_name(msg, off) else {
            return DnsMsg::Bad;
        };
        let (Some(qt), Some(qc)) = (u16_at(msg, next), u16_at(msg, next + 2)) else {
            return DnsMsg::Bad;
        };
        if !matches!(qc & 0x7fff, 1 | 3 | 4 | 254 | 255) {
            return DnsMsg::Bad;
        }
        if f.queries.len() < MAX_QUESTIONS {
            f.queries.push(DnsQuestion {
                name,
                qtype: qtype_name(qt),
            });
        }
        off = next + 4;
    }
    for i in 0..(an + ns + ar) {
        let Some((name, next)) = read_name(msg, off) else {
            f.truncated = true;
            break;
        };
        let (Some(t), Some(ttl_hi), Some(ttl_lo), Some(rdlen)) = (
            u16_at(msg, next),
            u16_at(msg, next + 4),
            u16_at(msg, next + 6),
            u16_at(msg, next + 8),
        ) else {
            f.truncated = true;
            break;
        };
        let rd_off = next + 10;
        let Some(rdata) = msg.get(rd_off..rd_off + rdlen as usize) else {
            f.truncated = true;
            break;
        };
        off = rd_off + rdlen as usize;
        if i >= an {
            continue; // authority / additional: not answers
        }
        let ttl = ((ttl_hi as u32) << 16) | ttl_lo as u32;
        let rd = match (t, rdata.len()) {
            (1, 4) => Some(DnsRdata::A(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (28, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                Some(DnsRdata::Aaaa(Ipv6Addr::from(b)))
            }
            (5, _) => read_name(msg, rd_off).map(|(n, _)| DnsRdata::Cname(n)),
            _ => None,
        };
        match rd {
            Some(rdata) if f.answers.len() < MAX_ANSWERS => {
                f.answers.push(DnsAnswer { name, rdata, ttl })
            }
            Some(_) => {}
            None => f.other_answers += 1,
        }
    }
    DnsMsg::Ok(f)
}

fn done(f: DnsFacts, complete: bool) -> Parse<Detected> {
    Parse::Done(Detected::new(
        App::Dns,
        Encryption::Plaintext,
        Some(Facts::Dns(Box::new(f))),
        complete,
    ))
}

/// DNS over UDP (one datagram in `c2s` or `s2c`).
pub(crate) fn detect_dns_udp(ctx: &Ctx) -> Parse<Detected> {
    let d = if ctx.c2s.is_empty() { ctx.s2c } else { ctx.c2s };
    match parse_message(d) {
        DnsMsg::Bad => Parse::NotThis,
        DnsMsg::Ok(f) => {
            // Off the DNS ports, demand a clean, plausible message (no cut records).
            let dns_port = ctx.port_is(&[53, 5353, 5355, 853]);
            if !dns_port && (f.truncated || f.queries.is_empty()) {
                return Parse::NotThis;
            }
            let complete = f.responses > 0;
            done(f, complete)
        }
    }
}

/// DNS over TCP (2-byte length prefix per message).
pub(crate) fn detect_dns_tcp(ctx: &Ctx) -> Parse<Detected> {
    let mut facts: Option<DnsFacts> = None;
    for (data, closed) in [(ctx.c2s, ctx.c2s_closed), (ctx.s2c, ctx.s2c_closed)] {
        let mut off = 0usize;
        let mut msgs = 0;
        while off < data.len() && msgs < 8 {
            let Some(len) = u16_at(data, off) else {
                if facts.is_none() && !closed {
                    return Parse::NeedMore;
                }
                break;
            };
            let len = len as usize;
            if !(12..=4096).contains(&len) && facts.is_none() {
                return Parse::NotThis;
            }
            // Validate the header prefix before the whole message is in.
            let avail = &data[off + 2..];
            if avail.len() < len {
                if avail.len() >= 12
                    && let DnsMsg::Bad = parse_message_header_only(avail)
                {
                    return Parse::NotThis;
                }
                if facts.is_none() && !closed {
                    return Parse::NeedMore;
                }
                break;
            }
            match parse_message(&avail[..len]) {
                DnsMsg::Bad => {
                    if facts.is_none() {
                        return Parse::NotThis;
                    }
                    break;
                }
                DnsMsg::Ok(f) => match &mut facts {
                    Some(old) => old.merge(f),
                    None => facts = Some(f),
                },
            }
            off += 2 + len;
            msgs += 1;
        }
    }
    match facts {
        Some(f) => {
            let complete = f.responses > 0;
            done(f, complete)
        }
        None if ctx.c2s.is_empty() && ctx.s2c.is_empty() => Parse::NeedMore,
        None => Parse::NotThis,
    }
}

fn parse_message_header_only(m: &[u8]) -> DnsMsg {
    let flags = u16::from_be_bytes([m[2], m[3]]);
    let opcode = (flags >> 11) & 0xf;
    let qd = u16::from_be_bytes([m[4], m[5]]);
    if !matches!(opcode, 0 | 1 | 2 | 4 | 5) || qd > 32 {
        DnsMsg::Bad
    } else {
        DnsMsg::Ok(DnsFacts::default())
    }
}

/// Bounded, deterministic IP ↔ name map built from DNS answers seen in the capture.
///
/// Holds at most `capacity` addresses and 4 names per address. When full, the least recently
/// observed eighth of the addresses is evicted (ties broken by address), so the same input
/// always yields the same map. No clock: recency is an observation counter.
#[derive(Debug)]
pub struct DnsNames {
    capacity: usize,
    tick: u64,
    by_ip: HashMap<IpAddr, (Vec<String>, u64)>,
    by_name: HashMap<String, Vec<IpAddr>>,
}

const NAMES_PER_IP: usize = 4;
const IPS_PER_NAME: usize = 16;

impl DnsNames {
    pub fn new(capacity: usize) -> Self {
        DnsNames {
            capacity: capacity.max(1),
            tick: 0,
            by_ip: HashMap::new(),
            by_name: HashMap::new(),
        }
    }

    /// Number of addresses held.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Records every A/AAAA answer: the address maps to the answer's owner name and to the
    /// questions' names (which differ when CNAMEs intervene).
    pub fn observe(&mut self, f: &DnsFacts) {
        for a in &f.answers {
            let ip = match a.rdata {
                DnsRdata::A(v4) => IpAddr::V4(v4),
                DnsRdata::Aaaa(v6) => IpAddr::V6(v6),
                DnsRdata::Cname(_) => continue,
            };
            let queried = f.queries.iter().map(|q| q.name.as_str());
            for n in queried.chain(std::iter::once(a.name.as_str())) {
                self.insert(ip, n);
            }
        }
    }

    fn insert(&mut self, ip: IpAddr, name: &str) {
        self.tick += 1;
        if !self.by_ip.contains_key(&ip) && self.by_ip.len() >= self.capacity {
            self.evict();
        }
        let e = self.by_ip.entry(ip).or_insert_with(|| (Vec::new(), 0));
        e.1 = self.tick;
        if !e.0.iter().any(|n| n == name) {
            if e.0.len() >= NAMES_PER_IP {
                let old = e.0.remove(0);
                if let Some(ips) = self.by_name.get_mut(&old) {
                    ips.retain(|i| *i != ip);
                    if ips.is_empty() {
                        self.by_name.remove(&old);
                    }
                }
            }
            e.0.push(name.to_string());
        }
        // Look up before inserting: the name is only copied the first time it is seen.
        match self.by_name.get_mut(name) {
            Some(ips) => {
                if !ips.contains(&ip) {
                    if ips.len() >= IPS_PER_NAME {
                        ips.remove(0);
                    }
                    ips.push(ip);
                }
            }
            None => {
                self.by_name.insert(name.to_string(), vec![ip]);
            }
        }
    }

    fn evict(&mut self) {
        let mut all: Vec<(u64, IpAddr)> = self.by_ip.iter().map(|(ip, (_, t))| (*t, *ip)).collect();
        all.sort_unstable();
        let n = (self.capacity / 8).max(1);
        for (_, ip) in all.into_iter().take(n) {
            if let Some((names, _)) = self.by_ip.remove(&ip) {
                for name in names {
                    if let Some(ips) = self.by_name.get_mut(&name) {
                        ips.retain(|i| *i != ip);
                        if ips.is_empty() {
                            self.by_name.remove(&name);
                        }
                    }
                }
            }
        }
    }

    /// Names seen for `ip` (oldest first), empty when unknown.
    pub fn names_for(&self, ip: IpAddr) -> &[String] {
        self.by_ip.get(&ip).map_or(&[], |(n, _)| n.as_slice())
    }

    /// Addresses seen for `name`.
    pub fn ips_for(&self, name: &str) -> &[IpAddr] {
        self.by_name.get(name).map_or(&[], |v| v.as_slice())
    }
}

impl Default for DnsNames {
    fn default() -> Self {
        DnsNames::new(65536)
    }
}
