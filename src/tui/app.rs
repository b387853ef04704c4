//! The TUI's state and its one transition function: `update(&mut App, Msg) -> Vec<Effect>`.
//!
//! Pure: no I/O, no clock, no threads. Everything the shell observes (keys, mouse, resizes,
//! snapshots, export results) arrives as a [`Msg`]; everything the shell must do (quit, tell
//! the source to pause, change speed or export packets, save) leaves as an [`Effect`]. The App
//! caches the filtered and sorted row index of the current snapshot and the derived tables of
//! the current view, and recomputes them only when their inputs (snapshot, filter, sort,
//! grouping) change, so drawing a frame only formats the visible rows.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use crate::summary::FlowSummary;
use crate::tui::config::{Action, Config};
use crate::tui::filter::index::SearchIndex;
use crate::tui::filter::{Filter, FilterError};
use crate::tui::source::{
    Control, ExportFlow, ExportOutcome, ExportRequest, ExportTarget, Snapshot, SourceKind, Speed,
};
use crate::tui::viewmodel::{self, Edge, EdgeCache, Group, PolicyTable};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Flows,
    Services,
    Findings,
    Policies,
    Suggest,
    Stats,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Flows,
        View::Services,
        View::Findings,
        View::Policies,
        View::Suggest,
        View::Stats,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Flows => "Flows",
            View::Services => "Services",
            View::Findings => "Findings",
            View::Policies => "Policies",
            View::Suggest => "Suggest",
            View::Stats => "Stats",
        }
    }

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    fn command(self) -> &'static str {
        match self {
            View::Flows => "flows",
            View::Services => "services",
            View::Findings => "findings",
            View::Policies => "policies",
            View::Suggest => "suggest",
            View::Stats => "stats",
        }
    }
}

/// Sortable columns of the Flows view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowCol {
    Time,
    Source,
    Destination,
    Port,
    App,
    Enc,
    Server,
    Packets,
    Bytes,
    Verdict,
    Findings,
}

impl FlowCol {
    pub const SORTABLE: [FlowCol; 11] = [
        FlowCol::Time,
        FlowCol::Source,
        FlowCol::Destination,
        FlowCol::Port,
        FlowCol::App,
        FlowCol::Enc,
        FlowCol::Server,
        FlowCol::Packets,
        FlowCol::Bytes,
        FlowCol::Verdict,
        FlowCol::Findings,
    ];

    pub fn title(self) -> &'static str {
        match self {
            FlowCol::Time => "TIME",
            FlowCol::Source => "SOURCE",
            FlowCol::Destination => "DESTINATION",
            FlowCol::Port => "PORT",
            FlowCol::App => "APP",
            FlowCol::Enc => "ENC",
            FlowCol::Server => "SNI/HOST",
            FlowCol::Packets => "PKTS",
            FlowCol::Bytes => "BYTES",
            FlowCol::Verdict => "VERDICT",
            FlowCol::Findings => "FIND",
        }
    }
}

/// Sortable columns of the Services view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeCol {
    Bytes,
    Flows,
    Source,
    Destination,
    Plaintext,
}

impl EdgeCol {
    pub const SORTABLE: [EdgeCol; 5] = [
        EdgeCol::Bytes,
        EdgeCol::Flows,
        EdgeCol::Source,
        EdgeCol::Destination,
        EdgeCol::Plaintext,
    ];
}

/// Sort order: column and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sort<C> {
    pub column: C,
    pub descending: bool,
}

/// What keystrokes go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing a filter; `error` is the live validation result.
    Filter {
        input: String,
        error: Option<FilterError>,
    },
    /// Typing a `:` command.
    Command {
        input: String,
    },
    Help,
    ConfirmQuit,
}

/// Cursor and scroll position of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Nav {
    pub selected: usize,
    pub offset: usize,
}

impl Nav {
    fn clamp(&mut self, len: usize, height: usize) {
        if len == 0 {
            *self = Nav::default();
            return;
        }
        self.selected = self.selected.min(len - 1);
        let height = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(1));
    }

    fn move_by(&mut self, delta: isize, len: usize, height: usize) {
        let target = (self.selected as isize + delta).clamp(0, len.saturating_sub(1) as isize);
        self.selected = target as usize;
        self.clamp(len, height);
    }
}

/// One point of the Stats view's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub position_ns: u64,
    pub frames: u64,
    pub bytes: u64,
    pub flows: u64,
}

/// Most history samples kept (one per snapshot: a minute at 4/s).
pub const HISTORY: usize = 240;

/// Input to [`update`].
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Snapshot(Arc<Snapshot>),
    /// The source's thread ended without a final snapshot.
    SourceGone,
    /// A message from the shell (e.g. the result of `:save`).
    Notice(String),
    /// The source finished an export (`e`, `:export`).
    Exported(ExportOutcome),
}

