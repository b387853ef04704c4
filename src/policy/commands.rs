//! Command functions behind `podwire policy check` and `podwire policy matrix` (the CLI wires
//! them; no argument parsing library here).
//!
//! Pure: they take a [`ClusterState`] and what-if policies (already loaded, e.g. with
//! `cluster::snapshot::load_policies`) and return reports that implement `Display` (human text,
//! cluster strings sanitized) and `serde::Serialize` (stable JSON).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

use crate::cluster::model::{ClusterState, Protocol};
use crate::policy::eval::{DirectionVerdict, EndpointRef, PolicyEngine, Verdict};
use crate::policy::types::NetworkPolicy;
use crate::sanitize::sanitize;

/// Errors from the command functions (bad arguments).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyCommandError {
    /// `from`/`to` is neither `namespace/pod` nor an IP address.
    #[error("{0:?} is neither namespace/pod nor an IP address")]
    BadEndpoint(String),
    /// No such pod in the snapshot.
    #[error("pod {0} not found in the cluster snapshot")]
    PodNotFound(String),
    /// The port argument is malformed.
    #[error("bad port {0:?}: {1}")]
    BadPort(String, String),
    /// A named port that the destination pod does not declare.
    #[error("destination {0} declares no {2} port named {1:?}")]
    NamedPortNotFound(String, String, Protocol),
}

/// A destination port and protocol, parsed from `80/TCP`, `53/udp` or `443` (TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PortProto {
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
}

impl FromStr for PortProto {
    type Err = PolicyCommandError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (num, proto) = split_port(s)?;
        let port = num
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| PolicyCommandError::BadPort(s.into(), "expected 1-65535".into()))?;
        Ok(PortProto {
            port,
            protocol: proto,
        })
    }
}

fn split_port(s: &str) -> Result<(&str, Protocol), PolicyCommandError> {
    let (num, proto) = match s.split_once('/') {
        Some((n, p)) => (
            n.trim(),
            p.parse()
                .map_err(|m| PolicyCommandError::BadPort(s.into(), m))?,
        ),
        None => (s.trim(), Protocol::Tcp),
    };
    if num.is_empty() {
        return Err(PolicyCommandError::BadPort(s.into(), "empty port".into()));
    }
    Ok((num, proto))
}

/// Result of `policy check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Source as given (`ns/pod` or IP).
    pub from: String,
    /// Destination as given.
    pub to: String,
    /// Destination port (named ports resolved).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Verdict with explanation.
    pub verdict: Verdict,
}

fn write_direction(f: &mut fmt::Formatter<'_>, label: &str, v: &DirectionVerdict) -> fmt::Result {
    match v {
        DirectionVerdict::Allowed { by } => {
            writeln!(f, "  {label}: allowed by")?;
            for m in by {
                writeln!(f, "    - {m}")?;
            }
            Ok(())
        }
        other => writeln!(f, "  {label}: {other}"),
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} -> {} {}/{}: {}",
            sanitize(&self.from),
            sanitize(&self.to),
            self.port,
            self.protocol,
            if self.verdict.allowed {
                "ALLOWED"
            } else {
                "DENIED"
            }
        )?;
        write_direction(
            f,
            &format!("egress of {}", sanitize(&self.from)),
            &self.verdict.egress,
        )?;
        write_direction(
            f,
            &format!("ingress of {}", sanitize(&self.to)),
            &self.verdict.ingress,
        )
    }
}

fn endpoint(engine: &PolicyEngine, raw: &str) -> Result<EndpointRef, PolicyCommandError> {
    if let Ok(ip) = raw.trim().parse::<IpAddr>() {
        return Ok(engine.endpoint_for_ip(ip));
    }
    let (ns, name) = raw
        .split_once('/')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty() && !p.contains('/'))
        .ok_or_else(|| PolicyCommandError::BadEndpoint(raw.into()))?;
    engine
        .endpoint_for_pod(ns, name)
        .ok_or_else(|| PolicyCommandError::PodNotFound(sanitize(raw)))
}

/// Checks whether `from` may connect to `to` on `port` (`80/TCP`, `53/udp`, `8080`, or a
/// named port of the destination pod such as `http/TCP`). `from`/`to` are `namespace/pod` or an
/// IP address (a pod's IP maps to that pod; any other address is treated as external).
pub fn policy_check(
    state: &ClusterState,
    extra_policies: &[NetworkPolicy],
    from: &str,
    to: &str,
    port: &str,
) -> Result<CheckReport, PolicyCommandError> {
    let engine = PolicyEngine::new(state, extra_policies);
    let src = endpoint(&engine, from)?;
    let dst = endpoint(&engine, to)?;
    let (num, protocol) = split_port(port)?;
    let port_num = match num.parse::<u16>() {
        Ok(0) | Err(_) if num.chars().all(|c| c.is_ascii_digit()) => {
            return Err(PolicyCommandError::BadPort(
                port.into(),
                "expected 1-65535".into(),
            ));
        }
        Ok(n) => n,
        Err(_) => {
            let declared = match dst {
                EndpointRef::Pod { id, .. } => engine.pod(id).map_or(&[][..], |p| &p.ports[..]),
                EndpointRef::Ip(_) => &[],
            };
            declared
                .iter()
                .find(|cp| cp.name.as_deref() == Some(num) && cp.protocol == protocol)
                .map(|cp| cp.port)
                .ok_or_else(|| {
                    PolicyCommandError::NamedPortNotFound(sanitize(to), sanitize(num), protocol)
                })?
        }
    };
    let verdict = engine.verdict_uncached(src, dst, port_num, protocol);
    Ok(CheckReport {
        from: from.to_string(),
        to: to.to_string(),
        port: port_num,
        protocol,
        verdict,
    })
}

