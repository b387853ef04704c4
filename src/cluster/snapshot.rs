//! Loads a cluster snapshot: what `kubectl get … -o json|yaml` writes (a `List`, nested Lists,
//! typed lists like `PodList`), a single object, or multi-document YAML manifests.
//!
//! Shell-ish: [`load_snapshot`] / [`load_policies`] read a file; everything else here
//! ([`parse_snapshot`]) is pure text → objects.
//!
//! Guarantees:
//! - A bad or partial object is an error naming it (`Kind ns/name`, or document/item index when
//!   it has no name) and the field (`spec.ports[0].port`), never a panic.
//! - Unknown kinds (and known kinds at an API version podwire does not read) are skipped and
//!   counted in [`Snapshot::skipped`].
//! - The snapshot time comes from the `podwire.io/snapshot-time` annotation (RFC 3339) on the
//!   top-level List's metadata, or from a comment line `# podwire.io/snapshot-time: <RFC 3339>`.

#![allow(clippy::disallowed_methods)] // a shell: reads snapshot files

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking,
};
use serde::Deserialize;
use serde_json::Value;

use crate::cluster::model::{ClusterDelta, ClusterObject, ClusterState, ConvertError, TimestampNs};
use crate::policy::types::NetworkPolicy;
use crate::sanitize::sanitize;

/// Annotation (on the List) and comment key carrying the snapshot time.
pub const SNAPSHOT_TIME_KEY: &str = "podwire.io/snapshot-time";

/// What a snapshot file held.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Objects in file order.
    pub objects: Vec<ClusterObject>,
    /// Skipped objects counted by `apiVersion Kind`.
    pub skipped: BTreeMap<String, usize>,
    /// When the snapshot was taken (ns since the epoch), if the file says.
    pub snapshot_time_ns: Option<TimestampNs>,
}

impl Snapshot {
    /// Total number of skipped objects.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    /// Builds a [`ClusterState`] (owner links and namespaces first, so workloads resolve).
    pub fn into_state(self) -> ClusterState {
        let mut st = ClusterState::new();
        st.snapshot_time_ns = self.snapshot_time_ns;
        let (mut first, mut rest): (Vec<_>, Vec<_>) = self
            .objects
            .into_iter()
            .partition(|o| matches!(o, ClusterObject::Namespace(_) | ClusterObject::Owner(_)));
        first.append(&mut rest);
        for o in first {
            st.apply(ClusterDelta::Apply(o));
        }
        st
    }

    /// The NetworkPolicies in the snapshot.
    pub fn network_policies(&self) -> Vec<NetworkPolicy> {
        self.objects
            .iter()
            .filter_map(|o| match o {
                ClusterObject::NetworkPolicy(p) => Some((**p).clone()),
                _ => None,
            })
            .collect()
    }
}

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A document is not valid YAML/JSON.
    #[error("{source_name}: document #{document}: not valid YAML/JSON: {message}")]
    Syntax {
        /// File name (or other label).
        source_name: String,
        /// Document index (0-based).
        document: usize,
        /// Parser message.
        message: String,
    },
    /// An object is malformed.
    #[error("{source_name}: {object}: field `{field}`: {message}")]
    Object {
        /// File name.
        source_name: String,
        /// `Kind ns/name`, or `document #i item path` when unnamed.
        object: String,
        /// Field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The snapshot-time annotation or comment is not RFC 3339.
    #[error("{source_name}: {SNAPSHOT_TIME_KEY} {value:?} is not an RFC 3339 timestamp: {message}")]
    SnapshotTime {
        /// File name.
        source_name: String,
        /// The value found.
        value: String,
        /// Parser message.
        message: String,
    },
}

/// Reads and parses a snapshot file.
pub fn load_snapshot(path: &Path) -> Result<Snapshot, SnapshotError> {
    let text = std::fs::read_to_string(path).map_err(|source| SnapshotError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_snapshot(&text, &path.display().to_string())
}

/// Reads NetworkPolicies from a manifest file (what-if policies); other kinds are ignored.
pub fn load_policies(path: &Path) -> Result<Vec<NetworkPolicy>, SnapshotError> {
    Ok(load_snapshot(path)?.network_policies())
}

/// Parses snapshot text (JSON or YAML, possibly multi-document). `source_name` labels errors.
pub fn parse_snapshot(text: &str, source_name: &str) -> Result<Snapshot, SnapshotError> {
    let mut snap = Snapshot::default();
    let docs = split_documents(text, source_name)?;
    let mut time_raw: Option<String> = comment_snapshot_time(text);
    for (i, doc) in docs.into_iter().enumerate() {
        if let Some(t) = doc
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SNAPSHOT_TIME_KEY))
            .and_then(Value::as_str)
        {
            time_raw = Some(t.to_string());
        }
        let mut ctx = Ctx {
            source_name,
            snap: &mut snap,
        };
        ctx.walk(doc, i, String::new(), 0)?;
    }
    if let Some(raw) = time_raw {
        let ts: jiff::Timestamp =
            raw.trim()
                .parse()
                .map_err(|e: jiff::Error| SnapshotError::SnapshotTime {
                    source_name: source_name.to_string(),
                    value: raw.clone(),
                    message: e.to_string(),
                })?;
        snap.snapshot_time_ns = i64::try_from(ts.as_nanosecond()).ok();
    }
    Ok(snap)
}

