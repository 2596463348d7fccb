//! GraphiQL, served whole by the binary: the page at `GET /graphql` and its vendored assets at
//! `GET /graphql/assets/{file}` (production builds of React, GraphiQL and its explorer plugin,
//! pinned and integrity-checked by `scripts/vendor-assets`, embedded at build time). Nothing
//! is fetched from another host, so it works on a network without internet access, and the
//! page's Content-Security-Policy allows only these assets, its own inline script and style,
//! and connections back to this origin (HTTP and the `/graphql/ws` socket).

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

use super::assets::{Asset, Assets, HtmlPage, Shell, asset, gzip_all};
use crate::AppState;

/// The vendored files, in the order the page loads them; their names carry the version, so
/// each may be cached for a year.
static FILES: &[Asset] = &[
    asset!("graphiql", "react-18.3.1.production.min.js"),
    asset!("graphiql", "react-dom-18.3.1.production.min.js"),
    asset!("graphiql", "graphiql-3.9.0.min.js"),
    asset!("graphiql", "graphiql-3.9.0.min.css"),
    asset!("graphiql", "plugin-explorer-3.2.6.umd.js"),
    asset!("graphiql", "plugin-explorer-3.2.6.css"),
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
pub struct Page(HtmlPage);

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
        Self(HtmlPage::new(&Shell {
            title: "temporal-bff · GraphiQL",
            base: "graphql/assets",
            files: FILES,
            style: Some(STYLE),
            root: "graphiql",
            script: &script,
            // GraphiQL's fonts are data: URIs in its stylesheet.
            extra_sources: "font-src 'self' data:; ",
        }))
    }

    /// `GET /graphql` without a query: the page.
    pub fn response(&self) -> Response {
        self.0.response()
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
    use crate::http::assets::sha256_source;

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
        let csp = page.0.csp.to_str().unwrap_or_default();
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
        std::str::from_utf8(&page.0.html).unwrap_or_default()
    }

    /// The page's one inline script.
    fn inline_script(page: &Page) -> &str {
        let after = html(page).rsplit("<script>").next().unwrap_or_default();
        after.split("</script>").next().unwrap_or_default()
    }
}
