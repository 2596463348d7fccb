//! A bootstrap's state and steps, derived from its events (pure: no I/O). The events are the
//! truth; this reads them the way a person would read the audit trail.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::store::{EventRow, OrganizationStatus, OutboxRow, QueueStatus};
use crate::contracts::bootstrap::Step;

/// The state of a whole bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum BootstrapState {
    /// Accepted, not started yet (Temporal unreachable).
    Queued,
    /// The workflow runs.
    Running,
    /// Done.
    Completed,
    /// Failed (see `failure`).
    Failed,
}

/// The status of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum StepStatus {
    /// Not reached.
    Pending,
    /// Running (or retrying).
    Running,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Undone by compensation after a later failure.
    Compensated,
}

/// One step as derived from the events.
#[derive(Debug, Clone, PartialEq, async_graphql::SimpleObject)]
pub struct BootstrapStep {
    /// `CREATE_ORGANIZATION`, `CONFIGURE_DNS`, `VERIFY_DNS`, `ASSIGN_ADMIN_ROLE`,
    /// `SEND_INVITATIONS` or `COMPLETE`.
    pub name: String,
    /// Status.
    pub status: StepStatus,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// The attempt number (DNS verification is retried).
    pub attempt: Option<i32>,
    /// The last error.
    pub error: Option<String>,
}

/// The overall state, from the organization row and the outbox.
pub fn state(org_status: OrganizationStatus, outbox: Option<&OutboxRow>) -> BootstrapState {
    // `deactivated` alone is compensation in progress: FAILED comes with the failure event.
    match (org_status, outbox.map(|o| o.status)) {
        (_, Some(QueueStatus::Failed)) | (OrganizationStatus::Failed, _) => BootstrapState::Failed,
        (OrganizationStatus::Active, _) => BootstrapState::Completed,
        (_, Some(QueueStatus::Pending | QueueStatus::Processing)) => BootstrapState::Queued,
        _ => BootstrapState::Running,
    }
}

/// The step an `organization.bootstrap.failed` event names, if it names a known one.
pub fn failed_step(data: &Value) -> Option<Step> {
    serde_json::from_value::<Step>(data["step"].clone()).ok()
}

fn step_index(step: Step) -> usize {
    Step::ALL.iter().position(|s| *s == step).unwrap_or(0)
}