fn comment_snapshot_time(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim_start().strip_prefix('#')?.trim();
        let rest = l.strip_prefix(SNAPSHOT_TIME_KEY)?.trim_start();
        Some(rest.strip_prefix(':')?.trim().trim_matches('"').to_string())
    })
}

fn split_documents(text: &str, source_name: &str) -> Result<Vec<Value>, SnapshotError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // kubectl -o json: one JSON document (fast path); fall back to YAML on failure.
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            return Ok(vec![v]);
        }
    }
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| SnapshotError::Syntax {
            source_name: source_name.to_string(),
            document: i,
            message: e.to_string(),
        })?;
        out.push(v);
    }
    Ok(out)
}

struct Ctx<'a> {
    source_name: &'a str,
    snap: &'a mut Snapshot,
}

fn object_label(v: &Value, kind: &str, doc: usize, path: &str) -> String {
    let meta = v.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str);
    match (name, ns) {
        (Some(n), Some(ns)) => format!("{} {}/{}", sanitize(kind), sanitize(ns), sanitize(n)),
        (Some(n), None) => format!("{} {}", sanitize(kind), sanitize(n)),
        _ if path.is_empty() => format!("document #{doc} ({})", sanitize(kind)),
        _ => format!("document #{doc} {path} ({})", sanitize(kind)),
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ConvertError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "(object)".to_string()
        } else {
            path
        };
        ConvertError::new(field, e.into_inner().to_string())
    })
}

