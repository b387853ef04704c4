//! Live capture on real network namespaces: a "node" namespace with a bridge and "pods" on
//! veth pairs, real servers and clients, and the real `podwire capture` binary.
//!
//! Needs root (creates namespaces) and iproute2 + python3; uses openssl, curl, redis-server
//! and tshark when installed. Every test uses its own namespace names (from the pid) and its
//! own addresses inside 10.244.9.0/24 (only in namespaces it creates), cleans up in `Drop`
//! even when it fails, and bounds every wait. Without root a test prints "skipped: not root".

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const PODWIRE: &str = env!("CARGO_BIN_EXE_podwire");

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Root with `ip` and `python3`; otherwise prints why the test is skipped.
fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("{test}: skipped: not root (creates network namespaces)");
        return false;
    }
    for tool in ["ip", "python3"] {
        if !have(tool) {
            println!("{test}: skipped: {tool} is not installed");
            return false;
        }
    }
    true
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces, veths and processes of one test; everything is removed on drop.
struct Node {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Node {
    /// A node namespace with bridge `br0` (10.244.9.1/24).
    fn new(tag: &str) -> Node {
        let prefix = format!("pw{}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{prefix}-files"));
        let _ = std::fs::create_dir_all(&dir);
        let mut node = Node {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        };
        let n = node.ns("node");
        run(&["ip", "netns", "add", &n]);
        node.namespaces.push(n.clone());
        run(&["ip", "-n", &n, "link", "set", "lo", "up"]);
        run(&["ip", "-n", &n, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &n, "addr", "add", "10.244.9.1/24", "dev", "br0"]);
        run(&["ip", "-n", &n, "link", "set", "br0", "up"]);
        node
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A pod namespace with `eth0` = `ip`/24, its host side `veth<name>` on the bridge.
    fn pod(&mut self, name: &str, ip: &str) -> String {
        let pod = self.ns(name);
        let node = self.ns("node");
        run(&["ip", "netns", "add", &pod]);
        self.namespaces.push(pod.clone());
        let host = format!("veth{name}");
        run(&[
            "ip", "link", "add", &host, "netns", &node, "type", "veth", "peer", "name", "eth0",
            "netns", &pod,
        ]);
        run(&[
            "ip", "-n", &node, "link", "set", &host, "master", "br0", "up",
        ]);
        run(&[
            "ip",
            "-n",
            &pod,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &pod, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", &pod, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            &pod,
            "route",
            "add",
            "default",
            "via",
            "10.244.9.1",
        ]);
        pod
    }

    /// Starts a long-running process inside `ns` (killed on drop).
    fn spawn_in(&mut self, ns: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        self.children.push(child);
    }