/// Derives the steps from the audit trail; `admins` is how many invitations make the
/// invitation step complete.
pub fn steps(events: &[EventRow], admins: usize, state: BootstrapState) -> Vec<BootstrapStep> {
    let mut steps: Vec<BootstrapStep> = Step::ALL
        .iter()
        .map(|step| BootstrapStep {
            name: step.as_str().to_owned(),
            status: StepStatus::Pending,
            started_at: None,
            completed_at: None,
            attempt: None,
            error: None,
        })
        .collect();
    let mut invited = 0;
    let mut started_at = None;
    for event in events {
        let at = event.created_at;
        let data = &event.event_data;
        let mut finish = |step: Step, status: StepStatus| {
            let s = &mut steps[step_index(step)];
            s.status = status;
            s.completed_at = Some(at);
        };
        match event.event_type.as_str() {
            "organization.bootstrap.workflow_started" => started_at = started_at.or(Some(at)),
            "organization.created" => finish(Step::CreateOrganization, StepStatus::Succeeded),
            "organization.subdomain.dns_record_created" => {
                finish(Step::ConfigureDns, StepStatus::Succeeded)
            }
            "organization.subdomain.verification_failed" => {
                let s = &mut steps[step_index(Step::VerifyDns)];
                s.status = StepStatus::Running;
                s.attempt = data["attempt"].as_i64().and_then(|a| i32::try_from(a).ok());
                // Fixed text: an event's own reason may come from another team's worker.
                s.error = Some("the DNS record does not resolve yet; retrying".to_owned());
            }
            "organization.subdomain.verified" => {
                finish(Step::VerifyDns, StepStatus::Succeeded);
                let s = &mut steps[step_index(Step::VerifyDns)];
                s.attempt = data["attempt"].as_i64().and_then(|a| i32::try_from(a).ok());
            }
            "user.role.assigned" => finish(Step::AssignAdminRole, StepStatus::Succeeded),
            "user.invited" => {
                invited += 1;
                let status = if invited >= admins {
                    StepStatus::Succeeded
                } else {
                    StepStatus::Running
                };
                finish(Step::SendInvitations, status);
            }
            "organization.bootstrap.completed" => finish(Step::Complete, StepStatus::Succeeded),
            // Compensation changes the status only; the step's own times stay.
            "organization.subdomain.dns_record_removed" => {
                steps[step_index(Step::ConfigureDns)].status = StepStatus::Compensated;
            }
            "organization.deactivated" => {
                steps[step_index(Step::CreateOrganization)].status = StepStatus::Compensated;
            }
            "organization.bootstrap.failed" => {
                let step = failed_step(data).unwrap_or(Step::Complete);
                let s = &mut steps[step_index(step)];
                s.status = StepStatus::Failed;
                s.completed_at = Some(at);
                s.error = Some(step.failure_reason().to_owned());
            }
            _ => {}
        }
    }
    // Steps run one after another: each starts when the one before it finished.
    let mut previous_done = started_at;
    for step in &mut steps {
        if step.status != StepStatus::Pending {
            step.started_at = previous_done.or(step.completed_at);
        }
        previous_done = step.completed_at.or(previous_done);
    }
    // While the workflow runs, the first step not reached yet is the one running (unless one
    // is already known to run, e.g. DNS verification between retries).
    let busy = steps
        .iter()
        .any(|s| matches!(s.status, StepStatus::Running | StepStatus::Failed));
    if state == BootstrapState::Running && !busy {
        let last_done = steps
            .iter()
            .filter_map(|s| s.completed_at)
            .max()
            .or(started_at);
        if let Some(next) = steps.iter_mut().find(|s| s.status == StepStatus::Pending) {
            next.status = StepStatus::Running;
            next.started_at = last_done;
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn event(second: u32, event_type: &str, data: Value) -> EventRow {
        EventRow {
            id: Uuid::new_v4(),
            event_type: event_type.to_owned(),
            event_data: data,
            event_metadata: json!({}),
            created_at: Utc
                .with_ymd_and_hms(2025, 1, 1, 10, 0, second)
                .single()
                .unwrap_or_default(),
        }
    }

    fn summary(steps: &[BootstrapStep]) -> Vec<(&str, StepStatus, Option<i32>)> {
        steps
            .iter()
            .map(|s| (s.name.as_str(), s.status, s.attempt))
            .collect()
    }

    #[test]
    fn a_retrying_verification_is_the_running_step_with_its_attempt_and_error() {
        let events = [
            event(0, "organization.bootstrap.workflow_started", json!({})),
            event(1, "organization.created", json!({})),
            event(2, "organization.subdomain.dns_record_created", json!({})),
            event(
                3,
                "organization.subdomain.verification_failed",
                json!({ "attempt": 2, "reason": "no record" }),
            ),
        ];

        let steps = steps(&events, 1, BootstrapState::Running);

        assert_eq!(
            summary(&steps),
            [
                ("CREATE_ORGANIZATION", StepStatus::Succeeded, None),
                ("CONFIGURE_DNS", StepStatus::Succeeded, None),
                ("VERIFY_DNS", StepStatus::Running, Some(2)),
                ("ASSIGN_ADMIN_ROLE", StepStatus::Pending, None),
                ("SEND_INVITATIONS", StepStatus::Pending, None),
                ("COMPLETE", StepStatus::Pending, None),
            ]
        );
        assert_eq!(
            steps[2].error.as_deref(),
            Some("the DNS record does not resolve yet; retrying"),
            "fixed text, never the event's own reason"
        );
        assert_eq!(
            steps[2].started_at, steps[1].completed_at,
            "a step starts when the last ended"
        );
    }

    #[test]
    fn a_failure_marks_its_step_failed_and_compensated_steps_keep_their_times() {
        let events = [
            event(1, "organization.created", json!({})),
            event(2, "organization.subdomain.dns_record_created", json!({})),
            event(
                3,
                "organization.subdomain.verification_failed",
                json!({ "attempt": 5, "reason": "no record" }),
            ),
            event(4, "organization.subdomain.dns_record_removed", json!({})),
            event(5, "organization.deactivated", json!({})),
            event(
                6,
                "organization.bootstrap.failed",
                json!({ "step": "VERIFY_DNS", "reason": "no record" }),
            ),
        ];

        let steps = steps(&events, 1, BootstrapState::Failed);

        let statuses: Vec<StepStatus> = steps.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [
                StepStatus::Compensated,
                StepStatus::Compensated,
                StepStatus::Failed,
                StepStatus::Pending,
                StepStatus::Pending,
                StepStatus::Pending,
            ]
        );
        assert_eq!(steps[1].completed_at, Some(events[1].created_at));
    }

    #[test]
    fn invitations_complete_only_when_every_admin_is_invited() {
        let events = [event(1, "user.invited", json!({}))];

        let partial = steps(&events, 2, BootstrapState::Running);
        let complete = steps(&events, 1, BootstrapState::Running);

        assert_eq!(partial[4].status, StepStatus::Running);
        assert_eq!(complete[4].status, StepStatus::Succeeded);
    }

    #[test]
    fn the_state_comes_from_the_organization_and_its_outbox_row() {
        use OrganizationStatus as Org;
        let outbox = |status: QueueStatus| OutboxRow {
            organization_id: Uuid::nil(),
            status,
            last_error: None,
            completed_at: None,
        };

        assert_eq!(
            state(Org::Pending, Some(&outbox(QueueStatus::Pending))),
            BootstrapState::Queued
        );
        assert_eq!(
            state(Org::Pending, Some(&outbox(QueueStatus::Completed))),
            BootstrapState::Running
        );
        assert_eq!(
            state(Org::Deactivated, Some(&outbox(QueueStatus::Completed))),
            BootstrapState::Running
        );
        assert_eq!(state(Org::Failed, None), BootstrapState::Failed);
        assert_eq!(
            state(Org::Pending, Some(&outbox(QueueStatus::Failed))),
            BootstrapState::Failed
        );
        assert_eq!(state(Org::Active, None), BootstrapState::Completed);
    }
}
