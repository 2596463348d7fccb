//! DNS and e-mail behind small traits, with simulated implementations whose delay and failures
//! are configurable, so a real provider can be added later without touching the workflow.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

/// A provider refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

/// Manages an organization's DNS record.
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// Creates the record for `fqdn`; returns the provider's record ID.
    async fn create_record(&self, fqdn: &str) -> Result<String, ProviderError>;
    /// Checks the record resolves; `attempt` counts from 1.
    async fn verify(&self, fqdn: &str, attempt: u32) -> Result<(), ProviderError>;
    /// Removes the record (compensation).
    async fn remove_record(&self, fqdn: &str) -> Result<(), ProviderError>;
}

/// Sends invitation e-mails.
#[async_trait]
pub trait EmailProvider: Send + Sync {
    /// Sends an invitation to `to` for `organization`; returns the message ID.
    async fn send_invitation(&self, to: &str, organization: &str) -> Result<String, ProviderError>;
}

/// How DNS verification behaves in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailures {
    /// The first `n` attempts fail, then it succeeds.
    First(u32),
    /// Every attempt fails.
    Always,
}

/// Settings of the simulated providers (`SIM_*` variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulation {
    /// Delay of each DNS call (`SIM_DNS_DELAY_MS`).
    pub dns_delay: Duration,
    /// Failing verification attempts (`SIM_DNS_VERIFY_FAILURES`: a number or `always`).
    pub dns_verify_failures: VerifyFailures,
    /// Delay of each e-mail (`SIM_EMAIL_DELAY_MS`).
    pub email_delay: Duration,
}

impl Default for Simulation {
    fn default() -> Self {
        Self {
            dns_delay: Duration::from_millis(50),
            dns_verify_failures: VerifyFailures::First(0),
            email_delay: Duration::from_millis(20),
        }
    }
}

impl Simulation {
    /// The simulated providers with these settings.
    pub fn providers(self) -> (Arc<dyn DnsProvider>, Arc<dyn EmailProvider>) {
        (Arc::new(SimulatedDns(self)), Arc::new(SimulatedEmail(self)))
    }
}

struct SimulatedDns(Simulation);

#[async_trait]
impl DnsProvider for SimulatedDns {
    async fn create_record(&self, fqdn: &str) -> Result<String, ProviderError> {
        tokio::time::sleep(self.0.dns_delay).await;
        Ok(format!("sim-{fqdn}"))
    }

    async fn verify(&self, fqdn: &str, attempt: u32) -> Result<(), ProviderError> {
        tokio::time::sleep(self.0.dns_delay).await;
        let fails = match self.0.dns_verify_failures {
            VerifyFailures::Always => true,
            VerifyFailures::First(n) => attempt <= n,
        };
        if fails {
            Err(ProviderError(format!(
                "{fqdn} does not resolve yet (simulated)"
            )))
        } else {
            Ok(())
        }
    }

    async fn remove_record(&self, _fqdn: &str) -> Result<(), ProviderError> {
        tokio::time::sleep(self.0.dns_delay).await;
        Ok(())
    }
}

struct SimulatedEmail(Simulation);

#[async_trait]
impl EmailProvider for SimulatedEmail {
    async fn send_invitation(
        &self,
        to: &str,
        _organization: &str,
    ) -> Result<String, ProviderError> {
        tokio::time::sleep(self.0.email_delay).await;
        Ok(format!("sim-message-{to}"))
    }
}
