//! `temporal-bff demo`: idempotently seeds a dev admin, releases in several states and two
//! organizations, by starting real workflows (the reference worker must be running for them to
//! move, as it is under `temporal-bff dev`).
//!
//! `demo --large` adds the releases that are read in part (`RELEASE_PART_ABOVE_NODES`): a
//! 10,211-node rollout through the reference worker, about as large as one workflow history
//! holds, and the 100,101-node release of [`huge`], written into the event store.

pub mod huge;

use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use sqlx::PgPool;
use temporalio_client::{
    Client, WorkflowIdReusePolicy, WorkflowSignalOptions, WorkflowStartOptions,
    errors::WorkflowStartError,
};
use uuid::Uuid;

use super::{bootstrap::OrganizationBootstrapWorkflow, release::ReleaseWorkflow};
use crate::{
    Config,
    auth::{password::Hasher, permissions},
    contracts::{
        bootstrap::{AdminUser, BootstrapInput, OrganizationType, workflow_id},
        ids::Key,
        release::{ReleaseSpec, RolloutOptions},
    },
    db,
};

/// The demo login (only `demo` and `dev` ever create it).
pub const DEMO_ADMIN_EMAIL: &str = "admin@example.com";
/// Its password: public, for local use only.
pub const DEMO_ADMIN_PASSWORD: &str = "admin123";

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Postgres failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Temporal failed.
    #[error("temporal: {0}")]
    Temporal(String),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] crate::auth::password::HashError),
}

/// Seeds everything; safe to run again (existing users and workflows are left alone).
pub async fn seed(config: &Config, db: &PgPool) -> Result<(), DemoError> {
    seed_admin(db).await?;
    let client = crate::temporal::connect(&config.temporal.address, &config.temporal.namespace)
        .await
        .map_err(|e| DemoError::Temporal(e.to_string()))?;
    seed_releases(&client, &config.temporal.release_task_queue).await?;
    seed_organizations(&client, &config.temporal.bootstrap_task_queue).await?;
    Ok(())
}

async fn seed_admin(db: &PgPool) -> Result<(), DemoError> {
    tracing::warn!(
        "DEMO DATA: creating login {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD} with every \
         permission. Never run `demo` against a database that matters."
    );
    let hash = Hasher::new()
        .hash(SecretString::from(DEMO_ADMIN_PASSWORD))
        .await?;
    sqlx::query(db::sql(
        "INSERT INTO bff.users (email, password_hash, role, permissions)
         VALUES ($1, $2, 'platform_admin', $3)
         ON CONFLICT (lower(email)) DO NOTHING",
    ))
    .bind(DEMO_ADMIN_EMAIL)
    .bind(hash)
    .bind(vec![
        permissions::CREATE_ROOT_ORGANIZATION.to_owned(),
        permissions::VIEW_ALL_ORGANIZATIONS.to_owned(),
    ])
    .execute(db)
    .await?;
    Ok(())
}

/// Seeds what `demo --large` adds to [`seed`]: [`LARGE`] through the reference worker, and
/// [`HUGE`] into the event store (about 15 s of projection triggers the first time).
pub async fn seed_large(config: &Config, db: &PgPool) -> Result<(), DemoError> {
    let client = crate::temporal::connect(&config.temporal.address, &config.temporal.namespace)
        .await
        .map_err(|e| DemoError::Temporal(e.to_string()))?;
    start_release(&client, &config.temporal.release_task_queue, large()).await?;
    let (key, name) = HUGE;
    let key = Key::parse(key).map_err(|e| DemoError::Temporal(e.to_string()))?;
    let started = Utc::now() - TimeDelta::hours(1);
    let written = huge::write(db, &key, name, huge::SHAPE, started).await?;
    tracing::info!(release.key = %key, events = written, "huge demo release written");
    Ok(())
}

/// The key and name of the 100,101-node demo release.
pub const HUGE: (&str, &str) = ("rel-2025-huge", "Huge release (100,101 nodes)");
/// The key of the 10,211-node demo rollout.
pub const LARGE: &str = "rel-2025-large";

/// 10 waves × 10 clusters × 100 apps through the reference worker, about four minutes long:
/// its history ends near 40,000 events, within Temporal's 51,200.
fn large() -> DemoRelease {
    DemoRelease {
        key: LARGE,
        name: "Large rollout (10,211 nodes)",
        shape: (10, 10, 100),
        options: RolloutOptions {
            step_millis: 200,
            fail_apps: Vec::new(),
            pause_between_waves_millis: 0,
        },
        pause: false,
    }
}

/// One demo release.
struct DemoRelease {
    key: &'static str,
    name: &'static str,
    /// Waves × clusters × apps.
    shape: (usize, usize, usize),
    options: RolloutOptions,
    /// Signal `pause` right after starting it.
    pause: bool,
}

