//! NetworkPolicy evaluation: compact policy types ([`types`]), the indexed and cached
//! evaluator with explanations ([`eval`]) and the command functions the CLI calls
//! ([`commands`]). Everything here is pure.

// pub mod commands;
pub mod eval;
pub mod types;


pub use eval::{DirectionVerdict, EndpointRef, PolicyEngine, RuleMatch, Verdict};
pub use types::{Direction, LabelSelector, NetworkPolicy, Peer, PolicyPort, PortSpec, Rule};
