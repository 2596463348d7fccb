//! GraphiQL, served whole by the binary: the page at `GET /graphql` and its vendored assets at
//! `GET /graphql/assets/{file}` (production builds of React, GraphiQL and its explorer plugin,
//! pinned and integrity-checked by `scripts/vendor-assets`, embedded at build time). Nothing
//! is fetched from another host, so it works on a network without internet access, and the
//! page's Content-Security-Policy allows only these assets, its own inline script and style,
//! and connections back to this origin (HTTP and the `/graphql/ws` socket).

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

use super::assets::{self, Asset, Assets, asset, gzip_all, policy, sha256_source};
use crate::AppState;

/// The vendored files; their names carry the version, so each may be cached for a year.
static FILES: &[Asset] = &[
    asset!("graphiql", "react-18.3.1.production.min.js", js),
    asset!("graphiql", "react-dom-18.3.1.production.min.js", js),
    asset!("graphiql", "graphiql-3.9.0.min.js", js),
    asset!("graphiql", "graphiql-3.9.0.min.css", css),
    asset!("graphiql", "plugin-explorer-3.2.6.umd.js", js),
    asset!("graphiql", "plugin-explorer-3.2.6.css", css),
];
static ASSETS: Assets = Assets::new(FILES, || gzip_all(FILES));

/// The page's own script. URLs are relative to the page, so GraphiQL also works behind a path
/// prefix. The headers pane starts with an `Authorization` header to fill in (an empty bearer
/// token counts as no token, so the login mutation runs with it as is), and a `login` that
/// answers with a token puts it there by itself. `__EXAMPLE_EMAIL__` and `__EXAMPLE_PASSWORD__`
/// are the example document's login (JSON strings).
const INIT_SCRIPT: &str = r#"
const at = (path, socket) => {
  const url = new URL(path, window.location.href);
  if (socket) url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
};
const send = GraphiQL.createFetcher({
  url: at("graphql"),
  // The headers pane is also sent as connection_init's payload, so subscriptions see the token.
  subscriptionUrl: at("graphql/ws", true),
});
// One operation: a document holding several needs a token, even for its login (the gate).
const example = `# 1. Run this Login: its token goes into the Headers pane below by itself.
# 2. Then replace this document with a query, for example:
#      query Releases { releases(first: 10) { totalCount edges { node { id name status } } } }
mutation Login {
  login(email: ${JSON.stringify(__EXAMPLE_EMAIL__)}, password: ${JSON.stringify(__EXAMPLE_PASSWORD__)}) {
    token
    expiresAt
  }
}
`;
function Page() {
  const [headers, setHeaders] = React.useState('{"Authorization": "Bearer "}');
  const fetcher = React.useCallback((params, options) => {
    const look = (result) => {
      const token = result && result.data && result.data.login && result.data.login.token;
      if (typeof token === "string") {
        setHeaders(JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2));
      }
    };
    // The fetcher answers a result or a stream of them (incremental delivery, subscriptions),
    // or a promise of either.
    const watch = (answer) => {
      if (answer && typeof answer.then === "function") return answer.then(watch);
      if (answer && typeof answer[Symbol.asyncIterator] === "function") {
        // A plain iterator, not a generator: stopping a subscription reaches the socket at
        // once, not after its next message.
        const parts = answer[Symbol.asyncIterator]();
        return {
          [Symbol.asyncIterator]() { return this; },
          next: () => parts.next().then((step) => { if (!step.done) look(step.value); return step; }),
          return: (value) => (parts.return ? parts.return(value) : Promise.resolve({ done: true, value })),
          throw: (error) => (parts.throw ? parts.throw(error) : Promise.reject(error)),
        };
      }
      look(answer);
      return answer;
    };
    return watch(send(params, options));
  }, []);
  return React.createElement(GraphiQL, {
    fetcher,
    defaultQuery: example,
    headers,
    defaultEditorToolsVisibility: "headers",
    shouldPersistHeaders: false,
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
  });
}
ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(Page));
"#;

const STYLE: &str = "body{margin:0;height:100vh;overflow:hidden}#graphiql{height:100vh}";

/// The GraphiQL page and its Content-Security-Policy, built once per app.
pub struct Page {
    /// Shared bytes: each `GET /graphql` sends them without a copy.
    html: Bytes,
    csp: HeaderValue,
}

impl Page {
    /// The page whose example document logs in as `example` (e-mail, password): the demo
    /// login under `temporal-bff dev`, a placeholder to fill in elsewhere.
    pub fn new(example: Option<(&str, &str)>) -> Self {
        let (email, password) = example.unwrap_or(("you@example.com", ""));
        let json = |text: &str| serde_json::Value::from(text).to_string();
        // JSON strings are valid JavaScript; `<` is escaped so the text cannot end the script.
        let script = INIT_SCRIPT
            .replace("__EXAMPLE_EMAIL__", &json(email).replace('<', "\\u003c"))
            .replace(
                "__EXAMPLE_PASSWORD__",
                &json(password).replace('<', "\\u003c"),
            );
        let assets = "graphql/assets";
        let html = format!(
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
<script>{script}</script>
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
            sha256_source(&script),
        );
        Self {
            html: Bytes::from(html),
            csp: policy(&csp),
        }
    }

    /// `GET /graphql` without a query: the page.
    pub fn response(&self) -> Response {
        assets::page(&self.html, &self.csp)
    }
}

/// `GET /graphql/assets/{file}`: a vendored file; 404 for any other name, and for all with
/// `GRAPHIQL=false`.
pub async fn asset(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.config.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    ASSETS.response(&file, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_every_asset_and_nothing_from_another_host() {
        let page = Page::new(None);
        for asset in FILES {
            assert!(
                html(&page).contains(asset.name),
                "{} not linked",
                asset.name
            );
        }
        assert!(
            !html(&page).contains("http://")
                && !html(&page).contains("https://")
                && !html(&page).contains("//unpkg")
        );
    }

    #[test]
    fn the_policy_allows_only_the_vendored_scripts_and_the_page_script_by_hash() {
        let page = Page::new(Some(("admin@example.com", "admin123")));
        let csp = page.csp.to_str().unwrap_or_default();
        let scripts = csp.split(';').find(|d| d.trim().starts_with("script-src"));
        let expected = format!(
            "script-src 'self' '{}'",
            sha256_source(inline_script(&page))
        );
        assert_eq!(scripts.map(str::trim), Some(expected.as_str()), "{csp}");
        assert!(inline_script(&page).contains("\"admin123\""));
    }

    #[test]
    fn an_example_login_cannot_end_the_script_it_is_written_into() {
        let page = Page::new(Some(("a@example.com", "</script><script>alert(1)")));

        assert_eq!(
            html(&page).matches("</script>").count(),
            5,
            "only the page's own"
        );
        assert!(inline_script(&page).contains("\\u003c/script>"));
    }

    /// The page as text.
    fn html(page: &Page) -> &str {
        std::str::from_utf8(&page.html).unwrap_or_default()
    }

    /// The page's one inline script.
    fn inline_script(page: &Page) -> &str {
        let after = html(page).rsplit("<script>").next().unwrap_or_default();
        after.split("</script>").next().unwrap_or_default()
    }
}
