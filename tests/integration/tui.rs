//! TUI tests: render snapshots of every view (TestBackend + insta) from the demo capture read
//! in-process, update tests driven by key sequences, and an end-to-end run of the real binary
//! in tmux.

use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use podwire::tui::app::{App, Effect, Mode, Msg, View, update};
use podwire::tui::config::Config;
use podwire::tui::source::{
    CHUNK_ROWS, Control, ExportFlow, ExportOutcome, ExportRequest, ExportTarget, FlowRows,
    Snapshot, SourceKind, Speed, snapshot_of_capture,
};
use podwire::tui::{render, viewmodel};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn demo() -> Arc<Snapshot> {
    static DEMO: OnceLock<Arc<Snapshot>> = OnceLock::new();
    DEMO.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        snapshot_of_capture(
            &root.join("captures/demo.pcapng"),
            Some(&root.join("captures/demo-cluster.yaml")),
        )
        .expect("the demo capture reads")
    })
    .clone()
}

fn app(w: u16, h: u16) -> App {
    App::new(Config::defaults(true), demo(), (w, h))
}

fn draw(app: &App) -> String {
    let (w, h) = app.size;
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    let screen = viewmodel::screen(app);
    let areas = app.layout();
    terminal
        .draw(|f| render::draw(f, &screen, &areas, &app.config.palette))
        .expect("draw");
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn typed(app: &mut App, text: &str) -> Vec<Effect> {
    let mut effects = Vec::new();
    for c in text.chars() {
        let modifiers = if c.is_ascii_uppercase() {
            KeyModifiers::SHIFT
        } else {
            KeyModifiers::NONE
        };
        effects.extend(update(
            app,
            Msg::Key(KeyEvent::new(KeyCode::Char(c), modifiers)),
        ));
    }
    effects
}

#[test]
fn demo_snapshot_is_complete_and_enriched() {
    let s = demo();
    assert!(s.progress.done);
    assert!(s.rows.len() >= 20, "{} rows", s.rows.len());
    assert_eq!(s.live_rows, 0);
    assert!(s.rows.iter().all(|f| f.enrichment.is_some()));
    assert!(s.cluster.is_some());
}

#[test]
fn render_every_view() {
    for (w, h) in [(80u16, 24u16), (140, 40)] {
        let mut a = app(w, h);
        for (i, view) in View::ALL.iter().enumerate() {
            typed(&mut a, &(i + 1).to_string());
            assert_eq!(a.view, *view);
            insta::assert_snapshot!(
                format!("view_{}_{w}x{h}", view.title().to_lowercase()),
                draw(&a)
            );
        }
    }
}

#[test]
fn render_help_detail_filter_and_wide() {
    for (w, h) in [(80u16, 24u16), (140, 40)] {
        let mut a = app(w, h);
        typed(&mut a, "?");
        insta::assert_snapshot!(format!("help_{w}x{h}"), draw(&a));
        key(&mut a, KeyCode::Esc);
        assert_eq!(a.mode, Mode::Normal);
        typed(&mut a, "/app:tls");
        insta::assert_snapshot!(format!("filter_typing_{w}x{h}"), draw(&a));
        key(&mut a, KeyCode::Enter);
        key(&mut a, KeyCode::Enter);
        insta::assert_snapshot!(format!("detail_tls_{w}x{h}"), draw(&a));
        key(&mut a, KeyCode::Esc);
        key(&mut a, KeyCode::Esc);
        typed(&mut a, "/finding:credentials");
        key(&mut a, KeyCode::Enter);
        key(&mut a, KeyCode::Enter);
        insta::assert_snapshot!(format!("detail_credentials_{w}x{h}"), draw(&a));
    }
    let mut a = app(80, 24);
    typed(&mut a, "wd");
    insta::assert_snapshot!("flows_wide_ips_80x24", draw(&a));
    typed(&mut a, "/app:(");
    insta::assert_snapshot!("filter_invalid_80x24", draw(&a));
}

#[test]
fn help_is_fully_reachable_at_80x24() {
    let mut a = app(80, 24);
    typed(&mut a, "?");
    // The top is the `help_80x24` snapshot; this one shows the last lines.
    let lines: Vec<String> = viewmodel::help(&a)
        .iter()
        .map(|l| l.iter().map(|c| c.text.as_str()).collect::<String>())
        .collect();
    assert!(
        lines.len() > 20 - 4,
        "help fits without scrolling: the test proves nothing"
    );
    let mut seen = String::new();
    for _ in 0..lines.len() {
        seen.push_str(&draw(&a));
        typed(&mut a, "j");
        assert_eq!(a.mode, Mode::Help, "j scrolls, it does not close");
    }
    insta::assert_snapshot!("help_80x24_bottom", draw(&a));
    for line in &lines {
        assert!(
            seen.contains(line.trim_end()),
            "help line not shown in full at 80x24: {line:?}"
        );
    }
    // G jumps to the end, g back to the top; PgDn pages; other keys close.
    typed(&mut a, "g");
    assert_eq!(a.help_scroll, 0);
    key(&mut a, KeyCode::PageDown);
    assert!(a.help_scroll > 0);
    typed(&mut a, "G");
    let last = a.help_scroll;
    typed(&mut a, "j");
    assert_eq!(a.help_scroll, last, "scrolling stops at the last line");
    typed(&mut a, "x");
    assert_eq!(a.mode, Mode::Normal);
    // Services has its own help, also reachable.
    typed(&mut a, "2?G");
    assert!(draw(&a).contains("Enter again: its flows"));
}

#[test]
fn services_enter_opens_the_edge_and_then_its_flows() {
    let mut a = app(80, 24);
    typed(&mut a, "2");
    let edge = a.derived.edges[0].clone();
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.edge_detail, Some((edge.src.clone(), edge.dst.clone())));
    insta::assert_snapshot!("services_edge_80x24", draw(&a));
    let screen = draw(&a);
    assert!(
        screen.contains(&format!("flows         {}", edge.flows)),
        "{screen}"
    );
    // j/k scroll the pane, Esc returns to the table with the same edge selected.
    typed(&mut a, "j");
    assert_eq!(a.detail_scroll, 1);
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.edge_detail, None);
    assert!(draw(&a).contains("SOURCE"));
    assert_eq!(a.nav[View::Services.index()].selected, 0);
    // Enter twice: the Flows view, filtered to the edge's flows, the filter in sight.
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.view, View::Flows);
    assert_eq!(a.filter.text, edge.filter);
    assert!(!edge.filter.is_empty());
    let shown = draw(&a);
    assert!(shown.contains("filter src.ns:"), "{shown}");
    // Exactly the edge's flows are listed: the filter names the source group with `src.`
    // and the destination group with `dst.`, so flows the other way are not.
    let rows = &a.snapshot.rows;
    let group = |id: Option<&podwire::cluster::identity::Identity>, ip| {
        viewmodel::group_of(id, ip, viewmodel::Group::Workload)
    };
    let of_edge = rows
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            let e = f.enrichment.as_ref();
            !f.outer
                && group(e.map(|e| &e.src_identity), f.src.addr) == edge.src
                && group(e.map(|e| &e.dst_identity), f.dst.addr) == edge.dst
        })
        .map(|(i, _)| i as u32)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(of_edge.len() as u64, edge.flows);
    let listed = a
        .derived
        .flow_index
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(listed, of_edge);
    // Grouped by namespace, the edge names namespaces.
    typed(&mut a, "2");
    key(&mut a, KeyCode::Esc);
    typed(&mut a, "n");
    assert_eq!(a.group, viewmodel::Group::Namespace);
    key(&mut a, KeyCode::Enter);
    let ns_edge = viewmodel::open_edge(&a).expect("edge pane").clone();
    assert!(!ns_edge.src.contains('/'), "{}", ns_edge.src);
}

