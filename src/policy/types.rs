//! Compact NetworkPolicy (networking.k8s.io/v1) types and label selectors.
//!
//! Pure. [`NetworkPolicy::from_k8s`] converts the k8s-openapi type and applies the API server's
//! defaulting (protocol TCP, `policyTypes` = Ingress, plus Egress when egress rules exist), so the
//! evaluator never has to think about omitted fields. Malformed input (bad CIDR, unknown
//! operator, endPort with a named port…) is a [`ConvertError`] naming the field.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use crate::cluster::model::{ConvertError, Labels, Protocol, parse_protocol};

/// Operator of a label selector requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SelectorOp {
    /// The label's value is in the set.
    In,
    /// The label is absent, or its value is not in the set.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub op: SelectorOp,
    /// Values (for In / NotIn).
    pub values: Vec<String>,
}

/// A label selector. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions` (ANDed with `match_labels`).
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// Selector from `matchLabels` only.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        LabelSelector {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// True when `labels` satisfy every term.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let got = labels.get(&r.key);
                match r.op {
                    SelectorOp::In => got.is_some_and(|v| r.values.contains(v)),
                    SelectorOp::NotIn => got.is_none_or(|v| !r.values.contains(v)),
                    SelectorOp::Exists => got.is_some(),
                    SelectorOp::DoesNotExist => got.is_none(),
                }
            })
    }

    fn from_k8s(field: &str, s: &meta::LabelSelector) -> Result<Self, ConvertError> {
        let mut out = LabelSelector {
            match_labels: s.match_labels.clone().unwrap_or_default(),
            match_expressions: Vec::new(),
        };
        for (i, e) in s.match_expressions.iter().flatten().enumerate() {
            let f = format!("{field}.matchExpressions[{i}]");
            let op = match e.operator.as_str() {
                "In" => SelectorOp::In,
                "NotIn" => SelectorOp::NotIn,
                "Exists" => SelectorOp::Exists,
                "DoesNotExist" => SelectorOp::DoesNotExist,
                other => {
                    return Err(ConvertError::new(
                        format!("{f}.operator"),
                        format!(
                            "unknown operator {other:?} (expected In, NotIn, Exists, DoesNotExist)"
                        ),
                    ));
                }
            };
            let values = e.values.clone().unwrap_or_default();
            match op {
                SelectorOp::In | SelectorOp::NotIn if values.is_empty() => {
                    return Err(ConvertError::new(
                        format!("{f}.values"),
                        "must be non-empty for In and NotIn",
                    ));
                }
                SelectorOp::Exists | SelectorOp::DoesNotExist if !values.is_empty() => {
                    return Err(ConvertError::new(
                        format!("{f}.values"),
                        "must be empty for Exists and DoesNotExist",
                    ));
                }
                _ => {}
            }
            out.match_expressions.push(Requirement {
                key: e.key.clone(),
                op,
                values,
            });
        }
        Ok(out)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    crate::sanitize::sanitize(k),
                    crate::sanitize::sanitize(v)
                )
            })
            .collect();
        for r in &self.match_expressions {
            let k = crate::sanitize::sanitize(&r.key);
            let vals: Vec<String> = r
                .values
                .iter()
                .map(|v| crate::sanitize::sanitize(v))
                .collect();
            parts.push(match r.op {
                SelectorOp::In => format!("{k} in ({})", vals.join(",")),
                SelectorOp::NotIn => format!("{k} notin ({})", vals.join(",")),
                SelectorOp::Exists => k,
                SelectorOp::DoesNotExist => format!("!{k}"),
            });
        }
        f.write_str(&parts.join(","))
    }
}

/// A port in a rule: a number, or the name of a container port on the destination pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// Port number.
    Number(u16),
    /// Named container port.
    Name(String),
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PolicyPort {
    /// Protocol (default TCP).
    pub protocol: Protocol,
    /// Port; `None` means every port of `protocol`.
    pub port: Option<PortSpec>,
    /// End of a numeric range `port..=end_port`.
    pub end_port: Option<u16>,
}

/// One entry of a rule's `from`/`to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Peer {
    /// Pods chosen by selectors. `namespace_selector: None` means the policy's own namespace;
    /// `pod_selector: None` means every pod in the selected namespaces.
    Pods {
        /// podSelector.
        pod_selector: Option<LabelSelector>,
        /// namespaceSelector.
        namespace_selector: Option<LabelSelector>,
    },
    /// A CIDR minus exceptions.
    IpBlock {
        /// CIDR.
        cidr: IpNet,
        /// Excluded sub-ranges.
        except: Vec<IpNet>,
    },
}

impl Peer {
    /// True if `ip` is in the block (and in none of its exceptions). False for selector peers.
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            Peer::IpBlock { cidr, except } => {
                cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
            }
            Peer::Pods { .. } => false,
        }
    }
}

