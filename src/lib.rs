//! podwire: what Kubernetes pods and nodes say to each other on the wire.
//!
//! The pure core (`frame`, `decode`, `flow`, `engine`) has no I/O, clock or threads; the
//! shells (`capture`, `cli`, `report`) read files, parse arguments and write output.

pub mod capture;
pub mod cli;
pub mod decode;
pub mod engine;
pub mod flow;
pub mod frame;
pub mod report;
pub mod sanitize;
