//! Exporting flows' packets from the TUI source's packet ring: the demo capture is replayed
//! through a spawned [`Source`] (the TUI's engine thread), one known flow is exported with
//! [`Control::Export`], and the file is checked against `podwire flows` and tshark.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podwire::capture::ring::RingCaps;
use podwire::summary::FlowSummary;
use podwire::tui::source::{
    Control, ExportFlow, ExportOutcome, ExportRequest, ExportTarget, Snapshot, Source,
    SourceHandle, Speed,
};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/demo.pcapng")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podwire-export-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

fn have_tshark() -> bool {
    Command::new("tshark")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Replays the demo capture on a spawned source (as fast as possible) and returns the handle
/// with the final snapshot; the source keeps serving exports.
fn replayed(caps: RingCaps) -> (SourceHandle, Arc<Snapshot>) {
    let source = Source::replay(&demo(), None, Speed::Max)
        .expect("demo capture")
        .with_packet_ring(caps);
    let handle = source.spawn().expect("source thread");
    let start = Instant::now();
    loop {
        match handle.snapshots.recv_timeout(Duration::from_secs(60)) {
            Ok(s) if s.progress.done => return (handle, s),
            Ok(_) => {}
            Err(e) => panic!("no final snapshot: {e}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "replay too slow"
        );
    }
}

fn redis_flow(snapshot: &Snapshot) -> FlowSummary {
    snapshot
        .rows
        .iter()
        .find(|f| f.src.port == 41379 && f.dst.port == 6379)
        .expect("the frontend's redis connection")
        .clone()
}

fn export(handle: &SourceHandle, flow: &FlowSummary, path: &Path) -> ExportOutcome {
    handle.send(Control::Export(Box::new(ExportRequest {
        target: ExportTarget::Path(path.to_path_buf()),
        flows: vec![ExportFlow {
            serial: flow.serial,
            packets: flow.packets(),
        }],
        selection: podwire::tui::app::describe_flow(flow),
        flow_lines: vec![podwire::tui::app::describe_flow(flow)],
    })));
    handle
        .exports
        .recv_timeout(Duration::from_secs(30))
        .expect("the source answers the export")
}

/// Packets of the flow with these ports according to `podwire flows --format jsonl`.
fn packets_per_podwire_flows(sport: u16, dport: u16) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_podwire"))
        .args(["flows", "--format", "jsonl"])
        .arg(demo())
        .output()
        .expect("run podwire flows");
    let text = String::from_utf8_lossy(&out.stdout);
    let flows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|f: &serde_json::Value| f["src_port"] == sport && f["dst_port"] == dport)
        .collect();
    assert_eq!(flows.len(), 1, "{text}");
    flows[0]["packets_fwd"].as_u64().unwrap() + flows[0]["packets_rev"].as_u64().unwrap()
}

/// (source port, destination port, interface name) of every TCP frame tshark reads.
fn tshark_frames(path: &Path) -> Vec<(u16, u16, String)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-Y",
            "tcp",
            "-T",
            "fields",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "frame.interface_name",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark cannot read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].parse().expect("tcp source port"),
                f[1].parse().expect("tcp destination port"),
                f.get(2).unwrap_or(&"").to_string(),
            )
        })
        .collect()
}

#[test]
fn exported_flow_holds_exactly_its_packets() {
    let (handle, snapshot) = replayed(RingCaps::default());
    let redis = redis_flow(&snapshot);
    let expected = packets_per_podwire_flows(41379, 6379);
    assert_eq!(expected, 16);
    let path = scratch("redis.pcapng");
    let outcome = export(&handle, &redis, &path);
    // The source keeps serving after the replay ended: a second export works too.
    let again = export(&handle, &redis, &scratch("redis-again.pcapng"));
    handle.stop();
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.path.as_deref(), Some(path.as_path()));
    assert_eq!(outcome.frames_written, expected);
    assert_eq!(outcome.frames_missing, 0);
    assert_eq!(outcome.ring.evicted_frames, 0);
    assert_eq!(again.frames_written, expected);

    let bytes = std::fs::read(&path).expect("export file");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("podwire export: flow #") && text.contains("10.244.1.10:41379"),
        "the comment names the flow"
    );
    assert!(text.contains("source: replay of demo.pcapng"));
    assert!(text.contains("0 frames of these flows were no longer in the packet ring"));

    if !have_tshark() {
        println!("tshark check skipped: tshark is not installed (apt-get install tshark)");
        return;
    }
    let frames = tshark_frames(&path);
    assert_eq!(frames.len() as u64, expected);
    for (sport, dport, iface) in &frames {
        assert!(
            matches!((sport, dport), (41379, 6379) | (6379, 41379)),
            "a frame of another flow: {sport} → {dport}"
        );
        assert!(
            iface == "pw-br0" || iface == "pwv-frontend",
            "interface name from the capture: {iface:?}"
        );
    }
    // The capture has each packet twice (bridge and veth); the export has the counted copy.
    let original = tshark_frames(&demo())
        .into_iter()
        .filter(|(s, d, _)| *s == 41379 || *d == 41379)
        .count() as u64;
    assert_eq!(original, 2 * expected);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(scratch("redis-again.pcapng"));
}

#[test]
fn a_small_ring_exports_what_it_still_holds_and_counts_the_rest() {
    // Room for a few frames only: most of the capture is evicted by the time it ends.
    let caps = RingCaps {
        bytes: 4096,
        frames: 1_000_000,
    };
    let (handle, snapshot) = replayed(caps);
    let redis = redis_flow(&snapshot);
    let path = scratch("redis-small-ring.pcapng");
    let outcome = export(&handle, &redis, &path);
    // Every flow (what `:export` without a filter asks for): the ring's frames all belong to
    // some flow, and the frames the flows counted are either written or missing.
    handle.send(Control::Export(Box::new(ExportRequest {
        target: ExportTarget::Path(scratch("all-small-ring.pcapng")),
        flows: snapshot
            .rows
            .iter()
            .map(|f| ExportFlow {
                serial: f.serial,
                packets: f.packets(),
            })
            .collect(),
        selection: "all flows".into(),
        flow_lines: Vec::new(),
    })));
    let all = handle
        .exports
        .recv_timeout(Duration::from_secs(30))
        .expect("the source answers the export");
    handle.stop();
    assert_eq!(all.error, None);
    assert!(all.frames_written > 0);
    assert_eq!(all.frames_written, all.ring.frames as u64);
    let counted: u64 = snapshot.rows.iter().map(FlowSummary::packets).sum();
    assert_eq!(all.frames_written + all.frames_missing, counted);
    assert_eq!(
        all.frames_missing,
        all.ring.evicted_frames + all.ring.too_large,
        "nothing but evictions goes missing"
    );

    assert_eq!(outcome.error, None);
    assert!(outcome.ring.evicted_frames > 0);
    assert!(outcome.ring.bytes <= 4096);
    assert!(outcome.frames_missing > 0, "{outcome:?}");
    assert_eq!(
        outcome.frames_written + outcome.frames_missing,
        redis.packets()
    );
    let text = String::from_utf8_lossy(&std::fs::read(&path).expect("export file")).into_owned();
    assert!(
        text.contains(&format!(
            "{} frames of these flows were no longer in the packet ring",
            outcome.frames_missing
        )),
        "the comment says how many frames were evicted"
    );
    if have_tshark() {
        assert_eq!(tshark_frames(&path).len() as u64, outcome.frames_written);
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(scratch("all-small-ring.pcapng"));
}
