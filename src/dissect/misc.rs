//! SSH, AMQP, MQTT, LDAP, Telnet, WireGuard and IPsec (ESP, NAT-T, IKE).
//!
//! Each detector recognises its protocol by content (banner, magic, header structure), returns
//! NeedMore on a prefix, and extracts a few typed facts. LDAP simple binds, MQTT passwords,
//! AMQP PLAIN responses and Telnet logins are credential sightings (redacted). LDAP StartTLS
//! with a success response is an accepted upgrade. WireGuard and IPsec are encrypted by
//! definition. (QUIC lives in `quic.rs`.)

use serde::Serialize;

use super::sql::upgrade_after;
use super::{
    App, AppInfo, CredKind, Ctx, Detected, Dir, Encryption, Facts, Parse, Upgrade, redact,
};
use crate::sanitize::sanitize_bytes;

// ---------------------------------------------------------------------------------------------
// SSH
// ---------------------------------------------------------------------------------------------

/// SSH facts: the identification strings of both sides.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SshFacts {
    /// e.g. "SSH-2.0-OpenSSH_9.6"
    pub client_banner: Option<String>,
    pub server_banner: Option<String>,
    /// Protocol version from the banner ("2.0", "1.99", "1.5").
    pub version: Option<String>,
}

/// Reads an SSH identification line. Ok(Some(line)) found, Ok(None) prefix/need more,
/// Err(()) not SSH. Servers may send other lines before it (RFC 4253 §4.2).
fn ssh_banner(b: &[u8], closed: bool) -> Result<Option<&[u8]>, ()> {
    const P: &[u8] = b"SSH-";
    let mut off = 0;
    for _ in 0..8 {
        let rest = &b[off..];
        if rest.len() < P.len() {
            return if P.starts_with(rest) && !closed {
                Ok(None)
            } else {
                Err(())
            };
        }
        let eol = rest.iter().position(|&x| x == b'\n');
        if rest.starts_with(P) {
            return match eol {
                Some(n) => Ok(Some(rest[..n].strip_suffix(b"\r").unwrap_or(&rest[..n]))),
                None if rest.len() < 255 && !closed => Ok(None),
                None => Ok(Some(&rest[..rest.len().min(255)])),
            };
        }
        if off == 0
            && !rest
                .iter()
                .take(64)
                .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            return Err(());
        }
        match eol {
            Some(n) if off > 0 || n < 255 => off += n + 1,
            _ => return Err(()),
        }
        if off >= b.len() {
            return if closed { Err(()) } else { Ok(None) };
        }
    }
    Err(())
}

pub(crate) fn detect_ssh(ctx: &Ctx) -> Parse<Detected> {
    let cb = if ctx.c2s.is_empty() {
        Ok(None)
    } else {
        ssh_banner(ctx.c2s, ctx.c2s_closed)
    };
    let sb = if ctx.s2c.is_empty() {
        Ok(None)
    } else {
        ssh_banner(ctx.s2c, ctx.s2c_closed)
    };
    // Client data must itself start with SSH- (clients send no preamble).
    let cb = match (cb, ctx.c2s.first()) {
        (Ok(x), Some(b'S')) | (Ok(x), None) => Ok(x),
        _ => Err(()),
    };
    match (&cb, &sb) {
        (Err(()), Err(())) => return Parse::NotThis,
        (Err(()), _) if !ctx.c2s.is_empty() && sb != Ok(None) => {}
        (Err(()), Ok(None)) => return Parse::NotThis,
        (Ok(None), Ok(None)) => return Parse::NeedMore,
        (Ok(None), Err(())) if !ctx.c2s.is_empty() => {}
        (Ok(None), Err(())) => return Parse::NotThis,
        _ => {}
    }
    let cbl = cb.ok().flatten();
    let sbl = sb.ok().flatten();
    if cbl.is_none() && sbl.is_none() {
        return Parse::NeedMore;
    }
    let version = cbl.or(sbl).and_then(|l| {
        let v = l.get(4..)?.split(|&b| b == b'-').next()?;
        Some(sanitize_bytes(v))
    });
    let f = SshFacts {
        client_banner: cbl.map(sanitize_bytes),
        server_banner: sbl.map(sanitize_bytes),
        version,
    };
    let complete = cbl.is_some() && sbl.is_some();
    Parse::Done(Detected::new(
        App::Ssh,
        Encryption::Encrypted,
        Some(Facts::Ssh(Box::new(f))),
        complete,
    ))
}

