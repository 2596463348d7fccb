//! The release part of the GraphQL schema: `Release → Wave → Cluster → Bundle → App`, the
//! `releases` connection, `release(id)` and `entity(id)`.
//!
//! Every object is a view into one shared [`ReleaseTree`], loaded once per request per release
//! through [`ReleaseLoader`] (one SQL statement for the rows, one for the trees, one live
//! `getHierarchy` per running release at most, shared across requests).

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_graphql::{
    Context, ID, InputObject, Object, ResultExt, Union,
    connection::{Connection, Edge},
    dataloader::{DataLoader, Loader},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{
    live::LiveHierarchy,
    store::{self, ReleaseFilter as StoreFilter, ReleaseRow},
    tree::{DataSource, Progress, ReleaseTree, TreeNode},
};
use crate::{
    contracts::{
        ids::{EntityId, Kind},
        release::RolloutStatus,
    },
    error::ApiError,
    graphql::connection::{
        ConnectionTotal, DEFAULT_PAGE, check_page_size, decode_keyset, encode_keyset,
        list_complexity, page_complexity,
    },
    metrics::RequestStats,
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
        let rows = {
            let _slot = self.stats.sql(1).await;
            store::rows(&self.db, keys).await.map_err(Arc::new)?
        };
        self.trees(&rows).await
    }
}

impl ReleaseLoader {
    /// The trees of releases whose rows are already read: running ones live (concurrently),
    /// the rest, and any live read that did not answer, from the projection in one statement.
    async fn trees(
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
            let stored = {
                let _slot = self.stats.sql(1).await;
                store::trees(&self.db, &stored).await.map_err(Arc::new)?
            };
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
async fn load_tree(ctx: &Context<'_>, id: &str) -> async_graphql::Result<Option<Arc<ReleaseTree>>> {
    ctx.data::<DataLoader<ReleaseLoader>>()?
        .load_one(id.to_owned())
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e.to_string())))
        .extend()
}

/// A view of one node of a loaded tree.
#[derive(Clone)]
pub struct Entity {
    tree: Arc<ReleaseTree>,
    node: Arc<TreeNode>,
}

impl Entity {
    fn children(&self) -> Vec<Entity> {
        self.node
            .children
            .iter()
            .map(|child| Entity {
                tree: Arc::clone(&self.tree),
                node: Arc::clone(child),
            })
            .collect()
    }

    /// The GraphQL object for this node, by its kind.
    pub fn into_object(self) -> HierarchyEntity {
        match self.node.kind {
            Kind::Release => HierarchyEntity::Release(Release(self)),
            Kind::Wave => HierarchyEntity::Wave(Wave(self)),
            Kind::Cluster => HierarchyEntity::Cluster(Cluster(self)),
            Kind::Bundle => HierarchyEntity::Bundle(Bundle(self)),
            Kind::App => HierarchyEntity::App(App(self)),
        }
    }
}

/// Resolves a hierarchy ID to its node (`None` when the release or node does not exist).
pub async fn find_entity(
    ctx: &Context<'_>,
    id: &EntityId,
) -> async_graphql::Result<Option<Entity>> {
    let Some(tree) = load_tree(ctx, &id.release_id().to_string()).await? else {
        return Ok(None);
    };
    Ok(tree.find(&id.to_string()).map(|node| Entity { tree, node }))
}

/// Parses a GraphQL ID argument into a hierarchy ID (`BAD_USER_INPUT` if malformed).
pub fn parse_id(field: &str, id: &ID) -> async_graphql::Result<EntityId> {
    EntityId::parse(id.as_str())
        .map_err(|why| ApiError::bad_input(field, format!("malformed id {:?}: {why}", id.as_str())))
        .extend()
}