/// Output of [`update`], executed by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Quit,
    Control(Control),
    /// `:save DIR`: write the filtered flows (the shell decides the format).
    Save(PathBuf),
}

/// Caches derived from the snapshot; the key says what they were computed from.
#[derive(Debug, Default)]
pub struct Derived {
    /// Snapshot the search index was synchronised with.
    pub index_seq: Option<u64>,
    /// Interned, compact form of the rows that filters are evaluated on.
    pub search: SearchIndex,
    pub key: Option<(u64, u64, Sort<FlowCol>, bool)>,
    /// Every row's index, sorted (recomputed only for a new snapshot or sort order).
    pub sorted_key: Option<(u64, Sort<FlowCol>, bool)>,
    pub sorted: Vec<u32>,
    /// Sorted keys of the finished rows, reused by the next snapshot.
    pub sort_cache: viewmodel::SortCache,
    /// Filtered, sorted indexes into `snapshot.rows`.
    pub flow_index: Vec<u32>,
    pub edges_key: Option<(u64, u64, Group, Sort<EdgeCol>)>,
    pub edges: Vec<Edge>,
    /// Per-chunk partial Services aggregates: finished chunks are aggregated once.
    pub edge_cache: EdgeCache,
    pub findings_key: Option<(u64, u64)>,
    /// Indexes into `snapshot.findings.findings` shown in the Findings view.
    pub findings: Vec<u32>,
    pub policies_key: Option<(u64, u64)>,
    pub policies: PolicyTable,
    /// Where the selected flow was last found, so the next snapshot finds it without
    /// scanning the rows.
    pub selected_at: Option<RowPlace>,
}

/// A row's place: its (shared) chunk and its offset in it.
pub struct RowPlace {
    pub chunk: Arc<[FlowSummary]>,
    pub offset: usize,
}

impl std::fmt::Debug for RowPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RowPlace(chunk of {} rows, offset {})",
            self.chunk.len(),
            self.offset
        )
    }
}

/// The whole UI state.
pub struct App {
    pub config: Config,
    pub snapshot: Arc<Snapshot>,
    /// Newest snapshot held back while the view is frozen (live pause).
    pub held: Option<Arc<Snapshot>>,
    pub kind: SourceKind,
    pub view: View,
    pub mode: Mode,
    pub filter: Filter,
    /// Bumped whenever the applied filter changes.
    pub filter_generation: u64,
    pub flow_sort: Sort<FlowCol>,
    pub edge_sort: Sort<EdgeCol>,
    pub group: Group,
    pub nav: [Nav; 6],
    /// Serial of the flow whose detail pane is open.
    pub detail: Option<u64>,
    pub detail_scroll: u16,
    /// Source and destination group of the Services edge whose detail pane is open.
    pub edge_detail: Option<(String, String)>,
    /// First help line shown (the help overlay scrolls when it does not fit).
    pub help_scroll: u16,
    /// Keep the cursor on the same flow when rows move.
    pub selected_serial: Option<u64>,
    pub names: bool,
    pub wide: bool,
    pub paused: bool,
    pub speed: Speed,
    pub history: VecDeque<Sample>,
    pub status: Option<String>,
    pub size: (u16, u16),
    pub source_gone: bool,
    pub quit: bool,
    pub derived: Derived,
}

impl App {
    pub fn new(config: Config, snapshot: Arc<Snapshot>, size: (u16, u16)) -> App {
        let kind = snapshot.kind;
        let speed = snapshot.progress.speed;
        let mut app = App {
            config,
            snapshot: snapshot.clone(),
            held: None,
            kind,
            view: View::Flows,
            mode: Mode::Normal,
            filter: Filter::default(),
            filter_generation: 0,
            flow_sort: Sort {
                column: FlowCol::Time,
                descending: false,
            },
            edge_sort: Sort {
                column: EdgeCol::Bytes,
                descending: true,
            },
            group: Group::Workload,
            nav: [Nav::default(); 6],
            detail: None,
            detail_scroll: 0,
            edge_detail: None,
            help_scroll: 0,
            selected_serial: None,
            names: true,
            wide: false,
            paused: false,
            speed,
            history: VecDeque::new(),
            status: None,
            size,
            source_gone: false,
            quit: false,
            derived: Derived::default(),
        };
        app.record(&snapshot);
        app.refresh();
        app
    }

    /// Screen areas (shared with the renderer so mouse clicks map to rows).
    pub fn layout(&self) -> viewmodel::Areas {
        viewmodel::areas(Rect::new(0, 0, self.size.0, self.size.1), self.view)
    }

    /// Rows visible in the current view's table.
    pub fn page(&self) -> usize {
        self.layout().table_rows().max(1)
    }