// ---------------------------------------------------------------------------------------------
// AMQP
// ---------------------------------------------------------------------------------------------

/// AMQP facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AmqpFacts {
    /// "0-9-1", "0-10", "1.0", "1.0-sasl", "1.0-tls".
    pub version: String,
}

pub(crate) fn detect_amqp(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    const P: &[u8] = b"AMQP";
    if c.len() < 8 {
        let n = c.len().min(4);
        return if c[..n] == P[..n] && !ctx.c2s_closed {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    if !c.starts_with(P) {
        return Parse::NotThis;
    }
    let version = match (c[4], c[5], c[6], c[7]) {
        (0, 0, 9, 1) => "0-9-1",
        (1, 1, 0, 9) | (1, 1, 0, 8) => "0-8/0-9",
        (1, 1, 0, 10) => "0-10",
        (0, 1, 0, 0) => "1.0",
        (3, 1, 0, 0) => "1.0-sasl",
        (2, 1, 0, 0) => "1.0-tls",
        _ => return Parse::NotThis,
    };
    let mut d = Detected::new(
        App::Amqp,
        if version == "1.0-tls" {
            Encryption::Encrypted
        } else {
            Encryption::Plaintext
        },
        Some(Facts::Amqp(Box::new(AmqpFacts {
            version: version.into(),
        }))),
        false,
    );
    // Connection.Start-Ok with PLAIN: "\0user\0password" after the mechanism.
    if let Some(pos) = c.windows(5).position(|w| w == b"PLAIN") {
        let after = &c[pos + 5..];
        if let Some(z) = after.iter().position(|&b| b == 0) {
            let resp = &after[z..];
            let pass = resp
                .iter()
                .skip(1)
                .position(|&b| b == 0)
                .map(|n| &resp[n + 2..]);
            if let Some(p) = pass {
                let end = p
                    .iter()
                    .position(|&b| b == 0xce || b == 0)
                    .unwrap_or(p.len());
                d.creds
                    .push((CredKind::AmqpPlain, Dir::ToResponder, redact(&p[..end])));
            }
        }
        d.complete = true;
    }
    d.complete |= ctx.c2s.len() > 512;
    Parse::Done(d)
}

// ---------------------------------------------------------------------------------------------
// MQTT
// ---------------------------------------------------------------------------------------------

/// MQTT facts from CONNECT.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MqttFacts {
    /// 3 = 3.1, 4 = 3.1.1, 5 = 5.0.
    pub protocol_level: u8,
    pub client_id: Option<String>,
    pub username_present: bool,
    pub password_present: bool,
}

pub(crate) fn detect_mqtt(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    let Some(&first) = c.first() else {
        return if ctx.s2c.is_empty() {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    };
    if first != 0x10 {
        return Parse::NotThis;
    }
    // Remaining length varint.
    let mut len = 0usize;
    let mut i = 1;
    loop {
        let Some(&b) = c.get(i) else {
            return if ctx.c2s_closed {
                Parse::NotThis
            } else {
                Parse::NeedMore
            };
        };
        len |= ((b & 0x7f) as usize) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Parse::NotThis;
        }
    }
    let body = &c[i..];
    let want = [0u8, 4, b'M', b'Q', b'T', b'T'];
    let want31 = [0u8, 6, b'M', b'Q', b'I', b's', b'd', b'p'];
    let hdr = if body.len() >= 2 && body[1] == 6 {
        &want31[..]
    } else {
        &want[..]
    };
    let n = body.len().min(hdr.len());
    if body[..n] != hdr[..n] {
        return Parse::NotThis;
    }
    if body.len() < hdr.len() + 4 {
        return if ctx.c2s_closed {
            Parse::NotThis
        } else {
            Parse::NeedMore
        };
    }
    let level = body[hdr.len()];
    let flags = body[hdr.len() + 1];
    if len < hdr.len() + 4 || !(3..=5).contains(&level) {
        return Parse::NotThis;
    }
    let mut o = hdr.len() + 4; // keepalive
    if level == 5 {
        // Properties length varint.
        let mut pl = 0usize;
        let mut k = 0;
        while let Some(&b) = body.get(o) {
            pl |= ((b & 0x7f) as usize) << (7 * k);
            o += 1;
            k += 1;
            if b & 0x80 == 0 || k >= 4 {
                break;
            }
        }
        o += pl;
    }
    let client_id = body.get(o..o + 2).and_then(|l| {
        let l = u16::from_be_bytes([l[0], l[1]]) as usize;
        body.get(o + 2..o + 2 + l).map(sanitize_bytes)
    });
    let f = MqttFacts {
        protocol_level: level,
        client_id,
        username_present: flags & 0x80 != 0,
        password_present: flags & 0x40 != 0,
    };
    let mut d = Detected::new(App::Mqtt, Encryption::Plaintext, None, !ctx.s2c.is_empty());
    if f.password_present {
        d.creds
            .push((CredKind::MqttPassword, Dir::ToResponder, "…".to_string()));
    }
    d.facts = Some(Facts::Mqtt(Box::new(f)));
    Parse::Done(d)
}

// ---------------------------------------------------------------------------------------------
// LDAP
// ---------------------------------------------------------------------------------------------

/// LDAP facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LdapFacts {
    /// First protocol operations ("bindRequest", "searchRequest", "extendedRequest", ...).
    pub operations: Vec<&'static str>,
    /// Bind DN of a bind request (sanitized).
    pub bind_dn: Option<String>,
    /// "simple", "sasl" or None.
    pub bind_auth: Option<&'static str>,
    /// StartTLS extended request seen.
    pub starttls: bool,
}

