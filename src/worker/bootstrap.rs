//! `organizationBootstrapWorkflow`, the reference onboarding: each step is an activity that
//! writes its domain event; on failure it compensates (removes the DNS record, deactivates the
//! organization) and records `organization.bootstrap.failed` with the step and reason.

// The SDK's macros generate an undocumented constant per workflow and activity method.
#![allow(missing_docs)]

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, SyncWorkflowContext, WorkflowContext, WorkflowContextView,
    WorkflowResult,
    activities::{ActivityContext, ActivityError},
};
use temporalio_workflow::RetryPolicy;

use super::{
    events::{event, record},
    providers::{DnsProvider, EmailProvider, Simulation},
};
use crate::{
    contracts::{
        bootstrap::{AdminUser, BootstrapInput, Progress, Step, invitation_id},
        events::{
            BootstrapCompleted, BootstrapFailed, DnsRecordCreated, DnsRecordRemoved, EventPayload,
            OrganizationCreated, OrganizationDeactivated, RoleAssigned, UserInvited,
            VerificationFailed, Verified,
        },
    },
    events::Aggregate,
};

/// The reference bootstrap workflow.
#[workflow]
pub struct OrganizationBootstrapWorkflow {
    input: BootstrapInput,
    progress: Progress,
    paused: bool,
}

/// DNS verification is retried with backoff; these attempts fail the step for good (the
/// fixed failure reason, [`Step::failure_reason`], names the same number).
const VERIFY_MAX_ATTEMPTS: u32 = 5;

/// What every failed DNS verification attempt records: fixed text, the provider's goes to the log.
const NOT_RESOLVING: &str = "the DNS record does not resolve yet";

fn step_options(max_attempts: u32) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(10))
                .maximum_attempts(max_attempts)
                .build(),
        )
        .build()
}

/// Input of every step activity: the whole request plus what earlier steps learned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepInput {
    /// The workflow input.
    pub input: BootstrapInput,
    /// The admin a per-admin step is about.
    #[serde(default)]
    pub admin: Option<AdminUser>,
    /// The failing step and the underlying cause (for the worker's log; the event records
    /// the step's fixed reason).
    #[serde(default)]
    pub failure: Option<(Step, String)>,
}

impl OrganizationBootstrapWorkflow {
    fn begin(&mut self, step: Step) {
        self.progress.step = step;
    }

    fn finish(&mut self, step: Step) {
        self.progress.completed_steps.push(step);
    }
}

async fn run_steps(
    ctx: &WorkflowContext<OrganizationBootstrapWorkflow>,
    input: &BootstrapInput,
) -> Result<(), (Step, String)> {
    let step_input = |admin: Option<AdminUser>| StepInput {
        input: input.clone(),
        admin,
        failure: None,
    };
    macro_rules! step {
        ($step:expr, $activity:expr, $input:expr, $attempts:expr) => {{
            // A paused bootstrap holds between steps until `resume` (the organization is always
            // created first, so a paused bootstrap is visible).
            if $step != Step::CreateOrganization {
                ctx.wait_condition(|s| !s.paused)
                    .await
                    .map_err(|e| ($step, e.to_string()))?;
            }
            ctx.state_mut(|s| s.begin($step));
            ctx.execute_activity($activity, $input, step_options($attempts))
                .await
                .map_err(|e| ($step, innermost_cause(&e)))?;
        }};
    }
    step!(
        Step::CreateOrganization,
        BootstrapActivities::create_organization,
        step_input(None),
        5
    );
    ctx.state_mut(|s| s.finish(Step::CreateOrganization));
    step!(
        Step::ConfigureDns,
        BootstrapActivities::create_dns_record,
        step_input(None),
        5
    );
    ctx.state_mut(|s| s.finish(Step::ConfigureDns));
    step!(
        Step::VerifyDns,
        BootstrapActivities::verify_dns,
        step_input(None),
        VERIFY_MAX_ATTEMPTS
    );
    ctx.state_mut(|s| s.finish(Step::VerifyDns));
    step!(
        Step::AssignAdminRole,
        BootstrapActivities::assign_admin_roles,
        step_input(None),
        5
    );
    ctx.state_mut(|s| s.finish(Step::AssignAdminRole));
    ctx.state_mut(|s| s.begin(Step::SendInvitations));
    for admin in &input.admin_users {
        step!(
            Step::SendInvitations,
            BootstrapActivities::invite_admin,
            step_input(Some(admin.clone())),
            5
        );
    }
    ctx.state_mut(|s| s.finish(Step::SendInvitations));
    step!(
        Step::Complete,
        BootstrapActivities::complete_bootstrap,
        step_input(None),
        5
    );
    ctx.state_mut(|s| s.finish(Step::Complete));
    Ok(())
}

