//! Batched loading of releases, per request: a batch's rows in one statement, and, when the
//! trees are asked for, running ones live (shared across requests) and the rest from the
//! projection in one more statement. Closed releases come from the process's cache when it has
//! them, without a statement.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_graphql::{
    Context, ResultExt,
    dataloader::{DataLoader, Loader},
};
use sqlx::PgPool;

use super::part;
use crate::{
    contracts::{events::ControlAction, ids::EntityId, release::RolloutStatus},
    error::ApiError,
    metrics::RequestStats,
    releases::{
        cache::{Cached, CachedReads, Token, TreeCache},
        closed::Closes,
        history::{self, Transition},
        live::LiveHierarchy,
        read,
        store::{self, ReleaseRow},
        tree::{DataSource, ReleaseTree},
    },
};

/// Loads release rows and whole release trees by release global ID, closed ones from the
/// process's cache when it has them (no statement at all).
pub struct ReleaseLoader {
    db: PgPool,
    live: Arc<LiveHierarchy>,
    closes: Arc<Closes>,
    cache: Arc<TreeCache>,
    stats: Arc<RequestStats>,
    reads: Arc<CachedReads>,
    /// Releases with more nodes than this are read in part (`RELEASE_PART_ABOVE_NODES`).
    part_above: usize,
}

/// Key of the control action a release has waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PendingControlKey(pub String);

impl Loader<PendingControlKey> for ReleaseLoader {
    type Value = ControlAction;
    type Error = Arc<sqlx::Error>;

    async fn load(
        &self,
        keys: &[PendingControlKey],
    ) -> Result<HashMap<PendingControlKey, ControlAction>, Self::Error> {
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let pending = store::pending_controls(&self.db, &self.stats, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(pending
            .into_iter()
            .filter_map(|(id, action)| {
                Some((PendingControlKey(id), ControlAction::parse(&action)?))
            })
            .collect())
    }
}

/// Key of a release's row alone (its own fields and roll-up, no tree).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey(pub String);

impl ReleaseLoader {
    /// A per-request loader (its cache lives as long as the request); what it answers from
    /// the process's cache is noted in `reads`.
    pub fn new(
        db: PgPool,
        live: Arc<LiveHierarchy>,
        closes: Arc<Closes>,
        cache: Arc<TreeCache>,
        stats: Arc<RequestStats>,
        reads: Arc<CachedReads>,
        part_above: usize,
    ) -> DataLoader<Self> {
        // No batching delay: keys requested in the same poll are batched anyway.
        DataLoader::new(
            Self {
                db,
                live,
                closes,
                cache,
                stats,
                reads,
                part_above,
            },
            tokio::spawn,
        )
        .delay(Duration::ZERO)
    }

    /// Rows of `keys` not in the cache, read with the tokens that let closed ones be cached.
    async fn uncached_rows(
        &self,
        keys: &[String],
    ) -> Result<Vec<(Token, ReleaseRow)>, Arc<sqlx::Error>> {
        let tokens: HashMap<&str, Token> = keys
            .iter()
            .map(|k| (k.as_str(), self.cache.token(k)))
            .collect();
        let rows = store::rows(&self.db, &self.stats, keys)
            .await
            .map_err(Arc::new)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| Some((*tokens.get(row.id.as_str())?, row)))
            .collect())
    }
}

impl Loader<String> for ReleaseLoader {
    type Value = Arc<ReleaseTree>;
    type Error = Arc<sqlx::Error>;

    #[tracing::instrument(skip_all, fields(releases.count = keys.len()))]
    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        let mut trees = HashMap::new();
        let mut missing = Vec::new();
        for key in keys {
            match self.cache.tree(key, &self.reads) {
                Some(tree) => {
                    trees.insert(key.clone(), tree);
                }
                None => missing.push(key.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(trees);
        }
        let (tokens, rows): (Vec<Token>, Vec<ReleaseRow>) =
            self.uncached_rows(&missing).await?.into_iter().unzip();
        let loaded = self.trees(&rows).await?;
        for (token, row) in tokens.into_iter().zip(rows) {
            // Only a tree read from the projection of a closed release is kept.
            if let Some(tree) = loaded
                .get(&row.id)
                .filter(|tree| tree.source == DataSource::Projection)
            {
                self.cache.insert(
                    token,
                    Cached {
                        row: Arc::new(row),
                        tree: Some(Arc::clone(tree)),
                    },
                );
            }
        }
        trees.extend(loaded);
        Ok(trees)
    }
}

impl Loader<RowKey> for ReleaseLoader {
    type Value = Arc<ReleaseRow>;
    type Error = Arc<sqlx::Error>;

