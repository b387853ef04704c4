//! HTTP/1.x (via `httparse`) and HTTP/2 with prior knowledge (h2c), including a gRPC heuristic.
//!
//! HTTP/1: the first request's method, Host, path (truncated to 128 characters), User-Agent,
//! and the first response's status; `Authorization` and `Cookie` headers are recorded as
//! credential sightings (redacted), never stored. An `Upgrade: h2c` / `websocket` is noted.
//! HTTP/2: detected by the client connection preface; gRPC when `application/grpc` or a
//! `grpc-` header name appears as an HPACK literal (Huffman-coded values are not decoded, so
//! gRPC behind Huffman-only headers is reported as http2). Guarantees: prefixes return
//! NeedMore; all strings are sanitized.

use serde::Serialize;

use super::{App, CredKind, Ctx, Detected, Dir, Encryption, Facts, Parse, redact};
use crate::sanitize::{sanitize, sanitize_capped};

/// Facts from the first HTTP/1.x exchange.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HttpFacts {
    /// One of the request methods podwire recognises (so never a copy of wire bytes).
    pub method: Option<&'static str>,
    pub host: Option<String>,
    /// Request target, at most 128 characters.
    pub path: Option<String>,
    pub user_agent: Option<String>,
    /// "HTTP/1.0" or "HTTP/1.1".
    pub version: Option<&'static str>,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    /// Value of an `Upgrade` request header (e.g. "websocket", "h2c").
    pub upgrade: Option<String>,
    pub server: Option<String>,
}

/// Facts from an HTTP/2 connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Http2Facts {
    /// The client sent the prior-knowledge preface.
    pub prior_knowledge: bool,
    /// gRPC markers seen (application/grpc, grpc-* headers).
    pub grpc: bool,
    /// Frame types seen in the first bytes (by name).
    pub frame_types: Vec<&'static str>,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The request methods podwire recognises, as `m` names one.
fn known_method(m: &[u8]) -> Option<&'static str> {
    const METHODS: &[&str] = &[
        "GET",
        "POST",
        "PUT",
        "HEAD",
        "DELETE",
        "OPTIONS",
        "PATCH",
        "TRACE",
        "CONNECT",
        "PROPFIND",
        "PROPPATCH",
        "MKCOL",
        "COPY",
        "MOVE",
        "LOCK",
        "UNLOCK",
        "REPORT",
        "SEARCH",
        "NOTIFY",
        "SUBSCRIBE",
        "M-SEARCH",
        "PURGE",
        "MKCALENDAR",
    ];
    METHODS.iter().copied().find(|known| known.as_bytes() == m)
}

/// The version name of httparse's minor version (it reads only HTTP/1.0 and HTTP/1.1).
fn version_name(minor: u8) -> &'static str {
    if minor == 0 { "HTTP/1.0" } else { "HTTP/1.1" }
}

/// Checks whether `c` could begin an HTTP/1 request (method then space), tolerating prefixes.
fn request_prefix(c: &[u8]) -> Parse<()> {
    let end = c.iter().position(|&b| b == b' ');
    match end {
        Some(n) if known_method(&c[..n]).is_some() => Parse::Done(()),
        Some(_) => Parse::NotThis,
        None if c.len() < 12 && c.iter().all(|b| b.is_ascii_uppercase() || *b == b'-') => {
            Parse::NeedMore
        }
        None => Parse::NotThis,
    }
}

fn header_str(v: &[u8]) -> String {
    sanitize(&String::from_utf8_lossy(v))
}