/// Emits `#[Object] impl $ty` with the fields every hierarchy node has, then `$extra`.
/// (A macro inside an `#[Object]` impl would expand too late to become fields.)
/// `$ty, list $field: $child "doc"` adds the list of children, priced as a list (the
/// complexity attribute must be written here, in the same expansion as `#[Object]`, to see
/// `child_complexity`).
macro_rules! hierarchy_object {
    ($ty:ident $(, list $field:ident: $child:ident $doc:literal)? { $($extra:tt)* }) => {
        #[Object]
        impl $ty {
            /// Global ID, `{kind}:{path}`.
            pub async fn id(&self, _ctx: &Context<'_>) -> async_graphql::Result<ID> {
                Ok(ID(self.0.node.node.id.clone()))
            }

            /// Key, unique among its siblings.
            async fn key(&self) -> &str {
                &self.0.node.node.key
            }

            /// Display name.
            async fn name(&self) -> &str {
                &self.0.node.node.name
            }

            /// Rollout status.
            async fn status(&self) -> RolloutStatus {
                self.0.node.node.status
            }

            /// When it started.
            async fn started_at(&self) -> Option<DateTime<Utc>> {
                self.0.node.node.started_at
            }

            /// When it finished.
            async fn completed_at(&self) -> Option<DateTime<Utc>> {
                self.0.node.node.completed_at
            }

            /// Why it failed (names the failing app).
            async fn message(&self) -> Option<&str> {
                self.0.node.node.message.as_deref()
            }

            $($extra)*

            $(
                #[doc = $doc]
                #[graphql(complexity = "list_complexity(child_complexity)")]
                async fn $field(&self) -> Vec<$child> {
                    self.0.children().into_iter().map($child).collect()
                }
            )?
        }
    };
}

/// A release: waves rolled out in order.
pub struct Release(Entity);

hierarchy_object!(Release, list waves: Wave "The waves, in rollout order." {

/// Roll-up over every app of the release.
async fn progress(&self) -> Progress {
    self.0.node.progress
}

/// Where this answer came from: `TEMPORAL` (live) while the workflow runs, `PROJECTION`
/// once it closed or when Temporal did not answer in time.
async fn source(&self) -> DataSource {
    self.0.tree.source
}

/// How fresh the answer is: when it was read live, or the time of the last event folded
/// into the projection.
async fn as_of(&self) -> DateTime<Utc> {
    self.0.tree.as_of
}
});

/// A wave: its clusters roll out in parallel.
pub struct Wave(Entity);

hierarchy_object!(Wave, list clusters: Cluster "The clusters." {

/// Position in the release, from 1.
async fn position(&self) -> i32 {
    self.0.node.position
}

/// Roll-up over the wave's apps.
async fn progress(&self) -> Progress {
    self.0.node.progress
}
});

/// A cluster: one bundle deployed in one region.
pub struct Cluster(Entity);

hierarchy_object!(Cluster {

/// Region.
async fn region(&self) -> Option<&str> {
    self.0.node.node.region.as_deref()
}

/// Roll-up over the cluster's apps.
async fn progress(&self) -> Progress {
    self.0.node.progress
}

/// The cluster's bundle.
async fn bundle(&self) -> async_graphql::Result<Bundle> {
    self.0
        .children()
        .into_iter()
        .next()
        .map(Bundle)
        .ok_or(ApiError::internal(anyhow::anyhow!("cluster without a bundle")))
        .extend()
}});

/// A bundle: apps deployed in order.
pub struct Bundle(Entity);

hierarchy_object!(Bundle, list apps: App "The apps, in deploy order." {

/// Bundle version.
async fn version(&self) -> Option<&str> {
    self.0.node.node.version.as_deref()
}

/// Roll-up over the bundle's apps.
async fn progress(&self) -> Progress {
    self.0.node.progress
}
});

/// An app: one deploy.
pub struct App(Entity);

hierarchy_object!(App {

/// Version deployed.
async fn version(&self) -> Option<&str> {
    self.0.node.node.version.as_deref()
}});

/// Any node of a release hierarchy.
#[derive(Union)]
pub enum HierarchyEntity {
    /// A release.
    Release(Release),
    /// A wave.
    Wave(Wave),
    /// A cluster.
    Cluster(Cluster),
    /// A bundle.
    Bundle(Bundle),
    /// An app.
    App(App),
}

/// Filters for `releases`.
#[derive(InputObject, Default)]
pub struct ReleaseFilter {
    /// Only releases in one of these statuses.
    pub status: Option<Vec<RolloutStatus>>,
    /// Name or key contains this text (case-insensitive).
    pub search: Option<String>,
}