/// Reads a BER tag+length; returns (tag, content, total length).
fn ber(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let tag = *b.first()?;
    let l0 = *b.get(1)? as usize;
    let (len, hl) = if l0 < 0x80 {
        (l0, 2)
    } else {
        let n = l0 & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut l = 0usize;
        for k in 0..n {
            l = (l << 8) | *b.get(2 + k)? as usize;
        }
        (l, 2 + n)
    };
    let content = b.get(hl..hl + len)?;
    Some((tag, content, hl + len))
}

fn ldap_op(tag: u8) -> Option<&'static str> {
    Some(match tag {
        0x60 => "bindRequest",
        0x61 => "bindResponse",
        0x42 => "unbindRequest",
        0x63 => "searchRequest",
        0x64 => "searchResEntry",
        0x65 => "searchResDone",
        0x66 => "modifyRequest",
        0x68 => "addRequest",
        0x4a => "delRequest",
        0x77 => "extendedRequest",
        0x78 => "extendedResponse",
        0x50 => "abandonRequest",
        _ => return None,
    })
}

const STARTTLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";

/// Parses one LDAPMessage; Err(true) = need more, Err(false) = not LDAP.
fn ldap_msg(b: &[u8]) -> Result<(u8, &[u8], usize), bool> {
    if b.is_empty() {
        return Err(true);
    }
    if b[0] != 0x30 {
        return Err(false);
    }
    match ber(b) {
        Some((_, content, total)) => {
            let (t, _id, idl) = ber(content).ok_or(false)?;
            if t != 0x02 {
                return Err(false);
            }
            let (op, body, _) = ber(&content[idl..]).ok_or(false)?;
            ldap_op(op).ok_or(false)?;
            Ok((op, body, total))
        }
        None => {
            if b.len() >= 2 && b[1] & 0x7f > 4 && b[1] & 0x80 != 0 {
                Err(false)
            } else {
                Err(true)
            }
        }
    }
}