    fn rows_in_view(&self) -> usize {
        match self.view {
            View::Flows => self.derived.flow_index.len(),
            View::Services => self.derived.edges.len(),
            View::Findings => self.derived.findings.len(),
            View::Policies => self.derived.policies.rows.len(),
            View::Suggest | View::Stats => 0,
        }
    }

    fn nav_mut(&mut self) -> &mut Nav {
        &mut self.nav[self.view.index()]
    }

    fn record(&mut self, snapshot: &Snapshot) {
        let sample = Sample {
            position_ns: snapshot.progress.position_ns.unwrap_or(0),
            frames: snapshot.stats.frames,
            bytes: snapshot.stats.bytes,
            flows: snapshot.stats.flows_by_proto.values().sum(),
        };
        if self.history.back() != Some(&sample) {
            self.history.push_back(sample);
            while self.history.len() > HISTORY {
                self.history.pop_front();
            }
        }
    }

    /// Recomputes the caches whose inputs changed.
    pub fn refresh(&mut self) {
        let seq = self.snapshot.seq;
        let key = (seq, self.filter_generation, self.flow_sort, self.names);
        if self.derived.key != Some(key) {
            // Finished rows are indexed as their chunks arrive (each chunk once), so the
            // first filter finds them ready; the live rows, new in every snapshot, are
            // filtered row by row.
            if self.derived.index_seq != Some(seq) {
                let rows = &self.snapshot.rows;
                let finished = rows.len().saturating_sub(self.snapshot.live_rows);
                self.derived.search.sync(rows, finished);
                self.derived.index_seq = Some(seq);
            }
            let sorted_key = (seq, self.flow_sort, self.names);
            if self.derived.sorted_key != Some(sorted_key) {
                // Merges new chunks into the previous snapshot's order when it can.
                self.derived.sort_cache.sort_into(
                    &mut self.derived.sorted,
                    &self.snapshot.rows,
                    self.snapshot.live_rows,
                    &self.snapshot.findings,
                    self.flow_sort,
                    self.names,
                );
                self.derived.sorted_key = Some(sorted_key);
            }
            self.derived.flow_index = viewmodel::filter_sorted(
                &self.derived.search,
                &self.snapshot.findings,
                &self.derived.sorted,
                &self.filter,
            );
            self.derived.key = Some(key);
            // Keep the cursor on the same flow: find its row, then the row's position
            // (a scan of 4-byte indexes; reading every listed row cost up to ~0.1 s at
            // 1 M rows with the cursor near the end).
            if let Some(serial) = self.selected_serial {
                match self.selected_row(serial) {
                    Some(row) => {
                        if let Some(pos) = self
                            .derived
                            .flow_index
                            .iter()
                            .position(|&i| i as usize == row)
                        {
                            self.nav[View::Flows.index()].selected = pos;
                        }
                    }
                    // The flow left the rows (evicted): the cursor stays where it is.
                    None => self.selected_serial = None,
                }
            }
        }
        match self.view {
            View::Services => {
                let key = (seq, self.filter_generation, self.group, self.edge_sort);
                if self.derived.edges_key != Some(key) {
                    let rows = &self.snapshot.rows;
                    let finished = rows.len().saturating_sub(self.snapshot.live_rows);
                    self.derived.edges = self.derived.edge_cache.edges(
                        rows,
                        finished,
                        &self.derived.flow_index,
                        &self.derived.search,
                        self.group,
                        self.edge_sort,
                    );
                    self.derived.edges_key = Some(key);
                }
            }
            View::Findings => {
                let key = (seq, self.filter_generation);
                if self.derived.findings_key != Some(key) {
                    self.derived.findings = viewmodel::findings(
                        &self.snapshot.findings,
                        &self.snapshot.rows,
                        &self.derived.flow_index,
                        !self.filter.is_empty(),
                    );
                    self.derived.findings_key = Some(key);
                }
            }
            View::Policies => {
                let key = (seq, self.filter_generation);
                if self.derived.policies_key != Some(key) {
                    self.derived.policies = viewmodel::policy_table(
                        self.snapshot.cluster.as_deref(),
                        &self.snapshot.rows,
                        &self.derived.flow_index,
                    );
                    self.derived.policies_key = Some(key);
                }
            }
            _ => {}
        }
        let (len, page) = (self.rows_in_view(), self.page());
        self.nav_mut().clamp(len, page);
    }

