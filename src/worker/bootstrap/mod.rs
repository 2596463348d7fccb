//! `organizationBootstrapWorkflow`, the reference onboarding: each step is an activity that
//! writes its domain event; on failure it compensates (removes the DNS record, deactivates the
//! organization) and records `organization.bootstrap.failed` with the step and reason.

// The SDK's macros generate an undocumented constant per workflow and activity method.
#![allow(missing_docs)]

mod activities;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, SyncWorkflowContext, WorkflowContext, WorkflowContextView,
    WorkflowResult,
};
use temporalio_workflow::RetryPolicy;

pub use self::activities::BootstrapActivities;
use crate::contracts::bootstrap::{AdminUser, BootstrapInput, Progress, Step};

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
