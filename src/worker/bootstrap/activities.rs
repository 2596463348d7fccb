//! The bootstrap activities: each does its step through the providers and writes its event.

// The SDK's macros generate an undocumented constant per activity method.
#![allow(missing_docs)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use temporalio_macros::activities;
use temporalio_sdk::{
    ApplicationFailure,
    activities::{ActivityContext, ActivityError},
};

use super::StepInput;
use crate::{
    contracts::{
        bootstrap::{BootstrapInput, Step, invitation_id},
        events::{
            BootstrapCompleted, BootstrapFailed, DnsRecordCreated, DnsRecordRemoved, EventPayload,
            OrganizationCreated, OrganizationDeactivated, RoleAssigned, UserInvited,
            VerificationFailed, Verified,
        },
    },
    events::Aggregate,
    worker::{
        events::{event, record},
        providers::{DnsProvider, EmailProvider, Simulation},
    },
};

/// What every failed DNS verification attempt records: fixed text, the provider's goes to the log.
const NOT_RESOLVING: &str = "the DNS record does not resolve yet";

/// The bootstrap activities: each does its step and writes its event(s).
pub struct BootstrapActivities {
    db: PgPool,
    dns: Arc<dyn DnsProvider>,
    email: Arc<dyn EmailProvider>,
    base_domain: String,
}

impl BootstrapActivities {
    /// Activities writing to `db`, with the simulated providers.
    pub fn new(db: PgPool, simulation: Simulation, base_domain: String) -> Self {
        let (dns, email) = simulation.providers();
        Self {
            db,
            dns,
            email,
            base_domain,
        }
    }

    fn fqdn(&self, input: &BootstrapInput) -> String {
        format!("{}.{}", input.subdomain, self.base_domain)
    }

    /// Writes one event of this activity, which happened `at` (the payload's own time).
    async fn emit(
        &self,
        ctx: &ActivityContext,
        discriminator: &str,
        aggregate: Aggregate<'_>,
        payload: &impl EventPayload,
        at: DateTime<Utc>,
    ) -> Result<(), ActivityError> {
        record(
            &self.db,
            &[event(ctx, discriminator, payload, aggregate, at)],
        )
        .await
    }
}

fn org(input: &BootstrapInput) -> Aggregate<'static> {
    ("organization", input.organization_id)
}

#[activities]
impl BootstrapActivities {
    /// Creates the organization (`organization.created`).
    #[activity]
    pub async fn create_organization(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let input = &step.input;
        let at = Utc::now();
        let payload = OrganizationCreated {
            organization_id: input.organization_id,
            name: input.name.clone(),
            org_type: input.org_type,
            slug: input.subdomain.clone(),
            fqdn: self.fqdn(input),
            at,
        };
        self.emit(&ctx, "created", org(input), &payload, at).await
    }

    /// Creates the DNS record (`organization.subdomain.dns_record_created`).
    #[activity]
    pub async fn create_dns_record(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let fqdn = self.fqdn(&step.input);
        let record_id = self.dns.create_record(&fqdn).await?;
        let at = Utc::now();
        let payload = DnsRecordCreated {
            fqdn,
            record_id,
            at,
        };
        self.emit(&ctx, "dns", org(&step.input), &payload, at).await
    }

    /// Verifies the DNS record (`organization.subdomain.verified`); each failed attempt records
    /// `organization.subdomain.verification_failed` and is retried by Temporal with backoff.
    #[activity]
    pub async fn verify_dns(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let fqdn = self.fqdn(&step.input);
        let attempt = ctx.info().attempt;
        let outcome = self.dns.verify(&fqdn, attempt).await;
        let at = Utc::now();
        match outcome {
            Ok(()) => {
                let payload = Verified { fqdn, attempt, at };
                self.emit(&ctx, "verified", org(&step.input), &payload, at)
                    .await
            }
            Err(error) => {
                // One event per attempt, so the retries are visible in the audit trail.
                tracing::warn!(dns.fqdn = %fqdn, attempt, cause = %error.0, "DNS verification attempt failed");
                let payload = VerificationFailed {
                    fqdn,
                    attempt,
                    reason: NOT_RESOLVING.to_owned(),
                    at,
                };
                let discriminator = format!("verify-failed-{attempt}");
                self.emit(&ctx, &discriminator, org(&step.input), &payload, at)
                    .await?;
                Err(ActivityError::application(ApplicationFailure::new(error)))
            }
        }
    }