pub(crate) fn detect_ldap(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    let (op, body, used) = match ldap_msg(c) {
        Ok(x) => x,
        Err(true) => {
            return if ctx.c2s_closed || (c.is_empty() && !ctx.s2c.is_empty()) {
                Parse::NotThis
            } else {
                Parse::NeedMore
            };
        }
        Err(false) => return Parse::NotThis,
    };
    let mut f = LdapFacts::default();
    let mut d = Detected::new(App::Ldap, Encryption::Plaintext, None, false);
    let mut off = 0;
    let mut cur = (op, body, used);
    for _ in 0..8 {
        let (op, body, used) = cur;
        if let Some(n) = ldap_op(op)
            && f.operations.len() < 8
            && !f.operations.contains(&n)
        {
            f.operations.push(n);
        }
        if op == 0x60 {
            // version INTEGER, name OCTET STRING, auth CHOICE.
            if let Some((_, _, vl)) = ber(body)
                && let Some((_, name, nl)) = ber(&body[vl..])
            {
                f.bind_dn = Some(sanitize_bytes(name));
                if let Some((t, pw, _)) = ber(&body[vl + nl..]) {
                    if t == 0x80 {
                        f.bind_auth = Some("simple");
                        if !pw.is_empty() {
                            d.creds
                                .push((CredKind::LdapSimpleBind, Dir::ToResponder, redact(pw)));
                        }
                    } else if t == 0xa3 {
                        f.bind_auth = Some("sasl");
                    }
                }
            }
        } else if op == 0x77 && super::http::memfind(body, STARTTLS_OID) {
            f.starttls = true;
        }
        off += used;
        if f.starttls {
            break;
        }
        match ldap_msg(&c[off..]) {
            Ok(x) => cur = x,
            Err(_) => break,
        }
    }
    if f.starttls {
        // Find the extendedResponse and its resultCode (ENUMERATED first in the body).
        let mut so = 0;
        let mut accepted = None;
        while let Ok((op, body, used)) = ldap_msg(&ctx.s2c[so..]) {
            if op == 0x78 {
                accepted = ber(body).map(|(t, v, _)| t == 0x0a && v == [0]);
                so += used;
                break;
            }
            so += used;
        }
        if let Some(acc) = accepted {
            let (up, sni, complete) = upgrade_after(
                "ldap_starttls",
                acc,
                &c[off..],
                &ctx.s2c[so..],
                ctx.c2s_closed,
            );
            if acc {
                d.encryption = Encryption::Encrypted;
                d.sni = sni;
            }
            d.complete = complete;
            d.upgrade = Some(up);
        }
    } else {
        d.complete = !ctx.s2c.is_empty();
    }
    d.facts = Some(Facts::Ldap(Box::new(f)));
    Parse::Done(d)
}

// ---------------------------------------------------------------------------------------------
// Telnet
// ---------------------------------------------------------------------------------------------

/// Telnet facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TelnetFacts {
    /// Option negotiations (IAC WILL/WONT/DO/DONT) seen.
    pub negotiations: u32,
    /// A login or password prompt was seen from the server.
    pub login_prompt: bool,
}

fn iac_count(b: &[u8]) -> u32 {
    b.windows(2)
        .filter(|w| w[0] == 0xff && (0xfb..=0xfe).contains(&w[1]))
        .count() as u32
}

pub(crate) fn detect_telnet(ctx: &Ctx) -> Parse<Detected> {
    let starts = |b: &[u8]| b.len() >= 2 && b[0] == 0xff && (0xfb..=0xfe).contains(&b[1]);
    let c_ok = starts(ctx.c2s);
    let s_ok = starts(ctx.s2c);
    if !c_ok && !s_ok {
        let maybe = |b: &[u8]| b.is_empty() || b == [0xff];
        return if maybe(ctx.c2s)
            && maybe(ctx.s2c)
            && !(ctx.c2s.is_empty() && ctx.s2c.is_empty() && ctx.c2s_closed)
        {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    let s = ctx.s2c;
    let contains = |h: &[u8], n: &[u8]| h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    let f = TelnetFacts {
        negotiations: iac_count(ctx.c2s) + iac_count(s),
        login_prompt: contains(s, b"login:")
            || contains(s, b"password:")
            || contains(s, b"username:"),
    };
    let mut d = Detected::new(App::Telnet, Encryption::Plaintext, None, false);
    if contains(s, b"password:") {
        // Typed characters are not IAC sequences; a password prompt plus client keystrokes
        // after negotiation means a login crossed in clear. The secret is not located.
        let typed = ctx.c2s.iter().filter(|b| b.is_ascii_graphic()).count();
        if typed >= 2 {
            d.creds
                .push((CredKind::TelnetLogin, Dir::ToResponder, "…".to_string()));
            d.complete = true;
        }
    }
    d.facts = Some(Facts::Telnet(Box::new(f)));
    Parse::Done(d)
}

// ---------------------------------------------------------------------------------------------
// WireGuard, IPsec
// ---------------------------------------------------------------------------------------------

/// WireGuard facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WireguardFacts {
    /// "handshake_initiation", "handshake_response", "cookie_reply", "transport_data".
    pub message: &'static str,
}

pub(crate) fn detect_wireguard(ctx: &Ctx) -> Parse<Detected> {
    let d = if ctx.c2s.is_empty() { ctx.s2c } else { ctx.c2s };
    if d.len() < 4 || d[1] != 0 || d[2] != 0 || d[3] != 0 {
        return Parse::NotThis;
    }
    let message = match (d[0], d.len()) {
        (1, 148) => "handshake_initiation",
        (2, 92) => "handshake_response",
        (3, 64) => "cookie_reply",
        (4, n) if n >= 32 && n % 16 == 0 && ctx.port_is(&[51820]) => "transport_data",
        _ => return Parse::NotThis,
    };
    Parse::Done(Detected::new(
        App::Wireguard,
        Encryption::Encrypted,
        Some(Facts::Wireguard(Box::new(WireguardFacts { message }))),
        true,
    ))
}

/// IPsec facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IpsecFacts {
    /// "esp" (IP protocol 50), "esp_in_udp" (NAT-T), "ike".
    pub encapsulation: &'static str,
    /// ESP security parameter index (hex) or IKE version ("1" / "2").
    pub spi: Option<String>,
    pub ike_version: Option<u8>,
}

