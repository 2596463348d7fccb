//! Organization onboarding: the validated start request and its never-lost write path
//! (`request`, `start`, `dispatcher`), the status read (`status`, `graphql`), the old REST route
//! (`rest`), and the reference bootstrap workflow with its simulated providers (`workflow`,
//! `providers`, `model`).

pub mod dispatcher;
pub mod graphql;
pub mod model;
pub mod providers;
pub mod request;
pub mod rest;
pub mod start;
pub mod status;
pub mod workflow;
