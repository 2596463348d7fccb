//! Release rollouts: `Release → Wave → Cluster → Bundle → App`.
//!
//! The read side: projection reads (`store`), live reads shared across requests (`live`),
//! trees with roll-ups (`tree`) and the GraphQL objects (`graphql`). The IDs and the tree's
//! shape are contracts (`contracts::ids`, `contracts::release`); the workflow is another
//! process's (`worker::release` is the reference one).

pub mod cache;
pub mod graphql;
pub mod live;
pub mod store;
pub mod tree;
