//! GraphiQL, served whole by the binary: the page at `GET /graphql` and its vendored assets at
//! `GET /graphql/assets/{file}` (production builds of React, GraphiQL and its explorer plugin,
//! pinned and integrity-checked by `scripts/vendor-graphiql`, embedded at build time). Nothing
//! is fetched from another host, so it works on a network without internet access, and the
//! page's Content-Security-Policy allows only these assets, its own inline script and style,
//! and connections back to this origin (HTTP and the `/graphql/ws` socket).

use std::sync::LazyLock;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::AppState;

/// One embedded file: the name it is served as, its media type, its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../assets/graphiql/", $name)),
        }
    };
}

/// The vendored files; their names carry the version, so each may be cached for a year.
static ASSETS: &[Asset] = &[
    asset!(
        "react-18.3.1.production.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "react-dom-18.3.1.production.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("graphiql-3.9.0.min.js", "text/javascript; charset=utf-8"),
    asset!("graphiql-3.9.0.min.css", "text/css; charset=utf-8"),
    asset!(
        "plugin-explorer-3.2.6.umd.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("plugin-explorer-3.2.6.css", "text/css; charset=utf-8"),
];

/// The page's own script. URLs are relative to the page, so GraphiQL also works behind a path
/// prefix; the headers pane starts with an `Authorization` header to fill in (an empty bearer
/// token counts as no token, so the login mutation runs with it as is).
const INIT_SCRIPT: &str = r#"
const at = (path, socket) => {
  const url = new URL(path, window.location.href);
  if (socket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
};
const fetcher = GraphiQL.createFetcher({
  url: at("graphql"),
  // The headers pane is also sent as connection_init's payload, so subscriptions see the token.
  subscriptionUrl: at("graphql/ws", true),
});
ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: `# 1. Run Login with your e-mail and password; copy the token.
# 2. In the Headers pane below, put it after "Bearer ".
# 3. Run Releases.
mutation Login {
  login(email: "you@example.com", password: "") {
    token
    expiresAt
  }
}

query Releases {
  releases(first: 10) {
    totalCount
    edges {
      node {
        id
        name
        status
      }
    }
  }
}
`,
    defaultHeaders: '{"Authorization": "Bearer "}',
    defaultEditorToolsVisibility: "headers",
    shouldPersistHeaders: false,
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
  }),
);
"#;

const STYLE: &str = "body{margin:0;height:100vh;overflow:hidden}#graphiql{height:100vh}";

/// The page and its Content-Security-Policy, built once.
static PAGE: LazyLock<(String, HeaderValue)> = LazyLock::new(|| {
    let assets = "graphql/assets";
    let page = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>temporal-bff · GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{assets}/graphiql-3.9.0.min.css">
<link rel="stylesheet" href="{assets}/plugin-explorer-3.2.6.css">
<style>{STYLE}</style>
</head>
<body>
<div id="graphiql">Loading…</div>
<script src="{assets}/react-18.3.1.production.min.js"></script>
<script src="{assets}/react-dom-18.3.1.production.min.js"></script>
<script src="{assets}/graphiql-3.9.0.min.js"></script>
<script src="{assets}/plugin-explorer-3.2.6.umd.js"></script>
<script>{INIT_SCRIPT}</script>
</body>
</html>
"#
    );
    let csp = format!(
        // Styles may be inline: GraphiQL's dialogs inject <style> elements whose text varies
        // (scroll-lock gaps), and CSS cannot run script; scripts stay limited to these files
        // and the one hashed inline script.
        "default-src 'none'; script-src 'self' '{}'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sha256_source(INIT_SCRIPT),
    );
    // The policy is ASCII built from constants; an empty value would only drop the header.
    let csp = HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static(""));
    (page, csp)
});

/// A CSP hash source for an inline script or style.
fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `GET /graphql` without a query: the GraphiQL page.
pub fn page() -> Response {
    let (page, csp) = &*PAGE;
    (
        [
            (header::CONTENT_SECURITY_POLICY, csp.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        Html(page.as_str()),
    )
        .into_response()
}

/// Every asset gzipped, made once on first use (GraphiQL's script shrinks about 3.5×).
static GZIPPED: LazyLock<Vec<Bytes>> = LazyLock::new(|| {
    use std::io::Write as _;
    ASSETS
        .iter()
        .map(|asset| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(asset.bytes);
            Bytes::from(encoder.finish().unwrap_or_default())
        })
        .collect()
});

/// `GET /graphql/assets/{file}`: a vendored file (gzipped when the browser accepts it), cached
/// by browsers for a year (the name changes with the version); 404 for any other name, and for
/// all with `GRAPHIQL=false`.
pub async fn asset(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let found = ASSETS.iter().position(|asset| asset.name == file);
    let Some(index) = found.filter(|_| state.config.graphiql) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let accepts_gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| coding.split(';').next().is_some_and(|c| c.trim() == "gzip"));
    let gzipped = GZIPPED.get(index).filter(|_| accepts_gzip).cloned();
    let asset = &ASSETS[index];
    let gzip = gzipped.is_some();
    let mut response = (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::VARY, "accept-encoding"),
        ],
        gzipped.unwrap_or_else(|| Bytes::from_static(asset.bytes)),
    )
        .into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_every_asset_and_nothing_from_another_host() {
        let (page, _) = &*PAGE;
        for asset in ASSETS {
            assert!(page.contains(asset.name), "{} not linked", asset.name);
        }
        assert!(
            !page.contains("http://") && !page.contains("https://") && !page.contains("//unpkg")
        );
    }

    #[test]
    fn the_policy_allows_only_the_vendored_scripts_and_the_page_script_by_hash() {
        let (_, csp) = &*PAGE;
        let csp = csp.to_str().unwrap_or_default();
        let scripts = csp.split(';').find(|d| d.trim().starts_with("script-src"));
        let expected = format!("script-src 'self' '{}'", sha256_source(INIT_SCRIPT));
        assert_eq!(scripts.map(str::trim), Some(expected.as_str()), "{csp}");
    }
}
