//! The Relay `Node` interface and `node(id:)`.

use async_graphql::{Context, ID, Interface, Object};

use crate::{
    onboarding::graphql::{Organization, parse_organization_id, visible_organization},
    releases::graphql::{
        App, Bundle, Cluster, HierarchyEntity, Release, Wave, find_entity, parse_id,
    },
};

/// Anything with a global ID that `node(id:)` can fetch again.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "Global ID."))]
pub enum Node {
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
    /// An organization.
    Organization(Organization),
}

impl From<HierarchyEntity> for Node {
    fn from(entity: HierarchyEntity) -> Self {
        match entity {
            HierarchyEntity::Release(r) => Node::Release(r),
            HierarchyEntity::Wave(w) => Node::Wave(w),
            HierarchyEntity::Cluster(c) => Node::Cluster(c),
            HierarchyEntity::Bundle(b) => Node::Bundle(b),
            HierarchyEntity::App(a) => Node::App(a),
        }
    }
}

/// `node(id:)`.
#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Fetches any object by its global ID; `null` if it does not exist.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        if id.starts_with("organization:") {
            let id = parse_organization_id(&id)?;
            return Ok(visible_organization(ctx, id).await?.map(Node::Organization));
        }
        let id = parse_id("id", &id)?;
        Ok(find_entity(ctx, &id)
            .await?
            .map(|entity| Node::from(entity.into_object())))
    }
}
