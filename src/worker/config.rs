//! The reference worker's own settings: the simulated providers' `SIM_*` knobs, read with the
//! same reader as the service's configuration (every problem named in one message).

use super::providers::{Simulation, VerifyFailures};
use crate::config::{ConfigError, env::Reader};

/// Every environment variable [`WorkerConfig`] reads.
pub const VARIABLES: &[&str] = &[
    "SIM_DNS_DELAY_MS",
    "SIM_EMAIL_DELAY_MS",
    "SIM_DNS_VERIFY_FAILURES",
];

/// The worker's settings beyond the service's `Config` (whose database, Temporal and queue
/// settings it shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerConfig {
    /// The simulated DNS and e-mail providers.
    pub simulation: Simulation,
}

impl WorkerConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (a variable name → its value).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Reader::new(&lookup);
        let dns_delay = env.millis_in("SIM_DNS_DELAY_MS", 50, 0..=60_000);
        let email_delay = env.millis_in("SIM_EMAIL_DELAY_MS", 20, 0..=60_000);
        let dns_verify_failures = env.parsed("SIM_DNS_VERIFY_FAILURES", "0", |raw| match raw {
            "always" => Ok(VerifyFailures::Always),
            n => n
                .parse()
                .map(VerifyFailures::First)
                .map_err(|_| "must be a number of failing attempts or always".to_owned()),
        });
        let config = (|| {
            Some(Self {
                simulation: Simulation {
                    dns_delay: dns_delay?,
                    dns_verify_failures: dns_verify_failures?,
                    email_delay: email_delay?,
                },
            })
        })();
        env.finish(config)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn defaults_simulate_quick_providers_that_always_succeed() {
        let config = WorkerConfig::from_lookup(|_| None).map_err(|e| e.to_string());

        assert_eq!(
            config.map(|c| c.simulation),
            Ok(Simulation {
                dns_delay: Duration::from_millis(50),
                dns_verify_failures: VerifyFailures::First(0),
                email_delay: Duration::from_millis(20),
            })
        );
    }

    #[test]
    fn every_bad_knob_is_named() {
        let error = WorkerConfig::from_lookup(|name| {
            Some(match name {
                "SIM_DNS_VERIFY_FAILURES" => "sometimes".to_owned(),
                _ => "-1".to_owned(),
            })
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();

        for name in VARIABLES {
            assert!(error.contains(name), "{name} not in {error:?}");
        }
    }
}