/// One ingress or egress rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Default)]
pub struct Rule {
    /// Peers (`from` or `to`); empty means every peer.
    pub peers: Vec<Peer>,
    /// Ports; empty means every port.
    pub ports: Vec<PolicyPort>,
}

/// Direction of a rule or verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Traffic into the selected pods.
    Ingress,
    /// Traffic out of the selected pods.
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// A NetworkPolicy with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NetworkPolicy {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pods (in `namespace`) the policy applies to.
    pub pod_selector: LabelSelector,
    /// Whether the policy isolates selected pods for ingress (policyTypes contains Ingress).
    pub affects_ingress: bool,
    /// Whether the policy isolates selected pods for egress.
    pub affects_egress: bool,
    /// Ingress rules (ORed).
    pub ingress: Vec<Rule>,
    /// Egress rules (ORed).
    pub egress: Vec<Rule>,
}

impl NetworkPolicy {
    /// `namespace/name`, sanitized for display.
    pub fn display_name(&self) -> String {
        format!(
            "{}/{}",
            crate::sanitize::sanitize(&self.namespace),
            crate::sanitize::sanitize(&self.name)
        )
    }

    /// Rules of one direction.
    pub fn rules(&self, dir: Direction) -> &[Rule] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// Whether the policy isolates its pods in `dir`.
    pub fn affects(&self, dir: Direction) -> bool {
        match dir {
            Direction::Ingress => self.affects_ingress,
            Direction::Egress => self.affects_egress,
        }
    }

    /// Converts and defaults a k8s-openapi NetworkPolicy. Policies without a namespace go to
    /// `default` (as `kubectl apply` would put them).
    pub fn from_k8s(p: &networking::NetworkPolicy) -> Result<Self, ConvertError> {
        let name = p
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ConvertError::new("metadata.name", "missing"))?;
        let namespace = p
            .metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        let spec = p.spec.clone().unwrap_or_default();
        let pod_selector = match &spec.pod_selector {
            Some(s) => LabelSelector::from_k8s("spec.podSelector", s)?,
            None => LabelSelector::default(),
        };
        let mut ingress = Vec::new();
        for (i, r) in spec.ingress.iter().flatten().enumerate() {
            let f = format!("spec.ingress[{i}]");
            ingress.push(Rule {
                peers: convert_peers(&format!("{f}.from"), r.from.as_deref())?,
                ports: convert_ports(&format!("{f}.ports"), r.ports.as_deref())?,
            });
        }
        let mut egress = Vec::new();
        for (i, r) in spec.egress.iter().flatten().enumerate() {
            let f = format!("spec.egress[{i}]");
            egress.push(Rule {
                peers: convert_peers(&format!("{f}.to"), r.to.as_deref())?,
                ports: convert_ports(&format!("{f}.ports"), r.ports.as_deref())?,
            });
        }
        let (affects_ingress, affects_egress) = match &spec.policy_types {
            Some(types) if !types.is_empty() => {
                let mut ing = false;
                let mut eg = false;
                for (i, t) in types.iter().enumerate() {
                    match t.as_str() {
                        "Ingress" => ing = true,
                        "Egress" => eg = true,
                        other => {
                            return Err(ConvertError::new(
                                format!("spec.policyTypes[{i}]"),
                                format!(
                                    "unknown policy type {other:?} (expected Ingress or Egress)"
                                ),
                            ));
                        }
                    }
                }
                (ing, eg)
            }
            // API server defaulting: Ingress always; Egress when there are egress rules.
            _ => (true, !egress.is_empty()),
        };
        Ok(NetworkPolicy {
            namespace,
            name,
            pod_selector,
            affects_ingress,
            affects_egress,
            ingress,
            egress,
        })
    }
}

fn convert_peers(
    field: &str,
    peers: Option<&[networking::NetworkPolicyPeer]>,
) -> Result<Vec<Peer>, ConvertError> {
    let mut out = Vec::new();
    for (i, p) in peers.unwrap_or(&[]).iter().enumerate() {
        let f = format!("{field}[{i}]");
        if let Some(b) = &p.ip_block {
            if p.pod_selector.is_some() || p.namespace_selector.is_some() {
                return Err(ConvertError::new(
                    f,
                    "ipBlock cannot be combined with podSelector or namespaceSelector",
                ));
            }
            let cidr = parse_cidr(&format!("{f}.ipBlock.cidr"), &b.cidr)?;
            let mut except = Vec::new();
            for (j, e) in b.except.iter().flatten().enumerate() {
                let ef = format!("{f}.ipBlock.except[{j}]");
                let net = parse_cidr(&ef, e)?;
                if !cidr.contains(&net) {
                    return Err(ConvertError::new(ef, format!("{e} is not inside {cidr}")));
                }
                except.push(net);
            }
            out.push(Peer::IpBlock { cidr, except });
        } else if p.pod_selector.is_none() && p.namespace_selector.is_none() {
            return Err(ConvertError::new(
                f,
                "peer must set podSelector, namespaceSelector or ipBlock",
            ));
        } else {
            out.push(Peer::Pods {
                pod_selector: match &p.pod_selector {
                    Some(s) => Some(LabelSelector::from_k8s(&format!("{f}.podSelector"), s)?),
                    None => None,
                },
                namespace_selector: match &p.namespace_selector {
                    Some(s) => Some(LabelSelector::from_k8s(
                        &format!("{f}.namespaceSelector"),
                        s,
                    )?),
                    None => None,
                },
            });
        }
    }
    Ok(out)
}

