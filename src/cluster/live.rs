//! The pure half of live mode: which kinds are watched ([`WatchKind`]), what the watchers send
//! ([`WatchEvent`]), how a relist becomes deltas ([`KindTracker`]) and how stale the shown state
//! is ([`Staleness`]).
//!
//! Pure: no I/O, no clock. The kube shell ([`crate::cluster::watch`]) feeds watcher events in and
//! passes wall-clock times as arguments; everything here is deterministic and unit-tested.
//!
//! Guarantees:
//! - A relist (watcher `Init` … `InitDone`) ends with the kind's objects in [`ClusterState`]
//!   exactly equal to the listed ones: [`KindTracker`] emits a delete for every object that was
//!   known before and is missing from the new list.
//! - An object that fails conversion never stops the watch: it is counted, its last error is kept,
//!   and an older valid version of it is removed rather than kept silently out of date.
//! - Every string that [`Staleness::describe`] shows is sanitized (errors come off the wire).
//!
//! [`ClusterState`]: crate::cluster::ClusterState

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::cluster::model::{ClusterDelta, ClusterObject, ConvertError, ObjectKind, TimestampNs};
use crate::sanitize::sanitize;

/// One kind of object podwire watches. The model resolves owner chains through ReplicaSets
/// (→ Deployment) and Jobs (→ CronJob), and reads StatefulSet/DaemonSet/Deployment/CronJob names
/// from owner references, so those four are never fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum WatchKind {
    /// v1 Namespace.
    Namespaces,
    /// v1 Node.
    Nodes,
    /// apps/v1 ReplicaSet (owner links).
    ReplicaSets,
    /// batch/v1 Job (owner links).
    Jobs,
    /// v1 Pod.
    Pods,
    /// v1 Service.
    Services,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlices,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicies,
}

impl WatchKind {
    /// Every watched kind, namespaces and owner links first (so workloads resolve early).
    pub const ALL: [WatchKind; 8] = [
        WatchKind::Namespaces,
        WatchKind::Nodes,
        WatchKind::ReplicaSets,
        WatchKind::Jobs,
        WatchKind::Pods,
        WatchKind::Services,
        WatchKind::EndpointSlices,
        WatchKind::NetworkPolicies,
    ];

    /// Lower-case plural resource name, as in RBAC rules and URLs (`endpointslices`).
    pub fn plural(self) -> &'static str {
        match self {
            WatchKind::Namespaces => "namespaces",
            WatchKind::Nodes => "nodes",
            WatchKind::ReplicaSets => "replicasets",
            WatchKind::Jobs => "jobs",
            WatchKind::Pods => "pods",
            WatchKind::Services => "services",
            WatchKind::EndpointSlices => "endpointslices",
            WatchKind::NetworkPolicies => "networkpolicies",
        }
    }

    /// API group ("" for the core group).
    pub fn group(self) -> &'static str {
        match self {
            WatchKind::Namespaces | WatchKind::Nodes | WatchKind::Pods | WatchKind::Services => "",
            WatchKind::ReplicaSets => "apps",
            WatchKind::Jobs => "batch",
            WatchKind::EndpointSlices => "discovery.k8s.io",
            WatchKind::NetworkPolicies => "networking.k8s.io",
        }
    }

    /// Cluster-wide collection path on the API server (`/apis/apps/v1/replicasets`).
    pub fn collection_path(self) -> String {
        match self.group() {
            "" => format!("/api/v1/{}", self.plural()),
            g => format!("/apis/{g}/v1/{}", self.plural()),
        }
    }

    /// The watched kind whose cluster-wide collection is at `path` (query string excluded).
    pub fn from_collection_path(path: &str) -> Option<WatchKind> {
        let path = path.trim_end_matches('/');
        WatchKind::ALL
            .into_iter()
            .find(|k| k.collection_path() == path)
    }

    /// True for cluster-scoped kinds (Namespace, Node).
    pub fn cluster_scoped(self) -> bool {
        matches!(self, WatchKind::Namespaces | WatchKind::Nodes)
    }

    /// The delta that deletes object `namespace/name` of this kind from the model.
    pub fn delete_delta(self, namespace: &str, name: &str) -> ClusterDelta {
        let (kind, name) = match self {
            WatchKind::Namespaces => (ObjectKind::Namespace, name.to_string()),
            WatchKind::Nodes => (ObjectKind::Node, name.to_string()),
            WatchKind::Pods => (ObjectKind::Pod, name.to_string()),
            WatchKind::Services => (ObjectKind::Service, name.to_string()),
            WatchKind::EndpointSlices => (ObjectKind::EndpointSlice, name.to_string()),
            WatchKind::NetworkPolicies => (ObjectKind::NetworkPolicy, name.to_string()),
            WatchKind::ReplicaSets => (ObjectKind::Owner, format!("ReplicaSet/{name}")),
            WatchKind::Jobs => (ObjectKind::Owner, format!("Job/{name}")),
        };
        ClusterDelta::Delete {
            kind,
            namespace: if self.cluster_scoped() {
                String::new()
            } else {
                namespace.to_string()
            },
            name,
        }
    }
}

