//! Batched loading for onboarding: organizations, their bootstrap details and their workflow
//! descriptions, per request.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_graphql::dataloader::{DataLoader, Loader};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    error::ApiError,
    metrics::RequestStats,
    onboarding::store::{self, BootstrapDetails, OrganizationRow},
    temporal::{TemporalHandle, WorkflowSummary},
};

/// How long a status read waits for Temporal's describe before leaving `workflow` out.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Key of a bootstrap's details: the organization and its workflow ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DetailsKey(pub Uuid, pub String);

/// Key of a Temporal describe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowKey(pub String);

/// Loads organizations, bootstrap details and workflow descriptions in batches.
pub struct OnboardingLoader {
    db: PgPool,
    temporal: TemporalHandle,
    stats: Arc<RequestStats>,
}

impl OnboardingLoader {
    /// A per-request loader.
    pub fn new(db: PgPool, temporal: TemporalHandle, stats: Arc<RequestStats>) -> DataLoader<Self> {
        DataLoader::new(
            Self {
                db,
                temporal,
                stats,
            },
            tokio::spawn,
        )
        .delay(Duration::ZERO)
    }
}

impl Loader<Uuid> for OnboardingLoader {
    type Value = OrganizationRow;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, OrganizationRow>, Self::Error> {
        let rows = store::organizations(&self.db, &self.stats, keys)
            .await
            .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

impl Loader<DetailsKey> for OnboardingLoader {
    type Value = BootstrapDetails;
    type Error = Arc<sqlx::Error>;

    async fn load(
        &self,
        keys: &[DetailsKey],
    ) -> Result<HashMap<DetailsKey, BootstrapDetails>, Self::Error> {
        let pairs: Vec<(Uuid, String)> = keys.iter().map(|k| (k.0, k.1.clone())).collect();
        let mut details = store::details(&self.db, &self.stats, &pairs)
            .await
            .map_err(Arc::new)?;
        Ok(keys
            .iter()
            .filter_map(|key| details.remove(&key.0).map(|d| (key.clone(), d)))
            .collect())
    }
}

impl Loader<WorkflowKey> for OnboardingLoader {
    type Value = WorkflowSummary;
    type Error = Arc<sqlx::Error>;

    async fn load(
        &self,
        keys: &[WorkflowKey],
    ) -> Result<HashMap<WorkflowKey, WorkflowSummary>, Self::Error> {
        // Absent, not an error, when Temporal is down or slow; at once while it has been
        // failing reads in a row (the circuit is open).
        if !self.temporal.may_read() {
            return Ok(HashMap::new());
        }
        if self
            .temporal
            .read(DESCRIBE_TIMEOUT, self.temporal.client())
            .await
            .is_err()
        {
            return Ok(HashMap::new());
        }
        let described = futures::future::join_all(keys.iter().map(|key| async move {
            let _slot = self.stats.temporal_query().await;
            let summary = self
                .temporal
                .read(DESCRIBE_TIMEOUT, self.temporal.describe_workflow(&key.0))
                .await;
            (key.clone(), summary)
        }))
        .await;
        Ok(described
            .into_iter()
            .filter_map(|(key, summary)| match summary {
                Ok(summary) => Some((key, summary)),
                Err(error) => {
                    tracing::warn!(%error, "describe failed or timed out; workflow left out");
                    None
                }
            })
            .collect())
    }
}

/// A loader's failure as a client error: internal, keeping its cause for the log.
pub fn loader_error(error: Arc<sqlx::Error>) -> ApiError {
    ApiError::database(&error)
}
