//! Organization onboarding as the BFF serves it: the validated start request and its
//! never-lost write path (`request`, `start`, queued through `crate::outbox`), the status read
//! (`store`, `steps`, `graphql`), which organizations changed for subscriptions (`watch`),
//! and bootstraps whose workflow closed without writing their end (`closed`); the old REST route
//! is `http::rest::onboarding`. The workflow itself is another process's (`worker::bootstrap` is the reference
//! one); its shapes are `contracts::bootstrap`.

pub mod closed;
pub mod graphql;
pub mod request;
pub mod start;
pub mod steps;
pub mod store;
pub mod watch;
