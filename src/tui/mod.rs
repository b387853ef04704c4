//! The interactive terminal UI: a thin shell around a pure core.
//!
//! - [`source`]: the engine thread; publishes immutable snapshots ~4×/s (bounded memory);
//! - [`app`]: the one `App` state and `update(&mut App, Msg) -> Vec<Effect>` (pure);
//! - [`viewmodel`]: filter, sort, aggregate and format the visible rows (pure);
//! - [`render`]: ratatui widgets from the view-model, no logic;
//! - [`filter`]: the filter language (also for headless `--filter`);
//! - [`config`]: keys and colours from `$XDG_CONFIG_HOME/podwire/config.toml`;
//! - [`findings`]: the rules engine's findings over a snapshot, indexed by flow.
//!
//! [`run`] owns the terminal: raw mode, alternate screen and mouse capture are restored when
//! it returns, when it fails and when anything panics (a panic hook restores first, then
//! prints the panic). The UI thread never blocks on the engine: it polls input with a short
//! timeout and takes whatever snapshot is newest.

#![allow(clippy::disallowed_methods)] // a shell: terminal I/O, config file, clock for polling

pub mod app;
pub mod config;
pub mod filter;
pub mod findings;
pub mod render;
pub mod source;
pub mod synthetic;
pub mod viewmodel;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::TryRecvError;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub use app::{App, Effect, Msg, update};
pub use config::Config;
pub use source::{Feeder, Snapshot, Source, SourceHandle, SourceKind, Speed};

/// `podwire replay FILE [--cluster SNAP] [--speed 1|10|max]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Capture file (pcap, pcapng, optionally gzip-compressed).
    pub file: PathBuf,
    /// Cluster snapshot: adds identities and NetworkPolicy verdicts.
    #[arg(long)]
    pub cluster: Option<PathBuf>,
    /// Replay speed relative to the capture's timestamps: 1, 10 or max.
    #[arg(long, default_value = "1", value_parser = parse_speed)]
    pub speed: Speed,
    /// Most finished flows kept for the UI (oldest are dropped and counted).
    #[arg(long, default_value_t = source::DEFAULT_RING_ROWS)]
    pub max_rows: usize,
    #[command(flatten)]
    pub ring: RingArgs,
}

/// Caps of the packet ring that `e` / `:export` read from.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RingArgs {
    /// Memory for recent packets kept for export from the TUI, in MiB (0 = keep none); the
    /// oldest packets are dropped first and counted.
    #[arg(long, value_name = "MiB", default_value_t = crate::capture::ring::DEFAULT_RING_MIB)]
    pub ring_size: usize,
    /// Most packets kept for export from the TUI.
    #[arg(long, value_name = "N", default_value_t = crate::capture::ring::DEFAULT_RING_FRAMES)]
    pub ring_frames: usize,
}

impl RingArgs {
    pub fn caps(&self) -> crate::capture::ring::RingCaps {
        crate::capture::ring::RingCaps::from_mib(self.ring_size, self.ring_frames)
    }
}

fn parse_speed(s: &str) -> Result<Speed, String> {
    s.parse()
}

/// Runs `podwire replay`.
pub fn replay(args: &ReplayArgs) -> Result<i32> {
    let source = Source::replay(&args.file, args.cluster.as_deref(), args.speed)?
        .with_ring_rows(args.max_rows)
        .with_packet_ring(args.ring.caps());
    run(source)?;
    Ok(0)
}

/// Runs the TUI on the bundled demo capture and snapshot.
pub fn demo(capture: &Path, cluster: Option<&Path>, ring: RingArgs) -> Result<i32> {
    run(Source::replay(capture, cluster, Speed::X1)?.with_packet_ring(ring.caps()))?;
    Ok(0)
}