impl fmt::Display for WatchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

/// Health of one kind's watch, as its watcher last reported it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WatchStatus {
    /// Which watch.
    pub kind: WatchKind,
    /// The API server answered the last request of this watch (list or watch) and the stream has
    /// not failed since.
    pub connected: bool,
    /// The initial list (or the last relist) completed, so the kind's objects are all known.
    pub synced: bool,
    /// When this status was produced (ns since the epoch, wall clock of the shell).
    pub at_ns: TimestampNs,
    /// Last time the API server was heard from for this kind (an event or a successful
    /// response), if ever.
    pub last_event_ns: Option<TimestampNs>,
    /// Why the watch is down (or the last recoverable error), sanitized.
    pub error: Option<String>,
    /// Objects of this kind skipped because they could not be converted, since start.
    pub invalid_objects: u64,
}

/// What the live watchers send to the engine thread.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A change to apply to the cluster state.
    Delta(ClusterDelta),
    /// A change in one watch's health.
    Status(WatchStatus),
}

/// What a watcher saw, reduced to what [`KindTracker`] needs (mirrors kube's `watcher::Event`).
#[derive(Debug, Clone)]
pub enum TrackerInput {
    /// An object was added or modified: its (namespace, name) and the converted object.
    Apply((String, String), Result<ClusterObject, ConvertError>),
    /// An object was deleted.
    Delete((String, String)),
    /// A (re)list starts.
    Init,
    /// An object of the (re)list.
    InitApply((String, String), Result<ClusterObject, ConvertError>),
    /// The (re)list is complete.
    InitDone,
}

/// Turns one kind's watcher events into [`ClusterDelta`]s, remembering which objects the model
/// holds so that a relist can delete the ones that vanished meanwhile.
#[derive(Debug, Clone)]
pub struct KindTracker {
    kind: WatchKind,
    known: BTreeSet<(String, String)>,
    relist_seen: Option<BTreeSet<(String, String)>>,
    synced: bool,
    invalid: u64,
    last_invalid: Option<String>,
}

impl KindTracker {
    /// A tracker for `kind` that knows no objects yet.
    pub fn new(kind: WatchKind) -> Self {
        KindTracker {
            kind,
            known: BTreeSet::new(),
            relist_seen: None,
            synced: false,
            invalid: 0,
            last_invalid: None,
        }
    }

    /// The kind tracked.
    pub fn kind(&self) -> WatchKind {
        self.kind
    }

    /// A (re)list has completed at least once and none is in progress.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Objects skipped because they could not be converted.
    pub fn invalid_objects(&self) -> u64 {
        self.invalid
    }

    /// The last conversion error (`ns/name: field …`), sanitized.
    pub fn last_invalid(&self) -> Option<&str> {
        self.last_invalid.as_deref()
    }

    /// Number of objects the model currently holds for this kind.
    pub fn known(&self) -> usize {
        self.known.len()
    }

