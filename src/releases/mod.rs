//! Release rollouts: `Release → Wave → Cluster → Bundle → App`.
//!
//! The read side: projection reads (`store`), live reads shared across requests (`live`),
//! trees with roll-ups (`tree`), where a tree comes from (`read`), the truth about workflows
//! that closed without writing their end (`closed`), each node's status transitions from the
//! event store (`history`), live state for subscriptions computed
//! once per replica (`hub`), pause, resume and cancel (`control`) and the GraphQL objects
//! (`graphql`); the old dashboard's REST routes are `http::rest::releases`. The IDs and the
//! tree's shape are contracts (`contracts::ids`, `contracts::release`); the workflow is another
//! process's (`worker::release` is the reference one).

pub mod cache;
pub mod closed;
pub mod control;
pub mod graphql;
pub mod history;
pub mod hub;
pub mod live;
pub mod read;
pub mod store;
pub mod tree;
