//! Live mode end to end: kube's real client and runtime watcher against a small API server in
//! this test that speaks the list/watch wire format (JSON lists with `metadata.resourceVersion`,
//! chunked watch streams of `{"type":…,"object":…}` lines, BOOKMARK events, and an ERROR event
//! with a `410 Expired` Status for a resourceVersion older than its history, as the real API
//! server sends). Fixture objects come from `captures/demo-cluster.yaml`.
//!
//! Checks: the initial list lands in `ClusterState` exactly as the snapshot loader reads the same
//! objects; ADDED/MODIFIED/DELETED arrive as deltas; a 410 forces a relist that removes objects
//! missing from the new list; a stopped server flips every watch to disconnected, staleness grows,
//! and the watchers recover when the server is back; only GET requests are ever made; and
//! `podwire snapshot --kubeconfig … --context …` writes a file that loads back.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use podwire::cluster::live::{Staleness, WatchEvent, WatchKind};
use podwire::cluster::watch::{KubeOptions, LiveWatch, spawn_watchers};
use podwire::cluster::{ClusterDelta, ClusterState, ObjectKind, load_snapshot};
use serde::Deserialize;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// A fake API server.
// ---------------------------------------------------------------------------------------------

/// (collection path, List kind, apiVersion) of every served collection.
fn collection_of(api_version: &str, kind: &str) -> Option<&'static str> {
    WatchKind::ALL.into_iter().find_map(|k| {
        let (av, kd) = api_kind(k);
        (av == api_version && kd == kind).then(|| leak(k.collection_path()))
    })
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn api_kind(k: WatchKind) -> (&'static str, &'static str) {
    match k {
        WatchKind::Namespaces => ("v1", "Namespace"),
        WatchKind::Nodes => ("v1", "Node"),
        WatchKind::ReplicaSets => ("apps/v1", "ReplicaSet"),
        WatchKind::Jobs => ("batch/v1", "Job"),
        WatchKind::Pods => ("v1", "Pod"),
        WatchKind::Services => ("v1", "Service"),
        WatchKind::EndpointSlices => ("discovery.k8s.io/v1", "EndpointSlice"),
        WatchKind::NetworkPolicies => ("networking.k8s.io/v1", "NetworkPolicy"),
    }
}