/// The innermost message of an activity failure (the provider's reason, not the wrapping).
fn innermost_cause(error: &temporalio_sdk::ActivityExecutionError) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut message = error.to_string();
    while let Some(e) = source {
        message = e.to_string();
        source = e.source();
    }
    message
}

#[workflow_methods]
impl OrganizationBootstrapWorkflow {
    /// Starts at the first step.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: BootstrapInput) -> Self {
        Self {
            input,
            progress: Progress {
                step: Step::CreateOrganization,
                state: "RUNNING".into(),
                completed_steps: Vec::new(),
                failure: None,
            },
            paused: false,
        }
    }

    /// Runs the steps; on failure compensates and records the failure.
    #[run(name = "organizationBootstrapWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<String> {
        let input = ctx.state(|s| s.input.clone());
        match run_steps(ctx, &input).await {
            Ok(()) => {
                ctx.state_mut(|s| s.progress.state = "COMPLETED".into());
                Ok("COMPLETED".into())
            }
            Err((step, reason)) => {
                ctx.state_mut(|s| {
                    s.progress.state = "COMPENSATING".into();
                    s.progress.failure = Some(step.failure_reason().to_owned());
                });
                let created_dns =
                    ctx.state(|s| s.progress.completed_steps.contains(&Step::ConfigureDns));
                let compensation = StepInput {
                    input: input.clone(),
                    admin: None,
                    failure: Some((step, reason.clone())),
                };
                if created_dns {
                    ctx.execute_activity(
                        BootstrapActivities::remove_dns_record,
                        compensation.clone(),
                        step_options(10),
                    )
                    .await?;
                }
                ctx.execute_activity(
                    BootstrapActivities::deactivate_organization,
                    compensation.clone(),
                    step_options(10),
                )
                .await?;
                ctx.execute_activity(
                    BootstrapActivities::record_failure,
                    compensation,
                    step_options(10),
                )
                .await?;
                ctx.state_mut(|s| s.progress.state = "FAILED".into());
                Err(ApplicationFailure::non_retryable(format!(
                    "{}: {}",
                    step.as_str(),
                    step.failure_reason()
                ))
                .into())
            }
        }
    }

    /// The current step and what is done (`state` is `PAUSED` while paused).
    #[query(name = "getProgress")]
    pub fn get_progress(&self, _ctx: &WorkflowContextView) -> Progress {
        let mut progress = self.progress.clone();
        if self.paused && progress.state == "RUNNING" {
            progress.state = "PAUSED".into();
        }
        progress
    }

    /// Holds the bootstrap before its next step (the running step finishes).
    #[signal(name = "pause")]
    pub fn pause(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.paused = true;
    }

    /// Continues a paused bootstrap.
    #[signal(name = "resume")]
    pub fn resume(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.paused = false;
    }
}

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
            .unwrap_or((Step::Complete, "unknown".into()));
        tracing::warn!(bootstrap.step = failed_step.as_str(), %cause, "organization bootstrap failed");
        let at = Utc::now();
        let payload = BootstrapFailed {
            organization_id: step.input.organization_id,
            step: failed_step,
            reason: failed_step.failure_reason().to_owned(),
            at,
        };
        self.emit(&ctx, "failed", org(&step.input), &payload, at)
            .await
    }
}
