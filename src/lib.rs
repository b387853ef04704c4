//! podwire: what Kubernetes pods and nodes say to each other on the wire.

pub mod dissect;
pub mod sanitize;