    #[tracing::instrument(skip_all, fields(releases.count = keys.len()))]
    async fn load(&self, keys: &[RowKey]) -> Result<HashMap<RowKey, Self::Value>, Self::Error> {
        let mut rows = HashMap::new();
        let mut missing = Vec::new();
        for key in keys {
            match self.cache.row(&key.0, &self.reads) {
                Some(row) => {
                    rows.insert(key.clone(), row);
                }
                None => missing.push(key.0.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(rows);
        }
        for (token, row) in self.uncached_rows(&missing).await? {
            let row = Arc::new(row);
            self.cache.insert(
                token,
                Cached {
                    row: Arc::clone(&row),
                    tree: None,
                },
            );
            rows.insert(RowKey(row.id.clone()), row);
        }
        Ok(rows)
    }
}

/// Key of a node's history (its global ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryKey(pub String);

impl Loader<HistoryKey> for ReleaseLoader {
    type Value = Arc<Vec<Transition>>;
    type Error = Arc<sqlx::Error>;

    #[tracing::instrument(skip_all, fields(nodes.count = keys.len()))]
    async fn load(
        &self,
        keys: &[HistoryKey],
    ) -> Result<HashMap<HistoryKey, Self::Value>, Self::Error> {
        let ids: Vec<EntityId> = keys
            .iter()
            .filter_map(|key| EntityId::parse(&key.0).ok())
            .collect();
        let histories = history::histories(&self.db, &self.stats, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(histories
            .into_iter()
            .map(|(id, transitions)| (HistoryKey(id), Arc::new(transitions)))
            .collect())
    }
}

impl ReleaseLoader {
    /// `stub`'s release cut down to the paths to nodes in one of `statuses`, read in part
    /// (`tree(status:)` of a release too large to read whole).
    pub(super) async fn pruned(
        &self,
        stub: &ReleaseTree,
        statuses: &[RolloutStatus],
    ) -> async_graphql::Result<Arc<ReleaseTree>> {
        part::pruned(&self.db, &self.stats, stub, statuses).await
    }

    /// The trees of releases whose rows are already read (see `releases::read`); of a release
    /// read in part, its node alone (`part::stub`), which its list fields read below.
    pub(super) async fn trees(
        &self,
        rows: &[ReleaseRow],
    ) -> Result<HashMap<String, Arc<ReleaseTree>>, Arc<sqlx::Error>> {
        let (in_part, whole): (Vec<&ReleaseRow>, Vec<&ReleaseRow>) =
            rows.iter().partition(|row| row.too_large(self.part_above));
        let whole: Vec<ReleaseRow> = whole.into_iter().cloned().collect();
        let mut trees = if whole.is_empty() {
            HashMap::new()
        } else {
            read::trees(
                &self.db,
                &self.live,
                &self.closes,
                &self.stats,
                &whole,
                self.part_above,
            )
            .await
            .map_err(Arc::new)?
        };
        trees.extend(
            in_part
                .into_iter()
                .filter_map(|row| Some((row.id.clone(), Arc::new(part::stub(row)?)))),
        );
        Ok(trees)
    }
}

/// A tree the compiled read (`compiled`) loaded for this request before it left the
/// document to the executor: [`load_tree`] takes it instead of reading the release again
/// (the per-request loader keeps nothing it loaded).
pub struct LoadedTree(pub Arc<ReleaseTree>);

/// What the compiled read read for `tree(status:)` of a release read in part (the release, the
/// statuses, and the tree or its refusal) before leaving the document to the executor: the
/// field takes it instead of reading the same rows again.
pub struct LoadedPruned {
    pub release: String,
    pub statuses: Vec<RolloutStatus>,
    pub read: async_graphql::Result<Arc<ReleaseTree>>,
}

/// Loads the tree of release `id` (`None` if there is no such release).
pub async fn load_tree(
    ctx: &Context<'_>,
    id: &str,
) -> async_graphql::Result<Option<Arc<ReleaseTree>>> {
    if let Some(LoadedTree(tree)) = ctx.data_opt::<LoadedTree>()
        && tree.root.node.id == id
    {
        return Ok(Some(Arc::clone(tree)));
    }
    ctx.data::<DataLoader<ReleaseLoader>>()?
        .load_one(id.to_owned())
        .await
        .map_err(|e| ApiError::database(&e))
        .extend()
}

/// `stub`'s release cut down to the paths to nodes in one of `statuses` (`tree(status:)` of a
/// release read in part): what the compiled read already read for it ([`LoadedPruned`]), else
/// read now.
pub async fn load_pruned(
    ctx: &Context<'_>,
    stub: &ReleaseTree,
    statuses: &[RolloutStatus],
) -> async_graphql::Result<Arc<ReleaseTree>> {
    if let Some(loaded) = ctx.data_opt::<LoadedPruned>()
        && loaded.release == stub.root.node.id
        && loaded.statuses == statuses
    {
        return loaded.read.clone();
    }
    ctx.data::<DataLoader<ReleaseLoader>>()?
        .loader()
        .pruned(stub, statuses)
        .await
}

/// Loads the row of release `id` alone (`None` if there is no such release).
pub async fn load_row(
    ctx: &Context<'_>,
    id: &str,
) -> async_graphql::Result<Option<Arc<ReleaseRow>>> {
    ctx.data::<DataLoader<ReleaseLoader>>()?
        .load_one(RowKey(id.to_owned()))
        .await
        .map_err(|e| ApiError::database(&e))
        .extend()
}
