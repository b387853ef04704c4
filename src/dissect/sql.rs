//! Database and cache protocols: PostgreSQL, MySQL, Redis (RESP), MongoDB, Kafka, memcached.
//!
//! PostgreSQL: StartupMessage (user, database, application), SSLRequest / GSSENCRequest and the
//! server's one-byte answer ('S' → encrypted upgrade, TLS facts read after it; 'N' → plaintext,
//! dissection continues), the authentication method the server asks for, and the kind of
//! password message the client sends (cleartext / md5 / SASL: a credential sighting).
//! MySQL: server greeting (version, SSL capability), the client's SSL switch or its plaintext
//! HandshakeResponse (a credential sighting). Redis: command names (AUTH recorded as a
//! credential). MongoDB: opcodes and first command name. Kafka: API keys and client id.
//! memcached: text or binary commands. All strings sanitized; prefixes give NeedMore.

use serde::Serialize;

use super::hello::be16;
use super::tls::parse_tls_pair;
use super::{App, CredKind, Ctx, Detected, Dir, Encryption, Facts, Parse, Upgrade, redact};
use crate::sanitize::sanitize_bytes;

fn be32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn le32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// Upgrade facts shared by every STARTTLS-style dissector: reads TLS after the switch point.
pub(crate) fn upgrade_after(
    via: &'static str,
    accepted: bool,
    c2s_tls: &[u8],
    s2c_tls: &[u8],
    c2s_closed: bool,
) -> (Upgrade, Option<String>, bool) {
    if !accepted {
        return (
            Upgrade {
                via,
                accepted,
                tls: None,
            },
            None,
            true,
        );
    }
    match parse_tls_pair(c2s_tls, s2c_tls, c2s_closed, None, None) {
        Parse::Done((f, sni, complete)) => (
            Upgrade {
                via,
                accepted,
                tls: Some(Box::new(f)),
            },
            sni,
            complete,
        ),
        Parse::NeedMore => (
            Upgrade {
                via,
                accepted,
                tls: None,
            },
            None,
            c2s_closed,
        ),
        Parse::NotThis => (
            Upgrade {
                via,
                accepted,
                tls: None,
            },
            None,
            true,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// PostgreSQL facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PostgresFacts {
    /// "3.0" etc.
    pub protocol: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application_name: Option<String>,
    /// The client asked for TLS (SSLRequest) / GSSAPI encryption (GSSENCRequest).
    pub ssl_request: bool,
    pub gssenc_request: bool,
    /// Server's answer to SSLRequest/GSSENCRequest: 'S' / 'N' / 'G'.
    pub ssl_answer: Option<char>,
    /// Authentication the server requested: "ok", "cleartext", "md5", "sasl", "gss", ...
    pub auth_method: Option<&'static str>,
    /// The client sent a password message.
    pub password_sent: bool,
    pub cancel_request: bool,
}

const PG_SSL: u32 = 80877103;
const PG_GSSENC: u32 = 80877104;
const PG_CANCEL: u32 = 80877102;

fn pg_auth_name(code: u32) -> &'static str {
    match code {
        0 => "ok",
        2 => "kerberos5",
        3 => "cleartext",
        5 => "md5",
        7 => "gss",
        9 => "sspi",
        10 => "sasl",
        _ => "other",
    }
}

pub(crate) fn detect_postgres(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    if c.len() < 8 {
        // Length must be plausible from the first bytes: 00 00 xx xx.
        let ok = c.iter().take(2).all(|&b| b == 0);
        return if ok && ctx.s2c.is_empty() {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    let (Some(len), Some(code)) = (be32(c, 0), be32(c, 4)) else {
        return Parse::NotThis;
    };
    let mut f = PostgresFacts::default();
    let mut d = Detected::new(App::Postgres, Encryption::Plaintext, None, false);
    let mut c_off = 0usize;
    let mut s_off = 0usize;
    if len == 8 && (code == PG_SSL || code == PG_GSSENC) {
        f.ssl_request = code == PG_SSL;
        f.gssenc_request = code == PG_GSSENC;
        c_off = 8;
        let Some(&ans) = ctx.s2c.first() else {
            d.facts = Some(Facts::Postgres(Box::new(f)));
            d.complete = ctx.s2c_closed;
            return Parse::Done(d);
        };
        if !matches!(ans, b'S' | b'N' | b'G' | b'E') {
            return Parse::NotThis;
        }
        f.ssl_answer = Some(ans as char);
        s_off = 1;
        if ans == b'S' || ans == b'G' {
            let via = if ans == b'S' {
                "ssl_request"
            } else {
                "gssenc_request"
            };
            let (up, sni, complete) =
                upgrade_after(via, true, &c[8..], &ctx.s2c[1..], ctx.c2s_closed);
            d.encryption = Encryption::Encrypted;
            d.sni = sni;
            d.upgrade = Some(up);
            d.complete = complete || ans == b'G';
            d.facts = Some(Facts::Postgres(Box::new(f)));
            return Parse::Done(d);
        }
        d.upgrade = Some(Upgrade {
            via: if f.ssl_request {
                "ssl_request"
            } else {
                "gssenc_request"
            },
            accepted: false,
            tls: None,
        });
    } else if len == 16 && code == PG_CANCEL {
        f.cancel_request = true;
        d.facts = Some(Facts::Postgres(Box::new(f)));
        d.complete = true;
        return Parse::Done(d);
    }
    // StartupMessage.
    let rest = &c[c_off..];
    if rest.is_empty() {
        d.facts = Some(Facts::Postgres(Box::new(f)));
        d.complete = ctx.c2s_closed;
        return Parse::Done(d);
    }
    if rest.len() < 8 {
        return if c_off > 0 {
            d.facts = Some(Facts::Postgres(Box::new(f)));
            Parse::Done(d)
        } else {
            Parse::NeedMore
        };
    }
    let (Some(slen), Some(proto)) = (be32(rest, 0), be32(rest, 4)) else {
        return Parse::NotThis;
    };
    if proto >> 16 != 3 || !(9..=10000).contains(&slen) {
        return if c_off > 0 {
            d.facts = Some(Facts::Postgres(Box::new(f)));
            d.complete = true;
            Parse::Done(d)
        } else {
            Parse::NotThis
        };
    }
    let slen = slen as usize;
    if rest.len() < slen {
        if c_off > 0 {
            d.facts = Some(Facts::Postgres(Box::new(f)));
            return Parse::Done(d);
        }
        return if ctx.c2s_closed {
            Parse::NotThis
        } else {
            Parse::NeedMore
        };
    }
    f.protocol = Some(format!("{}.{}", proto >> 16, proto & 0xffff));
    let mut it = rest[8..slen].split(|&b| b == 0);
    let mut pairs = 0;
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if k.is_empty() || pairs > 32 {
            break;
        }
        pairs += 1;
        match k {
            b"user" => f.user = Some(sanitize_bytes(v)),
            b"database" => f.database = Some(sanitize_bytes(v)),
            b"application_name" => f.application_name = Some(sanitize_bytes(v)),
            _ => {}
        }
    }
    // Server messages: find the first Authentication request ('R').
    let s = &ctx.s2c[s_off..];
    let mut off = 0;
    let mut auth_code = None;
    while off + 5 <= s.len() {
        let t = s[off];
        let Some(l) = be32(s, off + 1) else { break };
        if t == b'R' {
            auth_code = be32(s, off + 5);
            if let Some(code) = auth_code {
                f.auth_method = Some(pg_auth_name(code));
            }
            break;
        }
        if !(t as char).is_ascii_alphabetic() || l < 4 {
            break;
        }
        off += 1 + l as usize;
    }
    // Client messages after the startup: the password message ('p').
    let after = &rest[slen..];
    if after.len() >= 5 && after[0] == b'p' {
        f.password_sent = true;
        let l = be32(after, 1).unwrap_or(0) as usize;
        let body = after.get(5..(1 + l).min(after.len())).unwrap_or(&[]);
        let kind = match auth_code {
            Some(5) => CredKind::PostgresMd5,
            Some(10) | Some(11) => CredKind::PostgresSasl,
            _ => CredKind::PostgresCleartext,
        };
        let secret = match kind {
            CredKind::PostgresMd5 => body.strip_prefix(b"md5").unwrap_or(body),
            CredKind::PostgresSasl => &[][..],
            _ => body.strip_suffix(&[0]).unwrap_or(body),
        };
        d.creds.push((kind, Dir::ToResponder, redact(secret)));
    }
    d.complete = match auth_code {
        Some(0) => true,
        Some(3) | Some(5) => f.password_sent || ctx.c2s_closed,
        Some(_) => true,
        None => ctx.s2c_closed,
    };
    d.facts = Some(Facts::Postgres(Box::new(f)));
    Parse::Done(d)
}

// ---------------------------------------------------------------------------------------------
// MySQL
// ---------------------------------------------------------------------------------------------

/// MySQL / MariaDB facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MysqlFacts {
    pub protocol_version: Option<u8>,
    pub server_version: Option<String>,
    /// The server advertises CLIENT_SSL.
    pub server_ssl_capable: bool,
    /// The client switched to TLS (SSL request packet).
    pub ssl_switch: bool,
    pub user: Option<String>,
    pub auth_plugin: Option<String>,
    pub database: Option<String>,
}

const CLIENT_SSL: u32 = 0x0800;
const CLIENT_CONNECT_WITH_DB: u32 = 0x0008;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_LENENC: u32 = 0x0020_0000;

pub(crate) fn detect_mysql(ctx: &Ctx) -> Parse<Detected> {
    let s = ctx.s2c;
    // The server speaks first: 3-byte length, seq 0, protocol version 10 (or 9).
    if s.len() < 5 {
        if !ctx.c2s.is_empty() {
            return Parse::NotThis;
        }
        let ok = s.len() < 4 || s[3] == 0;
        return if ok { Parse::NeedMore } else { Parse::NotThis };
    }
    let plen = u32::from_le_bytes([s[0], s[1], s[2], 0]) as usize;
    if s[3] != 0 || !(s[4] == 10 || s[4] == 9 || s[4] == 0xff) || !(5..=1024).contains(&plen) {
        return Parse::NotThis;
    }
    if s.len() < 4 + plen {
        return if ctx.s2c_closed {
            Parse::NotThis
        } else {
            Parse::NeedMore
        };
    }
    let p = &s[4..4 + plen];
    let mut f = MysqlFacts {
        protocol_version: Some(p[0]),
        ..Default::default()
    };
    if p[0] == 0xff {
        // Error packet instead of greeting (e.g. host not allowed): still MySQL.
        let mut d = Detected::new(App::Mysql, Encryption::Plaintext, None, true);
        d.facts = Some(Facts::Mysql(Box::new(f)));
        return Parse::Done(d);
    }
    let Some(nul) = p[1..].iter().position(|&b| b == 0) else {
        return Parse::NotThis;
    };
    let ver = &p[1..1 + nul];
    if ver.is_empty() || !ver.iter().all(|b| b.is_ascii_graphic()) {
        return Parse::NotThis;
    }
    f.server_version = Some(sanitize_bytes(ver));
    let o = 1 + nul + 1 + 4 + 8 + 1; // version\0, thread id, scramble 1, filler
    let caps_lo = p
        .get(o..o + 2)
        .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as u32);
    f.server_ssl_capable = caps_lo & CLIENT_SSL != 0;
    let mut d = Detected::new(App::Mysql, Encryption::Plaintext, None, false);
    // Client response: seq 1.
    let c = ctx.c2s;
    if c.len() >= 8 && c[3] == 1 {
        let clen = u32::from_le_bytes([c[0], c[1], c[2], 0]) as usize;
        let caps = le32(c, 4).unwrap_or(0);
        if caps & CLIENT_SSL != 0 && clen == 32 {
            f.ssl_switch = true;
            let tls_c = c.get(4 + clen..).unwrap_or(&[]);
            let tls_s = s.get(4 + plen..).unwrap_or(&[]);
            let (up, sni, complete) =
                upgrade_after("mysql_ssl", true, tls_c, tls_s, ctx.c2s_closed);
            d.encryption = Encryption::Encrypted;
            d.upgrade = Some(up);
            d.sni = sni;
            d.complete = complete;
        } else if let Some(body) = c.get(4..4 + clen) {
            // HandshakeResponse41: caps(4) max(4) charset(1) reserved(23) user\0 auth...
            if body.len() > 32 {
                let rest = &body[32..];
                if let Some(n) = rest.iter().position(|&b| b == 0) {
                    f.user = Some(sanitize_bytes(&rest[..n]));
                    let mut q = n + 1;
                    let auth: &[u8] = if caps & (CLIENT_LENENC | CLIENT_SECURE_CONNECTION) != 0 {
                        let l = rest.get(q).copied().unwrap_or(0) as usize;
                        q += 1;
                        let a = rest.get(q..q + l).unwrap_or(&[]);
                        q += l;
                        a
                    } else {
                        let l = rest[q..].iter().position(|&b| b == 0).unwrap_or(0);
                        let a = &rest[q..q + l];
                        q += l + 1;
                        a
                    };
                    if caps & CLIENT_CONNECT_WITH_DB != 0
                        && let Some(db) = rest.get(q..)
                    {
                        let l = db.iter().position(|&b| b == 0).unwrap_or(db.len());
                        f.database = Some(sanitize_bytes(&db[..l]));
                        q += l + 1;
                    }
                    if caps & CLIENT_PLUGIN_AUTH != 0
                        && let Some(pl) = rest.get(q..)
                    {
                        let l = pl.iter().position(|&b| b == 0).unwrap_or(pl.len());
                        f.auth_plugin = Some(sanitize_bytes(&pl[..l]));
                    }
                    if !auth.is_empty() {
                        d.creds
                            .push((CredKind::MysqlAuth, Dir::ToResponder, redact(auth)));
                    }
                }
            }
            d.complete = true;
        }
    } else if !c.is_empty() && c.len() >= 4 && c[3] != 1 {
        d.complete = true;
    }
    d.facts = Some(Facts::Mysql(Box::new(f)));
    Parse::Done(d)
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// Redis facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RedisFacts {
    /// Distinct command names (uppercased), first 16.
    pub commands: Vec<String>,
    /// The protocol was RESP arrays (true) or inline commands (false).
    pub resp: bool,
}