    /// Feeds one event; returns the deltas to apply, in order.
    pub fn handle(&mut self, input: TrackerInput) -> Vec<ClusterDelta> {
        match input {
            TrackerInput::Init => {
                self.relist_seen = Some(BTreeSet::new());
                self.synced = false;
                Vec::new()
            }
            TrackerInput::InitApply(key, obj) => {
                let out = self.upsert(key.clone(), obj);
                if let Some(seen) = &mut self.relist_seen
                    && self.known.contains(&key)
                {
                    seen.insert(key);
                }
                out
            }
            TrackerInput::InitDone => {
                let seen = self.relist_seen.take().unwrap_or_default();
                let gone: Vec<_> = self.known.difference(&seen).cloned().collect();
                self.synced = true;
                gone.into_iter()
                    .map(|k| {
                        self.known.remove(&k);
                        self.kind.delete_delta(&k.0, &k.1)
                    })
                    .collect()
            }
            TrackerInput::Apply(key, obj) => self.upsert(key, obj),
            TrackerInput::Delete(key) => {
                self.known.remove(&key);
                vec![self.kind.delete_delta(&key.0, &key.1)]
            }
        }
    }

    fn upsert(
        &mut self,
        key: (String, String),
        obj: Result<ClusterObject, ConvertError>,
    ) -> Vec<ClusterDelta> {
        match obj {
            Ok(obj) => {
                self.known.insert(key);
                vec![ClusterDelta::Apply(obj)]
            }
            Err(e) => {
                self.invalid += 1;
                let who = if key.0.is_empty() {
                    key.1.clone()
                } else {
                    format!("{}/{}", key.0, key.1)
                };
                self.last_invalid = Some(sanitize(&format!("{} {who}: {e}", self.kind)));
                if self.known.remove(&key) {
                    vec![self.kind.delete_delta(&key.0, &key.1)]
                } else {
                    Vec::new()
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct KindHealth {
    connected: bool,
    synced: bool,
    last_event_ns: Option<TimestampNs>,
    down_since_ns: Option<TimestampNs>,
    error: Option<String>,
    invalid: u64,
}

/// How current the live cluster state is: updated from [`WatchStatus`] events, asked with the
/// caller's clock. Kinds never reported are "not yet listed".
#[derive(Debug, Clone, Default)]
pub struct Staleness {
    kinds: BTreeMap<WatchKind, KindHealth>,
    started_ns: Option<TimestampNs>,
}

impl Staleness {
    /// Nothing heard yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a status report.
    pub fn update(&mut self, status: &WatchStatus) {
        self.started_ns.get_or_insert(status.at_ns);
        let h = self.kinds.entry(status.kind).or_default();
        if status.connected {
            h.down_since_ns = None;
        } else if h.connected || h.down_since_ns.is_none() {
            // Going down now (or never came up): the outage starts at this report.
            h.down_since_ns = Some(status.at_ns);
        }
        h.connected = status.connected;
        h.synced = status.synced;
        h.last_event_ns = status.last_event_ns.or(h.last_event_ns);
        h.error = status.error.as_deref().map(sanitize);
        h.invalid = status.invalid_objects;
    }

    /// Every watched kind is connected and synced.
    pub fn is_live(&self) -> bool {
        WatchKind::ALL
            .iter()
            .all(|k| self.kinds.get(k).is_some_and(|h| h.connected && h.synced))
    }

    /// Kinds whose watch is down, with when their outage started.
    pub fn down(&self) -> Vec<(WatchKind, TimestampNs)> {
        self.kinds
            .iter()
            .filter(|(_, h)| !h.connected)
            .filter_map(|(k, h)| Some((*k, h.down_since_ns?)))
            .collect()
    }

    /// Kinds whose first list has not completed.
    pub fn unsynced(&self) -> Vec<WatchKind> {
        WatchKind::ALL
            .into_iter()
            .filter(|k| !self.kinds.get(k).is_some_and(|h| h.synced))
            .collect()
    }

    /// How long (ns) the oldest current outage has lasted at `now_ns`; `None` when no watch is down.
    pub fn stale_for_ns(&self, now_ns: TimestampNs) -> Option<i64> {
        self.as_of_ns().map(|t| now_ns.saturating_sub(t).max(0))
    }

    /// The moment the shown state was last known to be current: the start of the oldest current
    /// outage. `None` while every reported watch is connected.
    pub fn as_of_ns(&self) -> Option<TimestampNs> {
        self.down().into_iter().map(|(_, t)| t).min()
    }

    /// Objects skipped (not convertible) over all kinds.
    pub fn invalid_objects(&self) -> u64 {
        self.kinds.values().map(|h| h.invalid).sum()
    }

    /// One line for a status bar, e.g. `live` or
    /// `API server unreachable for 42 s, showing state as of 2024-05-01T12:00:00Z (…)`.
    pub fn describe(&self, now_ns: TimestampNs) -> String {
        let down = self.down();
        let mut line = if let Some(since) = self.as_of_ns() {
            let secs = now_ns.saturating_sub(since).max(0) / 1_000_000_000;
            let as_of = jiff::Timestamp::from_nanosecond(i128::from(since))
                .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
                .unwrap_or_else(|_| since.to_string());
            let who = if down.len() == WatchKind::ALL.len() {
                "API server unreachable".to_string()
            } else {
                let names: Vec<&str> = down.iter().map(|(k, _)| k.plural()).collect();
                format!("watch of {} failing", names.join(", "))
            };
            let err = down
                .iter()
                .filter_map(|(k, _)| self.kinds.get(k)?.error.as_deref())
                .next()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            format!("{who} for {secs} s, showing state as of {as_of}{err}")
        } else if self.kinds.is_empty() {
            "connecting to the API server".to_string()
        } else {
            let pending = self.unsynced();
            if pending.is_empty() {
                "live".to_string()
            } else {
                let names: Vec<&str> = pending.iter().map(|k| k.plural()).collect();
                format!("listing {}", names.join(", "))
            }
        };
        let invalid = self.invalid_objects();
        if invalid > 0 {
            let s = if invalid == 1 { "" } else { "s" };
            line.push_str(&format!(" ({invalid} object{s} skipped as invalid)"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::{ClusterState, Labels, Pod};

    fn pod(name: &str) -> ((String, String), Result<ClusterObject, ConvertError>) {
        (
            ("ns".to_string(), name.to_string()),
            Ok(ClusterObject::Pod(Box::new(Pod::new(
                "ns",
                name,
                Labels::new(),
                vec![],
            )))),
        )
    }

    fn run(t: &mut KindTracker, st: &mut ClusterState, input: TrackerInput) {
        for d in t.handle(input) {
            st.apply(d);
        }
    }

    #[test]
    fn relist_removes_vanished_objects() {
        let mut t = KindTracker::new(WatchKind::Pods);
        let mut st = ClusterState::new();
        run(&mut t, &mut st, TrackerInput::Init);
        for n in ["a", "b", "c"] {
            let (k, o) = pod(n);
            run(&mut t, &mut st, TrackerInput::InitApply(k, o));
        }
        run(&mut t, &mut st, TrackerInput::InitDone);
        assert!(t.synced());
        assert_eq!(st.pods.len(), 3);
        let (k, o) = pod("d");
        run(&mut t, &mut st, TrackerInput::Apply(k, o));
        // Relist: b and d vanished, e is new.
        run(&mut t, &mut st, TrackerInput::Init);
        assert!(!t.synced());
        for n in ["a", "c", "e"] {
            let (k, o) = pod(n);
            run(&mut t, &mut st, TrackerInput::InitApply(k, o));
        }
        run(&mut t, &mut st, TrackerInput::InitDone);
        let names: Vec<_> = st.pods.keys().map(|k| k.1.as_str()).collect();
        assert_eq!(names, ["a", "c", "e"]);
        assert_eq!(t.known(), 3);
        assert_eq!(st.departed_pods.len(), 2);
    }

    #[test]
    fn invalid_object_is_counted_and_replaces_old_version() {
        let mut t = KindTracker::new(WatchKind::Pods);
        let mut st = ClusterState::new();
        let (k, o) = pod("a");
        run(&mut t, &mut st, TrackerInput::Apply(k.clone(), o));
        assert_eq!(st.pods.len(), 1);
        let bad = Err(ConvertError::new(
            "status.podIP",
            "not an IP address: \"\\x1b[31m\"",
        ));
        run(&mut t, &mut st, TrackerInput::Apply(k, bad));
        assert!(st.pods.is_empty());
        assert_eq!(t.invalid_objects(), 1);
        let msg = t.last_invalid().unwrap_or_default();
        assert!(msg.starts_with("pods ns/a: field `status.podIP`"), "{msg}");
        assert!(!msg.contains('\u{1b}'));
    }

    #[test]
    fn owner_and_cluster_scoped_delete_keys() {
        assert_eq!(
            WatchKind::ReplicaSets.delete_delta("shop", "web-1"),
            ClusterDelta::Delete {
                kind: ObjectKind::Owner,
                namespace: "shop".into(),
                name: "ReplicaSet/web-1".into()
            }
        );
        assert_eq!(
            WatchKind::Nodes.delete_delta("ignored", "n1"),
            ClusterDelta::Delete {
                kind: ObjectKind::Node,
                namespace: String::new(),
                name: "n1".into()
            }
        );
    }

    #[test]
    fn collection_paths_round_trip() {
        for k in WatchKind::ALL {
            assert_eq!(
                WatchKind::from_collection_path(&k.collection_path()),
                Some(k)
            );
        }
        assert_eq!(
            WatchKind::from_collection_path("/apis/discovery.k8s.io/v1/endpointslices"),
            Some(WatchKind::EndpointSlices)
        );
        assert_eq!(
            WatchKind::from_collection_path("/api/v1/namespaces/x/pods"),
            None
        );
        assert_eq!(WatchKind::from_collection_path("/version"), None);
    }

    fn status(kind: WatchKind, connected: bool, at_s: i64) -> WatchStatus {
        WatchStatus {
            kind,
            connected,
            synced: true,
            at_ns: at_s * 1_000_000_000,
            last_event_ns: Some(at_s * 1_000_000_000),
            error: (!connected).then(|| "connection refused\u{1b}[2J".to_string()),
            invalid_objects: 0,
        }
    }

    #[test]
    fn staleness_grows_while_down_and_clears_on_reconnect() {
        let mut s = Staleness::new();
        assert_eq!(s.describe(0), "connecting to the API server");
        for k in WatchKind::ALL {
            s.update(&status(k, true, 1_714_564_800));
        }
        assert!(s.is_live());
        assert_eq!(s.describe(1_714_564_801_000_000_000), "live");
        for k in WatchKind::ALL {
            s.update(&status(k, false, 1_714_564_810));
        }
        // A second failure report does not move the outage start.
        s.update(&status(WatchKind::Pods, false, 1_714_564_830));
        let now = 1_714_564_852_000_000_000;
        assert_eq!(s.stale_for_ns(now), Some(42_000_000_000));
        let d = s.describe(now);
        assert!(
            d.starts_with(
                "API server unreachable for 42 s, showing state as of 2024-05-01T12:00:10Z"
            ),
            "{d}"
        );
        assert!(!d.contains('\u{1b}'), "{d}");
        for k in WatchKind::ALL {
            s.update(&status(k, true, 1_714_564_860));
        }
        assert_eq!(s.stale_for_ns(now), None);
        assert!(s.is_live());
    }

    #[test]
    fn partial_outage_names_the_kinds() {
        let mut s = Staleness::new();
        for k in WatchKind::ALL {
            s.update(&status(k, k != WatchKind::Jobs, 100));
        }
        let d = s.describe(105_000_000_000);
        assert!(d.starts_with("watch of jobs failing for 5 s"), "{d}");
        let mut s = Staleness::new();
        s.update(&WatchStatus {
            synced: false,
            ..status(WatchKind::Pods, true, 1)
        });
        assert!(s.describe(2).starts_with("listing namespaces, nodes"));
    }
}