/// One cell of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatrixCell {
    /// Source `namespace/pod`.
    pub from: String,
    /// Destination `namespace/pod`.
    pub to: String,
    /// Whether the connection is allowed.
    pub allowed: bool,
}

/// Result of `policy matrix`: JSON is exactly `{"port":…,"protocol":…,"results":[{"from","to","allowed"}…]}`
/// with results ordered by (from, to), pods by namespace/name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatrixReport {
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Every ordered pod pair.
    pub results: Vec<MatrixCell>,
}

/// Allowed/denied for every ordered pair of pods (host-network pods excluded: policies do not
/// select them) on one port.
pub fn policy_matrix(
    state: &ClusterState,
    extra_policies: &[NetworkPolicy],
    port: PortProto,
) -> MatrixReport {
    let engine = PolicyEngine::new(state, extra_policies);
    let pods: Vec<(String, EndpointRef)> = engine
        .pods()
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.host_network)
        .map(|(i, p)| {
            (
                format!("{}/{}", p.namespace, p.name),
                EndpointRef::Pod {
                    id: i as u32,
                    ip: None,
                },
            )
        })
        .collect();
    let mut results = Vec::with_capacity(pods.len() * pods.len());
    for (from, src) in &pods {
        for (to, dst) in &pods {
            let v = engine.verdict_uncached(*src, *dst, port.port, port.protocol);
            results.push(MatrixCell {
                from: from.clone(),
                to: to.clone(),
                allowed: v.allowed,
            });
        }
    }
    MatrixReport {
        port: port.port,
        protocol: port.protocol,
        results,
    }
}

impl fmt::Display for MatrixReport {
    /// A table: rows are sources, columns destinations, `.` allowed, `X` denied.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = Vec::new();
        for c in &self.results {
            if names.last() != Some(&c.from.as_str()) && !names.contains(&c.from.as_str()) {
                names.push(&c.from);
            }
        }
        let labels: Vec<String> = names.iter().map(|n| sanitize(n)).collect();
        let w = labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
            .max(4);
        writeln!(
            f,
            "port {}/{} (rows: from, columns: to; . allowed, X denied)",
            self.port, self.protocol
        )?;
        write!(f, "{:w$} |", "")?;
        for i in 0..labels.len() {
            write!(f, " {i:>3}")?;
        }
        writeln!(f)?;
        let n = labels.len();
        for (r, label) in labels.iter().enumerate() {
            write!(f, "{label:w$} |")?;
            for c in 0..n {
                let cell = self
                    .results
                    .get(r * n + c)
                    .map_or("?", |x| if x.allowed { "." } else { "X" });
                write!(f, " {cell:>3}")?;
            }
            writeln!(f, "   #{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::snapshot::parse_snapshot;

    const SNAP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: fe, namespace: shop, labels: {app: fe}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec: {podSelector: {}}
"#;

    const ALLOW: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: x}}}, {podSelector: {matchLabels: {app: fe}}}]
    ports: [{port: http}]
"#;

    #[test]
    fn check_with_what_if_policy() {
        let st = parse_snapshot(SNAP, "s").unwrap().into_state();
        let r = policy_check(&st, &[], "shop/fe", "shop/web", "8080/TCP").unwrap();
        assert!(!r.verdict.allowed);
        assert_eq!(
            r.verdict.ingress.to_string(),
            "denied: isolated by shop/default-deny, no rule matches"
        );
        let extra = parse_snapshot(ALLOW, "a").unwrap().network_policies();
        let r = policy_check(&st, &extra, "shop/fe", "shop/web", "http").unwrap();
        assert_eq!(r.port, 8080);
        assert!(r.verdict.allowed);
        assert_eq!(
            r.verdict.ingress.to_string(),
            "allowed by shop/allow-frontend ingress rule #0 (peer #1, port #0)"
        );
        assert!(
            r.to_string()
                .starts_with("shop/fe -> shop/web 8080/TCP: ALLOWED")
        );
        assert!(matches!(
            policy_check(&st, &[], "shop/nope", "shop/web", "80"),
            Err(PolicyCommandError::PodNotFound(_))
        ));
        assert!(policy_check(&st, &[], "shop/fe", "shop/web", "80/ICMP").is_err());
        assert!(policy_check(&st, &[], "shop/fe", "shop/web", "grpc").is_err());
        // External source IP.
        let r = policy_check(&st, &extra, "203.0.113.9", "shop/web", "8080").unwrap();
        assert!(!r.verdict.allowed);
    }

    #[test]
    fn matrix_json_shape_and_order() {
        let st = parse_snapshot(SNAP, "s").unwrap().into_state();
        let extra = parse_snapshot(ALLOW, "a").unwrap().network_policies();
        let m = policy_matrix(&st, &extra, "8080/TCP".parse().unwrap());
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"port":8080,"protocol":"TCP","results":[{"from":"shop/fe","to":"shop/fe","allowed":false},{"from":"shop/fe","to":"shop/web","allowed":true},{"from":"shop/web","to":"shop/fe","allowed":false},{"from":"shop/web","to":"shop/web","allowed":false}]}"#
        );
        let text = m.to_string();
        assert!(text.contains("shop/fe  |   X   .   #0"), "{text}");
    }
}