/// Reads one RESP array of bulk strings at `b`; returns the elements and bytes used.
/// `Err(true)` = need more; `Err(false)` = not RESP.
fn resp_array(b: &[u8], closed: bool) -> Result<(Vec<&[u8]>, usize), bool> {
    fn line(b: &[u8], o: usize) -> Result<(&[u8], usize), bool> {
        let rest = b.get(o..).ok_or(true)?;
        match rest.iter().position(|&x| x == b'\r') {
            Some(n) => {
                if rest.len() < n + 2 {
                    return Err(true);
                }
                if rest[n + 1] != b'\n' {
                    return Err(false);
                }
                Ok((&rest[..n], o + n + 2))
            }
            None if rest.len() > 24 => Err(false),
            None => Err(true),
        }
    }
    fn num(s: &[u8]) -> Result<usize, bool> {
        if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
            return Err(false);
        }
        Ok(s.iter().fold(0usize, |a, d| a * 10 + (d - b'0') as usize))
    }
    if b.first() != Some(&b'*') {
        return Err(false);
    }
    let (n, mut o) = line(b, 1)?;
    let n = num(n)?;
    if n == 0 || n > 1024 {
        return Err(false);
    }
    let mut out = Vec::new();
    for _ in 0..n {
        match b.get(o) {
            None => return Err(true),
            Some(b'$') => {}
            Some(_) => return Err(false),
        }
        let (l, o2) = line(b, o + 1)?;
        let l = num(l)?;
        if b.len() < o2 + l + 2 {
            // A cut element: wait for it, unless no more bytes will come (then a whole
            // command name is enough).
            return if out.is_empty() || !closed {
                Err(true)
            } else {
                Ok((out, b.len()))
            };
        }
        if &b[o2 + l..o2 + l + 2] != b"\r\n" {
            return Err(false);
        }
        out.push(&b[o2..o2 + l]);
        o = o2 + l + 2;
    }
    Ok((out, o))
}

