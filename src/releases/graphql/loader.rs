//! Batched loading of release trees, per request: the rows of a batch of releases in one
//! statement, then their trees: running ones live (shared across requests), the rest from the
//! projection in one more statement.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_graphql::{
    Context, ResultExt,
    dataloader::{DataLoader, Loader},
};
use sqlx::PgPool;

use crate::{
    error::ApiError,
    metrics::RequestStats,
    releases::{
        live::LiveHierarchy,
        store::{self, ReleaseRow},
        tree::{DataSource, ReleaseTree},
    },
};

/// Loads whole release trees by release global ID.
pub struct ReleaseLoader {
    db: PgPool,
    live: Arc<LiveHierarchy>,
    stats: Arc<RequestStats>,
}

impl ReleaseLoader {
    /// A per-request loader (its cache lives as long as the request).
    pub fn new(db: PgPool, live: Arc<LiveHierarchy>, stats: Arc<RequestStats>) -> DataLoader<Self> {
        // No batching delay: keys requested in the same poll are batched anyway.
        DataLoader::new(Self { db, live, stats }, tokio::spawn).delay(Duration::ZERO)
    }
}

impl Loader<String> for ReleaseLoader {
    type Value = Arc<ReleaseTree>;
    type Error = Arc<sqlx::Error>;

    #[tracing::instrument(skip_all, fields(releases.count = keys.len()))]
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let rows = store::rows(&self.db, &self.stats, keys)
            .await
            .map_err(Arc::new)?;
        self.trees(&rows).await
    }
}

impl ReleaseLoader {
    /// The trees of releases whose rows are already read: running ones live (concurrently),
    /// the rest, and any live read that did not answer, from the projection in one statement.
    pub(super) async fn trees(
        &self,
        rows: &[ReleaseRow],
    ) -> Result<HashMap<String, Arc<ReleaseTree>>, Arc<sqlx::Error>> {
        let live = futures::future::join_all(rows.iter().filter(|row| row.is_running()).map(
            |row| async move {
                (
                    row.id.clone(),
                    self.live.get(&row.workflow_id, &self.stats).await,
                )
            },
        ))
        .await;
        let mut trees: HashMap<String, Arc<ReleaseTree>> = live
            .into_iter()
            .filter_map(|(id, tree)| tree.map(|tree| (id, tree)))
            .collect();
        let stored: Vec<String> = rows
            .iter()
            .map(|row| row.id.clone())
            .filter(|id| !trees.contains_key(id))
            .collect();
        if !stored.is_empty() {
            let stored = store::trees(&self.db, &self.stats, &stored)
                .await
                .map_err(Arc::new)?;
            for (id, (tree, as_of)) in stored {
                trees.insert(
                    id,
                    Arc::new(ReleaseTree::new(tree, DataSource::Projection, as_of)),
                );
            }
        }
        Ok(trees)
    }
}

/// Loads the tree of release `id` (`None` if there is no such release).
pub async fn load_tree(
    ctx: &Context<'_>,
    id: &str,
) -> async_graphql::Result<Option<Arc<ReleaseTree>>> {
    ctx.data::<DataLoader<ReleaseLoader>>()?
        .load_one(id.to_owned())
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e.to_string())))
        .extend()
}
