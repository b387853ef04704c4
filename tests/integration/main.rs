//! podwire's integration tests (one test binary): corpus agreement, robustness, CLI, demo.

#![allow(clippy::disallowed_methods)] // tests read fixtures and time child processes

mod capture_files;
mod dissect_corpus;
mod dissect_oracle;
mod dissect_pcap;
mod policy_corpus;
mod common;
mod oracle_flows;
mod robustness;