const REDIS_INLINE: &[&[u8]] = &[
    b"PING",
    b"AUTH",
    b"INFO",
    b"HELLO",
    b"QUIT",
    b"SELECT",
    b"GET",
    b"SET",
    b"KEYS",
    b"CONFIG",
    b"CLIENT",
    b"MONITOR",
    b"DBSIZE",
    b"FLUSHALL",
];

pub(crate) fn detect_redis(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    if c.is_empty() {
        return if ctx.s2c.is_empty() {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    let mut f = RedisFacts::default();
    let mut d = Detected::new(App::Redis, Encryption::Plaintext, None, false);
    if c[0] == b'*' {
        f.resp = true;
        let mut o = 0;
        let mut n = 0;
        while o < c.len() && n < 64 {
            match resp_array(&c[o..], ctx.c2s_closed) {
                Ok((elems, used)) => {
                    n += 1;
                    if let Some(cmd) = elems.first() {
                        if cmd.is_empty()
                            || !cmd.iter().all(|b| {
                                b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.' || *b == b'-'
                            })
                        {
                            if n == 1 {
                                return Parse::NotThis;
                            }
                            break;
                        }
                        let name = sanitize_bytes(cmd).to_ascii_uppercase();
                        if name == "AUTH" {
                            let secret = elems.last().copied().unwrap_or(&[]);
                            if elems.len() >= 2 {
                                d.creds.push((
                                    CredKind::RedisAuth,
                                    Dir::ToResponder,
                                    redact(secret),
                                ));
                            }
                        } else if name == "HELLO"
                            && elems.len() >= 5
                            && let Some(pos) =
                                elems.iter().position(|e| e.eq_ignore_ascii_case(b"AUTH"))
                            && let Some(secret) = elems.get(pos + 2)
                        {
                            {
                                d.creds.push((
                                    CredKind::RedisAuth,
                                    Dir::ToResponder,
                                    redact(secret),
                                ));
                            }
                        }
                        if f.commands.len() < 16 && !f.commands.contains(&name) {
                            f.commands.push(name);
                        }
                    }
                    o += used;
                }
                Err(true) => {
                    if n == 0 {
                        return if ctx.c2s_closed {
                            Parse::NotThis
                        } else {
                            Parse::NeedMore
                        };
                    }
                    break;
                }
                Err(false) => {
                    if n == 0 {
                        return Parse::NotThis;
                    }
                    break;
                }
            }
        }
    } else {
        // Inline command: a known keyword then space or CRLF.
        let end = c
            .iter()
            .position(|&b| b == b' ' || b == b'\r')
            .unwrap_or(c.len());
        let word = c[..end].to_ascii_uppercase();
        if end == c.len() {
            let prefix = REDIS_INLINE.iter().any(|k| k.starts_with(&word));
            return if prefix && c.len() < 8 && !ctx.c2s_closed {
                Parse::NeedMore
            } else {
                Parse::NotThis
            };
        }
        if !REDIS_INLINE.contains(&word.as_slice()) {
            return Parse::NotThis;
        }
        // Inline needs a RESP-looking answer to be credible.
        let s = ctx.s2c;
        match s.first() {
            None => {
                return if ctx.s2c_closed {
                    Parse::NotThis
                } else {
                    Parse::NeedMore
                };
            }
            Some(b'+' | b'-' | b'$' | b':' | b'*' | b'%') => {}
            Some(_) => return Parse::NotThis,
        }
        let name = String::from_utf8_lossy(&word).into_owned();
        if name == "AUTH" {
            let secret = c[end..].trim_ascii();
            let secret = secret.split(|&b| b == b'\r').next().unwrap_or(&[]);
            d.creds
                .push((CredKind::RedisAuth, Dir::ToResponder, redact(secret)));
        }
        f.commands.push(name);
    }
    // A RESP reply confirms; without one, a single command is enough only on the Redis port.
    let s = ctx.s2c;
    let reply_ok = matches!(
        s.first(),
        Some(b'+' | b'-' | b'$' | b':' | b'*' | b'%' | b'_' | b'>')
    );
    if !s.is_empty() && !reply_ok {
        return Parse::NotThis;
    }
    d.complete = reply_ok;
    d.facts = Some(Facts::Redis(Box::new(f)));
    Parse::Done(d)
}

// ---------------------------------------------------------------------------------------------
// MongoDB
// ---------------------------------------------------------------------------------------------

/// MongoDB facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MongoFacts {
    /// Opcode names seen: "OP_MSG", "OP_QUERY", "OP_REPLY", "OP_COMPRESSED", ...
    pub opcodes: Vec<&'static str>,
    /// First command of the first OP_MSG / OP_QUERY (e.g. "hello", "isMaster", "find").
    pub command: Option<String>,
}

fn mongo_op(code: u32) -> Option<&'static str> {
    Some(match code {
        1 => "OP_REPLY",
        2001 => "OP_UPDATE",
        2002 => "OP_INSERT",
        2004 => "OP_QUERY",
        2005 => "OP_GET_MORE",
        2006 => "OP_DELETE",
        2007 => "OP_KILL_CURSORS",
        2012 => "OP_COMPRESSED",
        2013 => "OP_MSG",
        _ => return None,
    })
}