    /// The row of the flow with `serial`: where it was last found if that chunk is still
    /// held, else searched from the newest rows back (remembered for the next snapshot).
    fn selected_row(&mut self, serial: u64) -> Option<usize> {
        let rows = &self.snapshot.rows;
        if let Some(place) = &self.derived.selected_at
            && let Some(row) = rows.index_in(&place.chunk, place.offset)
            && rows.get(row).is_some_and(|f| f.serial == serial)
        {
            return Some(row);
        }
        let row = rows.rfind_serial(serial);
        self.derived.selected_at =
            row.and_then(|r| rows.locate(r))
                .map(|(chunk, offset)| RowPlace {
                    chunk: Arc::clone(chunk),
                    offset,
                });
        row
    }

    fn remember_selection(&mut self) {
        if self.view == View::Flows {
            let nav = self.nav[View::Flows.index()];
            self.selected_serial = self
                .derived
                .flow_index
                .get(nav.selected)
                .and_then(|&i| self.snapshot.rows.get(i as usize))
                .map(|f| f.serial);
        }
    }

    fn apply_filter(&mut self, filter: Filter) {
        self.filter = filter;
        self.filter_generation += 1;
        self.nav = [Nav::default(); 6];
        self.selected_serial = None;
    }

    fn switch(&mut self, view: View) {
        self.view = view;
        self.detail = None;
        self.edge_detail = None;
    }

    /// Is a detail pane (flow or edge) open in the current view?
    fn detail_open(&self) -> bool {
        match self.view {
            View::Flows => self.detail.is_some(),
            View::Services => viewmodel::open_edge(self).is_some(),
            _ => false,
        }
    }

