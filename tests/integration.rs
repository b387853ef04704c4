//! podwire's integration tests (one test binary): corpus agreement, robustness, CLI, demo.

mod capture_files;
mod common;
mod oracle_flows;
mod robustness;