#[test]
fn views_switch_with_tab_numbers_and_commands() {
    let mut a = app(80, 24);
    key(&mut a, KeyCode::Tab);
    assert_eq!(a.view, View::Services);
    key(&mut a, KeyCode::BackTab);
    key(&mut a, KeyCode::BackTab);
    assert_eq!(a.view, View::Stats);
    typed(&mut a, "3");
    assert_eq!(a.view, View::Findings);
    typed(&mut a, ":pol");
    key(&mut a, KeyCode::Tab);
    assert_eq!(
        a.mode,
        Mode::Command {
            input: "policies".into()
        }
    );
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.view, View::Policies);
    typed(&mut a, ":ns sh");
    key(&mut a, KeyCode::Tab);
    assert_eq!(
        a.mode,
        Mode::Command {
            input: "ns shop".into()
        }
    );
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.filter.text, "ns:\"shop\"");
    typed(&mut a, ":bogus");
    key(&mut a, KeyCode::Enter);
    assert!(
        a.status
            .as_deref()
            .unwrap_or("")
            .contains("unknown command")
    );
    typed(&mut a, ":save /tmp/x");
    assert_eq!(
        key(&mut a, KeyCode::Enter),
        vec![Effect::Save("/tmp/x".into())]
    );
}

#[test]
fn navigation_sort_and_detail() {
    let mut a = app(80, 24);
    let total = a.derived.flow_index.len();
    assert!(total > a.page(), "the demo has more flows than one page");
    typed(&mut a, "jjj");
    assert_eq!(a.nav[0].selected, 3);
    typed(&mut a, "k");
    assert_eq!(a.nav[0].selected, 2);
    typed(&mut a, "G");
    assert_eq!(a.nav[0].selected, total - 1);
    assert!(a.nav[0].offset > 0);
    typed(&mut a, "g");
    assert_eq!(a.nav[0], Default::default());
    key(&mut a, KeyCode::PageDown);
    assert_eq!(a.nav[0].selected, a.page());
    // Sort by bytes, descending: the first row is the largest.
    while a.flow_sort.column != podwire::tui::app::FlowCol::Bytes {
        typed(&mut a, "s");
    }
    typed(&mut a, "S");
    let snapshot = a.snapshot.clone();
    let rows = &snapshot.rows;
    let bytes: Vec<u64> = a
        .derived
        .flow_index
        .iter()
        .map(|&i| rows.get(i as usize).map_or(0, |f| f.bytes()))
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");
    typed(&mut a, "g");
    key(&mut a, KeyCode::Enter);
    let serial = a.detail.expect("detail open");
    assert_eq!(
        Some(serial),
        rows.get(a.derived.flow_index[0] as usize).map(|f| f.serial)
    );
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.detail, None);
}