    /// Waits until a TCP port accepts connections from inside `from_ns` (bounded).
    fn wait_port(&self, from_ns: &str, ip: &str, port: u16) {
        let script = format!(
            "import socket,time\nfor _ in range(100):\n  try:\n    socket.create_connection(('{ip}',{port}),0.2).close(); break\n  except OSError: time.sleep(0.1)\nelse: raise SystemExit(1)"
        );
        let ok = python_in(from_ns, &script).0;
        assert!(ok, "{ip}:{port} never listened");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespaces removes their veths and the bridge.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a python script inside a namespace (bounded to 20 s); returns (success, stdout).
fn python_in(ns: &str, script: &str) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["20", "ip", "netns", "exec", ns, "python3", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// One HTTP/1.0 GET from a bound source port.
fn http_get(ns: &str, sport: u16, ip: &str, port: u16) {
    let script = format!(
        "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0',{sport})); s.settimeout(5)\ns.connect(('{ip}',{port})); s.sendall(b'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')\nwhile s.recv(65536): pass\ns.close()"
    );
    let (ok, _) = python_in(ns, &script);
    assert!(ok, "HTTP GET from port {sport} failed");
}

/// `count` UDP datagrams from a bound port to an echo server, each answered.
fn udp_exchange(ns: &str, sport: u16, ip: &str, port: u16, count: u32) {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0',{sport})); s.settimeout(3)\nfor i in range({count}):\n  s.sendto(b'ping %d' % i, ('{ip}',{port})); s.recvfrom(2048)\n"
    );
    let (ok, _) = python_in(ns, &script);
    assert!(ok, "UDP exchange from port {sport} failed");
}

/// A plain HTTP server (python's http.server module does a reverse DNS lookup at start-up,
/// which takes 10 s in a namespace without DNS).
const HTTP_SERVER: &str = "import http.server,socketserver,sys\nclass S(socketserver.ThreadingMixIn, socketserver.TCPServer):\n  allow_reuse_address=True; daemon_threads=True\nS((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler).serve_forever()";

const UDP_ECHO: &str = "import socket,sys\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))\nwhile True:\n  d,a=s.recvfrom(2048); s.sendto(d,a)";

/// A running `podwire capture`.
struct Capture {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Capture {
    /// Starts podwire with `args` (inside `ns` if given) and waits for "capturing on".
    fn start(ns: Option<&str>, args: &[&str]) -> Capture {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, PODWIRE]);
                c
            }
            None => Command::new(PODWIRE),
        };
        let mut child = cmd
            .arg("capture")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("podwire: {e}"));
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut capture = Capture {
            child,
            stderr_lines: rx,
            stderr: Vec::new(),
        };
        capture.wait_for("podwire: capturing on", Duration::from_secs(10));
        capture
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(l) = self.stderr.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while Instant::now() < deadline {
            match self.stderr_lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "podwire never said {needle:?}; stderr so far:\n{}",
            self.stderr.join("\n")
        );
    }

    /// Waits (bounded) for the run to end; returns (final flow records, update records, stderr).
    fn finish(mut self) -> (Vec<Value>, Vec<Value>, String) {
        let mut out = String::new();
        let mut stdout = self
            .child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("no stdout"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = stdout.read_to_string(&mut out);
            let _ = tx.send(out);
        });
        let out = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(out) => out,
            Err(_) => {
                let _ = self.child.kill();
                panic!("podwire did not stop in time");
            }
        };
        let status = self.child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr.push(line);
        }
        let stderr = self.stderr.join("\n");
        assert!(status.success(), "podwire failed ({status}):\n{stderr}");
        let mut finals = Vec::new();
        let mut updates = Vec::new();
        for line in out.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
            if v["update"] == Value::Bool(true) {
                updates.push(v);
            } else {
                finals.push(v);
            }
        }
        (finals, updates, stderr)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Final records with this client port, as (proto, dst, dst_port, record).
fn records_from_port(records: &[Value], src: &str, sport: u16) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["src"] == src && r["src_port"] == sport)
        .cloned()
        .collect()
}

fn exactly_one(
    records: &[Value],
    src: &str,
    sport: u16,
    proto: &str,
    dst: &str,
    dport: u16,
) -> Value {
    let found = records_from_port(records, src, sport);
    assert_eq!(
        found.len(),
        1,
        "{proto} {src}:{sport} -> {dst}:{dport} should be reported exactly once, got {found:#?}"
    );
    let r = found[0].clone();
    assert_eq!(r["proto"], proto, "{r}");
    assert_eq!(r["dst"], dst, "{r}");
    assert_eq!(r["dst_port"], dport, "{r}");
    r
}

/// No 5-tuple is reported twice as a final record.
fn no_duplicate_records(records: &[Value]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in records {
        if r["proto"] != "tcp" && r["proto"] != "udp" {
            continue;
        }
        let key = format!(
            "{} {}:{} {}:{}",
            r["proto"], r["src"], r["src_port"], r["dst"], r["dst_port"]
        );
        *seen.entry(key).or_default() += 1;
    }
    for (k, n) in seen {
        assert_eq!(n, 1, "{k} reported {n} times");
    }
}

