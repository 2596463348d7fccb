//! The REST routes' documentation, as the FastAPI service this one replaces served it: Swagger
//! UI at `GET /docs`, reading `GET /api/openapi.json`, with its vendored files at
//! `GET /docs/assets/{file}` (pinned and integrity-checked by `scripts/vendor-assets`, embedded
//! at build time). `GET /redoc`, FastAPI's other page, redirects here. Nothing is fetched from
//! another host: the schema validator badge, which would call swagger.io, is off, and the
//! page's Content-Security-Policy allows only these files, its hashed inline script and
//! connections back to this origin ("Try it out").

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::HeaderMap,
    response::{Redirect, Response},
};

use super::assets::{Asset, Assets, HtmlPage, Shell, asset, gzip_all};

/// The vendored files, in the order the page loads them; their names carry the version, so
/// each may be cached for a year.
static FILES: &[Asset] = &[
    asset!("swagger-ui", "swagger-ui-bundle-5.36.0.js"),
    asset!("swagger-ui", "swagger-ui-5.36.0.css"),
];
static ASSETS: Assets = Assets::new(FILES, || gzip_all(FILES));

/// The page's own script. URLs are relative to the page, so it also works behind a path
/// prefix (`docs` and `api/openapi.json` are siblings).
const INIT_SCRIPT: &str = r##"
window.ui = SwaggerUIBundle({
  url: new URL("api/openapi.json", window.location.href).toString(),
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"##;

/// The page and its policy, built once.
static PAGE: LazyLock<HtmlPage> = LazyLock::new(|| {
    HtmlPage::new(&Shell {
        title: "temporal-bff · REST API",
        base: "docs/assets",
        files: FILES,
        style: None,
        root: "swagger-ui",
        script: INIT_SCRIPT,
        extra_sources: "",
    })
});

/// `GET /docs`: Swagger UI over the REST routes.
pub async fn page() -> Response {
    PAGE.response()
}

/// `GET /docs/assets/{file}`: a vendored file; 404 for any other name.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    ASSETS.response(&file, &headers)
}

/// `GET /redoc`, where FastAPI served its second documentation page: to `/docs`.
pub async fn redoc() -> Redirect {
    Redirect::permanent("docs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_every_asset_and_nothing_from_another_host() {
        let html = std::str::from_utf8(&PAGE.html).unwrap_or_default();
        for asset in FILES {
            assert!(html.contains(asset.name), "{} not linked", asset.name);
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn the_policy_allows_the_bundle_and_the_page_script_by_hash_and_no_framing() {
        let csp = PAGE.csp.to_str().unwrap_or_default();
        assert!(
            csp.contains(&format!(
                "script-src 'self' '{}';",
                crate::http::assets::sha256_source(INIT_SCRIPT)
            )),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none';") && csp.contains("frame-ancestors 'none'"));
    }
}
