//! TUI speed with 1 M flows loaded (synthetic rows, `podwire::tui::synthetic`):
//! - `frame`: build the visible view-model and render one frame to a TestBackend (120×40);
//!   budget 16 ms;
//! - `filter/*`: apply a new filter (evaluate it through the search index, walk the sorted
//!   index); budget 100 ms;
//! - `per_row/*`: the same filters evaluated row by row on the `FlowSummary`s after a sort,
//!   as the TUI did before the search index (the reference the index is tested against);
//!
//! Also prints how long indexing takes (from scratch, and for one new chunk: the App indexes
//! finished rows as their chunks arrive, each chunk once).
//! - `services/refresh`: the App's Services refresh on the same snapshot after a filter
//!   change to the same filter (every chunk's partial edges cached: merge only);
//! - `services/new_chunk`: Services edges for a new snapshot that appends one chunk of
//!   `CHUNK_ROWS` rows to 1 M (or more) rows already aggregated (aggregate that chunk,
//!   merge it into the running total, finish the edges);
//! - `services/filter_change`: Services edges after the filter changes (no filter and
//!   `!verdict:denied` in turn: every chunk re-aggregated, through the search index's ids);
//! - `services/group_change`: the same after the grouping changes (workloads and namespaces
//!   in turn);
//! - `services/evict_oldest`: a capped ring's snapshot: the oldest chunk dropped (its
//!   partials subtracted from the running total), a new one appended;
//! - `services/from_scratch`: aggregate the 1 M rows from scratch (`service_edges`, what
//!   every new snapshot cost before the per-chunk cache);
//! - `sort/new_chunk[/column]`: the Flows order for a new snapshot that appends one chunk
//!   and replaces 500 live rows (the sort cache inserts the new rows into the previous
//!   order), per column kind: time and bytes (numeric), source with names and SNI/Host
//!   (text), finding count (and with recomputed findings that name the new flows too:
//!   `findings_changed`); `sort/evict_oldest[/column]`: the same while the oldest chunk
//!   is dropped (a full ring); `sort/bytes_desc` is the App's from-scratch sort (plus the
//!   filter walk), `sort/from_scratch/source_names` a from-scratch text sort.
//!
//! Also prints the resident memory with the rows loaded, and the first Services aggregation
//! (the id tables filled: what opening the view costs once).
//! Run: `cargo bench --bench tui`.

#![allow(clippy::disallowed_methods)] // benches read /proc for memory

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use podwire::findings::{Finding, FindingKind};
use podwire::tui::app::{App, EdgeCol, FlowCol, Msg, Sort, View, update};
use podwire::tui::config::Config;
use podwire::tui::filter::Filter;
use podwire::tui::filter::index::SearchIndex;
use podwire::tui::findings::SnapshotFindings;
use podwire::tui::source::{CHUNK_ROWS, FlowRows, Snapshot, SourceKind};
use podwire::tui::viewmodel::{EdgeCache, Group};
use podwire::tui::{render, synthetic, viewmodel};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const ROWS: u64 = 1_000_000;

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn app() -> App {
    let before = rss_mib();
    let mut snapshot = Snapshot::empty("bench", SourceKind::Replay);
    snapshot.seq = 1;
    snapshot.rows = FlowRows::from_vec(synthetic::flows(ROWS));
    let app = App::new(Config::defaults(false), Arc::new(snapshot), (120, 40));
    eprintln!(
        "tui bench: {ROWS} rows loaded; resident memory {} MiB (+{} MiB), size_of FlowSummary {} B",
        rss_mib(),
        rss_mib().saturating_sub(before),
        std::mem::size_of::<podwire::summary::FlowSummary>()
    );
    app
}

