//! podwire's integration tests (one test binary): corpus agreement, robustness, CLI, demo.

#![allow(clippy::disallowed_methods)] // tests read fixtures and time child processes

mod capture_files;
mod common;
mod dissect_corpus;
mod dissect_oracle;
mod dissect_pcap;
mod findings;
mod flow_json;
mod ingest_runs;
mod kube_watch;
mod live_capture;
mod oracle_flows;
mod policy_corpus;
mod robustness;
mod suggest;
mod tui;
mod tui_export;
