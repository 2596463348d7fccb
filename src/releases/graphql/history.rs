//! `history` on waves, clusters, bundles and apps: a node's status transitions
//! (`releases::history`) as a connection, `NodeHistoryConnection` of `NodeTransition`s.

use async_graphql::{
    Context, OutputType, ResultExt,
    connection::{Connection, ConnectionNameType, Edge, EdgeNameType, EmptyFields},
    dataloader::DataLoader,
};

use super::loader::{HistoryKey, ReleaseLoader};
use crate::{
    error::ApiError,
    graphql::connection::{
        DEFAULT_PAGE, bad_cursor, check_page_size, decode_cursor, encode_cursor,
    },
    releases::history::Transition,
};

/// Names the connection `NodeHistoryConnection`.
pub struct HistoryConnectionName;

impl ConnectionNameType for HistoryConnectionName {
    fn type_name<T: OutputType>() -> String {
        "NodeHistoryConnection".to_owned()
    }
}

/// Names its edges `NodeHistoryEdge`.
pub struct HistoryEdgeName;

impl EdgeNameType for HistoryEdgeName {
    fn type_name<T: OutputType>() -> String {
        "NodeHistoryEdge".to_owned()
    }
}

/// A page of a node's history.
pub type HistoryConnection = Connection<
    String,
    Transition,
    EmptyFields,
    EmptyFields,
    HistoryConnectionName,
    HistoryEdgeName,
>;

/// The page of node `node`'s history that `first` and `after` select: transitions in order,
/// each edge's cursor naming the node and its place, so it continues nowhere else.
pub async fn page(
    ctx: &Context<'_>,
    node: &str,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<HistoryConnection> {
    check_page_size("first", first)?;
    let start = match after {
        Some(after) => {
            let cursor = decode_cursor("after", &after)?;
            cursor
                .strip_prefix("history|")
                .and_then(|rest| rest.rsplit_once('|'))
                .filter(|(id, _)| *id == node)
                .and_then(|(_, place)| place.parse::<usize>().ok())
                // The page starts after the cursor's place (a forged `usize::MAX` has none).
                .and_then(|place| place.checked_add(1))
                .ok_or_else(|| bad_cursor("after"))
                .extend()?
        }
        None => 0,
    };
    let transitions = ctx
        .data::<DataLoader<ReleaseLoader>>()?
        .load_one(HistoryKey(node.to_owned()))
        .await
        .map_err(|e| ApiError::database(&e))
        .extend()?
        .unwrap_or_default();
    let size = usize::try_from(first.unwrap_or(DEFAULT_PAGE)).unwrap_or_default();
    let end = start.saturating_add(size).min(transitions.len());
    let mut connection = Connection::new(start > 0, end < transitions.len());
    connection.edges.extend(
        transitions
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .zip(start..)
            .map(|(transition, place)| {
                Edge::new(
                    encode_cursor(&format!("history|{node}|{place}")),
                    transition.clone(),
                )
            }),
    );
    Ok(connection)
}