#[derive(Default)]
struct Store {
    /// Last resourceVersion handed out.
    rv: u64,
    /// Objects by collection path, then `ns/name`.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// Watch history: (rv, collection path, event type, object).
    log: Vec<(u64, String, &'static str, Value)>,
    /// Watches from a resourceVersion older than this get 410 Gone.
    compacted: u64,
    /// Bumped to end every open watch stream (clients then re-watch).
    kicks: u64,
    /// Every request line seen ("GET /api/v1/pods?…").
    requests: Vec<String>,
    bookmarks_sent: u64,
    /// ERROR events with a 410 Status sent.
    gone_sent: u64,
}

struct Shared {
    store: Mutex<Store>,
    changed: Condvar,
}

fn obj_key(o: &Value) -> String {
    let m = &o["metadata"];
    format!(
        "{}/{}",
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().unwrap_or("")
    )
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or replaces an object; `logged` = visible to watches (else only to lists).
    fn put(&self, mut obj: Value, logged: bool) {
        let path = collection_of(
            obj["apiVersion"].as_str().unwrap_or(""),
            obj["kind"].as_str().unwrap_or(""),
        )
        .unwrap_or_else(|| panic!("no collection serves {}", obj["kind"]));
        let mut s = self.lock();
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let key = obj_key(&obj);
        let coll = s.objects.entry(path.to_string()).or_default();
        let ty = if coll.insert(key, obj.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        if logged {
            let rv = s.rv;
            s.log.push((rv, path.to_string(), ty, obj));
        }
        drop(s);
        self.changed.notify_all();
    }

    fn delete(&self, path: &str, key: &str, logged: bool) {
        let mut s = self.lock();
        s.rv += 1;
        let rv = s.rv;
        let removed = s.objects.get_mut(path).and_then(|c| c.remove(key));
        if let (Some(mut obj), true) = (removed, logged) {
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            s.log.push((rv, path.to_string(), "DELETED", obj));
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Forgets the watch history (as etcd compaction does) and ends open watches.
    fn compact_and_kick(&self) {
        let mut s = self.lock();
        s.compacted = s.rv;
        s.log.clear();
        s.kicks += 1;
        drop(s);
        self.changed.notify_all();
    }
}

struct ApiServer {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl ApiServer {
    /// Serves `shared` on 127.0.0.1:`port` (0 = any free port).
    fn start(shared: Arc<Shared>, port: u16) -> ApiServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind test API server");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sh) = (stop.clone(), shared.clone());
        let accept = std::thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (st, sh) = (st.clone(), sh.clone());
                        conns.push(std::thread::spawn(move || serve(sock, &sh, &st)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(listener);
            sh.changed.notify_all();
            for c in conns {
                let _ = c.join();
            }
        });
        ApiServer {
            port,
            stop,
            accept: Some(accept),
            shared,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops listening and closes every connection (as a crashed API server would).
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn respond(sock: &mut TcpStream, code: u16, reason: &str, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        sock,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn chunk(sock: &mut TcpStream, data: &str) -> bool {
    write!(sock, "{:x}\r\n{data}\r\n", data.len()).is_ok() && sock.flush().is_ok()
}

fn serve(mut sock: TcpStream, shared: &Shared, stop: &AtomicBool) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match sock.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let request_line = request_line.trim_end().to_string();
    shared.lock().requests.push(request_line.clone());
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q: BTreeMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let Some(kind) = WatchKind::from_collection_path(path) else {
        return respond(
            &mut sock,
            404,
            "Not Found",
            &status_body(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    };
    if method != "GET" {
        return respond(
            &mut sock,
            405,
            "Method Not Allowed",
            &status_body(405, "MethodNotAllowed", "read-only test server"),
        );
    }
    let (api_version, k) = api_kind(kind);
    if q.get("watch").is_some_and(|w| *w == "true" || *w == "1") {
        return watch(&mut sock, shared, stop, path, &q, api_version, k);
    }
    let s = shared.lock();
    let items: Vec<Value> = s
        .objects
        .get(path)
        .map(|c| c.values().cloned().collect())
        .unwrap_or_default();
    let list = json!({"kind": format!("{k}List"), "apiVersion": api_version,
                      "metadata": {"resourceVersion": s.rv.to_string()}, "items": items});
    drop(s);
    respond(&mut sock, 200, "OK", &list);
}

fn watch(
    sock: &mut TcpStream,
    shared: &Shared,
    stop: &AtomicBool,
    path: &str,
    q: &BTreeMap<&str, &str>,
    api_version: &str,
    kind: &str,
) {
    let mut cursor: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks") == Some(&"true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(290u64);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if sock.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut s = shared.lock();
    if cursor == 0 {
        cursor = s.rv;
    }
    if cursor < s.compacted {
        let msg = format!("too old resource version: {cursor} ({})", s.compacted);
        s.gone_sent += 1;
        drop(s);
        let ev = json!({"type": "ERROR", "object": status_body(410, "Expired", &msg)});
        chunk(sock, &format!("{ev}\n"));
        let _ = sock.write_all(b"0\r\n\r\n");
        return;
    }
    let kicks = s.kicks;
    let mut last_bookmark = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            // Crash: drop the connection without ending the chunked body.
            return;
        }
        if s.kicks != kicks || Instant::now() >= deadline {
            drop(s);
            let _ = sock.write_all(b"0\r\n\r\n");
            return;
        }
        let mut out = String::new();
        for (rv, p, ty, obj) in &s.log {
            if *rv > cursor && p == path {
                out.push_str(&json!({"type": ty, "object": obj}).to_string());
                out.push('\n');
                cursor = *rv;
            }
        }
        if bookmarks && last_bookmark.elapsed() > Duration::from_millis(300) {
            cursor = cursor.max(s.rv);
            let bm = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                            "metadata": {"resourceVersion": cursor.to_string()}}});
            out.push_str(&bm.to_string());
            out.push('\n');
            s.bookmarks_sent += 1;
            last_bookmark = Instant::now();
        }
        if !out.is_empty() {
            drop(s);
            if !chunk(sock, &out) {
                return;
            }
            s = shared.lock();
            continue;
        }
        s = shared
            .changed
            .wait_timeout(s, Duration::from_millis(100))
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/demo-cluster.yaml")
}

/// Loads the demo cluster's objects of the watched kinds into the store.
fn load_fixtures(shared: &Shared) -> usize {
    let text = std::fs::read_to_string(fixture_path()).expect("read demo-cluster.yaml");
    let mut n = 0;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).expect("fixture YAML");
        if v.is_null() {
            continue;
        }
        let (av, k) = (
            v["apiVersion"].as_str().unwrap_or(""),
            v["kind"].as_str().unwrap_or(""),
        );
        if collection_of(av, k).is_some() {
            shared.put(v, true);
            n += 1;
        }
    }
    n
}

fn pod(name: &str, ip: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "shop", "labels": labels,
                        "creationTimestamp": "2026-11-20T09:00:00Z"},
           "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

// ---------------------------------------------------------------------------------------------
// The consumer side: what the engine thread would do.
// ---------------------------------------------------------------------------------------------

struct Consumer {
    rx: Receiver<WatchEvent>,
    state: ClusterState,
    staleness: Staleness,
    deltas: Vec<ClusterDelta>,
}

fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

impl Consumer {
    fn pump(&mut self, for_at_most: Duration) {
        if let Ok(ev) = self.rx.recv_timeout(for_at_most) {
            self.take(ev);
        }
        while let Ok(ev) = self.rx.try_recv() {
            self.take(ev);
        }
    }

    fn take(&mut self, ev: WatchEvent) {
        match ev {
            WatchEvent::Delta(d) => {
                self.deltas.push(d.clone());
                self.state.apply(d);
            }
            WatchEvent::Status(s) => self.staleness.update(&s),
        }
    }

    fn wait_until(&mut self, what: &str, mut cond: impl FnMut(&Consumer) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for: {what} (status: {})",
                self.staleness.describe(now_ns())
            );
            self.pump(Duration::from_millis(50));
        }
    }

    fn has_pod(&self, name: &str) -> bool {
        self.state.pod("shop", name).is_some()
    }
}

fn deleted_pod(d: &ClusterDelta, name: &str) -> bool {
    matches!(d, ClusterDelta::Delete { kind: ObjectKind::Pod, namespace, name: n } if namespace == "shop" && n == name)
}

#[test]
fn watchers_follow_lists_watches_relists_and_outages() {
    let shared = Shared::new();
    let fixtures = load_fixtures(&shared);
    assert!(fixtures > 20, "fixtures: {fixtures}");
    let mut server = ApiServer::start(shared.clone(), 0);
    let port = server.port;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (tx, rx) = sync_channel(64);
    let config = kube::Config::new(server.url().parse().expect("url"));
    let handle = {
        let _enter = runtime.enter();
        spawn_watchers(config, tx).expect("spawn watchers")
    };
    let mut c = Consumer {
        rx,
        state: ClusterState::new(),
        staleness: Staleness::new(),
        deltas: Vec::new(),
    };

    // 1. The initial lists land in the state, exactly as the snapshot loader reads them.
    c.wait_until("initial lists synced", |c| c.staleness.is_live());
    let expected = load_snapshot(&fixture_path())
        .expect("load demo snapshot")
        .into_state();
    assert_eq!(c.state.namespaces, expected.namespaces);
    assert_eq!(c.state.nodes, expected.nodes);
    assert_eq!(c.state.pods, expected.pods);
    assert_eq!(c.state.services, expected.services);
    assert_eq!(c.state.endpoint_slices, expected.endpoint_slices);
    assert_eq!(c.state.network_policies, expected.network_policies);
    assert_eq!(c.state.owners, expected.owners);
    assert_eq!(c.staleness.describe(now_ns()), "live");
    let frontend = c
        .state
        .pod("shop", "frontend-6c9f8d7b5d-x7k2p")
        .expect("frontend pod");
    assert_eq!(frontend.workload.name, "frontend");

    // 2. ADDED, MODIFIED and DELETED arrive as deltas.
    shared.put(pod("extra-a", "10.244.1.50", json!({"app": "a"})), true);
    c.wait_until("ADDED pod", |c| c.has_pod("extra-a"));
    shared.put(pod("extra-a", "10.244.1.50", json!({"app": "a2"})), true);
    c.wait_until("MODIFIED pod", |c| {
        c.state
            .pod("shop", "extra-a")
            .is_some_and(|p| p.labels.get("app").map(String::as_str) == Some("a2"))
    });
    shared.delete("/api/v1/pods", "shop/extra-a", true);
    c.wait_until("DELETED pod", |c| !c.has_pod("extra-a"));
    assert!(c.deltas.iter().any(|d| deleted_pod(d, "extra-a")));
    assert!(c.state.departed_pods.iter().any(|p| p.name == "extra-a"));
    // Bookmarks flowed and did not disturb anything.
    c.wait_until("a bookmark was sent", |_| shared.lock().bookmarks_sent > 0);

    // 3. 410 Gone: history is compacted while objects change unseen; the relist removes
    //    the vanished object and adds the new one.
    shared.put(pod("gone-b", "10.244.1.51", json!({"app": "b"})), true);
    c.wait_until("pod gone-b", |c| c.has_pod("gone-b"));
    shared.delete("/api/v1/pods", "shop/gone-b", false);
    shared.put(pod("new-c", "10.244.1.52", json!({"app": "c"})), false);
    assert!(c.has_pod("gone-b") && !c.has_pod("new-c"));
    let gets_before = shared.lock().requests.len();
    shared.compact_and_kick();
    c.wait_until("relist after 410", |c| {
        !c.has_pod("gone-b") && c.has_pod("new-c")
    });
    assert!(c.deltas.iter().any(|d| deleted_pod(d, "gone-b")));
    assert!(
        shared.lock().gone_sent > 0,
        "no watch was answered with 410"
    );
    let relisted = shared.lock().requests[gets_before..]
        .iter()
        .any(|r| r.starts_with("GET /api/v1/pods?") && !r.contains("watch=true"));
    assert!(relisted, "no pod relist after 410");
    c.wait_until("live again after relist", |c| c.staleness.is_live());

    // 4. The API server goes away: every watch reports it, staleness grows, state is kept.
    let pods_before = c.state.pods.len();
    server.stop();
    c.wait_until("all watches down", |c| {
        c.staleness.down().len() == WatchKind::ALL.len()
    });
    let first = c.staleness.stale_for_ns(now_ns()).expect("stale");
    std::thread::sleep(Duration::from_millis(1500));
    c.pump(Duration::from_millis(10));
    let later = c.staleness.stale_for_ns(now_ns()).expect("still stale");
    assert!(later >= first + 1_000_000_000, "{first} -> {later}");
    let line = c.staleness.describe(now_ns());
    let secs: u64 = line
        .strip_prefix("API server unreachable for ")
        .and_then(|r| r.split_once(" s, showing state as of "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(secs >= 1, "{line}");
    assert_eq!(c.state.pods.len(), pods_before, "state kept while down");

    // 5. It comes back on the same address: the watchers reconnect (no event needed to notice)
    //    and resume from their resourceVersion.
    let _server2 = ApiServer::start(shared.clone(), port);
    c.wait_until("reconnected", |c| c.staleness.is_live());
    assert_eq!(c.staleness.stale_for_ns(now_ns()), None);
    shared.put(pod("after-d", "10.244.1.53", json!({"app": "d"})), true);
    c.wait_until("event after reconnect", |c| c.has_pod("after-d"));

    // Read-only: nothing but GETs of the watched collections.
    let requests = shared.lock().requests.clone();
    assert!(
        requests.iter().all(|r| r.starts_with("GET /api")),
        "{requests:?}"
    );
    for k in WatchKind::ALL {
        let p = format!("GET {}?", k.collection_path());
        assert!(
            requests.iter().any(|r| r.starts_with(&p)),
            "never listed {k}"
        );
    }

    drop(handle);
    runtime.shutdown_timeout(Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// `podwire snapshot` through the real binary.
// ---------------------------------------------------------------------------------------------

fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("podwire-kube-test-{}", std::process::id()))
}

fn scratch(name: &str) -> PathBuf {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// A kubeconfig whose current context points nowhere, and context `test` at `url`.
fn kubeconfig(url: &str) -> PathBuf {
    // One file per server: tests run in parallel and each points at its own server.
    let name: String = url.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let path = scratch(&format!("kubeconfig-{name}.yaml"));
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: broken\n\
         clusters:\n- name: test\n  cluster: {{server: \"{url}\"}}\n\
         - name: nowhere\n  cluster: {{server: \"http://127.0.0.1:1\"}}\n\
         users:\n- name: u\n  user: {{token: test-token}}\n\
         contexts:\n- name: test\n  context: {{cluster: test, user: u, namespace: shop}}\n\
         - name: broken\n  context: {{cluster: nowhere, user: u}}\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

fn podwire(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podwire"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run podwire");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn snapshot_command_writes_a_file_that_loads_back() {
    let shared = Shared::new();
    load_fixtures(&shared);
    // One object podwire cannot read: left out, reported, and the file still loads.
    shared.put(pod("broken-ip", "not-an-ip", json!({})), true);
    let server = ApiServer::start(shared.clone(), 0);
    let kc = kubeconfig(&server.url());
    let out = scratch("snap.yaml");
    let (out_s, kc_s) = (out.to_string_lossy(), kc.to_string_lossy());

    let before = jiff::Timestamp::now();
    let (code, stderr) = podwire(&[
        "snapshot",
        "-o",
        &out_s,
        "--kubeconfig",
        &kc_s,
        "--context",
        "test",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("left out") && stderr.contains("shop/broken-ip"),
        "{stderr}"
    );
    assert!(stderr.contains("wrote"), "{stderr}");

    let snap = load_snapshot(&out).expect("snapshot loads back");
    let t = snap.snapshot_time_ns.expect("snapshot time");
    let before_ns = i64::try_from(before.as_nanosecond()).unwrap_or(0);
    assert!(t >= before_ns - 1_000_000_000 && t <= now_ns(), "{t}");
    let live = snap.into_state();
    let expected = load_snapshot(&fixture_path())
        .expect("fixture")
        .into_state();
    assert_eq!(live.pods, expected.pods);
    assert_eq!(live.services, expected.services);
    assert_eq!(live.network_policies, expected.network_policies);
    assert_eq!(live.endpoint_slices, expected.endpoint_slices);
    assert_eq!(live.nodes, expected.nodes);
    assert_eq!(live.namespaces, expected.namespaces);
    assert_eq!(live.owners, expected.owners);
    let text = std::fs::read_to_string(&out).expect("read snapshot");
    assert!(!text.contains("managedFields"));
    assert!(shared.lock().requests.iter().all(|r| r.starts_with("GET ")));

    // Live mode through the same kubeconfig and context, on LiveWatch's own runtime.
    let (tx, rx) = sync_channel(64);
    let opts = KubeOptions {
        kubeconfig: Some(kc.clone()),
        context: Some("test".into()),
    };
    let live = LiveWatch::start(&opts, tx).expect("start live watch");
    let mut c = Consumer {
        rx,
        state: ClusterState::new(),
        staleness: Staleness::new(),
        deltas: Vec::new(),
    };
    c.wait_until("live via kubeconfig", |c| c.staleness.is_live());
    assert_eq!(c.state.pods, expected.pods);
    assert_eq!(c.staleness.invalid_objects(), 1);
    assert_eq!(
        c.staleness.describe(now_ns()),
        "live (1 object skipped as invalid)"
    );
    drop(live);

    // The kubeconfig's current context points at a closed port: a clear error, exit 1.
    let (code, stderr) = podwire(&["snapshot", "-o", &out_s, "--kubeconfig", &kc_s]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot list"), "{stderr}");
    // An unknown context is a configuration error.
    let (code, stderr) = podwire(&[
        "snapshot",
        "-o",
        &out_s,
        "--kubeconfig",
        &kc_s,
        "--context",
        "nope",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
    let _ = std::fs::remove_dir_all(scratch_dir());
}

#[test]
fn clusterrole_grants_read_only_on_exactly_the_watched_kinds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy/clusterrole.yaml");
    let text = std::fs::read_to_string(path).expect("read clusterrole.yaml");
    let mut granted = std::collections::BTreeSet::new();
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).expect("YAML");
        kinds.push(v["kind"].as_str().unwrap_or("").to_string());
        if v["kind"] != "ClusterRole" {
            continue;
        }
        for rule in v["rules"].as_array().expect("rules") {
            let verbs: Vec<&str> = rule["verbs"]
                .as_array()
                .expect("verbs")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(verbs, ["get", "list", "watch"], "{rule}");
            for g in rule["apiGroups"].as_array().expect("groups") {
                for r in rule["resources"].as_array().expect("resources") {
                    granted.insert((
                        g.as_str().unwrap_or("?").to_string(),
                        r.as_str().unwrap_or("?").to_string(),
                    ));
                }
            }
        }
    }
    let watched: std::collections::BTreeSet<_> = WatchKind::ALL
        .into_iter()
        .map(|k| (k.group().to_string(), k.plural().to_string()))
        .collect();
    assert_eq!(granted, watched);
    for k in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"] {
        assert!(kinds.iter().any(|x| x == k), "missing {k}");
    }
}

/// `podwire capture --kube` follows the cluster live while it captures: it starts the
/// watchers against the in-test API server and its capture health reports the cluster state
/// as live. Needs root (an AF_PACKET socket on loopback).
#[test]
fn live_capture_follows_the_api_server_with_kube() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("live_capture_follows_the_api_server_with_kube: skipped: not root");
        return;
    }
    let shared = Shared::new();
    load_fixtures(&shared);
    let server = ApiServer::start(shared.clone(), 0);
    let kc = kubeconfig(&server.url());
    let kc_s = kc.to_string_lossy();
    let (code, stderr) = podwire(&[
        "capture",
        "--headless",
        "--format",
        "jsonl",
        "--interface",
        "lo",
        "--duration",
        "6",
        "--kube",
        "--kubeconfig",
        &kc_s,
        "--context",
        "test",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("cluster: live"),
        "health names the live cluster state: {stderr}"
    );
}