    /// Grants each admin the admin role (`user.role.assigned`).
    #[activity]
    pub async fn assign_admin_roles(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let input = &step.input;
        for admin in &input.admin_users {
            let email = admin.email.to_lowercase();
            let at = Utc::now();
            let payload = RoleAssigned {
                organization_id: input.organization_id,
                email: email.clone(),
                role: admin.role().to_owned(),
                at,
            };
            let user = ("user", invitation_id(input.organization_id, &email));
            self.emit(&ctx, &format!("role-{email}"), user, &payload, at)
                .await?;
        }
        Ok(())
    }

    /// Invites one admin by e-mail (`user.invited`).
    #[activity]
    pub async fn invite_admin(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let input = &step.input;
        let Some(admin) = step.admin.as_ref() else {
            return Err(ActivityError::application(
                ApplicationFailure::non_retryable("invite_admin needs an admin"),
            ));
        };
        let email = admin.email.to_lowercase();
        let message_id = self.email.send_invitation(&email, &input.name).await?;
        let at = Utc::now();
        let invitation = invitation_id(input.organization_id, &email);
        let payload = UserInvited {
            invitation_id: invitation,
            organization_id: input.organization_id,
            email,
            first_name: admin.first_name.clone(),
            last_name: admin.last_name.clone(),
            role: admin.role().to_owned(),
            message_id,
            at,
        };
        self.emit(&ctx, "invited", ("user", invitation), &payload, at)
            .await
    }

    /// Marks the bootstrap done (`organization.bootstrap.completed`).
    #[activity]
    pub async fn complete_bootstrap(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let at = Utc::now();
        let payload = BootstrapCompleted {
            organization_id: step.input.organization_id,
            at,
        };
        self.emit(&ctx, "completed", org(&step.input), &payload, at)
            .await
    }

    /// Compensation: removes the DNS record (`organization.subdomain.dns_record_removed`).
    #[activity]
    pub async fn remove_dns_record(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let fqdn = self.fqdn(&step.input);
        self.dns.remove_record(&fqdn).await?;
        let at = Utc::now();
        let payload = DnsRecordRemoved { fqdn, at };
        self.emit(&ctx, "dns-removed", org(&step.input), &payload, at)
            .await
    }

    /// Compensation: deactivates the organization (`organization.deactivated`).
    #[activity]
    pub async fn deactivate_organization(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let at = Utc::now();
        let payload = OrganizationDeactivated {
            organization_id: step.input.organization_id,
            reason: "bootstrap failed".to_owned(),
            at,
        };
        self.emit(&ctx, "deactivated", org(&step.input), &payload, at)
            .await
    }

    /// Records the failure (`organization.bootstrap.failed`) with the step and its fixed reason.
    #[activity]
    pub async fn record_failure(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: StepInput,
    ) -> Result<(), ActivityError> {
        let (failed_step, cause) = step
            .failure
            .clone()
            .unwrap_or_else(|| (Step::Complete, "unknown".into()));
        tracing::warn!(bootstrap.step = failed_step.as_str(), %cause, "organization bootstrap failed");
        let at = Utc::now();
        let payload = BootstrapFailed {
            organization_id: step.input.organization_id,
            step: failed_step,
            reason: failed_step.failure_reason().to_owned(),
            at,
            close_status: None,
        };
        self.emit(&ctx, "failed", org(&step.input), &payload, at)
            .await
    }
}
