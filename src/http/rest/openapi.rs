//! The OpenAPI 3.1 document of the REST routes (`/api/openapi.json`), generated from the
//! handlers and shapes of `http::rest::{auth, releases}` and the errors of `http::rest`.

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use super::{ErrorDetail, ValidationError, ValidationErrors};

/// Adds the bearer scheme every route but login uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of the REST routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "temporal-bff REST API",
        description = "The release BFF's routes, kept for the existing dashboard. GraphQL (`/graphql`) is the full API."
    ),
    paths(
        super::auth::login,
        super::auth::me,
        super::releases::list,
        super::releases::one,
        super::releases::hierarchy,
        super::releases::nodes,
        super::releases::entity,
    ),
    components(schemas(ErrorDetail, ValidationErrors, ValidationError)),
    modifiers(&BearerAuth),
    tags((name = "auth", description = "Logins"), (name = "releases", description = "Release rollouts"))
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`.
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
