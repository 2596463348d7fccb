//! Reading a bootstrap's status: the organization row, its outbox row, invitations and the
//! audit trail, loaded per batch of organizations (one SQL statement each), and the steps
//! derived from the events.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::model::Step;

/// A row of `organizations_projection`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    /// ID.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// `provider` / `provider_partner`.
    #[sqlx(rename = "type")]
    pub org_type: String,
    /// Slug (subdomain).
    pub slug: String,
    /// `{slug}.{BASE_DOMAIN}`.
    pub fqdn: String,
    /// `pending`, `active`, `failed`, `deactivated`.
    pub status: String,
    /// `pending` … `verified` / `failed`.
    pub subdomain_status: String,
    /// Workflow ID.
    pub workflow_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const ORG_COLUMNS: &str = "SELECT id, name, type, slug, fqdn, status, subdomain_status, workflow_id, error, created_at, updated_at FROM organizations_projection";

/// Organizations by ID.
pub async fn organizations(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<Vec<OrganizationRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{ORG_COLUMNS} WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// A page of organizations, oldest first, optionally only `only` (the caller's own).
pub async fn organization_page(
    pool: &PgPool,
    only: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<(Vec<OrganizationRow>, i64), sqlx::Error> {
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{ORG_COLUMNS} WHERE ($1::uuid IS NULL OR id = $1)
           AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
         ORDER BY created_at, id LIMIT $4"
    )))
    .bind(only)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool);
    let total = sqlx::query_scalar(
        "SELECT count(*) FROM organizations_projection WHERE ($1::uuid IS NULL OR id = $1)",
    )
    .bind(only)
    .fetch_one(pool);
    tokio::try_join!(rows, total)
}

/// The outbox row of an organization's start request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// Organization.
    pub organization_id: Uuid,
    /// `pending`, `processing`, `completed`, `failed`.
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Last failure.
    pub last_error: Option<String>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// One stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    /// Event ID.
    pub id: Uuid,
    /// Type.
    pub event_type: String,
    /// Payload.
    pub event_data: Value,
    /// Provenance.
    pub event_metadata: Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// An invitation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvitationRow {
    /// Organization.
    pub organization_id: Uuid,
    /// E-mail.
    pub email: String,
    /// Role.
    pub role: Option<String>,
    /// Status.
    pub status: String,
}

/// Everything a bootstrap status shows, for one organization.
#[derive(Debug, Clone, Default)]
pub struct BootstrapDetails {
    /// Its outbox row, if the BFF started it.
    pub outbox: Option<OutboxRow>,
    /// Its audit trail, oldest first.
    pub events: Vec<EventRow>,
    /// Its invitations.
    pub invitations: Vec<InvitationRow>,
}

/// Details of several organizations: three statements for the whole batch. Events are found
/// through the indexed `workflow_id` metadata of each organization's bootstrap workflow.
pub async fn details(
    pool: &PgPool,
    organizations: &[(Uuid, String)],
) -> Result<HashMap<Uuid, BootstrapDetails>, sqlx::Error> {
    let ids: Vec<Uuid> = organizations.iter().map(|(id, _)| *id).collect();
    let workflow_ids: Vec<&str> = organizations.iter().map(|(_, w)| w.as_str()).collect();
    let outbox = sqlx::query_as::<_, OutboxRow>(
        "SELECT DISTINCT ON (organization_id) organization_id, status, attempts, last_error, completed_at
           FROM workflow_queue_projection WHERE organization_id = ANY($1)
          ORDER BY organization_id, created_at DESC",
    )
    .bind(&ids)
    .fetch_all(pool);
    let events = sqlx::query_as::<_, (String, Uuid, String, Value, Value, DateTime<Utc>)>(
        "SELECT event_metadata ->> 'workflow_id', id, event_type, event_data, event_metadata, created_at
           FROM domain_events WHERE event_metadata ->> 'workflow_id' = ANY($1)
          ORDER BY created_at, id",
    )
    .bind(&workflow_ids)
    .fetch_all(pool);
    let invitations = sqlx::query_as::<_, InvitationRow>(
        "SELECT organization_id, email, role, status FROM invitations_projection
          WHERE organization_id = ANY($1) ORDER BY created_at, email",
    )
    .bind(&ids)
    .fetch_all(pool);
    let (outbox, events, invitations) = tokio::try_join!(outbox, events, invitations)?;

    let by_workflow: HashMap<&str, Uuid> = organizations
        .iter()
        .map(|(id, w)| (w.as_str(), *id))
        .collect();
    let mut out: HashMap<Uuid, BootstrapDetails> = ids
        .iter()
        .map(|id| (*id, BootstrapDetails::default()))
        .collect();
    for row in outbox {
        if let Some(details) = out.get_mut(&row.organization_id) {
            details.outbox = Some(row);
        }
    }
    for (workflow_id, id, event_type, event_data, event_metadata, created_at) in events {
        if let Some(details) = by_workflow
            .get(workflow_id.as_str())
            .and_then(|org| out.get_mut(org))
        {
            details.events.push(EventRow {
                id,
                event_type,
                event_data,
                event_metadata,
                created_at,
            });
        }
    }
    for row in invitations {
        if let Some(details) = out.get_mut(&row.organization_id) {
            details.invitations.push(row);
        }
    }
    Ok(out)
}

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
pub fn state(org_status: &str, outbox: Option<&OutboxRow>) -> BootstrapState {
    // `deactivated` alone is compensation in progress: FAILED comes with the failure event.
    match (org_status, outbox.map(|o| o.status.as_str())) {
        (_, Some("failed")) | ("failed", _) => BootstrapState::Failed,
        ("active", _) => BootstrapState::Completed,
        (_, Some("pending" | "processing")) => BootstrapState::Queued,
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
        let outbox = |status: &str| OutboxRow {
            organization_id: Uuid::nil(),
            status: status.to_owned(),
            attempts: 1,
            last_error: None,
            completed_at: None,
        };

        assert_eq!(
            state("pending", Some(&outbox("pending"))),
            BootstrapState::Queued
        );
        assert_eq!(
            state("pending", Some(&outbox("completed"))),
            BootstrapState::Running
        );
        assert_eq!(
            state("deactivated", Some(&outbox("completed"))),
            BootstrapState::Running
        );
        assert_eq!(state("failed", None), BootstrapState::Failed);
        assert_eq!(
            state("pending", Some(&outbox("failed"))),
            BootstrapState::Failed
        );
        assert_eq!(state("active", None), BootstrapState::Completed);
    }
}