fn releases() -> Vec<DemoRelease> {
    let release = |key, name, shape, step_millis, fail_apps: &[&str], between, pause| DemoRelease {
        key,
        name,
        shape,
        options: RolloutOptions {
            step_millis,
            fail_apps: fail_apps.iter().map(|s| (*s).to_owned()).collect(),
            pause_between_waves_millis: between,
        },
        pause,
    };
    vec![
        release(
            "rel-2025-01",
            "January release",
            (2, 3, 3),
            50,
            &[],
            0,
            false,
        ),
        release(
            "rel-2025-02",
            "February hotfix",
            (3, 2, 2),
            50,
            &["app-2"],
            0,
            false,
        ),
        release(
            "rel-2025-03",
            "March release (paused)",
            (3, 3, 4),
            500,
            &[],
            0,
            true,
        ),
        release(
            "rel-2025-04",
            "April release (rolling out)",
            (4, 3, 5),
            4_000,
            &[],
            15_000,
            false,
        ),
        release(
            "rel-2025-05",
            "Platform-wide upgrade",
            (10, 10, 10),
            10,
            &[],
            0,
            false,
        ),
        release("rel-2025-06", "June canary", (1, 1, 3), 100, &[], 0, false),
    ]
}

async fn seed_releases(client: &Client, task_queue: &str) -> Result<(), DemoError> {
    for release in releases() {
        start_release(client, task_queue, release).await?;
    }
    Ok(())
}

/// Starts `release` on the reference worker, unless it was started before.
async fn start_release(
    client: &Client,
    task_queue: &str,
    DemoRelease {
        key,
        name,
        shape,
        options,
        pause,
    }: DemoRelease,
) -> Result<(), DemoError> {
    let key = Key::parse(key).map_err(|e| DemoError::Temporal(e.to_string()))?;
    let spec = ReleaseSpec::synthetic(&key, name, shape, options);
    let id = spec.id().to_string();
    let started = client
        .start_workflow(
            ReleaseWorkflow::run,
            spec,
            WorkflowStartOptions::new(task_queue, id.clone())
                .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
                .build(),
        )
        .await;
    seeded(&id, started, pause, async |handle| {
        handle
            .signal(ReleaseWorkflow::pause, (), WorkflowSignalOptions::default())
            .await
    })
    .await
}

/// Handles a demo start: pauses a new workflow if asked, leaves an existing one alone.
async fn seeded<H, E: std::fmt::Display>(
    id: &str,
    started: Result<H, WorkflowStartError>,
    pause: bool,
    send_pause: impl AsyncFnOnce(H) -> Result<(), E>,
) -> Result<(), DemoError> {
    match started {
        Ok(handle) if pause => send_pause(handle)
            .await
            .map_err(|e| DemoError::Temporal(e.to_string())),
        Ok(_) => Ok(()),
        Err(WorkflowStartError::AlreadyStarted { .. }) => {
            tracing::info!(workflow.id = %id, "demo workflow exists; left alone");
            Ok(())
        }
        Err(error) => Err(DemoError::Temporal(error.to_string())),
    }
}

async fn seed_organizations(client: &Client, task_queue: &str) -> Result<(), DemoError> {
    let admin = |email: &str, first: &str, last: &str| AdminUser {
        email: email.into(),
        first_name: first.into(),
        last_name: last.into(),
        role: None,
    };
    // Fixed IDs keep seeding idempotent (the workflow ID derives from the organization ID).
    let namespace = Uuid::from_u128(0x9e2f_4d61_0c3b_4a7e_b5d8_2f1a_6c9e_3b70);
    let organizations = [
        (
            BootstrapInput {
                organization_id: Uuid::new_v5(&namespace, b"acme"),
                name: "Acme Health".into(),
                org_type: OrganizationType::Provider,
                subdomain: "acme-health".into(),
                admin_users: vec![
                    admin("ada@acme-health.example", "Ada", "Lovelace"),
                    admin("grace@acme-health.example", "Grace", "Hopper"),
                ],
            },
            false,
        ),
        (
            BootstrapInput {
                organization_id: Uuid::new_v5(&namespace, b"globex"),
                name: "Globex Partners".into(),
                org_type: OrganizationType::ProviderPartner,
                subdomain: "globex".into(),
                admin_users: vec![admin("hank@globex.example", "Hank", "Scorpio")],
            },
            // Paused after its first step, so there is always one onboarding in progress.
            true,
        ),
    ];
    for (input, pause) in organizations {
        let id = workflow_id(input.organization_id);
        let started = client
            .start_workflow(
                OrganizationBootstrapWorkflow::run,
                input,
                WorkflowStartOptions::new(task_queue, id.clone())
                    .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
                    .build(),
            )
            .await;
        seeded(&id, started, pause, async |handle| {
            handle
                .signal(
                    OrganizationBootstrapWorkflow::pause,
                    (),
                    WorkflowSignalOptions::default(),
                )
                .await
        })
        .await?;
    }
    Ok(())
}