/// Longest `filter.search` accepted.
pub const MAX_SEARCH_CHARS: usize = 100;

/// The release root fields.
#[derive(Default)]
pub struct ReleasesQuery;

#[Object]
impl ReleasesQuery {
    /// Releases, newest first, as a Relay connection (forwards with `first`/`after`,
    /// backwards with `last`/`before`; at most 100 per page, 20 by default).
    #[tracing::instrument(skip_all)]
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn releases(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<ReleaseFilter>,
    ) -> async_graphql::Result<Connection<String, Release, ConnectionTotal>> {
        if first.is_some() && last.is_some() {
            return Err(ApiError::bad_input("first", "give first or last, not both")).extend();
        }
        check_page_size("first", first)?;
        check_page_size("last", last)?;
        if first.is_some() && before.is_some() || last.is_some() && after.is_some() {
            return Err(ApiError::bad_input(
                "after",
                "page forwards with first/after or backwards with last/before, not both",
            ))
            .extend();
        }
        let forward = last.is_none();
        let size = i64::from(if forward {
            first.unwrap_or(DEFAULT_PAGE)
        } else {
            last.unwrap_or(DEFAULT_PAGE)
        });
        let cursor = match (forward, &after, &before) {
            (true, Some(after), _) => Some(decode_keyset("after", after)?),
            (false, _, Some(before)) => Some(decode_keyset("before", before)?),
            _ => None,
        };
        let filter = filter.unwrap_or_default();
        if filter
            .search
            .as_deref()
            .is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS)
        {
            return Err(ApiError::bad_input(
                "filter.search",
                format!("search must be at most {MAX_SEARCH_CHARS} characters"),
            ))
            .extend();
        }
        let filter = StoreFilter {
            statuses: filter.status.unwrap_or_default(),
            search: filter.search,
        };
        let db = ctx.data::<PgPool>()?;
        let stats = ctx.data::<Arc<RequestStats>>()?;
        let (rows, total) = {
            let _slots = stats.sql(2).await;
            tokio::try_join!(
                store::page(db, &filter, cursor.as_ref(), forward, size + 1),
                store::count(db, &filter),
            )
            .map_err(ApiError::from)
            .extend()?
        };
        let has_more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > size;
        let rows: Vec<_> = if forward {
            rows.into_iter()
                .take(usize::try_from(size).unwrap_or(0))
                .collect()
        } else {
            let skip = rows
                .len()
                .saturating_sub(usize::try_from(size).unwrap_or(0));
            rows.into_iter().skip(skip).collect()
        };
        let (has_previous, has_next) = if forward {
            (cursor.is_some(), has_more)
        } else {
            (has_more, cursor.is_some())
        };
        let mut connection = Connection::with_additional_fields(
            has_previous,
            has_next,
            ConnectionTotal { total_count: total },
        );
        // The page already has the rows: load their trees without reading the rows again.
        let trees = ctx
            .data::<DataLoader<ReleaseLoader>>()?
            .loader()
            .trees(&rows)
            .await
            .map_err(|e| ApiError::internal(anyhow::anyhow!(e.to_string())))
            .extend()?;
        for row in rows {
            if let Some(tree) = trees.get(&row.id) {
                let entity = Entity {
                    node: Arc::clone(&tree.root),
                    tree: Arc::clone(tree),
                };
                connection.edges.push(Edge::new(
                    encode_keyset(row.created_at, &row.id),
                    Release(entity),
                ));
            }
        }
        Ok(connection)
    }

    /// One release by global ID (`release:{key}`); `null` if there is none.
    async fn release(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Release>> {
        let id = parse_id("id", &id)?;
        if id.kind() != Kind::Release {
            return Err(ApiError::bad_input(
                "id",
                "not a release id (release:{key})",
            ))
            .extend();
        }
        Ok(find_entity(ctx, &id).await?.map(Release))
    }

    /// Any hierarchy node by global ID; `null` if there is none.
    async fn entity(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<HierarchyEntity>> {
        let id = parse_id("id", &id)?;
        Ok(find_entity(ctx, &id).await?.map(Entity::into_object))
    }
}
