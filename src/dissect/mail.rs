//! Line-based server-first protocols: SMTP, IMAP, POP3 and FTP, with their TLS upgrades
//! (SMTP/IMAP `STARTTLS`, POP3 `STLS`, FTP `AUTH TLS`/`AUTH SSL`).
//!
//! The protocol is told by the server greeting (`220` + SMTP/FTP wording, `* OK`, `+OK`) and
//! the client's commands; the port only breaks a tie between SMTP and FTP greetings. An
//! accepted upgrade makes the flow `encrypted` and the TLS ClientHello after it is dissected
//! (SNI); a refused one leaves it `plaintext` with `upgrade.accepted = false`. Logins (USER /
//! PASS / LOGIN / AUTH / APOP) are credential sightings, redacted. Strings are sanitized.

use serde::Serialize;

use super::sql::upgrade_after;
use super::{App, CredKind, Ctx, Detected, Dir, Encryption, Facts, Parse, redact};
use crate::sanitize::sanitize_bytes;

/// Facts for SMTP, IMAP, POP3 and FTP.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MailFacts {
    /// First line of the server greeting.
    pub banner: Option<String>,
    /// Distinct client command verbs, in order (first 16).
    pub commands: Vec<String>,
    /// The server advertised an upgrade (STARTTLS / STLS / AUTH TLS capability).
    pub starttls_offered: bool,
}

