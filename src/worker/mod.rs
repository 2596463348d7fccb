//! The reference worker (`temporal-bff worker`, and inside `temporal-bff dev`): a stand-in for
//! the other teams' workers, so the service can be run and tested on its own. It runs
//! `ReleaseWorkflow` ([`release`]) and `organizationBootstrapWorkflow` ([`bootstrap`]), whose
//! activities write domain events, with simulated DNS and e-mail providers ([`providers`]),
//! configured by the `SIM_*` variables ([`config`]). [`demo`] seeds demo data by starting real
//! workflows.
//!
//! Built only with the default-on `worker` Cargo feature: `serve` never touches this module
//! (`cargo check --lib --no-default-features` proves it). Everything it shares with the BFF is a
//! contract type (`crate::contracts`).

pub mod bootstrap;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
mod events;
pub mod providers;
pub mod release;
mod runner;

pub use self::{
    config::WorkerConfig,
    runner::{WorkerError, WorkerThread, run, spawn},
};