/// HTTP/1.x over TCP.
pub(crate) fn detect_http(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    if c.is_empty() {
        // Server-first bytes are not HTTP, except a response seen mid-stream.
        if ctx.s2c.starts_with(b"HTTP/1.") {
            let mut f = HttpFacts::default();
            parse_response(ctx.s2c, &mut f);
            return Parse::Done(Detected::new(
                App::Http,
                Encryption::Plaintext,
                Some(Facts::Http(Box::new(f))),
                false,
            ));
        }
        return if ctx.s2c.is_empty() || b"HTTP/1.".starts_with(ctx.s2c) {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    if c.starts_with(b"HTTP/1.") {
        // Picked up mid-stream with the responder taken for the initiator.
        let mut f = HttpFacts::default();
        parse_response(c, &mut f);
        return Parse::Done(Detected::new(
            App::Http,
            Encryption::Plaintext,
            Some(Facts::Http(Box::new(f))),
            true,
        ));
    }
    match request_prefix(c) {
        Parse::NotThis => return Parse::NotThis,
        Parse::NeedMore => return Parse::NeedMore,
        Parse::Done(()) => {}
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(c) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            // Still HTTP; parse what we can with a bigger array would cost more: accept.
            return Parse::Done(Detected::new(
                App::Http,
                Encryption::Plaintext,
                Some(Facts::Http(Box::default())),
                true,
            ));
        }
        Err(_) => return Parse::NotThis,
    };
    if status.is_partial() {
        // Need at least the request line and headers; give up waiting once the buffer is full.
        if !ctx.c2s_closed {
            return Parse::NeedMore;
        }
    }
    let mut f = HttpFacts {
        method: req.method.and_then(|m| known_method(m.as_bytes())),
        path: req.path.map(|p| sanitize_capped(p, 128)),
        version: req.version.map(version_name),
        ..Default::default()
    };
    let mut d = Detected::new(App::Http, Encryption::Plaintext, None, false);
    let mut body_len = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            f.host = Some(header_str(h.value));
        } else if name.eq_ignore_ascii_case("user-agent") {
            f.user_agent = Some(header_str(h.value));
        } else if name.eq_ignore_ascii_case("content-type") {
            f.content_type = Some(header_str(h.value));
        } else if name.eq_ignore_ascii_case("upgrade") {
            f.upgrade = Some(header_str(h.value));
        } else {
            record_credential_header(name, h.value, &mut d);
        }
    }
    let got_response = parse_response(ctx.s2c, &mut f);
    let h2c = f
        .upgrade
        .as_deref()
        .is_some_and(|u| u.eq_ignore_ascii_case("h2c"))
        && f.status == Some(101);
    if h2c {
        d.app = App::Http2;
        d.facts = Some(Facts::Http2(Box::new(Http2Facts {
            prior_knowledge: false,
            grpc: grpc_markers(ctx.c2s) || grpc_markers(ctx.s2c),
            frame_types: Vec::new(),
        })));
        d.complete = true;
        return Parse::Done(d);
    }
    if f.method == Some("CONNECT") && f.status.is_some_and(|s| (200..300).contains(&s)) {
        // A proxy tunnel: what follows the heads is usually TLS.
        let c_tls = c.get(status_len(&status)..).unwrap_or(&[]);
        let s_tls = response_len(ctx.s2c).map_or(&[][..], |n| &ctx.s2c[n..]);
        let (up, sni, complete) =
            super::sql::upgrade_after("http_connect", true, c_tls, s_tls, ctx.c2s_closed);
        if up.tls.is_some() {
            d.encryption = Encryption::Encrypted;
            d.sni = sni;
        }
        d.upgrade = Some(up);
        d.complete = complete || ctx.c2s_closed;
        d.facts = Some(Facts::Http(Box::new(f)));
        return Parse::Done(d);
    }
    // Later requests on a keep-alive connection, as far as they are buffered: credentials
    // are often sent only after a 401/407 challenge, in the second request.
    let mut later_requests = 0;
    if let httparse::Status::Complete(first_len) = status {
        let mut offset = first_len.saturating_add(body_len);
        while let Some(rest) = c.get(offset..).filter(|r| !r.is_empty()) {
            match next_request_credentials(rest, &mut d) {
                Some(len) => {
                    later_requests += 1;
                    offset = offset.saturating_add(len);
                }
                None => break,
            }
        }
    }
    let challenged = matches!(f.status, Some(401) | Some(407));
    // A challenged connection stays open until the client's next request is read.
    d.complete =
        (got_response && (!challenged || later_requests > 0)) || ctx.s2c_closed || ctx.c2s_closed;
    if !d.complete && !ctx.s2c.is_empty() && !ctx.s2c.starts_with(b"HTTP/") {
        // The responder does not speak HTTP: a server-first protocol behind an HTTP-looking
        // client? Keep the request facts, final.
        d.complete = true;
    }
    d.facts = Some(Facts::Http(Box::new(f)));
    Parse::Done(d)
}