/// Packets of the TCP connection with client port `sport` on interface `iface` (tshark).
fn tshark_packets(file: &Path, iface: &str, sport: u16) -> Option<u64> {
    if !have("tshark") {
        return None;
    }
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-Y",
            &format!("frame.interface_name == \"{iface}\" && tcp.port == {sport}"),
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).lines().count() as u64)
}

fn tshark_reads(file: &Path) {
    if !have("tshark") {
        println!("tshark check skipped: tshark is not installed (apt-get install tshark)");
        return;
    }
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-q", "-z", "io,stat,0"])
        .output()
        .unwrap_or_else(|e| panic!("tshark: {e}"));
    assert!(
        out.status.success(),
        "tshark cannot read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bridge_and_veths_each_connection_once() {
    if !can_run("bridge_and_veths_each_connection_once") {
        return;
    }
    let mut node = Node::new("a");
    let client = node.pod("c", "10.244.9.11");
    let web = node.pod("w", "10.244.9.12");
    let tls = node.pod("t", "10.244.9.13");
    node.spawn_in(&web, &["python3", "-c", HTTP_SERVER, "10.244.9.12", "8080"]);
    node.spawn_in(&web, &["python3", "-c", UDP_ECHO, "10.244.9.12", "9999"]);
    let have_tls = have("openssl");
    if have_tls {
        let dir = node.dir.clone();
        run(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=web.test",
            "-keyout",
            &dir.join("key.pem").display().to_string(),
            "-out",
            &dir.join("cert.pem").display().to_string(),
        ]);
        node.spawn_in(
            &tls,
            &[
                "openssl",
                "s_server",
                "-quiet",
                "-accept",
                "10.244.9.13:8443",
                "-www",
                "-key",
                &dir.join("key.pem").display().to_string(),
                "-cert",
                &dir.join("cert.pem").display().to_string(),
            ],
        );
    }
    let have_redis = have("redis-server");
    if have_redis {
        node.spawn_in(
            &tls,
            &[
                "redis-server",
                "--bind",
                "10.244.9.13",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
        );
    }
    node.wait_port(&client, "10.244.9.12", 8080);
    if have_tls {
        node.wait_port(&client, "10.244.9.13", 8443);
    }
    if have_redis {
        node.wait_port(&client, "10.244.9.13", 6379);
    }

    let pcap = node.dir.join("node.pcapng");
    let pcap_arg = pcap.display().to_string();
    let node_ns = node.ns("node");
    let capture = Capture::start(
        Some(&node_ns),
        &[
            "--headless",
            "--format",
            "jsonl",
            "--interface",
            "br0",
            "--interface",
            "vethc",
            "--interface",
            "vethw",
            "--interface",
            "vetht",
            "--duration",
            "6",
            "--write",
            &pcap_arg,
        ],
    );

    for sport in [41001, 41002, 41003] {
        http_get(&client, sport, "10.244.9.12", 8080);
    }
    udp_exchange(&client, 42001, "10.244.9.12", 9999, 5);
    if have_tls {
        let script = "import socket,ssl\nc=ssl.create_default_context(); c.check_hostname=False; c.verify_mode=ssl.CERT_NONE\ns=socket.socket(); s.bind(('0.0.0.0',41443)); s.settimeout(5); s.connect(('10.244.9.13',8443))\nt=c.wrap_socket(s, server_hostname='web.test'); t.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\nwhile t.recv(65536): pass\n";
        assert!(python_in(&client, script).0, "TLS client failed");
    }
    if have_redis {
        let script = "import socket\ns=socket.socket(); s.bind(('0.0.0.0',41379)); s.settimeout(5); s.connect(('10.244.9.13',6379))\ns.sendall(b'PING\\r\\nQUIT\\r\\n')\nwhile s.recv(4096): pass\n";
        assert!(python_in(&client, script).0, "redis client failed");
    }

    let (records, _updates, stderr) = capture.finish();
    no_duplicate_records(&records);
    for sport in [41001u16, 41002, 41003] {
        let r = exactly_one(&records, "10.244.9.11", sport, "tcp", "10.244.9.12", 8080);
        assert_eq!(r["tcp"]["handshake"], true, "{r}");
        let seen_on = r["interfaces"].as_array().map_or(0, Vec::len);
        assert!(
            seen_on >= 2,
            "seen on several interfaces, de-duplicated: {r}"
        );
        let packets =
            r["packets_fwd"].as_u64().unwrap_or(0) + r["packets_rev"].as_u64().unwrap_or(0);
        // The server's veth sees every packet of the connection exactly once.
        if let Some(truth) = tshark_packets(&pcap, "vethw", sport) {
            assert_eq!(
                packets, truth,
                "packet count of port {sport} vs tshark on vethw: {r}"
            );
        } else {
            assert!(packets >= 6, "{r}");
        }
    }
    let udp = exactly_one(&records, "10.244.9.11", 42001, "udp", "10.244.9.12", 9999);
    assert_eq!(udp["packets_fwd"], 5, "{udp}");
    assert_eq!(udp["packets_rev"], 5, "{udp}");
    if have_tls {
        exactly_one(&records, "10.244.9.11", 41443, "tcp", "10.244.9.13", 8443);
    }
    if have_redis {
        exactly_one(&records, "10.244.9.11", 41379, "tcp", "10.244.9.13", 6379);
    }
    assert!(stderr.contains(" 0 dropped in podwire's queue"), "{stderr}");
    assert!(stderr.contains("duplicates removed"), "{stderr}");
    tshark_reads(&pcap);
}

#[test]
fn inside_one_pod_namespace() {
    if !can_run("inside_one_pod_namespace") {
        return;
    }
    let mut node = Node::new("b");
    let client = node.pod("c", "10.244.9.21");
    let web = node.pod("w", "10.244.9.22");
    node.spawn_in(&web, &["python3", "-c", HTTP_SERVER, "10.244.9.22", "8080"]);
    node.spawn_in(&web, &["python3", "-c", UDP_ECHO, "10.244.9.22", "9999"]);
    node.wait_port(&client, "10.244.9.22", 8080);

    // podwire runs in the host namespace and enters the pod's namespace itself.
    let netns = format!("/var/run/netns/{web}");
    let capture = Capture::start(
        None,
        &[
            "--headless",
            "--format",
            "jsonl",
            "--netns",
            &netns,
            "--interface",
            "eth0",
            "--filter",
            "tcp and port 8080",
            "--duration",
            "4",
        ],
    );
    http_get(&client, 43001, "10.244.9.22", 8080);
    http_get(&client, 43002, "10.244.9.22", 8080);
    udp_exchange(&client, 43003, "10.244.9.22", 9999, 3);
    let (records, _, stderr) = capture.finish();
    no_duplicate_records(&records);
    for sport in [43001, 43002] {
        let r = exactly_one(&records, "10.244.9.21", sport, "tcp", "10.244.9.22", 8080);
        assert_eq!(r["tcp"]["handshake"], true, "{r}");
    }
    assert!(
        records.iter().all(|r| r["proto"] == "tcp"),
        "the filter keeps only TCP port 8080: {records:#?}"
    );
    assert!(
        !stderr.contains(" 0 filtered out"),
        "the UDP exchange was filtered: {stderr}"
    );
}

#[test]
fn pod_namespace_found_from_snapshot() {
    if !can_run("pod_namespace_found_from_snapshot") {
        return;
    }
    let mut node = Node::new("d");
    let client = node.pod("c", "10.244.9.41");
    let web = node.pod("w", "10.244.9.42");
    node.spawn_in(&web, &["python3", "-c", HTTP_SERVER, "10.244.9.42", "8080"]);
    node.wait_port(&client, "10.244.9.42", 8080);
    let snapshot = node.dir.join("cluster.yaml");
    std::fs::write(
        &snapshot,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n  labels: {app: web}\nspec:\n  nodeName: test-node\n  containers: [{name: web, image: python}]\nstatus:\n  phase: Running\n  podIP: 10.244.9.42\n  podIPs: [{ip: 10.244.9.42}]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let snap = snapshot.display().to_string();
    let capture = Capture::start(
        None,
        &[
            "--headless",
            "--format",
            "jsonl",
            "--pod",
            "shop/web",
            "--cluster",
            &snap,
            "--duration",
            "4",
            // The flow filter (the TUI's language) keeps the flow into shop/web from
            // source port 44001 only.
            "--flow-filter",
            "dst.ns:shop src.port:44001",
        ],
    );
    http_get(&client, 44001, "10.244.9.42", 8080);
    http_get(&client, 44002, "10.244.9.42", 8080);
    let (records, _, stderr) = capture.finish();
    assert!(
        stderr.contains("pod shop/web") && stderr.contains("has 10.244.9.42 as a local address"),
        "says how it found the namespace: {stderr}"
    );
    exactly_one(&records, "10.244.9.41", 44001, "tcp", "10.244.9.42", 8080);
    assert_eq!(
        records.len(),
        1,
        "the flow filter drops the rest: {records:#?}"
    );
}

#[test]
fn all_follows_pods_created_while_capturing() {
    if !can_run("all_follows_pods_created_while_capturing") {
        return;
    }
    let mut node = Node::new("e");
    let client = node.pod("c", "10.244.9.31");
    let gone = node.pod("g", "10.244.9.33");
    let node_ns = node.ns("node");
    let capture = Capture::start(
        Some(&node_ns),
        &[
            "--headless",
            "--format",
            "jsonl",
            "--all",
            "--duration",
            "8",
        ],
    );
    let mut capture = capture;
    // A pod that appears after the capture started.
    let web = node.pod("n", "10.244.9.32");
    node.spawn_in(&web, &["python3", "-c", HTTP_SERVER, "10.244.9.32", "8080"]);
    capture.wait_for("capturing on vethn", Duration::from_secs(5));
    node.wait_port(&client, "10.244.9.32", 8080);
    http_get(&client, 45001, "10.244.9.32", 8080);
    // A pod that disappears.
    run(&["ip", "-n", &node_ns, "link", "del", "vethg"]);
    capture.wait_for("stopped capturing on vethg", Duration::from_secs(5));
    let _ = gone;
    let (records, _, stderr) = capture.finish();
    no_duplicate_records(&records);
    let r = exactly_one(&records, "10.244.9.31", 45001, "tcp", "10.244.9.32", 8080);
    assert!(r["interfaces"].as_array().map_or(0, Vec::len) >= 2, "{r}");
    assert!(stderr.contains("vethn"), "{stderr}");
}

#[test]
fn pcapng_writer_output_reads_in_tshark() {
    use podwire::capture::pcapng_writer::{RotatingPcapng, RotationConfig};
    let dir = std::env::temp_dir().join(format!("pw{}pcapng", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let mut sink = RotatingPcapng::create(
        RotationConfig {
            path: dir.join("cap.pcapng"),
            max_bytes: Some(2000),
            max_ns: None,
        },
        vec!["podwire cluster identities: pod -> IPs\nshop/web 10.244.9.12".into()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let eth = sink
        .add_interface("veth0", 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = sink
        .add_interface("tunl0", 101)
        .unwrap_or_else(|e| panic!("{e}"));
    // Ethernet + IPv4 + UDP, and the same IP packet on a raw-IP interface.
    let mut ip = vec![
        0x45, 0, 0, 33, 0, 1, 0, 0, 64, 17, 0, 0, 10, 244, 9, 11, 10, 244, 9, 12,
    ];
    ip.extend_from_slice(&[
        0xa0, 0x01, 0x27, 0x0f, 0, 13, 0, 0, b'h', b'e', b'l', b'l', b'o',
    ]);
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
    frame.extend_from_slice(&ip);
    for i in 0..40u64 {
        let ts = 1_700_000_000_000_000_000 + i * 1_000_000;
        sink.packet(eth, ts, frame.len() as u32, &frame)
            .unwrap_or_else(|e| panic!("{e}"));
        sink.packet(raw, ts + 1000, ip.len() as u32, &ip)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let files = sink
        .finish(1_700_000_001_000_000_000)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(files.len() > 1, "rotated by size: {files:?}");
    // podwire reads its own files back with both interfaces.
    for f in &files {
        let out = Command::new(PODWIRE)
            .args(["stats", "--format", "json"])
            .arg(f)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tshark_reads(f);
    }
    if have("tshark") {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&files[0])
            .args(["-T", "fields", "-e", "frame.interface_name", "-e", "ip.src"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("veth0\t10.244.9.11"), "{text}");
        assert!(text.contains("tunl0\t10.244.9.11"), "{text}");
        let info = Command::new("capinfos").arg(&files[0]).output();
        if let Ok(info) = info {
            let text = String::from_utf8_lossy(&info.stdout);
            assert!(text.contains("shop/web 10.244.9.12"), "{text}");
        }
    }
}

#[test]
fn loopback_counts_each_packet_once() {
    if !can_run("loopback_counts_each_packet_once") {
        return;
    }
    // On loopback every packet leaves and arrives on the same device: count it once.
    let mut node = Node::new("f");
    let ns = node.ns("node");
    node.spawn_in(&ns, &["python3", "-c", UDP_ECHO, "127.0.0.1", "9999"]);
    let netns = format!("/var/run/netns/{ns}");
    let capture = Capture::start(
        None,
        &[
            "--headless",
            "--format",
            "jsonl",
            "--netns",
            &netns,
            "--interface",
            "lo",
            "--duration",
            "3",
        ],
    );
    // Wait (bounded) until the echo server's socket is bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "ss", "-Hlun", "sport = :9999"])
            .output();
        if out.is_ok_and(|o| !o.stdout.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    udp_exchange(&ns, 46001, "127.0.0.1", 9999, 3);
    let (records, _, _) = capture.finish();
    let r = exactly_one(&records, "127.0.0.1", 46001, "udp", "127.0.0.1", 9999);
    assert_eq!(r["packets_fwd"], 3, "{r}");
    assert_eq!(r["packets_rev"], 3, "{r}");
}

/// `podwire capture` on a terminal opens the TUI on the live traffic: run in tmux on a
/// pod's host-side veth, it shows the HTTP flow made meanwhile, stops after `--duration`,
/// exports that flow's packets from its ring with `e` — each packet once, although both
/// pods' veths carry it (checked with tshark against the `--write` file) — quits with `q` and
/// restores the terminal (then prints the capture health on stderr).
#[test]
fn capture_on_a_terminal_opens_the_tui() {
    let test = "capture_on_a_terminal_opens_the_tui";
    if !can_run(test) {
        return;
    }
    if !have("tmux") {
        println!("{test}: skipped: tmux is not installed");
        return;
    }
    let mut node = Node::new("t");
    // Addresses of its own: tests run in parallel, and `pod_namespace_found_from_snapshot`
    // resolves `--pod` by finding the one namespace that holds its pod's address.
    let client = node.pod("c", "10.244.9.51");
    let web = node.pod("w", "10.244.9.52");
    node.spawn_in(&web, &["python3", "-c", HTTP_SERVER, "10.244.9.52", "8080"]);
    node.wait_port(&client, "10.244.9.52", 8080);

    let session = format!("podwire-live-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux runs");
    struct Session(String);
    impl Drop for Session {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let _guard = Session(session.clone());
    let screen = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    let wait_for = |what: &str, secs: u64| -> String {
        let start = Instant::now();
        loop {
            let s = screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // A scratch working directory: `e` writes its export there.
    let workdir = std::env::temp_dir().join(format!("podwire-live-tui-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("scratch dir");
    let health = workdir.join("health.jsonl");
    let written =
        std::env::temp_dir().join(format!("podwire-live-tui-{}.pcapng", std::process::id()));
    let command = format!(
        "cd {} && NO_COLOR=1 {PODWIRE} capture --netns /var/run/netns/{} --interface vethc \
         --interface vethw --duration 8 --health-file {} --write {}; echo PODWIRE-EXIT-$?; \
         sleep 60",
        workdir.display(),
        node.ns("node"),
        health.display(),
        written.display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "140",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    wait_for("1 Flows", 15);
    http_get(&client, 44001, "10.244.9.52", 8080);
    // The row appears with the SYN; the app column fills in once the request is dissected, so
    // wait for the whole line rather than the first sighting (the machine may be busy).
    let start = Instant::now();
    let shown = loop {
        let s = screen();
        if s.lines()
            .any(|l| l.contains("10.244.9.52") && l.contains("8080") && l.contains("http"))
        {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no http row for 10.244.9.52:8080; screen:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(shown.contains("8080"), "{shown}");
    // --duration ends the capture; the TUI keeps the final picture until the user quits.
    wait_for("done", 25);
    tmux(&["send-keys", "-t", &session, "6"]);
    // The status bar names the interface too: wait for the Stats view's own health line.
    let stats = wait_for("kernel drops", 10);
    assert!(stats.contains("vethw"), "{stats}");
    // Export the HTTP connection's packets from the packet ring.
    tmux(&["send-keys", "-t", &session, "1"]);
    tmux(&["send-keys", "-t", &session, "/"]);
    tmux(&["send-keys", "-t", &session, "-l", "port:44001"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for("filter port:44001", 10);
    tmux(&["send-keys", "-t", &session, "e"]);
    let exported = wait_for("none missing", 15);
    assert!(exported.contains("of 1 flow"), "{exported}");
    let export = std::fs::read_dir(&workdir)
        .expect("scratch dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pcapng"))
        .expect("an export file");
    let name = export.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        name, "podwire-export-tcp-10.244.9.51-44001-10.244.9.52-8080-1.pcapng",
        "named after the flow"
    );
    let shown: u64 = exported
        .split("exported ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("frame count in the status line");
    assert!(shown >= 5, "handshake, request, response: {shown}");
    if let (Some(on_c), Some(on_w)) = (
        tshark_packets(&export, "vethc", 44001),
        tshark_packets(&export, "vethw", 44001),
    ) {
        assert_eq!(on_c + on_w, shown, "tshark reads every exported frame");
        // --write has every copy: the same packets on both veths; the export has one each.
        assert_eq!(tshark_packets(&written, "vethc", 44001), Some(shown));
        assert_eq!(tshark_packets(&written, "vethw", 44001), Some(shown));
    }
    tmux(&["send-keys", "-t", &session, "q"]);
    let after = wait_for("PODWIRE-EXIT-", 15);
    assert!(after.contains("PODWIRE-EXIT-0"), "{after}");
    // The alternate screen was left, and the capture health came after it.
    assert!(!after.contains("1 Flows"), "{after}");
    assert!(after.contains("frames received"), "{after}");
    // With the TUI, capture health reports the packet ring too.
    let last = std::fs::read_to_string(&health).expect("health file");
    let last: Value =
        serde_json::from_str(last.lines().last().expect("a health record")).expect("health JSON");
    assert!(
        last["packet_ring"]["frames"].as_u64().unwrap_or(0) >= 5,
        "{last}"
    );
    assert_eq!(last["packet_ring"]["evicted_frames"], 0, "{last}");
    let _ = std::fs::remove_dir_all(&workdir);
    let _ = std::fs::remove_file(&written);
}