/// Esc then `e` typed quickly over SSH or tmux arrive as one Alt-e: read as the two keys.
#[test]
fn an_unbound_alt_key_is_esc_then_the_key() {
    let mut a = app(120, 40);
    typed(&mut a, "/app:redis");
    key(&mut a, KeyCode::Enter);
    key(&mut a, KeyCode::Enter);
    assert!(a.detail.is_some(), "detail open");
    let effects = update(
        &mut a,
        Msg::Key(KeyEvent::new(KeyCode::Char('e'), KeyModifiers::ALT)),
    );
    assert_eq!(a.detail, None, "the Esc closed the detail");
    assert_eq!(export_request(&effects).flows.len(), 1, "the `e` exported");
}

#[test]
fn filter_validates_live_and_esc_clears() {
    let mut a = app(80, 24);
    let all = a.derived.flow_index.len();
    typed(&mut a, "/app:tls");
    assert!(matches!(&a.mode, Mode::Filter { error: None, .. }));
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.mode, Mode::Normal);
    let tls = a.derived.flow_index.len();
    assert!(tls >= 1 && tls < all);
    assert!(a.derived.flow_index.iter().all(|&i| {
        a.snapshot
            .rows
            .get(i as usize)
            .is_some_and(|f| f.app.app.name() == "tls")
    }));
    typed(&mut a, "/");
    typed(&mut a, " (");
    assert!(matches!(&a.mode, Mode::Filter { error: Some(_), .. }));
    key(&mut a, KeyCode::Enter);
    assert!(
        matches!(&a.mode, Mode::Filter { .. }),
        "an invalid filter is not applied"
    );
    assert_eq!(a.filter.text.trim(), "app:tls");
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.mode, Mode::Normal);
    assert!(a.filter.is_empty());
    assert_eq!(a.derived.flow_index.len(), all);
}

