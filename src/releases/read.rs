//! Where a release's tree comes from, for every reader (GraphQL loaders and the subscription
//! hub alike): live from `getHierarchy` while the release runs (shared across readers, see
//! `live`), from the projection once it closed or when Temporal does not answer in time. A
//! running release whose live read failed may have a workflow that closed without writing its
//! end: `closed` is asked to find out, in the background.

use std::{collections::HashMap, sync::Arc};

use sqlx::PgPool;

use super::{
    closed::Closes,
    live::LiveHierarchy,
    store::{self, ReleaseRow},
    tree::{DataSource, ReleaseTree},
};
use crate::metrics::RequestStats;

/// The trees of releases whose rows are already read: running ones live (concurrently), the
/// rest, those larger than `part_above` nodes (see [`ReleaseRow::too_large`]) and any live read
/// that did not answer, from the projection in one statement.
pub async fn trees(
    db: &PgPool,
    live: &LiveHierarchy,
    closes: &Arc<Closes>,
    stats: &RequestStats,
    rows: &[ReleaseRow],
    part_above: usize,
) -> Result<HashMap<String, Arc<ReleaseTree>>, sqlx::Error> {
    let read_live = |row: &&ReleaseRow| row.is_running() && !row.too_large(part_above);
    let live = futures::future::join_all(
        rows.iter()
            .filter(read_live)
            .map(|row| async move { (row.id.clone(), live.get(&row.workflow_id, stats).await) }),
    )
    .await;
    let mut trees: HashMap<String, Arc<ReleaseTree>> = live
        .into_iter()
        .filter_map(|(id, tree)| tree.map(|tree| (id, tree)))
        .collect();
    for row in rows
        .iter()
        .filter(|row| read_live(row) && !trees.contains_key(&row.id))
    {
        closes.suspect(row);
    }
    let stored: Vec<String> = rows
        .iter()
        .map(|row| row.id.clone())
        .filter(|id| !trees.contains_key(id))
        .collect();
    if !stored.is_empty() {
        for (id, (rows, as_of)) in store::trees(db, stats, &stored).await? {
            if let Some(tree) = ReleaseTree::from_flat(rows, DataSource::Projection, as_of) {
                trees.insert(id, Arc::new(tree));
            }
        }
    }
    Ok(trees)
}