    /// Namespaces known from the cluster (for `:ns` completion).
    pub fn namespaces(&self) -> Vec<String> {
        self.snapshot
            .cluster
            .as_ref()
            .map(|c| c.namespaces.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Commands of `:` mode.
pub const COMMANDS: [&str; 14] = [
    "flows", "services", "findings", "policies", "suggest", "stats", "ns", "filter", "save",
    "export", "speed", "help", "q", "quit",
];

/// Completes a command line: the common continuation of every command (or namespace)
/// starting with what was typed.
pub fn complete(input: &str, namespaces: &[String]) -> Option<String> {
    let (head, arg) = match input.split_once(' ') {
        Some((h, a)) => (h, Some(a)),
        None => (input, None),
    };
    let candidates: Vec<String> = match arg {
        None => COMMANDS
            .iter()
            .filter(|c| c.starts_with(head))
            .map(|c| c.to_string())
            .collect(),
        Some(arg) if head == "ns" => namespaces
            .iter()
            .filter(|n| n.starts_with(arg))
            .map(|n| format!("ns {n}"))
            .collect(),
        Some(arg) if head == "speed" => ["1", "10", "max"]
            .iter()
            .filter(|s| s.starts_with(arg))
            .map(|s| format!("speed {s}"))
            .collect(),
        Some(_) => return None,
    };
    let first = candidates.first()?;
    if candidates.len() == 1 {
        let suffix = if arg.is_none()
            && matches!(
                first.as_str(),
                "ns" | "save" | "filter" | "speed" | "export"
            ) {
            " "
        } else {
            ""
        };
        return Some(format!("{first}{suffix}"));
    }
    let mut common = first.clone();
    for c in &candidates[1..] {
        while !c.starts_with(&common) {
            common.pop();
        }
    }
    (common.len() > input.len()).then_some(common)
}

/// The transition function.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    let mut effects = Vec::new();
    match msg {
        Msg::Resize(w, h) => app.size = (w, h),
        Msg::Snapshot(snapshot) => {
            app.record(&snapshot);
            let frozen = app.kind == SourceKind::Live && app.paused;
            if frozen {
                app.held = Some(snapshot);
            } else {
                app.remember_selection();
                if app.kind == SourceKind::Replay {
                    app.paused = snapshot.progress.paused;
                    app.speed = snapshot.progress.speed;
                }
                app.snapshot = snapshot;
            }
        }
        Msg::SourceGone => {
            app.source_gone = true;
            app.status = Some("the engine stopped".into());
        }
        Msg::Notice(text) => app.status = Some(text),
        Msg::Exported(outcome) => app.status = Some(export_notice(&outcome)),
        Msg::Mouse(mouse) => mouse_event(app, mouse),
        Msg::Key(key) => key_event(app, key, &mut effects),
    }
    app.refresh();
    effects
}

fn mouse_event(app: &mut App, mouse: MouseEvent) {
    let (len, page) = (app.rows_in_view(), app.page());
    match mouse.kind {
        MouseEventKind::ScrollDown => {
            if app.detail_open() {
                app.detail_scroll = app.detail_scroll.saturating_add(3);
            } else {
                app.nav_mut().move_by(3, len, page);
                app.remember_selection();
            }
        }
        MouseEventKind::ScrollUp => {
            if app.detail_open() {
                app.detail_scroll = app.detail_scroll.saturating_sub(3);
            } else {
                app.nav_mut().move_by(-3, len, page);
                app.remember_selection();
            }
        }
        MouseEventKind::Down(MouseButton::Left) => {
            let areas = app.layout();
            if mouse.row == areas.tabs.y {
                if let Some(view) = viewmodel::tab_at(mouse.column) {
                    app.switch(view);
                }
                return;
            }
            if let Some(row) = areas.row_at(mouse.row) {
                let nav = app.nav[app.view.index()];
                let target = nav.offset + row;
                if target < len {
                    if app.view == View::Flows && target == nav.selected && app.detail.is_none() {
                        open(app);
                    }
                    app.nav_mut().selected = target;
                    app.remember_selection();
                }
            }
        }
        _ => {}
    }
}

fn open(app: &mut App) {
    match app.view {
        View::Flows => {
            let nav = app.nav[View::Flows.index()];
            app.detail = app
                .derived
                .flow_index
                .get(nav.selected)
                .and_then(|&i| app.snapshot.rows.get(i as usize))
                .map(|f| f.serial);
            app.detail_scroll = 0;
        }
        View::Services => match viewmodel::open_edge(app) {
            // Enter in the edge's pane: its flows, with the filter that selects them.
            Some(edge) if !edge.filter.is_empty() => match Filter::new(&edge.filter) {
                Ok(filter) => {
                    app.apply_filter(filter);
                    app.switch(View::Flows);
                    app.status = Some("filter from the Services edge".into());
                }
                Err(e) => app.status = Some(format!("filter: {e}")),
            },
            Some(_) => app.status = Some("no filter names these groups".into()),
            None => {
                let nav = app.nav[View::Services.index()];
                app.edge_detail = app
                    .derived
                    .edges
                    .get(nav.selected)
                    .map(|e| (e.src.clone(), e.dst.clone()));
                app.detail_scroll = 0;
            }
        },
        View::Findings => {
            let nav = app.nav[View::Findings.index()];
            let finding = app
                .derived
                .findings
                .get(nav.selected)
                .and_then(|&i| app.snapshot.findings.findings.get(i as usize));
            if let Some(finding) = finding {
                let text = format!("finding:{}", finding.kind.as_str());
                let first = finding.flows.first().copied();
                if let (Ok(filter), Some(serial)) = (Filter::new(&text), first) {
                    app.apply_filter(filter);
                    app.switch(View::Flows);
                    app.selected_serial = Some(serial);
                }
            }
        }
        _ => {}
    }
}

fn key_event(app: &mut App, key: KeyEvent, effects: &mut Vec<Effect>) {
    if key.kind == crossterm::event::KeyEventKind::Release {
        return;
    }
    // An Esc typed just before a key reaches the terminal parser in the same read over a slow
    // SSH link or tmux, and comes out as one Alt-key. Unless the user bound that Alt-key, it
    // is read as the two keys that were typed, so Esc-then-`e` does not lose both.
    if let KeyCode::Char(c) = key.code
        && key.modifiers == KeyModifiers::ALT
        && app.config.keys.action(&key).is_none()
    {
        key_event(app, KeyEvent::from(KeyCode::Esc), effects);
        key_event(app, KeyEvent::from(KeyCode::Char(c)), effects);
        return;
    }
    match app.mode.clone() {
        Mode::Help => help_key(app, key),
        Mode::ConfirmQuit => {
            if matches!(key.code, KeyCode::Char('y' | 'Y') | KeyCode::Enter) {
                app.quit = true;
                effects.push(Effect::Quit);
            } else {
                app.mode = Mode::Normal;
                app.status = None;
            }
        }
        Mode::Filter { mut input, .. } => match key.code {
            KeyCode::Esc => {
                app.mode = Mode::Normal;
                app.apply_filter(Filter::default());
            }
            KeyCode::Enter => match Filter::new(&input) {
                Ok(filter) => {
                    app.apply_filter(filter);
                    app.mode = Mode::Normal;
                }
                Err(error) => {
                    app.mode = Mode::Filter {
                        input,
                        error: Some(error),
                    };
                }
            },
            KeyCode::Backspace => {
                input.pop();
                filter_typed(app, input);
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                filter_typed(app, String::new());
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                if input.len() < crate::tui::filter::MAX_LEN {
                    input.push(c);
                }
                filter_typed(app, input);
            }
            _ => {}
        },
        Mode::Command { mut input } => match key.code {
            KeyCode::Esc => app.mode = Mode::Normal,
            KeyCode::Enter => {
                app.mode = Mode::Normal;
                command(app, input.trim(), effects);
            }
            KeyCode::Tab => {
                if let Some(done) = complete(&input, &app.namespaces()) {
                    input = done;
                }
                app.mode = Mode::Command { input };
            }
            KeyCode::Backspace => {
                if input.pop().is_none() {
                    app.mode = Mode::Normal;
                } else {
                    app.mode = Mode::Command { input };
                }
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                if input.len() < 1024 {
                    input.push(c);
                }
                app.mode = Mode::Command { input };
            }
            _ => {}
        },
        Mode::Normal => normal_key(app, key, effects),
    }
}

fn open_help(app: &mut App) {
    app.mode = Mode::Help;
    app.help_scroll = 0;
}

/// In the help overlay, movement keys scroll it; any other key closes it.
fn help_key(app: &mut App, key: KeyEvent) {
    let visible = viewmodel::help_rows(app.size.1).max(1);
    let last = viewmodel::help(app).len().saturating_sub(visible);
    let scroll = app.help_scroll as usize;
    let target = match app.config.keys.action(&key) {
        Some(Action::Down) => scroll + 1,
        Some(Action::Up) => scroll.saturating_sub(1),
        Some(Action::PageDown) => scroll + visible,
        Some(Action::PageUp) => scroll.saturating_sub(visible),
        Some(Action::Top) => 0,
        Some(Action::Bottom) => last,
        _ => {
            app.mode = Mode::Normal;
            app.help_scroll = 0;
            return;
        }
    };
    app.help_scroll = target.min(last).min(u16::MAX as usize) as u16;
}

/// Live validation: a valid filter is applied as the user types.
fn filter_typed(app: &mut App, input: String) {
    match Filter::new(&input) {
        Ok(filter) => {
            app.apply_filter(filter);
            app.mode = Mode::Filter { input, error: None };
        }
        Err(error) => {
            app.mode = Mode::Filter {
                input,
                error: Some(error),
            };
        }
    }
}

fn quit(app: &mut App, effects: &mut Vec<Effect>) {
    if app.kind == SourceKind::Live && !app.snapshot.progress.done && !app.source_gone {
        app.mode = Mode::ConfirmQuit;
        app.status = Some("quit the live capture? y/n".into());
    } else {
        app.quit = true;
        effects.push(Effect::Quit);
    }
}

fn normal_key(app: &mut App, key: KeyEvent, effects: &mut Vec<Effect>) {
    if let KeyCode::Char(c @ '1'..='6') = key.code
        && key.modifiers.difference(KeyModifiers::SHIFT).is_empty()
    {
        let i = (c as usize) - ('1' as usize);
        app.switch(View::ALL[i]);
        return;
    }
    let Some(action) = app.config.keys.action(&key) else {
        return;
    };
    app.status = None;
    let (len, page) = (app.rows_in_view(), app.page());
    let detail_open = app.detail_open();
    match action {
        Action::Quit => quit(app, effects),
        Action::Help => open_help(app),
        Action::Command => {
            app.mode = Mode::Command {
                input: String::new(),
            }
        }
        Action::Filter => {
            app.mode = Mode::Filter {
                input: app.filter.text.clone(),
                error: None,
            }
        }
        Action::Down | Action::Up | Action::PageDown | Action::PageUp if detail_open => {
            let delta: i32 = match action {
                Action::Down => 1,
                Action::Up => -1,
                Action::PageDown => page as i32,
                _ => -(page as i32),
            };
            app.detail_scroll = (app.detail_scroll as i32 + delta).clamp(0, u16::MAX as i32) as u16;
        }
        Action::Down => app.nav_mut().move_by(1, len, page),
        Action::Up => app.nav_mut().move_by(-1, len, page),
        Action::PageDown => app.nav_mut().move_by(page as isize, len, page),
        Action::PageUp => app.nav_mut().move_by(-(page as isize), len, page),
        Action::Top => {
            app.nav_mut().selected = 0;
            app.nav_mut().clamp(len, page);
        }
        Action::Bottom => {
            app.nav_mut().selected = len.saturating_sub(1);
            app.nav_mut().clamp(len, page);
        }
        Action::Open => open(app),
        Action::Back => {
            if app.view == View::Services && app.edge_detail.is_some() {
                app.edge_detail = None;
            } else if app.detail.is_some() {
                app.detail = None;
            } else if !app.filter.is_empty() {
                app.apply_filter(Filter::default());
            }
        }
        Action::Sort => match app.view {
            View::Flows => {
                let i = FlowCol::SORTABLE
                    .iter()
                    .position(|c| *c == app.flow_sort.column)
                    .unwrap_or(0);
                app.flow_sort.column = FlowCol::SORTABLE[(i + 1) % FlowCol::SORTABLE.len()];
                app.status = Some(format!("sorted by {}", app.flow_sort.column.title()));
            }
            View::Services => {
                let i = EdgeCol::SORTABLE
                    .iter()
                    .position(|c| *c == app.edge_sort.column)
                    .unwrap_or(0);
                app.edge_sort.column = EdgeCol::SORTABLE[(i + 1) % EdgeCol::SORTABLE.len()];
            }
            _ => {}
        },
        Action::SortReverse => match app.view {
            View::Flows => app.flow_sort.descending = !app.flow_sort.descending,
            View::Services => app.edge_sort.descending = !app.edge_sort.descending,
            _ => {}
        },
        Action::Pause => {
            app.paused = !app.paused;
            match app.kind {
                SourceKind::Replay => effects.push(Effect::Control(Control::Pause(app.paused))),
                SourceKind::Live => {
                    if !app.paused
                        && let Some(held) = app.held.take()
                    {
                        app.remember_selection();
                        app.snapshot = held;
                    }
                    app.status = Some(if app.paused { "view frozen" } else { "live" }.into());
                }
            }
        }
        Action::Names => app.names = !app.names,
        Action::Wide => app.wide = !app.wide,
        Action::NextView => app.switch(View::ALL[(app.view.index() + 1) % View::ALL.len()]),
        Action::PrevView => {
            app.switch(View::ALL[(app.view.index() + View::ALL.len() - 1) % View::ALL.len()])
        }
        Action::Faster | Action::Slower if app.kind == SourceKind::Replay => {
            app.speed = if action == Action::Faster {
                app.speed.faster()
            } else {
                app.speed.slower()
            };
            effects.push(Effect::Control(Control::Speed(app.speed)));
            app.status = Some(format!("speed {}", app.speed.label()));
        }
        Action::Faster | Action::Slower => {}
        Action::Export => export_selected(app, effects),
        Action::Group => {
            if app.view == View::Services {
                app.edge_detail = None;
                app.group = match app.group {
                    Group::Workload => Group::Namespace,
                    Group::Namespace => Group::Workload,
                };
                app.nav_mut().selected = 0;
            }
        }
    }
    if matches!(
        action,
        Action::Down
            | Action::Up
            | Action::PageDown
            | Action::PageUp
            | Action::Top
            | Action::Bottom
    ) {
        app.remember_selection();
    }
}

fn command(app: &mut App, line: &str, effects: &mut Vec<Effect>) {
    let (head, arg) = match line.split_once(' ') {
        Some((h, a)) => (h, a.trim()),
        None => (line, ""),
    };
    if let Some(view) = View::ALL.iter().find(|v| v.command() == head) {
        app.switch(*view);
        return;
    }
    match head {
        "" => {}
        "q" | "quit" | "q!" => {
            if head == "q!" {
                app.quit = true;
                effects.push(Effect::Quit);
            } else {
                quit(app, effects);
            }
        }
        "help" => open_help(app),
        "ns" | "filter" => {
            let text = if head == "ns" {
                if arg.is_empty() {
                    String::new()
                } else {
                    format!("ns:\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\""))
                }
            } else {
                arg.to_string()
            };
            match Filter::new(&text) {
                Ok(filter) => app.apply_filter(filter),
                Err(e) => app.status = Some(format!("filter: {e}")),
            }
        }
        "save" => {
            if arg.is_empty() {
                app.status = Some(":save needs a directory".into());
            } else {
                effects.push(Effect::Save(PathBuf::from(arg)));
            }
        }
        "export" => export_filtered(app, arg, effects),
        "speed" => match arg.parse::<Speed>() {
            Ok(speed) if app.kind == SourceKind::Replay => {
                app.speed = speed;
                effects.push(Effect::Control(Control::Speed(speed)));
            }
            Ok(_) => app.status = Some("speed applies to replays only".into()),
            Err(e) => app.status = Some(e),
        },
        other => {
            app.status = Some(format!(
                "unknown command :{} (Tab completes)",
                crate::sanitize::sanitize_capped(other, 32)
            ))
        }
    }
}

/// One line naming a flow for an export's comment: serial, protocol, endpoints, application
/// and, with cluster data, the identities.
pub fn describe_flow(flow: &FlowSummary) -> String {
    let mut text = format!(
        "flow #{} {} {} → {}",
        flow.serial,
        flow.proto_name(),
        endpoint(flow.src, flow),
        endpoint(flow.dst, flow)
    );
    text.push_str(&format!(" {}", flow.app.app.name()));
    if let Some(e) = &flow.enrichment {
        text.push_str(&format!(
            " ({} → {})",
            crate::report::identity_label(&e.src_identity, flow.src.addr),
            crate::report::identity_label(&e.dst_identity, flow.dst.addr)
        ));
    }
    crate::sanitize::sanitize(&text)
}

fn endpoint(e: crate::flow::Endpoint, flow: &FlowSummary) -> String {
    use crate::decode::ipproto;
    match (flow.proto, e.addr) {
        (ipproto::TCP | ipproto::UDP | ipproto::SCTP, std::net::IpAddr::V6(a)) => {
            format!("[{a}]:{}", e.port)
        }
        (ipproto::TCP | ipproto::UDP | ipproto::SCTP, a) => format!("{a}:{}", e.port),
        (_, a) => a.to_string(),
    }
}

/// The file-name stem for an export of one flow: `podwire-export-PROTO-SRC-SPORT-DST-DPORT`,
/// with everything from the wire made safe for a file name.
pub fn export_stem(flow: &FlowSummary) -> String {
    let ports = matches!(
        flow.proto,
        crate::decode::ipproto::TCP | crate::decode::ipproto::UDP | crate::decode::ipproto::SCTP
    );
    let label = if ports {
        format!(
            "{}-{}-{}-{}-{}",
            flow.proto_name(),
            flow.src.addr,
            flow.src.port,
            flow.dst.addr,
            flow.dst.port
        )
    } else {
        format!("{}-{}-{}", flow.proto_name(), flow.src.addr, flow.dst.addr)
    };
    format!(
        "podwire-export-{}",
        crate::sanitize::file_name_part(&label, 120)
    )
}

/// `e`: the selected flow (or the one whose detail is open) of the Flows view.
fn export_selected(app: &mut App, effects: &mut Vec<Effect>) {
    if app.view != View::Flows {
        let keys = app.config.keys.keys_for(Action::Export).join("/");
        app.status = Some(format!(
            "{keys} exports the selected flow of the Flows view; :export [PATH] the filtered flows"
        ));
        return;
    }
    let rows = &app.snapshot.rows;
    let flow = match app.detail {
        Some(serial) => rows.iter().find(|f| f.serial == serial),
        None => app
            .derived
            .flow_index
            .get(app.nav[View::Flows.index()].selected)
            .and_then(|&i| rows.get(i as usize)),
    };
    let Some(flow) = flow else {
        app.status = Some("no flow selected to export".into());
        return;
    };
    let line = describe_flow(flow);
    let request = ExportRequest {
        target: ExportTarget::Numbered {
            stem: export_stem(flow),
        },
        flows: vec![ExportFlow {
            serial: flow.serial,
            packets: flow.packets(),
        }],
        selection: line.clone(),
        flow_lines: vec![line],
    };
    app.status = Some(format!("exporting flow #{}…", flow.serial));
    effects.push(Effect::Control(Control::Export(Box::new(request))));
}

/// `:export [PATH]`: every flow the current filter shows (all flows without a filter).
fn export_filtered(app: &mut App, path: &str, effects: &mut Vec<Effect>) {
    let rows = &app.snapshot.rows;
    let flows: Vec<&FlowSummary> = app
        .derived
        .flow_index
        .iter()
        .filter_map(|&i| rows.get(i as usize))
        .collect();
    if flows.is_empty() {
        app.status = Some("no flows to export".into());
        return;
    }
    let filtered = !app.filter.is_empty();
    let selection = if filtered {
        format!(
            "{} flows matching the filter {}",
            flows.len(),
            app.filter.text
        )
    } else {
        format!("all {} flows (no filter)", flows.len())
    };
    let target = if path.is_empty() {
        ExportTarget::Numbered {
            stem: if filtered {
                "podwire-export-filtered"
            } else {
                "podwire-export-all"
            }
            .into(),
        }
    } else {
        ExportTarget::Path(PathBuf::from(path))
    };
    let request = ExportRequest {
        target,
        flows: flows
            .iter()
            .map(|f| ExportFlow {
                serial: f.serial,
                packets: f.packets(),
            })
            .collect(),
        selection: crate::sanitize::sanitize(&selection),
        flow_lines: flows
            .iter()
            .take(crate::tui::source::EXPORT_FLOWS_DESCRIBED)
            .map(|f| describe_flow(f))
            .collect(),
    };
    app.status = Some(format!("exporting {} flows…", flows.len()));
    effects.push(Effect::Control(Control::Export(Box::new(request))));
}

/// The status line after an export.
pub fn export_notice(outcome: &ExportOutcome) -> String {
    let path = outcome
        .path
        .as_ref()
        .map(|p| crate::sanitize::sanitize(&p.display().to_string()));
    if let Some(error) = &outcome.error {
        return format!("export failed: {}", crate::sanitize::sanitize(error));
    }
    let missing = if outcome.frames_missing == 0 {
        "none missing".to_string()
    } else {
        format!(
            "{} frames missing (evicted from the packet ring)",
            outcome.frames_missing
        )
    };
    // Counts first: a long path is what the status line cuts off.
    format!(
        "exported {} frames of {} flow{}, {missing} → {}",
        outcome.frames_written,
        outcome.flows,
        if outcome.flows == 1 { "" } else { "s" },
        path.unwrap_or_default()
    )
}