fn index_build_times(app: &App) {
    let start = Instant::now();
    let mut index = SearchIndex::new(&app.snapshot.rows);
    let scratch = start.elapsed();
    let mut chunks = app.snapshot.rows.chunks().to_vec();
    let extra: Vec<_> = (ROWS..ROWS + CHUNK_ROWS as u64)
        .map(synthetic::flow)
        .collect();
    chunks.push(Arc::from(extra));
    let grown = FlowRows::from_chunks(chunks);
    let start = Instant::now();
    index.sync(&grown, grown.len());
    eprintln!(
        "tui bench: search index of {ROWS} rows built in {:.2} s from scratch; one new chunk of \
         {CHUNK_ROWS} rows indexed in {:.1} ms; resident memory with the index {} MiB",
        scratch.as_secs_f64(),
        start.elapsed().as_secs_f64() * 1e3,
        rss_mib()
    );
}

/// Findings naming each of `serials` once, every other one twice (the `!N` column's key).
fn findings_for(serials: &[u64]) -> SnapshotFindings {
    let finding = |n: usize, flows: Vec<u64>| {
        Finding::naming_flows(
            format!("PW-BENCH-{n}"),
            FindingKind::CleartextInternal,
            flows,
        )
    };
    let every_other: Vec<u64> = serials.iter().copied().step_by(2).collect();
    SnapshotFindings::from_findings(vec![finding(0, serials.to_vec()), finding(1, every_other)])
}

