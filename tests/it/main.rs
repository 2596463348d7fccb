//! The integration tests: one binary, real Postgres, real Temporal dev server.

// A fixture or test that cannot go on says why (`.expect("why")`); `unwrap` stays denied.
#![allow(clippy::expect_used)]

mod fixtures;
mod harness;

mod background;
mod budget;
mod compiled;
mod compose;
mod conditional;
mod config;
mod contracts;
mod dev;
mod docs;
mod event_store;
mod gate;
mod graphiql;
mod graphql;
mod health;
mod history;
mod hostile;
mod http;
mod identity;
mod kubernetes;
mod layout;
mod login;
mod metrics;
mod migrations;
mod node_search;
mod onboarding_graphql;
mod onboarding_worker;
mod outbox;
mod pooler;
mod release_control;
mod release_parts;
mod release_reads;
mod releases_graphql;
mod releases_worker;
mod rest_api;
mod shared_database;
mod subscriptions;
mod terminated;
mod tokens;
mod trace_context;
