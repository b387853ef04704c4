//! podwire: what Kubernetes pods and nodes say to each other on the wire.
//!
//! The pure core (`frame`, `decode`, `flow`, `engine`, `cluster` model and identity,
//! `policy`, `findings`, `suggest`) has no I/O, clock or threads; the shells (`capture`, `cli`,
//! `report`, `cluster::snapshot`, `findings::commands`, `suggest::commands`) read files, parse
//! arguments and write output.

pub mod capture;
pub mod cli;
pub mod cluster;
pub mod decode;
pub mod dissect;
pub mod engine;
pub mod findings;
pub mod flow;
pub mod frame;
pub mod policy;
pub mod prefetch;
pub mod report;
pub mod sanitize;
pub mod suggest;
pub mod summary;
pub mod tui;
