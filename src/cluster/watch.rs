//! Live mode (SHELL): connects to the API server the way kubectl does, watches the kinds in
//! [`WatchKind::ALL`] with kube's runtime watcher, and sends [`WatchEvent`]s (cluster deltas and
//! per-kind health) over a `std::sync::mpsc` channel to the engine thread. Also writes snapshot
//! files from a live cluster (`podwire snapshot -o FILE`).
//!
//! Guarantees:
//! - Read-only: the only requests made are `list` and `watch` on the collections in
//!   [`WatchKind::ALL`] (RBAC verbs get/list/watch, see `docs/deploy/clusterrole.yaml`).
//! - A relist (first start, `410 Gone`, restart) replaces the kind's objects: deletes are sent for
//!   objects that vanished meanwhile (see [`crate::cluster::live::KindTracker`]).
//! - An unreachable or failing API server never stops podwire: watches retry with kube-runtime's
//!   default backoff (0.8 s doubling to 30 s, jittered), the model keeps the last known state, and
//!   [`WatchStatus`] events say when each watch went down and came back, so the UI can show how
//!   stale it is ([`crate::cluster::live::Staleness`]). Reconnection is detected from the first
//!   successful response of that kind's requests, not only from the next event.
//! - Deltas are never dropped: when the receiver is slow, watchers wait (bounded channels).
//! - A snapshot file written here always loads back with [`crate::cluster::load_snapshot`]:
//!   objects podwire cannot convert are left out and reported.

#![allow(clippy::disallowed_methods)] // a shell: wall clock, threads, files

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking,
};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, watcher::Event};
use kube::{Api, Client, Config, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::cluster::live::{KindTracker, TrackerInput, WatchEvent, WatchKind, WatchStatus};
use crate::cluster::model::{ClusterObject, ConvertError, TimestampNs};
use crate::cluster::snapshot::SNAPSHOT_TIME_KEY;
use crate::sanitize::sanitize;

/// Where to find the cluster, as kubectl's `--kubeconfig` and `--context` say.
///
/// Without `kubeconfig`, the `KUBECONFIG` environment variable (colon-separated files, merged),
/// then `~/.kube/config`, then the in-cluster service account are tried, in that order.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeOptions {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

/// Resolves the client configuration like kubectl does (see [`KubeOptions`]).
pub async fn config(opts: &KubeOptions) -> Result<Config> {
    let options = KubeConfigOptions {
        context: opts.context.clone(),
        cluster: None,
        user: None,
    };
    if let Some(path) = &opts.kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
        return Config::from_custom_kubeconfig(kc, &options)
            .await
            .with_context(|| format!("kubeconfig {}", path.display()));
    }
    if let Some(ctx) = &opts.context {
        return Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("cannot use kubeconfig context {ctx:?}"));
    }
    Config::infer().await.context(
        "no Kubernetes configuration found (tried $KUBECONFIG, ~/.kube/config and the \
         in-cluster service account); pass --kubeconfig",
    )
}

/// A client configured like kubectl (see [`KubeOptions`]). Must be called inside a tokio runtime.
pub async fn client(opts: &KubeOptions) -> Result<Client> {
    Client::try_from(config(opts).await?).context("cannot build a Kubernetes client")
}

// ---------------------------------------------------------------------------------------------
// The kinds, typed.
// ---------------------------------------------------------------------------------------------

/// A k8s-openapi type podwire watches, with its conversion into the model.
trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static
{
    const KIND: WatchKind;
    fn convert(&self) -> Result<ClusterObject, ConvertError>;
}

macro_rules! watched {
    ($($ty:ty => $kind:ident, $conv:ident;)*) => {$(
        impl Watched for $ty {
            const KIND: WatchKind = WatchKind::$kind;
            fn convert(&self) -> Result<ClusterObject, ConvertError> {
                ClusterObject::$conv(self)
            }
        }
    )*};
}

watched! {
    core::Namespace => Namespaces, from_namespace;
    core::Node => Nodes, from_node;
    apps::ReplicaSet => ReplicaSets, from_replica_set;
    batch::Job => Jobs, from_job;
    core::Pod => Pods, from_pod;
    core::Service => Services, from_service;
    discovery::EndpointSlice => EndpointSlices, from_endpoint_slice;
    networking::NetworkPolicy => NetworkPolicies, from_network_policy;
}

fn key_of<K: Resource>(o: &K) -> (String, String) {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn now_ns() -> TimestampNs {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// An error and its causes on one line, repeated messages collapsed, sanitized.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let msg = err.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = err.source();
    }
    sanitize(&parts.join(": "))
}