fn bench(c: &mut Criterion) {
    let mut app = app();
    index_build_times(&app);
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).expect("test backend");
    let mut group = c.benchmark_group("tui_1M");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));

    group.bench_function("frame", |b| {
        b.iter(|| {
            let screen = viewmodel::screen(&app);
            let areas = app.layout();
            terminal
                .draw(|f| render::draw(f, &screen, &areas, &app.config.palette))
                .expect("draw");
            black_box(terminal.backend().buffer().area);
        })
    });

    let filters = [
        ("filter/app_and_ns", "app:tls and ns:shop"),
        (
            "filter/negation_or",
            "!verdict:allowed or enc:plaintext port:5000-7000",
        ),
        ("filter/cidr", "ip:10.244.16.0/20"),
        ("filter/free_text", "frontend"),
        ("filter/regex", "sni:/^cat.*shop/"),
        ("filter/clear", ""),
    ];
    for (name, text) in filters {
        let filter = Filter::new(text).expect("valid");
        let before = name.replace("filter/", "per_row/");
        group.bench_function(before, |b| {
            b.iter(|| {
                let sorted = viewmodel::sort_all(
                    &app.snapshot.rows,
                    &app.snapshot.findings,
                    app.flow_sort,
                    app.names,
                );
                let kept: Vec<u32> = sorted
                    .into_iter()
                    .filter(|&i| {
                        app.snapshot
                            .rows
                            .get(i as usize)
                            .is_some_and(|f| filter.matches_in(f, &app.snapshot.findings))
                    })
                    .collect();
                black_box(kept.len());
            })
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                app.filter = filter.clone();
                app.filter_generation += 1;
                app.refresh();
                black_box(app.derived.flow_index.len());
            })
        });
    }
    group.bench_function("sort/bytes_desc", |b| {
        let mut descending = false;
        b.iter(|| {
            descending = !descending;
            app.flow_sort = Sort {
                column: FlowCol::Bytes,
                descending,
            };
            app.refresh();
            black_box(app.derived.flow_index.len());
        })
    });
    app.view = View::Services;
    app.filter = Filter::new("").expect("valid");
    app.filter_generation += 1;
    let start = Instant::now();
    app.refresh();
    eprintln!(
        "tui bench: Services view opened on {ROWS} rows (every chunk aggregated) in {:.0} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    group.bench_function("services/refresh", |b| {
        b.iter(|| {
            app.filter_generation += 1;
            app.refresh();
            black_box(app.derived.edges.len());
        })
    });
    let rows = &app.snapshot.rows;
    let all: Vec<u32> = (0..rows.len() as u32).collect();
    let sort = Sort {
        column: EdgeCol::Bytes,
        descending: true,
    };
    let extra: Vec<_> = (ROWS..ROWS + CHUNK_ROWS as u64)
        .map(synthetic::flow)
        .collect();
    // services/new_chunk: each snapshot appends a fresh allocation, a chunk the cache has
    // never seen (the rows grow by one chunk per iteration, as in a capture before
    // eviction); services/evict_oldest: a capped ring, each snapshot also drops the oldest.
    for (name, evict) in [
        ("services/new_chunk", false),
        ("services/evict_oldest", true),
    ] {
        group.bench_function(name, |b| {
            let mut cache = EdgeCache::default();
            let mut search = SearchIndex::new(rows);
            cache.edges(rows, rows.len(), &all, &search, Group::Workload, sort);
            let mut current = rows.chunks().to_vec();
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut chunks = std::mem::take(&mut current);
                    if evict {
                        chunks.remove(0);
                    }
                    chunks.push(Arc::from(extra.clone()));
                    let next = FlowRows::from_chunks(chunks);
                    let index: Vec<u32> = (0..next.len() as u32).collect();
                    // The App indexes each new chunk for filtering anyway (not timed here).
                    search.sync(&next, next.len());
                    let start = Instant::now();
                    let edges =
                        cache.edges(&next, next.len(), &index, &search, Group::Workload, sort);
                    total += start.elapsed();
                    black_box(edges.len());
                    current = next.chunks().to_vec();
                }
                total
            })
        });
    }
    // A filter keeping ~91% of the rows, and no filter: each iteration switches between
    // them, so every chunk's partial is stale (what applying a new filter costs).
    let denied = Filter::new("!verdict:denied").expect("valid");
    let not_denied: Vec<u32> = (0..rows.len() as u32)
        .filter(|&i| {
            rows.get(i as usize)
                .is_some_and(|f| denied.matches_in(f, &app.snapshot.findings))
        })
        .collect();
    let search = SearchIndex::new(rows);
    // One cache for all samples, as the App keeps one: its id tables (filled when the view
    // is first opened, timed below) persist; criterion calls each closure once per sample.
    let mut cache = EdgeCache::default();
    let start = Instant::now();
    cache.edges(rows, rows.len(), &all, &search, Group::Workload, sort);
    let workload = start.elapsed();
    let start = Instant::now();
    cache.edges(rows, rows.len(), &all, &search, Group::Namespace, sort);
    eprintln!(
        "tui bench: first Services aggregation of {ROWS} rows (id tables filled): by \
         workload {:.0} ms, then by namespace {:.0} ms",
        workload.as_secs_f64() * 1e3,
        start.elapsed().as_secs_f64() * 1e3
    );
    let mut filtered = false;
    group.bench_function("services/filter_change", |b| {
        b.iter(|| {
            filtered = !filtered;
            let index = if filtered { &not_denied } else { &all };
            black_box(
                cache
                    .edges(rows, rows.len(), index, &search, Group::Workload, sort)
                    .len(),
            )
        })
    });
    let mut namespaces = false;
    group.bench_function("services/group_change", |b| {
        b.iter(|| {
            namespaces = !namespaces;
            let by = if namespaces {
                Group::Namespace
            } else {
                Group::Workload
            };
            black_box(cache.edges(rows, rows.len(), &all, &search, by, sort).len())
        })
    });
    group.bench_function("services/from_scratch", |b| {
        b.iter(|| black_box(viewmodel::service_edges(rows, &all, Group::Workload, sort).len()))
    });
    // --- Flows order across snapshots (SortCache) -------------------------------------
    let mut findings_rows: Vec<u64> = (0..ROWS).filter(|s| s % 7 == 0).collect();
    findings_rows.truncate(200_000);
    let order_cases = [
        ("sort/new_chunk", FlowCol::Time, false, false, false),
        (
            "sort/new_chunk/bytes_desc",
            FlowCol::Bytes,
            true,
            false,
            false,
        ),
        (
            "sort/new_chunk/source_names",
            FlowCol::Source,
            false,
            false,
            false,
        ),
        ("sort/new_chunk/server", FlowCol::Server, true, false, false),
        (
            "sort/new_chunk/findings",
            FlowCol::Findings,
            true,
            false,
            false,
        ),
        (
            "sort/new_chunk/findings_changed",
            FlowCol::Findings,
            true,
            false,
            true,
        ),
        ("sort/evict_oldest", FlowCol::Bytes, true, true, false),
        (
            "sort/evict_oldest/source_names",
            FlowCol::Source,
            false,
            true,
            false,
        ),
    ];
    let findings = Arc::new(findings_for(&findings_rows));
    for (name, column, descending, evict, new_findings) in order_cases {
        group.bench_function(name, |b| {
            // The Flows order for a new snapshot that appends one chunk of CHUNK_ROWS rows
            // to 1 M sorted rows (and, for evict_oldest, drops the oldest chunk, as a full
            // ring does), with 500 live rows replaced; findings_changed: the snapshot also
            // brings recomputed findings that name the new chunk's flows as well.
            let sort = Sort { column, descending };
            let mut cache = viewmodel::SortCache::default();
            let mut current = rows.chunks().to_vec();
            let mut order = Vec::new();
            let mut findings = findings.clone();
            cache.sort_into(&mut order, rows, 0, &findings, sort, true);
            let mut next = ROWS + CHUNK_ROWS as u64;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // A fresh allocation each time: a chunk the cache has never seen.
                    let mut chunks = std::mem::take(&mut current);
                    chunks.push(Arc::from(extra.clone()));
                    if evict {
                        chunks.remove(0);
                    }
                    let live: Vec<_> = (next..next + 500).map(synthetic::flow).collect();
                    if new_findings {
                        let mut named = findings_rows.clone();
                        named.extend((next - 256..next + 250).step_by(3));
                        findings = Arc::new(findings_for(&named));
                    }
                    next += 500;
                    chunks.push(Arc::from(live));
                    let grown = FlowRows::from_chunks(chunks);
                    let start = Instant::now();
                    cache.sort_into(&mut order, &grown, 500, &findings, sort, true);
                    total += start.elapsed();
                    black_box(order.len());
                    current = grown.chunks().to_vec();
                    current.pop();
                }
                total
            })
        });
    }
    group.bench_function("sort/from_scratch/source_names", |b| {
        let sort = Sort {
            column: FlowCol::Source,
            descending: false,
        };
        b.iter(|| black_box(viewmodel::sort_all(rows, &findings, sort, true).len()))
    });
    // --- end of the Flows order block ---------------------------------------------------
    let mut current = rows.chunks().to_vec();
    app.view = View::Flows;
    group.bench_function("app/new_snapshot_cursor_at_end", |b| {
        // The whole UI-thread cost of a new snapshot in the Flows view, as a live capture
        // with a full ring delivers it: one chunk appended, the oldest dropped, 500 live
        // rows updated (the same flows, still open); the cursor on the last row (following
        // the newest flows), so the App must find that flow again. Then one frame.
        let live: Vec<_> = (ROWS + 2 * CHUNK_ROWS as u64..ROWS + 2 * CHUNK_ROWS as u64 + 500)
            .map(synthetic::flow)
            .collect();
        let mut seq = app.snapshot.seq;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let last = app.derived.flow_index.len().saturating_sub(1);
                app.nav[View::Flows.index()].selected = last;
                let mut chunks = std::mem::take(&mut current);
                chunks.push(Arc::from(extra.clone()));
                chunks.remove(0);
                chunks.push(Arc::from(live.clone()));
                let mut snapshot = Snapshot::empty("bench", SourceKind::Live);
                seq += 1;
                snapshot.seq = seq;
                snapshot.rows = FlowRows::from_chunks(chunks);
                snapshot.live_rows = 500;
                let snapshot = Arc::new(snapshot);
                let start = Instant::now();
                update(&mut app, Msg::Snapshot(snapshot.clone()));
                let screen = viewmodel::screen(&app);
                let areas = app.layout();
                terminal
                    .draw(|f| render::draw(f, &screen, &areas, &app.config.palette))
                    .expect("draw");
                total += start.elapsed();
                black_box(app.nav[View::Flows.index()].selected);
                current = snapshot.rows.chunks().to_vec();
                current.pop();
            }
            total
        })
    });
    group.finish();
    eprintln!("tui bench: resident memory at the end {} MiB", rss_mib());
}

criterion_group!(benches, bench);
criterion_main!(benches);
