//! NetworkPolicy evaluation: compact policy types ([`types`]), the indexed and cached
//! evaluator with explanations ([`eval`]) and the command functions the CLI calls
//! ([`commands`]). Everything here is pure.

pub mod commands;
pub mod eval;
pub mod types;

pub use commands::{
    CheckReport, MatrixCell, MatrixReport, PolicyCommandError, PortProto, policy_check,
    policy_matrix,
};
pub use eval::{DirectionVerdict, EndpointRef, PolicyEngine, RuleMatch, Verdict};
pub use types::{Direction, LabelSelector, NetworkPolicy, Peer, PolicyPort, PortSpec, Rule};
