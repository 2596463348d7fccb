//! The REST routes' documentation, as the FastAPI service this one replaces served it: Swagger
//! UI at `GET /docs`, reading `GET /api/openapi.json`, with its vendored files at
//! `GET /docs/assets/{file}` (pinned and integrity-checked by `scripts/vendor-assets`, embedded
//! at build time). `GET /redoc`, FastAPI's other page, redirects here. Nothing is fetched from
//! another host: the schema validator badge, which would call swagger.io, is off, and the
//! page's Content-Security-Policy allows only these files, its hashed inline script and
//! connections back to this origin ("Try it out").

use std::sync::LazyLock;

use axum::{
    body::Bytes,
    extract::Path,
    http::{HeaderMap, HeaderValue},
    response::{Redirect, Response},
};

use super::assets::{self, Asset, Assets, asset, gzip_all, policy, sha256_source};

/// The vendored files; their names carry the version, so each may be cached for a year.
static FILES: &[Asset] = &[
    asset!("swagger-ui", "swagger-ui-bundle-5.36.0.js", js),
    asset!("swagger-ui", "swagger-ui-5.36.0.css", css),
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
struct Page {
    html: Bytes,
    csp: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let assets = "docs/assets";
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>temporal-bff · REST API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{assets}/swagger-ui-5.36.0.css">
</head>
<body>
<div id="swagger-ui">Loading…</div>
<script src="{assets}/swagger-ui-bundle-5.36.0.js"></script>
<script>{INIT_SCRIPT}</script>
</body>
</html>
"#
    );
    let csp = format!(
        // Swagger UI sets inline styles (its React components), and CSS cannot run script;
        // scripts stay limited to the bundle and the one hashed inline script. Its icons are
        // data: URIs.
        "default-src 'none'; script-src 'self' '{}'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_source(INIT_SCRIPT),
    );
    Page {
        html: Bytes::from(html),
        csp: policy(&csp),
    }
});

/// `GET /docs`: Swagger UI over the REST routes.
pub async fn page() -> Response {
    assets::page(&PAGE.html, &PAGE.csp)
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
                sha256_source(INIT_SCRIPT)
            )),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none';") && csp.contains("frame-ancestors 'none'"));
    }
}