pub(crate) fn detect_mongodb(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    if c.len() < 16 {
        return if ctx.s2c.is_empty() && !ctx.c2s_closed {
            if c.len() >= 4 && !(16..=48_000_000).contains(&le32(c, 0).unwrap_or(0)) {
                Parse::NotThis
            } else {
                Parse::NeedMore
            }
        } else {
            Parse::NotThis
        };
    }
    let len = le32(c, 0).unwrap_or(0);
    let resp_to = le32(c, 8).unwrap_or(1);
    let op = le32(c, 12).unwrap_or(0);
    let Some(name) = mongo_op(op) else {
        return Parse::NotThis;
    };
    if !(16..=48_000_000).contains(&len) || resp_to != 0 || op == 1 {
        return Parse::NotThis;
    }
    let mut f = MongoFacts {
        opcodes: vec![name],
        command: None,
    };
    // First BSON key: OP_MSG: flags(4) kind(1)=0 then doc(len 4, type 1, key\0);
    // OP_QUERY: flags(4) collection\0 skip(4) ret(4) doc.
    let doc_at = match op {
        2013 if c.get(20) == Some(&0) => Some(21),
        2004 => c
            .get(20..)
            .and_then(|rest| rest.iter().position(|&b| b == 0))
            .map(|n| 20 + n + 1 + 8),
        _ => None,
    };
    if let Some(o) = doc_at
        && let Some(key) = c.get(o + 5..)
    {
        let n = key.iter().position(|&b| b == 0).unwrap_or(0);
        if n > 0 && n < 64 {
            f.command = Some(sanitize_bytes(&key[..n]));
        }
    }
    if f.command
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("saslStart"))
    {
        // The SASL payload follows; record that an authentication crossed (not the secret).
        let _ = &f;
    }
    // Responses: responseTo non-zero.
    let s = ctx.s2c;
    if s.len() >= 16 {
        let sop = le32(s, 12).unwrap_or(0);
        match mongo_op(sop) {
            Some(n) => {
                if !f.opcodes.contains(&n) {
                    f.opcodes.push(n);
                }
            }
            None => return Parse::NotThis,
        }
    }
    let complete = s.len() >= 16;
    let mut d = Detected::new(
        App::Mongodb,
        Encryption::Plaintext,
        Some(Facts::Mongodb(Box::new(f))),
        complete,
    );
    if ctx.port_is(&[27017]) || complete {
        d.complete = complete;
    }
    Parse::Done(d)
}

