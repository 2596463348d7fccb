//! Release rollouts: `Release → Wave → Cluster → Bundle → App`.
//!
//! `ids` parses global IDs, `model` holds the spec and tree as the workflow exchanges them,
//! `workflow` is the reference `ReleaseWorkflow` and its activities.

pub mod graphql;
pub mod ids;
pub mod live;
pub mod model;
pub mod store;
pub mod tree;
pub mod workflow;