#[test]
fn every_view_filters() {
    let mut a = app(120, 40);
    typed(&mut a, "/ns:monitoring");
    key(&mut a, KeyCode::Enter);
    typed(&mut a, "2");
    assert!(!a.derived.edges.is_empty());
    assert!(
        a.derived
            .edges
            .iter()
            .all(|e| e.src.starts_with("monitoring/") || e.dst.starts_with("monitoring/"))
    );
    typed(&mut a, "n");
    assert!(
        a.derived
            .edges
            .iter()
            .all(|e| e.src == "monitoring" || e.dst == "monitoring")
    );
    typed(&mut a, "3");
    // Only findings that name a flow of the filtered set (ns:monitoring).
    let monitoring: std::collections::BTreeSet<u64> = a
        .derived
        .flow_index
        .iter()
        .filter_map(|&i| a.snapshot.rows.get(i as usize).map(|f| f.serial))
        .collect();
    assert!(!a.derived.findings.is_empty());
    assert!(a.derived.findings.len() < a.snapshot.findings.findings.len());
    assert!(a.derived.findings.iter().all(|&i| {
        a.snapshot.findings.findings[i as usize]
            .flows
            .iter()
            .any(|s| monitoring.contains(s))
    }));
    // Enter on a finding jumps to its flows.
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.view, View::Flows);
    assert!(a.filter.text.starts_with("finding:"));
}

#[test]
fn replay_controls_and_quit() {
    let mut a = app(80, 24);
    assert_eq!(a.kind, SourceKind::Replay);
    assert_eq!(
        typed(&mut a, " "),
        vec![Effect::Control(Control::Pause(true))]
    );
    assert_eq!(
        typed(&mut a, " "),
        vec![Effect::Control(Control::Pause(false))]
    );
    assert_eq!(
        typed(&mut a, "+"),
        vec![Effect::Control(Control::Speed(Speed::Max))]
    );
    assert_eq!(
        typed(&mut a, "-"),
        vec![Effect::Control(Control::Speed(Speed::X10))]
    );
    assert_eq!(typed(&mut a, "q"), vec![Effect::Quit]);
}

#[test]
fn live_quit_asks_and_pause_freezes() {
    let mut live = Snapshot::empty("eth0", SourceKind::Live);
    live.seq = 1;
    let mut a = App::new(Config::defaults(true), Arc::new(live), (80, 24));
    assert_eq!(typed(&mut a, "q"), vec![]);
    assert_eq!(a.mode, Mode::ConfirmQuit);
    assert!(draw(&a).contains("Quit the live capture? (y/n)"));
    assert_eq!(typed(&mut a, "n"), vec![]);
    assert_eq!(a.mode, Mode::Normal);
    // Freeze: new snapshots are held back until unfrozen.
    typed(&mut a, " ");
    let mut next = Snapshot::empty("eth0", SourceKind::Live);
    next.seq = 2;
    update(&mut a, Msg::Snapshot(Arc::new(next)));
    assert_eq!(a.snapshot.seq, 1);
    typed(&mut a, " ");
    assert_eq!(a.snapshot.seq, 2);
    typed(&mut a, "q");
    assert_eq!(typed(&mut a, "y"), vec![Effect::Quit]);
}

#[test]
fn mouse_scroll_and_click() {
    let mut a = app(80, 24);
    let scroll = |kind| {
        Msg::Mouse(MouseEvent {
            kind,
            column: 10,
            row: 5,
            modifiers: KeyModifiers::NONE,
        })
    };
    update(&mut a, scroll(MouseEventKind::ScrollDown));
    assert_eq!(a.nav[0].selected, 3);
    update(&mut a, scroll(MouseEventKind::ScrollUp));
    assert_eq!(a.nav[0].selected, 0);
    let areas = a.layout();
    update(&mut a, scroll(MouseEventKind::Down(MouseButton::Left)));
    assert_eq!(Some(a.nav[0].selected), areas.row_at(5));
    // Clicking the selected row opens it; clicking a tab switches view.
    update(&mut a, scroll(MouseEventKind::Down(MouseButton::Left)));
    assert!(a.detail.is_some());
    let (_, _, x, _) = viewmodel::tab_spans()[2].clone();
    update(
        &mut a,
        Msg::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: x + 1,
            row: 0,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(a.view, View::Findings);
}

#[test]
fn wire_strings_are_sanitized() {
    let mut f = podwire::tui::synthetic::flow(0);
    f.app.sni = Some("evil\u{1b}[2J\u{202e}.com".into());
    f.app.app = podwire::dissect::App::Tls;
    let lines = viewmodel::flow_detail(&f, &Default::default());
    let text: String = lines.iter().flatten().map(|c| c.text.as_str()).collect();
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{202e}'),
        "{text}"
    );
    assert!(text.contains("evil\\x1b[2J\\u{202e}.com"));
}

