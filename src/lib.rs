//! podwire: what Kubernetes pods and nodes say to each other on the wire.

pub mod cluster;
pub mod policy;
pub mod sanitize;