// ---------------------------------------------------------------------------------------------
// Kafka
// ---------------------------------------------------------------------------------------------

/// Kafka facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KafkaFacts {
    /// API names of the first requests ("ApiVersions", "Metadata", "Produce", ...).
    pub api_keys: Vec<&'static str>,
    pub client_id: Option<String>,
}

fn kafka_api(k: u16) -> Option<&'static str> {
    Some(match k {
        0 => "Produce",
        1 => "Fetch",
        2 => "ListOffsets",
        3 => "Metadata",
        8 => "OffsetCommit",
        9 => "OffsetFetch",
        10 => "FindCoordinator",
        11 => "JoinGroup",
        12 => "Heartbeat",
        13 => "LeaveGroup",
        14 => "SyncGroup",
        17 => "SaslHandshake",
        18 => "ApiVersions",
        19 => "CreateTopics",
        22 => "InitProducerId",
        36 => "SaslAuthenticate",
        k if k < 80 => "Other",
        _ => return None,
    })
}

pub(crate) fn detect_kafka(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    if c.len() < 14 {
        let bad_len = c.len() >= 4 && be32(c, 0).is_some_and(|l| !(10..=100_000_000).contains(&l));
        return if bad_len || ctx.c2s_closed || !ctx.s2c.is_empty() {
            Parse::NotThis
        } else {
            Parse::NeedMore
        };
    }
    let len = be32(c, 0).unwrap_or(0);
    let key = be16(c, 4).unwrap_or(u16::MAX);
    let ver = be16(c, 6).unwrap_or(u16::MAX);
    let corr = be32(c, 8).unwrap_or(0);
    let cid_len = be16(c, 12).unwrap_or(0);
    let Some(api) = kafka_api(key) else {
        return Parse::NotThis;
    };
    if !(10..=100_000_000).contains(&len) || ver > 20 {
        return Parse::NotThis;
    }
    // client_id: nullable string (-1) or printable.
    let client_id = if cid_len == 0xffff {
        None
    } else {
        let Some(id) = c.get(14..14 + cid_len as usize) else {
            return Parse::NotThis;
        };
        if cid_len as u32 + 10 > len || !id.iter().all(|b| b.is_ascii_graphic()) {
            return Parse::NotThis;
        }
        Some(sanitize_bytes(id))
    };
    // Weak signature: demand the response's correlation id off the Kafka port.
    let s = ctx.s2c;
    let confirmed = s.len() >= 8 && be32(s, 4) == Some(corr);
    if s.len() >= 8 && !confirmed {
        return Parse::NotThis;
    }
    if !confirmed && !ctx.port_is(&[9092, 9093, 29092]) {
        return if s.is_empty() && !ctx.s2c_closed {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    let f = KafkaFacts {
        api_keys: vec![api],
        client_id,
    };
    Parse::Done(Detected::new(
        App::Kafka,
        Encryption::Plaintext,
        Some(Facts::Kafka(Box::new(f))),
        confirmed,
    ))
}

// ---------------------------------------------------------------------------------------------
// memcached
// ---------------------------------------------------------------------------------------------

/// memcached facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemcachedFacts {
    /// "text" or "binary".
    pub protocol: &'static str,
    pub commands: Vec<String>,
}

const MC_CMDS: &[&[u8]] = &[
    b"get",
    b"gets",
    b"set",
    b"add",
    b"replace",
    b"append",
    b"prepend",
    b"cas",
    b"delete",
    b"incr",
    b"decr",
    b"touch",
    b"gat",
    b"gats",
    b"stats",
    b"version",
    b"flush_all",
    b"verbosity",
    b"mg",
    b"ms",
    b"md",
    b"ma",
    b"mn",
];

pub(crate) fn detect_memcached(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    let Some(&first) = c.first() else {
        return if ctx.s2c.is_empty() {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    };
    // UDP frames carry an 8-byte header first.
    let udp_hdr =
        ctx.c2s_closed && ctx.s2c_closed && c.len() > 8 && c[4] == 0 && c[6] == 0 && c[7] == 0;
    let body = if udp_hdr { &c[8..] } else { c };
    let mut f = MemcachedFacts::default();
    if first == 0x80 && c.len() >= 24 {
        // Binary request: magic, opcode, key length, extras, data type 0.
        if c[5] != 0 || c[1] > 0x48 {
            return Parse::NotThis;
        }
        f.protocol = "binary";
        f.commands.push(format!("op{:#04x}", c[1]));
    } else {
        let end = body
            .iter()
            .position(|&b| b == b' ' || b == b'\r')
            .unwrap_or(body.len());
        let word = &body[..end];
        if end == body.len() {
            let prefix = !word.is_empty() && MC_CMDS.iter().any(|k| k.starts_with(word));
            return if prefix && !ctx.c2s_closed && body.len() < 12 {
                Parse::NeedMore
            } else {
                Parse::NotThis
            };
        }
        if !MC_CMDS.contains(&word) {
            return Parse::NotThis;
        }
        if !body.windows(2).any(|w| w == b"\r\n") {
            return if ctx.c2s_closed {
                Parse::NotThis
            } else {
                Parse::NeedMore
            };
        }
        f.protocol = "text";
        f.commands.push(sanitize_bytes(word));
        // Short words like "get" are common elsewhere: demand a memcached answer off-port.
        let s = ctx.s2c;
        let answer = [
            &b"VALUE "[..],
            b"END\r\n",
            b"STORED",
            b"NOT_",
            b"EXISTS",
            b"DELETED",
            b"VERSION ",
            b"STAT ",
            b"ERROR",
            b"OK\r\n",
            b"HD",
            b"VA ",
            b"EN\r\n",
        ]
        .iter()
        .any(|p| s.starts_with(p));
        if !answer && !ctx.port_is(&[11211]) {
            return if s.is_empty() && !ctx.s2c_closed {
                Parse::NeedMore
            } else {
                Parse::NotThis
            };
        }
    }
    Parse::Done(Detected::new(
        App::Memcached,
        Encryption::Plaintext,
        Some(Facts::Memcached(Box::new(f))),
        !ctx.s2c.is_empty(),
    ))
}