/// The export request carried by the effects of one key or command.
fn export_request(effects: &[Effect]) -> &ExportRequest {
    match effects {
        [Effect::Control(Control::Export(request))] => request,
        other => panic!("expected one export request, got {other:?}"),
    }
}

#[test]
fn export_key_and_command_ask_the_source_for_the_flows() {
    let mut a = app(120, 40);
    // Outside the Flows view `e` only explains itself.
    key(&mut a, KeyCode::Char('6'));
    assert!(key(&mut a, KeyCode::Char('e')).is_empty());
    assert!(a.status.as_deref().unwrap_or("").contains("Flows view"));
    key(&mut a, KeyCode::Char('1'));

    typed(&mut a, "/app:redis");
    key(&mut a, KeyCode::Enter);
    let rows = &a.snapshot.rows;
    let selected = rows
        .get(a.derived.flow_index[a.nav[View::Flows.index()].selected] as usize)
        .expect("a selected flow")
        .clone();
    assert_eq!((selected.src.port, selected.dst.port), (41379, 6379));
    let effects = key(&mut a, KeyCode::Char('e'));
    let request = export_request(&effects);
    assert_eq!(
        request.flows,
        vec![ExportFlow {
            serial: selected.serial,
            packets: 16
        }]
    );
    assert_eq!(
        request.target,
        ExportTarget::Numbered {
            stem: "podwire-export-tcp-10.244.1.10-41379-10.244.1.12-6379".into()
        }
    );
    assert!(
        request
            .selection
            .contains("tcp 10.244.1.10:41379 → 10.244.1.12:6379 redis"),
        "{}",
        request.selection
    );
    assert!(
        request.selection.contains("shop/carts-redis-0"),
        "{}",
        request.selection
    );
    assert!(
        a.status
            .as_deref()
            .unwrap_or("")
            .starts_with("exporting flow")
    );

    // With the detail pane open, `e` exports the flow shown.
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.detail, Some(selected.serial));
    let effects = key(&mut a, KeyCode::Char('e'));
    assert_eq!(export_request(&effects).flows[0].serial, selected.serial);
    key(&mut a, KeyCode::Esc);

    // `:export PATH`: every flow the filter shows.
    typed(&mut a, "/");
    key(&mut a, KeyCode::Esc);
    typed(&mut a, "/port:6379");
    key(&mut a, KeyCode::Enter);
    let shown: Vec<u64> = a
        .derived
        .flow_index
        .iter()
        .map(|&i| a.snapshot.rows.get(i as usize).unwrap().serial)
        .collect();
    assert_eq!(
        shown.len(),
        2,
        "the redis connection and the port scan's probe"
    );
    let effects = typed(&mut a, ":export /tmp/out.pcapng");
    assert!(effects.is_empty());
    let effects = key(&mut a, KeyCode::Enter);
    let request = export_request(&effects);
    assert_eq!(request.target, ExportTarget::Path("/tmp/out.pcapng".into()));
    let serials: Vec<u64> = request.flows.iter().map(|f| f.serial).collect();
    assert_eq!(serials, shown);
    assert!(
        request
            .selection
            .contains("2 flows matching the filter port:6379")
    );
    assert_eq!(request.flow_lines.len(), 2);
    // Without a path: a numbered name in the current directory.
    typed(&mut a, ":export");
    let effects = key(&mut a, KeyCode::Enter);
    assert_eq!(
        export_request(&effects).target,
        ExportTarget::Numbered {
            stem: "podwire-export-filtered".into()
        }
    );

    // The source's answer lands in the status line.
    let outcome = ExportOutcome {
        path: Some("/tmp/out.pcapng".into()),
        flows: 2,
        frames_written: 20,
        frames_missing: 2,
        ring: Default::default(),
        error: None,
    };
    update(&mut a, Msg::Exported(outcome.clone()));
    let status = a.status.clone().unwrap_or_default();
    assert!(
        status.starts_with("exported 20 frames of 2 flows, 2 frames missing"),
        "{status}"
    );
    assert!(status.ends_with("→ /tmp/out.pcapng"), "{status}");
    assert!(status.contains("2 frames missing"), "{status}");
    update(
        &mut a,
        Msg::Exported(ExportOutcome {
            error: Some("creating /nope/x: No such file or directory\x1b[2J".into()),
            ..outcome
        }),
    );
    let status = a.status.clone().unwrap_or_default();
    assert!(
        status.starts_with("export failed: creating /nope/x"),
        "{status}"
    );
    assert!(!status.contains('\x1b'), "{status}");
}