// ---------------------------------------------------------------------------------------------
// Contact tracking: which kinds' requests the API server answered successfully.
// ---------------------------------------------------------------------------------------------

/// Per kind, how many requests got a successful response. A watcher that failed compares this
/// counter to notice that kube-runtime's silent retry has reached the server again.
#[derive(Debug, Default)]
struct Contacts {
    ok: [AtomicU64; WatchKind::ALL.len()],
}

impl Contacts {
    fn slot(kind: WatchKind) -> usize {
        WatchKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default()
    }
    fn record(&self, kind: WatchKind) {
        self.ok[Self::slot(kind)].fetch_add(1, Ordering::Relaxed);
    }
    fn count(&self, kind: WatchKind) -> u64 {
        self.ok[Self::slot(kind)].load(Ordering::Relaxed)
    }
}

/// Tower layer over the kube client's HTTP stack that records successful responses per kind.
#[derive(Clone)]
struct ContactLayer(Arc<Contacts>);

impl<S> tower::Layer<S> for ContactLayer {
    type Service = ContactService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ContactService {
            inner,
            contacts: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct ContactService<S> {
    inner: S,
    contacts: Arc<Contacts>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for ContactService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let kind = WatchKind::from_collection_path(req.uri().path());
        let contacts = self.contacts.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            if let (Some(kind), Ok(resp)) = (kind, &res)
                && resp.status().is_success()
            {
                contacts.record(kind);
            }
            res
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Watchers.
// ---------------------------------------------------------------------------------------------

/// The running watch tasks; dropping it stops them.
#[derive(Debug)]
pub struct WatchHandle {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WatchHandle {
    /// Stops every watcher (also done on drop).
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Starts one watcher per kind in [`WatchKind::ALL`] on the current tokio runtime, sending
/// deltas and status changes to `sender` (blocking sends happen on tokio's blocking pool).
///
/// Must be called from inside a tokio runtime with I/O and time enabled. Builds its own client
/// from `config` (it adds a layer that notices reconnections).
pub fn spawn_watchers(config: Config, sender: SyncSender<WatchEvent>) -> Result<WatchHandle> {
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow!("spawn_watchers must run inside a tokio runtime"))?;
    let _enter = rt.enter();
    let contacts = Arc::new(Contacts::default());
    let client = kube::client::ClientBuilder::try_from(config)
        .context("cannot build a Kubernetes client")?
        .with_layer(&ContactLayer(contacts.clone()))
        .build();
    let (tx, mut rx) = mpsc::channel::<WatchEvent>(1024);
    let forward = rt.spawn_blocking(move || {
        while let Some(ev) = rx.blocking_recv() {
            if sender.send(ev).is_err() {
                break;
            }
        }
    });
    let c = || (client.clone(), contacts.clone(), tx.clone());
    let tasks = vec![
        forward,
        rt.spawn(run_kind::<core::Namespace>(c())),
        rt.spawn(run_kind::<core::Node>(c())),
        rt.spawn(run_kind::<apps::ReplicaSet>(c())),
        rt.spawn(run_kind::<batch::Job>(c())),
        rt.spawn(run_kind::<core::Pod>(c())),
        rt.spawn(run_kind::<core::Service>(c())),
        rt.spawn(run_kind::<discovery::EndpointSlice>(c())),
        rt.spawn(run_kind::<networking::NetworkPolicy>(c())),
    ];
    Ok(WatchHandle { tasks })
}

/// What one watcher last reported, to send a status only when something changed.
#[derive(Debug, Clone, PartialEq)]
struct Reported {
    connected: bool,
    synced: bool,
    error: Option<String>,
    invalid: u64,
}

async fn run_kind<K: Watched>(
    (client, contacts, tx): (Client, Arc<Contacts>, mpsc::Sender<WatchEvent>),
) {
    let kind = K::KIND;
    let api: Api<K> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut tracker = KindTracker::new(kind);
    let mut last: Option<Reported> = None;
    let mut connected = false;
    let mut error: Option<String> = None;
    let mut last_event_ns: Option<TimestampNs> = None;
    let mut ok_at_failure = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            item = stream.next() => {
                let Some(item) = item else { return };
                match item {
                    Ok(ev) => {
                        let input = match ev {
                            Event::Apply(o) => TrackerInput::Apply(key_of(&o), o.convert()),
                            Event::Delete(o) => TrackerInput::Delete(key_of(&o)),
                            Event::Init => TrackerInput::Init,
                            Event::InitApply(o) => TrackerInput::InitApply(key_of(&o), o.convert()),
                            Event::InitDone => TrackerInput::InitDone,
                        };
                        for d in tracker.handle(input) {
                            if tx.send(WatchEvent::Delta(d)).await.is_err() {
                                return;
                            }
                        }
                        connected = true;
                        if tracker.synced() {
                            error = None;
                        }
                        last_event_ns = Some(now_ns());
                    }
                    Err(e) => {
                        let gone = matches!(&e, watcher::Error::WatchError(s) if s.code == 410);
                        error = Some(error_chain(&e));
                        if gone {
                            // The server answered: history expired, a relist follows at once.
                            last_event_ns = Some(now_ns());
                        } else {
                            connected = false;
                            ok_at_failure = contacts.count(kind);
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if !connected && contacts.count(kind) > ok_at_failure {
                    // kube-runtime's retry got an answer; it resumes without an event to show.
                    connected = true;
                    error = None;
                    last_event_ns = Some(now_ns());
                }
            }
        }
        let now = Reported {
            connected,
            synced: tracker.synced(),
            error: error.clone(),
            invalid: tracker.invalid_objects(),
        };
        // Before anything happened there is nothing to report.
        if last.as_ref() != Some(&now) && (connected || last_event_ns.is_some() || error.is_some())
        {
            let status = WatchStatus {
                kind,
                connected,
                synced: now.synced,
                at_ns: now_ns(),
                last_event_ns,
                error: error
                    .clone()
                    .or_else(|| tracker.last_invalid().map(str::to_string)),
                invalid_objects: now.invalid,
            };
            last = Some(now);
            if tx.send(WatchEvent::Status(status)).await.is_err() {
                return;
            }
        }
    }
}

/// Live watchers on a tokio runtime of their own, for callers that are not async (the TUI,
/// the engine thread). Dropping it stops the watchers and the runtime.
#[derive(Debug)]
pub struct LiveWatch {
    handle: Option<WatchHandle>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl LiveWatch {
    /// Resolves the configuration (errors here are configuration errors: no kubeconfig, unknown
    /// context), then starts the watchers. Connection problems are not errors: they arrive as
    /// [`WatchEvent::Status`] and the watchers keep retrying.
    pub fn start(opts: &KubeOptions, sender: SyncSender<WatchEvent>) -> Result<LiveWatch> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("podwire-kube")
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let config = runtime.block_on(config(opts))?;
        let handle = {
            let _enter = runtime.enter();
            spawn_watchers(config, sender)?
        };
        Ok(LiveWatch {
            handle: Some(handle),
            runtime: Some(runtime),
        })
    }
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots.
// ---------------------------------------------------------------------------------------------

/// Objects of one kind listed for a snapshot, and those left out.
struct Listed {
    kind: WatchKind,
    items: Vec<serde_json::Value>,
    left_out: Vec<String>,
}

async fn list_kind<K: Watched>(client: &Client) -> Result<Listed> {
    let kind = K::KIND;
    let api: Api<K> = Api::all(client.clone());
    let mut lp = ListParams::default().limit(500);
    let mut listed = Listed {
        kind,
        items: Vec::new(),
        left_out: Vec::new(),
    };
    loop {
        let list = api.list(&lp).await.map_err(|e| {
            let hint = match &e {
                kube::Error::Api(s) if s.code == 403 => {
                    " (RBAC: podwire needs get/list/watch on it; see docs/deploy/clusterrole.yaml)"
                }
                _ => "",
            };
            anyhow!("cannot list {kind}: {}{hint}", error_chain(&e))
        })?;
        for mut o in list.items {
            if let Err(e) = o.convert() {
                let (ns, name) = key_of(&o);
                let who = if ns.is_empty() {
                    name
                } else {
                    format!("{ns}/{name}")
                };
                listed
                    .left_out
                    .push(sanitize(&format!("{kind} {who}: {e}")));
                continue;
            }
            o.meta_mut().managed_fields = None;
            listed.items.push(
                serde_json::to_value(&o).with_context(|| format!("cannot serialize a {kind}"))?,
            );
        }
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    Ok(listed)
}

async fn list_all(client: &Client) -> Result<Vec<Listed>> {
    Ok(vec![
        list_kind::<core::Namespace>(client).await?,
        list_kind::<core::Node>(client).await?,
        list_kind::<apps::ReplicaSet>(client).await?,
        list_kind::<batch::Job>(client).await?,
        list_kind::<core::Pod>(client).await?,
        list_kind::<core::Service>(client).await?,
        list_kind::<discovery::EndpointSlice>(client).await?,
        list_kind::<networking::NetworkPolicy>(client).await?,
    ])
}

/// Renders objects as one YAML `kind: List` whose metadata carries the snapshot time
/// (annotation `podwire.io/snapshot-time`, RFC 3339). Pure.
pub fn render_snapshot(
    items: Vec<serde_json::Value>,
    taken: jiff::Timestamp,
    comment: &str,
) -> Result<String> {
    let time = taken.round(jiff::Unit::Millisecond).unwrap_or(taken);
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": { "annotations": { SNAPSHOT_TIME_KEY: time.to_string() } },
        "items": items,
    });
    let body = serde_yaml::to_string(&list).context("cannot render the snapshot as YAML")?;
    let mut out = String::new();
    for line in comment.lines() {
        out.push_str("# ");
        out.push_str(&sanitize(line));
        out.push('\n');
    }
    out.push_str(&format!("# {SNAPSHOT_TIME_KEY}: {time}\n"));
    out.push_str(&body);
    Ok(out)
}

/// Lists every watched kind and returns a snapshot file's text (see [`render_snapshot`]).
/// The snapshot time is when listing began. Objects podwire cannot read are left out (so the
/// file always loads); use [`take_snapshot_report`] to learn which.
pub async fn take_snapshot(client: &Client) -> Result<String> {
    Ok(take_snapshot_report(client).await?.0)
}

/// [`take_snapshot`] plus a summary: objects per kind and the objects left out (with why).
pub async fn take_snapshot_report(
    client: &Client,
) -> Result<(String, BTreeMap<WatchKind, usize>, Vec<String>)> {
    let taken = jiff::Timestamp::now();
    let listed = list_all(client).await?;
    let mut counts = BTreeMap::new();
    let mut left_out = Vec::new();
    let mut items = Vec::new();
    for l in listed {
        counts.insert(l.kind, l.items.len());
        left_out.extend(l.left_out);
        items.extend(l.items);
    }
    let comment = "Cluster snapshot written by `podwire snapshot`; its time is when listing began.";
    let text = render_snapshot(items, taken, comment)?;
    Ok((text, counts, left_out))
}

/// `podwire snapshot`: writes the cluster's objects to a file.
#[derive(Debug, Clone, clap::Args)]
pub struct SnapshotArgs {
    /// File to write (a YAML `kind: List`); `-` writes to standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
    /// Where the cluster is.
    #[command(flatten)]
    pub kube: KubeOptions,
}

/// Runs `podwire snapshot`; returns the exit code (0). Builds its own tokio runtime.
pub fn run_snapshot(args: &SnapshotArgs) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let (text, counts, left_out) = runtime.block_on(async {
        let client = client(&args.kube).await?;
        take_snapshot_report(&client).await
    })?;
    // Never write a file podwire itself could not read back.
    let check = crate::cluster::parse_snapshot(&text, "snapshot")
        .context("internal error: the snapshot does not load back")?;
    write_output(&args.output, &text)?;
    for l in &left_out {
        eprintln!("podwire: left out (cannot be read): {l}");
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    if args.output.as_os_str() != "-" {
        eprintln!(
            "podwire: wrote {} objects ({}) to {}",
            check.objects.len(),
            summary.join(", "),
            args.output.display()
        );
    }
    Ok(0)
}

fn write_output(path: &Path, text: &str) -> Result<()> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    // Write beside the target and rename, so a reader never sees half a snapshot.
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_snapshot_loads_back_with_its_time() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"containers": [{"name": "c"}]}, "status": {"podIP": "10.0.0.1"}});
        let taken: jiff::Timestamp = "2024-05-01T12:00:00.123456Z".parse().expect("time");
        let text =
            render_snapshot(vec![pod], taken, "line one\nevil \u{1b}[2J line").expect("render");
        assert!(text.starts_with("# line one\n# evil \\x1b[2J line\n# podwire.io/snapshot-time: 2024-05-01T12:00:00.123Z\n"), "{text}");
        let snap = crate::cluster::parse_snapshot(&text, "t").expect("loads back");
        assert_eq!(snap.objects.len(), 1);
        assert_eq!(snap.snapshot_time_ns, Some(1_714_564_800_123_000_000));
    }
}
