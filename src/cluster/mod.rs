//! Cluster objects: the pure model ([`model`]), IP → identity attribution ([`identity`]) and
//! the snapshot file loader ([`snapshot`], the only part here that does I/O).

// pub mod identity;
pub mod model;
// pub mod snapshot;


pub use model::{ClusterDelta, ClusterObject, ClusterState, ObjectKind, Protocol};