/// Runs `podwire demo --tui` in a real terminal (tmux), drives it with keys and checks the
/// screen and that the terminal is restored after quitting.
#[test]
fn end_to_end_in_tmux() {
    if Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        println!("skipping end_to_end_in_tmux: tmux is not installed");
        return;
    }
    let session = format!("podwire-e2e-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_podwire");
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().expect("tmux runs");
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    // Polls the screen until `done` holds for it; on timeout kills the session and fails with
    // the last screen.
    let wait_until = |done: &dyn Fn(&str) -> bool, what: &str, timeout: u64| -> String {
        let start = Instant::now();
        loop {
            let screen = capture();
            if done(&screen) {
                return screen;
            }
            if start.elapsed() > Duration::from_secs(timeout) {
                let _ = Command::new("tmux")
                    .args(["kill-session", "-t", &session])
                    .output();
                panic!("timed out waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let wait_for = |text: &str, timeout: u64| -> String {
        wait_until(
            &|screen| screen.contains(text),
            &format!("{text:?}"),
            timeout,
        )
    };
    let wait_for_absence = |text: &str, timeout: u64| {
        wait_until(
            &|screen| !screen.contains(text),
            &format!("{text:?} to go"),
            timeout,
        );
    };
    // Run in a scratch directory: `e` writes its export file into the current directory.
    let workdir = std::env::temp_dir().join(format!("podwire-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).expect("scratch dir");
    let command = format!(
        "cd {} && NO_COLOR=1 {bin} demo --tui; echo PODWIRE-EXIT-$?; sleep 60",
        workdir.display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    wait_for("1 Flows", 30);
    wait_for("■ done", 60);
    tmux(&["send-keys", "-t", &session, "2"]);
    let services = wait_for("neighbours", 10);
    assert!(services.contains("shop/frontend"), "{services}");
    tmux(&["send-keys", "-t", &session, "1"]);
    tmux(&["send-keys", "-t", &session, "/"]);
    tmux(&["send-keys", "-t", &session, "-l", "app:tls"]);
    wait_for("✓ valid", 10);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let filtered = wait_for("filter app:tls", 10);
    assert!(filtered.contains("payment"), "{filtered}");
    assert!(!filtered.contains("coredns"), "{filtered}");
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let detail = wait_for("handshake RTT", 10);
    assert!(detail.contains("TLS") || detail.contains("tls"), "{detail}");
    assert!(detail.contains("NetworkPolicy"), "{detail}");
    tmux(&["send-keys", "-t", &session, "Escape"]);
    // Wait for the pane to close before the next key: an ESC and an `e` that reach the app in
    // one read are one Alt-e key to the terminal parser, and the pane would stay open.
    wait_for_absence("handshake RTT", 10);
    // `e` exports the selected TLS flow's packets from the ring, without blocking the UI.
    tmux(&["send-keys", "-t", &session, "e"]);
    let exported = wait_for("none missing", 15);
    assert!(
        exported.contains("exported 18 frames of 1 flow, none missing"),
        "{exported}"
    );
    let files: Vec<std::fs::DirEntry> = std::fs::read_dir(&workdir)
        .expect("scratch dir")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(files.len(), 1, "one export file");
    let name = files[0].file_name().to_string_lossy().into_owned();
    assert_eq!(
        name,
        "podwire-export-tcp-10.244.1.10-41443-10.244.1.13-8443-1.pcapng"
    );
    assert!(files[0].metadata().expect("metadata").len() > 18 * 60);
    tmux(&["send-keys", "-t", &session, "q"]);
    let after = wait_for("PODWIRE-EXIT-", 15);
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(after.contains("PODWIRE-EXIT-0"), "{after}");
    // The alternate screen was left: the TUI's tabs are gone from the restored screen.
    assert!(!after.contains("1 Flows"), "{after}");
    let _ = std::fs::remove_dir_all(&workdir);
}

/// The TUI's Findings view and `podwire findings` run the same rules engine on the same
/// flows: same ids, kinds, severities, titles and flows, in the same order.
#[test]
fn findings_view_agrees_with_podwire_findings() {
    use clap::Parser;
    use podwire::cli::Tuning;
    use podwire::findings::RulesConfig;
    use podwire::findings::commands::{findings_of, summarize_capture};

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        tuning: Tuning,
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let captured = summarize_capture(
        &root.join("captures/demo.pcapng"),
        Some(&root.join("captures/demo-cluster.yaml")),
        &T::parse_from(["t"]).tuning,
    )
    .expect("demo reads");
    let cli = findings_of(&captured, &RulesConfig::default(), None).findings;
    let tui = &demo().findings.findings;
    assert!(!cli.is_empty());
    let key = |f: &podwire::findings::Finding| {
        (
            f.id.clone(),
            f.kind,
            f.severity,
            f.title.clone(),
            f.flows.clone(),
        )
    };
    assert_eq!(
        tui.iter().map(key).collect::<Vec<_>>(),
        cli.iter().map(key).collect::<Vec<_>>()
    );
    // Per-flow counts come from the same lists.
    let s = demo();
    for f in &cli {
        for serial in &f.flows {
            assert!(s.findings.count(*serial) >= 1);
        }
    }
}

/// The cursor stays on its flow across snapshots that append, evict and turn live rows
/// into finished ones; a flow that left the rows leaves the cursor where it was.
#[test]
fn cursor_follows_its_flow_across_snapshots() {
    use podwire::summary::FlowSummary;
    let rows: Vec<FlowSummary> = podwire::tui::synthetic::flows(5 * CHUNK_ROWS as u64);
    let chunks: Vec<Arc<[FlowSummary]>> = rows
        .chunks(CHUNK_ROWS)
        .map(|c| Arc::from(c.to_vec()))
        .collect();
    let mut seq = 0;
    let mut snapshot = |chunks: &[Arc<[FlowSummary]>], live: &[FlowSummary]| {
        seq += 1;
        let mut s = Snapshot::empty("cursor", SourceKind::Live);
        s.seq = seq;
        let mut all = chunks.to_vec();
        if !live.is_empty() {
            all.push(Arc::from(live.to_vec()));
        }
        s.rows = FlowRows::from_chunks(all);
        s.live_rows = live.len();
        Arc::new(s)
    };
    let live: Vec<FlowSummary> =
        podwire::tui::synthetic::flows(5 * CHUNK_ROWS as u64 + 10).split_off(5 * CHUNK_ROWS);
    let mut a = App::new(
        Config::defaults(true),
        snapshot(&chunks[..3], &live),
        (120, 40),
    );
    let selected = |a: &App| {
        let i = a.derived.flow_index[a.nav[View::Flows.index()].selected];
        a.snapshot.rows.get(i as usize).map(|f| f.serial)
    };
    // The last row (a live flow), then the flow two rows above it (finished).
    key(&mut a, KeyCode::End);
    let live_serial = selected(&a);
    assert!(
        live.iter().any(|f| Some(f.serial) == live_serial),
        "the last row by time is a live flow"
    );
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Up);
    let finished_serial = selected(&a);
    assert!(finished_serial.is_some());
    // Oldest chunk evicted, two appended: the finished flow is still under the cursor.
    update(&mut a, Msg::Snapshot(snapshot(&chunks[1..5], &live)));
    assert_eq!(selected(&a), finished_serial);
    // The live flows finish (they arrive in a new chunk): the cursor follows a live flow.
    key(&mut a, KeyCode::End);
    assert_eq!(selected(&a), live_serial);
    let mut finished: Vec<Arc<[FlowSummary]>> = chunks[1..5].to_vec();
    finished.push(Arc::from(live.clone()));
    update(&mut a, Msg::Snapshot(snapshot(&finished, &[])));
    assert_eq!(selected(&a), live_serial);
    // Its chunk evicted: the cursor stays at its position, the flow is forgotten.
    let position = a.nav[View::Flows.index()].selected;
    update(&mut a, Msg::Snapshot(snapshot(&chunks[1..4], &[])));
    assert_eq!(a.selected_serial, None);
    assert!(a.nav[View::Flows.index()].selected <= position);
}