/// Loads the user's config (`$XDG_CONFIG_HOME/podwire/config.toml`, else defaults).
/// `NO_COLOR` (any non-empty value) turns every colour off.
pub fn load_config() -> (Config, Option<String>) {
    let monochrome = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let path = config_path();
    let Some(path) = path.filter(|p| p.is_file()) else {
        return (Config::defaults(monochrome), None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match Config::from_toml(&text, monochrome) {
            Ok(c) => (c, None),
            Err(e) => (
                Config::defaults(monochrome),
                Some(format!("{}: {e} (using defaults)", path.display())),
            ),
        },
        Err(e) => (
            Config::defaults(monochrome),
            Some(format!("{}: {e}", path.display())),
        ),
    }
}

/// Where the config file lives.
pub fn config_path() -> Option<PathBuf> {
    use etcetera::BaseStrategy;
    etcetera::choose_base_strategy()
        .ok()
        .map(|s| s.config_dir().join("podwire").join("config.toml"))
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped (normal return and error paths).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Runs the TUI on a source until the user quits. The live-capture command calls this with
/// its own [`Source`] (see [`Source::new`] and [`Feeder`]).
pub fn run(source: Source) -> Result<()> {
    let (config, config_error) = load_config();
    let label = source.label().to_string();
    let kind = source.kind();
    let handle = source.spawn()?;

    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));

    enable_raw_mode().context("switching the terminal to raw mode")?;
    let guard = TerminalGuard;
    execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)
        .context("entering the alternate screen")?;
    let backend = CrosstermBackend::new(io::stdout());
    let mut terminal = Terminal::new(backend).context("opening the terminal")?;
    terminal.clear()?;
    let size = terminal.size()?;

    let mut app = App::new(
        config,
        std::sync::Arc::new(Snapshot::empty(&label, kind)),
        (size.width, size.height),
    );
    if let Some(e) = config_error {
        app.status = Some(e);
    }
    let result = event_loop(&mut terminal, &mut app, &handle);
    drop(terminal);
    drop(guard);
    let _ = std::panic::take_hook();
    handle.stop();
    io::stdout().flush().ok();
    result
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<io::Stdout>>,
    app: &mut App,
    handle: &SourceHandle,
) -> Result<()> {
    let mut dirty = true;
    let mut gone = false;
    loop {
        // Take the newest snapshot; older ones are superseded.
        let mut newest = None;
        loop {
            match handle.snapshots.try_recv() {
                Ok(s) => newest = Some(s),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !gone && newest.is_none() && !app.snapshot.progress.done {
                        update(app, Msg::SourceGone);
                        dirty = true;
                    }
                    gone = true;
                    break;
                }
            }
        }
        while let Ok(outcome) = handle.exports.try_recv() {
            update(app, Msg::Exported(outcome));
            dirty = true;
        }
        if let Some(s) = newest {
            for e in update(app, Msg::Snapshot(s)) {
                if execute_effect(app, handle, e)? {
                    return Ok(());
                }
            }
            dirty = true;
        }
        if dirty {
            let screen = viewmodel::screen(app);
            let areas = app.layout();
            terminal.draw(|f| render::draw(f, &screen, &areas, &app.config.palette))?;
            dirty = false;
        }
        if event::poll(Duration::from_millis(50))? {
            let msg = match event::read()? {
                Event::Key(k) => Some(Msg::Key(k)),
                Event::Mouse(m) => Some(Msg::Mouse(m)),
                Event::Resize(w, h) => Some(Msg::Resize(w, h)),
                _ => None,
            };
            if let Some(msg) = msg {
                for e in update(app, msg) {
                    if execute_effect(app, handle, e)? {
                        return Ok(());
                    }
                }
                dirty = true;
            }
        }
    }
}

/// Executes one effect; `true` to quit.
fn execute_effect(app: &mut App, handle: &SourceHandle, effect: Effect) -> Result<bool> {
    match effect {
        Effect::Quit => return Ok(true),
        Effect::Control(c) => handle.send(c),
        Effect::Save(dir) => {
            let notice = match save_flows(app, &dir) {
                Ok(path) => format!("saved {}", path.display()),
                Err(e) => format!("save failed: {e:#}"),
            };
            update(app, Msg::Notice(notice));
        }
    }
    Ok(false)
}

/// `:save DIR`: the filtered flows as JSON lines in `DIR/flows.jsonl`.
fn save_flows(app: &App, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("flows.jsonl");
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = io::BufWriter::new(file);
    for &i in &app.derived.flow_index {
        if let Some(f) = app.snapshot.rows.get(i as usize) {
            serde_json::to_writer(&mut out, f)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(path)
}
