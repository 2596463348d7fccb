//! Release rollouts: `Release → Wave → Cluster → Bundle → App`.
//!
//! `ids` parses global IDs, `model` holds the spec and tree as the workflow exchanges them,
//! `workflow` is the reference `ReleaseWorkflow` and its activities.

pub mod ids;
pub mod model;
pub mod workflow;