/// Raw ESP (IP protocol 50): always encrypted.
pub fn esp_info(payload: &[u8]) -> AppInfo {
    let spi = payload
        .get(..4)
        .map(|b| format!("0x{:08x}", u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
    AppInfo {
        app: App::Ipsec,
        encryption: Encryption::Encrypted,
        facts: Some(Facts::Ipsec(Box::new(IpsecFacts {
            encapsulation: "esp",
            spi,
            ike_version: None,
        }))),
        ..AppInfo::UNKNOWN
    }
}

fn ike_header(d: &[u8]) -> Option<u8> {
    if d.len() < 28 {
        return None;
    }
    let ver = d[17];
    let exch = d[18];
    let len = u32::from_be_bytes([d[24], d[25], d[26], d[27]]) as usize;
    let ok_ver = ver == 0x20 || ver == 0x10;
    let ok_exch = (34..=37).contains(&exch) || (1..=5).contains(&exch) || exch == 32 || exch == 33;
    (ok_ver && ok_exch && len >= 28 && len <= d.len() + 8).then_some(ver >> 4)
}

/// UDP 4500: non-ESP marker + IKE, or ESP-in-UDP, or NAT keepalive.
pub(crate) fn detect_nat_t(ctx: &Ctx) -> Parse<Detected> {
    if !ctx.port_is(&[4500]) {
        return Parse::NotThis;
    }
    let d = if ctx.c2s.is_empty() { ctx.s2c } else { ctx.c2s };
    let (encapsulation, spi, ike_version) = if d == [0xff] {
        ("nat_keepalive", None, None)
    } else if d.len() >= 4 && d[..4] == [0, 0, 0, 0] {
        match ike_header(&d[4..]) {
            Some(v) => ("ike", None, Some(v)),
            None => return Parse::NotThis,
        }
    } else if d.len() >= 16 {
        let spi = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        ("esp_in_udp", Some(format!("0x{spi:08x}")), None)
    } else {
        return Parse::NotThis;
    };
    Parse::Done(Detected::new(
        App::Ipsec,
        Encryption::Encrypted,
        Some(Facts::Ipsec(Box::new(IpsecFacts {
            encapsulation,
            spi,
            ike_version,
        }))),
        encapsulation != "nat_keepalive",
    ))
}

/// IKE on UDP 500 (key exchange for IPsec: the negotiation itself is partly cleartext, the
/// protected traffic is not).
pub(crate) fn detect_ike(ctx: &Ctx) -> Parse<Detected> {
    let d = if ctx.c2s.is_empty() { ctx.s2c } else { ctx.c2s };
    let Some(v) = ike_header(d) else {
        return Parse::NotThis;
    };
    if !ctx.port_is(&[500, 4500]) {
        return Parse::NotThis;
    }
    Parse::Done(Detected::new(
        App::Ike,
        Encryption::Encrypted,
        Some(Facts::Ipsec(Box::new(IpsecFacts {
            encapsulation: "ike",
            spi: None,
            ike_version: Some(v),
        }))),
        true,
    ))
}

#[allow(dead_code)]
fn _unused(_: Upgrade) {}