impl Ctx<'_> {
    fn walk(
        &mut self,
        v: Value,
        doc: usize,
        path: String,
        depth: usize,
    ) -> Result<(), SnapshotError> {
        let obj_err = |object: String, e: ConvertError| SnapshotError::Object {
            source_name: self.source_name.to_string(),
            object,
            field: e.field,
            message: e.message,
        };
        match &v {
            Value::Null => return Ok(()),
            Value::Array(items) => {
                // A bare JSON/YAML array of objects.
                for (j, item) in items.iter().enumerate() {
                    self.walk(item.clone(), doc, format!("{path}[{j}]"), depth + 1)?;
                }
                return Ok(());
            }
            Value::Object(_) => {}
            _ => {
                return Err(obj_err(
                    format!("document #{doc} {path}").trim_end().to_string(),
                    ConvertError::new("(document)", "expected an object with apiVersion and kind"),
                ));
            }
        }
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let api = v
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if kind.is_empty() {
            return Err(obj_err(
                object_label(&v, "object", doc, &path),
                ConvertError::new("kind", "missing"),
            ));
        }
        if kind == "List" || (kind.ends_with("List") && v.get("items").is_some()) {
            if depth > 16 {
                return Err(obj_err(
                    object_label(&v, &kind, doc, &path),
                    ConvertError::new("items", "Lists nested too deeply"),
                ));
            }
            let Value::Object(mut map) = v else {
                return Ok(());
            };
            let items = match map.remove("items") {
                Some(Value::Array(items)) => items,
                Some(Value::Null) | None => Vec::new(),
                Some(_) => {
                    return Err(SnapshotError::Object {
                        source_name: self.source_name.to_string(),
                        object: format!("document #{doc} {kind}"),
                        field: format!("{path}items"),
                        message: "expected a list".into(),
                    });
                }
            };
            // Typed lists (PodList) may omit kind/apiVersion on items.
            let item_kind = kind
                .strip_suffix("List")
                .filter(|k| !k.is_empty())
                .map(str::to_string);
            for (j, mut item) in items.into_iter().enumerate() {
                if let (Some(k), Value::Object(m)) = (&item_kind, &mut item)
                    && !m.contains_key("kind")
                {
                    m.insert("kind".into(), Value::String(k.clone()));
                    m.entry("apiVersion")
                        .or_insert_with(|| Value::String(api.clone()));
                }
                self.walk(item, doc, format!("{path}items[{j}]"), depth + 1)?;
            }
            return Ok(());
        }
        let label = object_label(&v, &kind, doc, &path);
        let converted = match (api.as_str(), kind.as_str()) {
            ("v1", "Namespace") => {
                typed::<core::Namespace>(v).and_then(|o| ClusterObject::from_namespace(&o))
            }
            ("v1", "Pod") => typed::<core::Pod>(v).and_then(|o| ClusterObject::from_pod(&o)),
            ("v1", "Service") => {
                typed::<core::Service>(v).and_then(|o| ClusterObject::from_service(&o))
            }
            ("v1", "Node") => typed::<core::Node>(v).and_then(|o| ClusterObject::from_node(&o)),
            ("discovery.k8s.io/v1", "EndpointSlice") => typed::<discovery::EndpointSlice>(v)
                .and_then(|o| ClusterObject::from_endpoint_slice(&o)),
            ("networking.k8s.io/v1", "NetworkPolicy") => typed::<networking::NetworkPolicy>(v)
                .and_then(|o| ClusterObject::from_network_policy(&o)),
            ("apps/v1", "ReplicaSet") => {
                typed::<apps::ReplicaSet>(v).and_then(|o| ClusterObject::from_replica_set(&o))
            }
            ("batch/v1", "Job") => typed::<batch::Job>(v).and_then(|o| ClusterObject::from_job(&o)),
            _ => {
                *self
                    .snap
                    .skipped
                    .entry(format!("{} {}", sanitize(&api), sanitize(&kind)))
                    .or_default() += 1;
                return Ok(());
            }
        };
        let obj = converted.map_err(|e| obj_err(label, e))?;
        self.snap.objects.push(obj);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_JSON: &str = r#"{
      "apiVersion": "v1", "kind": "List",
      "metadata": {"annotations": {"podwire.io/snapshot-time": "2024-05-01T12:00:00Z"}},
      "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}}},
        {"apiVersion": "v1", "kind": "List", "items": [
          {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-6d4cf56db6-x2x", "namespace": "shop", "labels": {"app": "web", "pod-template-hash": "6d4cf56db6"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6d4cf56db6", "uid": "u", "controller": true}],
                        "creationTimestamp": "2024-05-01T11:00:00Z"},
           "spec": {"nodeName": "n1", "serviceAccountName": "web", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
           "status": {"phase": "Running", "podIP": "10.1.0.4", "podIPs": [{"ip": "10.1.0.4"}, {"ip": "fd00::4"}]}}
        ]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "shop"}}
      ]}"#;

    #[test]
    fn kubectl_list_with_nested_list_and_time() {
        let snap = parse_snapshot(LIST_JSON, "snap.json").unwrap();
        assert_eq!(snap.objects.len(), 2);
        assert_eq!(snap.skipped_total(), 2);
        assert_eq!(snap.skipped.get("apps/v1 Deployment"), Some(&1));
        assert_eq!(snap.snapshot_time_ns, Some(1_714_564_800_000_000_000));
        let st = snap.into_state();
        let pod = st.pod("shop", "web-6d4cf56db6-x2x").unwrap();
        assert_eq!(pod.ips.len(), 2);
        assert_eq!(pod.workload.name, "web");
        assert_eq!(pod.ports[0].name.as_deref(), Some("http"));
        assert_eq!(pod.service_account.as_deref(), Some("web"));
        assert_eq!(
            st.namespaces["shop"].labels["kubernetes.io/metadata.name"],
            "shop"
        );
    }

    #[test]
    fn multi_document_yaml_and_comment_time() {
        let y = "# podwire.io/snapshot-time: 2024-05-01T12:00:00+02:00\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDRs: [10.1.0.0/24]}\nstatus: {addresses: [{type: InternalIP, address: 192.168.0.1}]}\n---\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {}}\n";
        let snap = parse_snapshot(y, "m.yaml").unwrap();
        assert_eq!(snap.objects.len(), 2);
        assert_eq!(snap.snapshot_time_ns, Some(1_714_557_600_000_000_000));
        let pols = snap.network_policies();
        assert!(pols[0].affects_ingress && !pols[0].affects_egress);
    }

    #[test]
    fn errors_name_object_and_field() {
        let y = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 99999}]}\n";
        let e = parse_snapshot(y, "s.yaml").unwrap_err().to_string();
        assert!(
            e.contains("Service shop/web") && e.contains("spec.ports[0].port"),
            "{e}"
        );
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {containers: [{name: c, ports: [{containerPort: \"x\"}]}]}\n";
        let e = parse_snapshot(y, "p.yaml").unwrap_err().to_string();
        assert!(
            e.contains("Pod shop/p") && e.contains("spec.containers[0].ports[0].containerPort"),
            "{e}"
        );
        let y = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: not-an-ip}\nspec: {containers: []}\n";
        let e = parse_snapshot(y, "p.yaml").unwrap_err().to_string();
        assert!(e.contains("status.podIP"), "{e}");
        let e = parse_snapshot("a: [b\n", "bad.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("document #0"), "{e}");
        let e = parse_snapshot("apiVersion: v1\nmetadata: {name: x}\n", "k.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `kind`"), "{e}");
        let y = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/8]}}]}]\n";
        let e = parse_snapshot(y, "np.yaml").unwrap_err().to_string();
        assert!(
            e.contains("NetworkPolicy n")
                && e.contains("spec.ingress[0].from[0].ipBlock.except[0]"),
            "{e}"
        );
        let e = parse_snapshot(
            "# podwire.io/snapshot-time: yesterday\napiVersion: v1\nkind: List\nitems: []\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