/// Parses a CIDR; a bare address is accepted as a host route. Host bits must be zero
/// (the API server rejects `10.0.0.1/24`).
fn parse_cidr(field: &str, raw: &str) -> Result<IpNet, ConvertError> {
    let raw = raw.trim();
    let net: IpNet = match raw.parse() {
        Ok(n) => n,
        Err(_) => match raw.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(ConvertError::new(field, format!("not a CIDR: {raw:?}"))),
        },
    };
    if net.trunc() != net {
        // Kubernetes validation of ipBlock historically accepted these; keep the network.
        return Ok(net.trunc());
    }
    Ok(net)
}

fn convert_ports(
    field: &str,
    ports: Option<&[networking::NetworkPolicyPort]>,
) -> Result<Vec<PolicyPort>, ConvertError> {
    let mut out = Vec::new();
    for (i, p) in ports.unwrap_or(&[]).iter().enumerate() {
        let f = format!("{field}[{i}]");
        let protocol = parse_protocol(&format!("{f}.protocol"), p.protocol.as_ref())?;
        let port = match &p.port {
            None => None,
            Some(IntOrString::Int(n)) => Some(PortSpec::Number(crate::cluster::model::parse_port(
                &format!("{f}.port"),
                *n,
            )?)),
            Some(IntOrString::String(s)) => match s.parse::<i32>() {
                Ok(n) => Some(PortSpec::Number(crate::cluster::model::parse_port(
                    &format!("{f}.port"),
                    n,
                )?)),
                Err(_) if s.is_empty() => {
                    return Err(ConvertError::new(format!("{f}.port"), "empty port name"));
                }
                Err(_) => Some(PortSpec::Name(s.clone())),
            },
        };
        let end_port = match p.end_port {
            None => None,
            Some(e) => {
                let ef = format!("{f}.endPort");
                let e = crate::cluster::model::parse_port(&ef, e)?;
                match &port {
                    Some(PortSpec::Number(start)) if e >= *start => Some(e),
                    Some(PortSpec::Number(start)) => {
                        return Err(ConvertError::new(
                            ef,
                            format!("endPort {e} is below port {start}"),
                        ));
                    }
                    _ => {
                        return Err(ConvertError::new(ef, "endPort requires a numeric port"));
                    }
                }
            }
        };
        out.push(PolicyPort {
            protocol,
            port,
            end_port,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: SelectorOp, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![Requirement {
                key: key.into(),
                op,
                values: values.iter().map(|s| s.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        assert!(LabelSelector::default().matches(&l));
        assert!(LabelSelector::labels([("app", "web")]).matches(&l));
        assert!(!LabelSelector::labels([("app", "db")]).matches(&l));
        assert!(req("app", SelectorOp::In, &["web", "api"]).matches(&l));
        assert!(!req("app", SelectorOp::In, &["api"]).matches(&l));
        assert!(!req("missing", SelectorOp::In, &["x"]).matches(&l));
        assert!(req("app", SelectorOp::NotIn, &["db"]).matches(&l));
        assert!(!req("app", SelectorOp::NotIn, &["web"]).matches(&l));
        assert!(
            req("missing", SelectorOp::NotIn, &["x"]).matches(&l),
            "NotIn matches absent key"
        );
        assert!(req("tier", SelectorOp::Exists, &[]).matches(&l));
        assert!(!req("missing", SelectorOp::Exists, &[]).matches(&l));
        assert!(req("missing", SelectorOp::DoesNotExist, &[]).matches(&l));
        assert!(!req("tier", SelectorOp::DoesNotExist, &[]).matches(&l));
        // matchLabels AND matchExpressions
        let mut both = req("tier", SelectorOp::Exists, &[]);
        both.match_labels.insert("app".into(), "db".into());
        assert!(!both.matches(&l));
    }

    #[test]
    fn ipblock_except() {
        let p = Peer::IpBlock {
            cidr: "10.0.0.0/16".parse().unwrap(),
            except: vec!["10.0.5.0/24".parse().unwrap()],
        };
        assert!(p.matches_ip("10.0.4.9".parse().unwrap()));
        assert!(!p.matches_ip("10.0.5.9".parse().unwrap()));
        assert!(!p.matches_ip("10.1.0.1".parse().unwrap()));
        assert!(!p.matches_ip("::1".parse().unwrap()));
    }
}
