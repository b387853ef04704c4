//! Cluster objects: the pure model ([`model`]), IP → identity attribution ([`identity`]) and
//! the snapshot file loader ([`snapshot`], the only part here that does I/O).

pub mod identity;
pub mod model;
pub mod snapshot;

pub use identity::{Identity, IdentityIndex, IdentityOptions, Provenance};
pub use model::{ClusterDelta, ClusterObject, ClusterState, ObjectKind, Protocol};
pub use snapshot::{Snapshot, SnapshotError, load_policies, load_snapshot, parse_snapshot};
