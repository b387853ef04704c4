//! Cluster objects: the pure model ([`model`]), IP → identity attribution ([`identity`]), live
//! mode's pure half ([`live`]: watched kinds, relist diffs, staleness), the snapshot file loader
//! ([`snapshot`]) and the kube watchers and snapshot writer ([`watch`]); only the last two do I/O.

pub mod identity;
pub mod live;
pub mod model;
pub mod snapshot;
pub mod watch;

pub use identity::{Identity, IdentityIndex, IdentityOptions, Provenance};
pub use live::{Staleness, WatchEvent, WatchKind, WatchStatus};
pub use model::{ClusterDelta, ClusterObject, ClusterState, ObjectKind, Protocol};
pub use snapshot::{Snapshot, SnapshotError, load_policies, load_snapshot, parse_snapshot};
