//! What every feature's GraphQL uses, below the features: connections and cursors
//! ([`connection`]) and the request ID resolvers read ([`context`]). The schema the features make
//! together, its limits and its introspection budget are `crate::schema`.

pub mod connection;
pub mod context;