fn lines(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.split(|&x| x == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Complete lines only (the last piece without a newline is dropped).
fn complete_lines(b: &[u8]) -> Vec<&[u8]> {
    let end = b.iter().rposition(|&x| x == b'\n').map_or(0, |n| n + 1);
    lines(&b[..end])
        .filter(|l| !l.is_empty())
        .take(64)
        .collect()
}

fn upper_word(l: &[u8]) -> Vec<u8> {
    l.split(|&b| b == b' ')
        .next()
        .unwrap_or(&[])
        .to_ascii_uppercase()
}

fn starts_ci(l: &[u8], p: &[u8]) -> bool {
    l.len() >= p.len() && l[..p.len()].eq_ignore_ascii_case(p)
}

fn contains_ci(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Where a TLS record begins right after a line end (or at 0).
fn tls_start(b: &[u8]) -> Option<usize> {
    (0..b.len().saturating_sub(1))
        .find(|&i| b[i] == 0x16 && b[i + 1] == 3 && (i == 0 || b[i - 1] == b'\n'))
}

pub(crate) fn detect_mail(ctx: &Ctx) -> Parse<Detected> {
    let s = ctx.s2c;
    let c = ctx.c2s;
    if s.is_empty() {
        // Server-first protocols: client bytes first are only acceptable mid-stream.
        return if c.is_empty() && !ctx.s2c_closed {
            Parse::NeedMore
        } else {
            Parse::NotThis
        };
    }
    // Greeting.
    let first_end = s.iter().position(|&b| b == b'\n');
    let first = match first_end {
        Some(n) => s[..n].strip_suffix(b"\r").unwrap_or(&s[..n]),
        None => {
            let possible = [
                &b"220"[..],
                b"+OK",
                b"* OK",
                b"* PREAUTH",
                b"* BYE",
                b"421",
                b"120",
            ]
            .iter()
            .any(|p| p.starts_with(&s[..s.len().min(p.len())]) || s.starts_with(p));
            return if possible && s.len() < 512 && !ctx.s2c_closed {
                Parse::NeedMore
            } else {
                Parse::NotThis
            };
        }
    };
    let app = if starts_ci(first, b"+OK") {
        App::Pop3
    } else if starts_ci(first, b"* OK")
        || starts_ci(first, b"* PREAUTH")
        || starts_ci(first, b"* BYE")
    {
        App::Imap
    } else if first.len() >= 3
        && (first.starts_with(b"220") || first.starts_with(b"421") || first.starts_with(b"120"))
        && (first.len() == 3 || first[3] == b' ' || first[3] == b'-')
    {
        let cwords: Vec<Vec<u8>> = complete_lines(c).iter().map(|l| upper_word(l)).collect();
        let has = |w: &[u8]| cwords.iter().any(|x| x == w);
        if contains_ci(first, b"FTP")
            || has(b"USER")
            || has(b"SYST")
            || has(b"FEAT")
            || has(b"PASV")
            || has(b"PORT")
        {
            App::Ftp
        } else if contains_ci(first, b"SMTP")
            || contains_ci(first, b"MAIL")
            || has(b"EHLO")
            || has(b"HELO")
            || has(b"MAIL")
        {
            App::Smtp
        } else if ctx.port_is(&[21, 990]) {
            App::Ftp
        } else if ctx.port_is(&[25, 465, 587, 2525]) {
            App::Smtp
        } else if c.is_empty() && !ctx.c2s_closed {
            return Parse::NeedMore;
        } else if has(b"AUTH") || has(b"STARTTLS") || has(b"QUIT") || has(b"NOOP") {
            App::Smtp
        } else {
            return Parse::NotThis;
        }
    } else {
        return Parse::NotThis;
    };
    let mut f = MailFacts {
        banner: Some(sanitize_bytes(first)),
        ..Default::default()
    };
    let mut d = Detected::new(app, Encryption::Plaintext, None, false);

    // Split off TLS after an upgrade.
    let c_tls_at = tls_start(c);
    let s_tls_at = tls_start(s);
    let c_clear = &c[..c_tls_at.unwrap_or(c.len())];
    let s_clear = &s[..s_tls_at.unwrap_or(s.len())];
    let s_lines = complete_lines(s_clear);
    f.starttls_offered = s_lines.iter().any(|l| {
        contains_ci(l, b"STARTTLS")
            || (app == App::Pop3 && contains_ci(l, b"STLS"))
            || (app == App::Ftp && contains_ci(l, b"AUTH TLS"))
    });

    let c_lines = complete_lines(c_clear);
    let mut upgrade: Option<&'static str> = None;
    let mut pending_auth: Option<CredKind> = None;
    let mut imap_tag: Vec<u8> = Vec::new();
    for l in &c_lines {
        if let Some(kind) = pending_auth.take() {
            // Continuation line of an AUTH exchange (base64 user/password).
            if l != b"*" {
                d.creds.push((kind, Dir::ToResponder, redact(l)));
            }
            continue;
        }
        let mut words = l.splitn(3, |&b| b == b' ');
        let w0 = words.next().unwrap_or(&[]);
        let (verb, arg) = if app == App::Imap {
            let v = words.next().unwrap_or(&[]);
            imap_tag = w0.to_vec();
            (v.to_ascii_uppercase(), words.next().unwrap_or(&[]))
        } else {
            let rest = &l[w0.len().min(l.len())..];
            (w0.to_ascii_uppercase(), rest.trim_ascii())
        };
        if verb.is_empty()
            || verb.len() > 16
            || !verb.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            continue;
        }
        let vs = String::from_utf8_lossy(&verb).into_owned();
        if f.commands.len() < 16 && !f.commands.contains(&vs) {
            f.commands.push(vs);
        }
        match (app, verb.as_slice()) {
            (App::Smtp, b"STARTTLS") | (App::Imap, b"STARTTLS") => upgrade = Some("starttls"),
            (App::Pop3, b"STLS") => upgrade = Some("stls"),
            (App::Ftp, b"AUTH") if starts_ci(arg, b"TLS") || starts_ci(arg, b"SSL") => {
                upgrade = Some("auth_tls")
            }
            (App::Smtp, b"AUTH") | (App::Pop3, b"AUTH") => {
                let kind = if app == App::Smtp {
                    CredKind::SmtpAuth
                } else {
                    CredKind::Pop3Auth
                };
                let mut it = arg.splitn(2, |&b| b == b' ');
                let _mech = it.next();
                match it.next() {
                    Some(initial) if !initial.is_empty() && initial != b"=" => {
                        d.creds.push((kind, Dir::ToResponder, redact(initial)))
                    }
                    _ => pending_auth = Some(kind),
                }
            }
            (App::Ftp, b"USER") => d
                .creds
                .push((CredKind::FtpUser, Dir::ToResponder, redact(arg))),
            (App::Ftp, b"PASS") => d
                .creds
                .push((CredKind::FtpPass, Dir::ToResponder, redact(arg))),
            (App::Pop3, b"USER") => {
                d.creds
                    .push((CredKind::Pop3User, Dir::ToResponder, redact(arg)))
            }
            (App::Pop3, b"PASS") => {
                d.creds
                    .push((CredKind::Pop3Pass, Dir::ToResponder, redact(arg)))
            }
            (App::Pop3, b"APOP") => {
                d.creds
                    .push((CredKind::Pop3Apop, Dir::ToResponder, redact(arg)))
            }
            (App::Imap, b"LOGIN") => {
                let pass = arg.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
                let pass = pass.strip_prefix(b"\"").unwrap_or(pass);
                let pass = pass.strip_suffix(b"\"").unwrap_or(pass);
                d.creds
                    .push((CredKind::ImapLogin, Dir::ToResponder, redact(pass)));
            }
            (App::Imap, b"AUTHENTICATE") => {
                let mut it = arg.splitn(2, |&b| b == b' ');
                let _mech = it.next();
                match it.next() {
                    Some(initial) if !initial.is_empty() => d.creds.push((
                        CredKind::ImapAuthenticate,
                        Dir::ToResponder,
                        redact(initial),
                    )),
                    _ => pending_auth = Some(CredKind::ImapAuthenticate),
                }
            }
            _ => {}
        }
        if upgrade.is_some() {
            break;
        }
    }
    d.complete = ctx.c2s_closed && ctx.s2c_closed;
    if let Some(via) = upgrade {
        // The server's answer is the last complete line before its TLS bytes.
        let reply = if s_tls_at.is_some() {
            s_lines.last().copied()
        } else {
            // No TLS yet: only trust a reply when the client has nothing after the command.
            if c_tls_at.is_none()
                && c_clear.len()
                    > c_lines.iter().map(|l| l.len()).sum::<usize>() + 2 * c_lines.len()
            {
                None
            } else {
                s_lines.last().copied()
            }
        };
        let accepted = reply.map(|r| match app {
            App::Smtp => r.starts_with(b"220"),
            App::Ftp => r.starts_with(b"234"),
            App::Pop3 => starts_ci(r, b"+OK"),
            _ => {
                let mut p = imap_tag.clone();
                p.extend_from_slice(b" OK");
                starts_ci(r, &p)
            }
        });
        match accepted {
            Some(true) => {
                let c_tls = c_tls_at.map_or(&[][..], |i| &c[i..]);
                let s_tls = s_tls_at.map_or(&[][..], |i| &s[i..]);
                let (up, sni, complete) = upgrade_after(via, true, c_tls, s_tls, ctx.c2s_closed);
                d.encryption = Encryption::Encrypted;
                d.sni = sni;
                d.upgrade = Some(up);
                d.complete = complete && c_tls_at.is_some();
            }
            Some(false) if reply.is_some_and(|r| s_lines.len() > 1 || r != first) => {
                let (up, _, _) = upgrade_after(via, false, &[], &[], true);
                d.upgrade = Some(up);
            }
            _ => {}
        }
    } else if !d.creds.is_empty() && c_lines.len() >= 4 {
        d.complete = true;
    }
    if c_lines.len() >= 12 {
        d.complete = true;
    }
    d.facts = Some(Facts::Mail(Box::new(f)));
    Parse::Done(d)
}