/// Parses one complete request head (plus its Content-Length body) at the start of `c`,
/// records its credentials in `d`, and returns its length; `None` if incomplete or not HTTP.
fn next_request_credentials(c: &[u8], d: &mut Detected) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(c).ok()? else {
        return None;
    };
    let mut body_len = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
        } else {
            record_credential_header(h.name, h.value, d);
        }
    }
    Some(len.saturating_add(body_len))
}

/// Records `Authorization`, `Proxy-Authorization` and `Cookie` headers as credentials
/// (kind and a redacted prefix only; the secret is never kept).
fn record_credential_header(name: &str, value: &[u8], d: &mut Detected) {
    if name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
    {
        let (kind, secret) = if value.len() > 6 && value[..6].eq_ignore_ascii_case(b"basic ") {
            (CredKind::HttpBasic, &value[6..])
        } else if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
            (CredKind::HttpBearer, &value[7..])
        } else {
            (CredKind::HttpOtherAuth, value)
        };
        d.creds
            .push((kind, Dir::ToResponder, redact(secret.trim_ascii())));
    } else if name.eq_ignore_ascii_case("cookie") {
        d.creds
            .push((CredKind::Cookie, Dir::ToResponder, redact(value)));
    }
}

/// Parses the first response head; returns true when complete.
fn parse_response(s: &[u8], f: &mut HttpFacts) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(s) {
        Ok(st) => {
            f.status = resp.code;
            if f.version.is_none() {
                f.version = resp.version.map(version_name);
            }
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("server") {
                    f.server = Some(header_str(h.value));
                } else if h.name.eq_ignore_ascii_case("content-type") && f.content_type.is_none() {
                    f.content_type = Some(header_str(h.value));
                }
            }
            st.is_complete() || resp.code.is_some()
        }
        Err(_) => false,
    }
}

fn status_len(s: &httparse::Status<usize>) -> usize {
    match s {
        httparse::Status::Complete(n) => *n,
        httparse::Status::Partial => usize::MAX,
    }
}

/// Length of the first complete response head.
fn response_len(s: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(s) {
        Ok(httparse::Status::Complete(n)) => Some(n),
        _ => None,
    }
}

fn grpc_markers(b: &[u8]) -> bool {
    memfind(b, b"application/grpc") || memfind(b, b"grpc-")
}

/// Naive substring search (inputs are ≤ a few KiB).
pub(crate) fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn frame_name(t: u8) -> &'static str {
    match t {
        0 => "DATA",
        1 => "HEADERS",
        2 => "PRIORITY",
        3 => "RST_STREAM",
        4 => "SETTINGS",
        5 => "PUSH_PROMISE",
        6 => "PING",
        7 => "GOAWAY",
        8 => "WINDOW_UPDATE",
        9 => "CONTINUATION",
        _ => "UNKNOWN",
    }
}

fn frame_types(mut b: &[u8], out: &mut Vec<&'static str>) {
    while b.len() >= 9 {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        let name = frame_name(b[3]);
        if !out.contains(&name) && out.len() < 10 {
            out.push(name);
        }
        if b.len() < 9 + len {
            break;
        }
        b = &b[9 + len..];
    }
}

/// HTTP/2 with prior knowledge.
pub(crate) fn detect_h2(ctx: &Ctx) -> Parse<Detected> {
    let c = ctx.c2s;
    if c.is_empty() {
        return Parse::NeedMore;
    }
    if c.len() < H2_PREFACE.len() {
        return if H2_PREFACE.starts_with(c) {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    if !c.starts_with(H2_PREFACE) {
        return Parse::NotThis;
    }
    let rest = &c[H2_PREFACE.len()..];
    let mut f = Http2Facts {
        prior_knowledge: true,
        grpc: grpc_markers(rest) || grpc_markers(ctx.s2c),
        frame_types: Vec::new(),
    };
    frame_types(rest, &mut f.frame_types);
    let has_headers = f.frame_types.contains(&"HEADERS");
    let app = if f.grpc { App::Grpc } else { App::Http2 };
    let complete = f.grpc || (has_headers && !ctx.s2c.is_empty()) || ctx.c2s_closed;
    Parse::Done(Detected::new(
        app,
        Encryption::Plaintext,
        Some(Facts::Http2(Box::new(f))),
        complete,
    ))
}
