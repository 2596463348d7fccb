//! Organization onboarding: the bootstrap workflow (reference worker side), its simulated DNS
//! and e-mail providers, and the shapes it exchanges.

pub mod model;
pub mod providers;
pub mod workflow;
