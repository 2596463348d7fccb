//! Browser assets embedded in the binary and served by it: the vendored files of GraphiQL
//! ([`super::graphiql`]) and of the REST documentation ([`super::docs`]), each set pinned and
//! integrity-checked by `scripts/vendor-assets`. Names carry the version, so browsers may keep
//! a file for a year; each is gzipped once, on first use, for browsers that accept it.

use std::sync::LazyLock;

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// One embedded file: the name it is served as (its extension says its media type) and its
/// bytes.
pub struct Asset {
    pub name: &'static str,
    pub bytes: &'static [u8],
}

impl Asset {
    /// A stylesheet (`.css`); anything else is a script.
    fn is_css(&self) -> bool {
        self.name.ends_with(".css")
    }

    fn content_type(&self) -> &'static str {
        if self.is_css() {
            "text/css; charset=utf-8"
        } else {
            "text/javascript; charset=utf-8"
        }
    }
}

/// The file `name` of `assets/<dir>/`, embedded at build time.
macro_rules! asset {
    ($dir:literal, $name:literal) => {
        $crate::http::assets::Asset {
            name: $name,
            bytes: include_bytes!(concat!("../../assets/", $dir, "/", $name)),
        }
    };
}
pub(crate) use asset;

/// One directory's files, with their gzipped forms made on first use.
pub struct Assets {
    files: &'static [Asset],
    gzipped: LazyLock<Vec<Bytes>>,
}

impl Assets {
    /// The set; `gzip` is [`gzip_all`] over the same slice (a `LazyLock` needs a plain fn).
    pub const fn new(files: &'static [Asset], gzip: fn() -> Vec<Bytes>) -> Self {
        Self {
            files,
            gzipped: LazyLock::new(gzip),
        }
    }

    /// The file called `name` (gzipped when the request accepts it), cached for a year; 404
    /// for any other name.
    pub fn response(&self, name: &str, request: &HeaderMap) -> Response {
        let Some(index) = self.files.iter().position(|asset| asset.name == name) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let asset = &self.files[index];
        let accepts_gzip = request
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|coding| coding.split(';').next().is_some_and(|c| c.trim() == "gzip"));
        let gzipped = self.gzipped.get(index).filter(|_| accepts_gzip).cloned();
        let gzip = gzipped.is_some();
        let mut response = (
            [
                (header::CONTENT_TYPE, asset.content_type()),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
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
}

/// Every file of `files` gzipped (GraphiQL's script shrinks about 3.5×).
pub fn gzip_all(files: &[Asset]) -> Vec<Bytes> {
    use std::io::Write as _;
    files
        .iter()
        .map(|asset| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(asset.bytes);
            Bytes::from(encoder.finish().unwrap_or_default())
        })
        .collect()
}

/// An HTML page the binary serves (GraphiQL, the REST docs): the shell that loads its vendored
/// files and runs its one inline script, and its Content-Security-Policy.
pub struct HtmlPage {
    /// Shared bytes: each request sends them without a copy.
    pub(super) html: Bytes,
    pub(super) csp: HeaderValue,
}

/// What an [`HtmlPage`] is made of.
pub struct Shell<'a> {
    pub title: &'a str,
    /// Where `files` are served, relative to the page (so it works behind a path prefix).
    pub base: &'a str,
    /// Linked in this order: the stylesheets in the head, the scripts at the end of the body.
    pub files: &'a [Asset],
    /// Inline style, if any (CSS cannot run script, so the policy allows inline styles).
    pub style: Option<&'a str>,
    /// The `id` of the element the page's script renders into.
    pub root: &'a str,
    /// The one inline script, allowed by its hash.
    pub script: &'a str,
    /// Sources beyond the common ones, e.g. `font-src 'self' data:; `.
    pub extra_sources: &'a str,
}

impl HtmlPage {
    pub fn new(shell: &Shell<'_>) -> Self {
        let Shell {
            title,
            base,
            files,
            style,
            root,
            script,
            extra_sources,
        } = shell;
        let links: String = files
            .iter()
            .filter(|file| file.is_css())
            .map(|file| format!("<link rel=\"stylesheet\" href=\"{base}/{}\">\n", file.name))
            .collect();
        let scripts: String = files
            .iter()
            .filter(|file| !file.is_css())
            .map(|file| format!("<script src=\"{base}/{}\"></script>\n", file.name))
            .collect();
        let style = style
            .map(|style| format!("<style>{style}</style>\n"))
            .unwrap_or_default();
        let html = format!(
            r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<link rel="icon" href="data:,">
{links}{style}</head>
<body>
<div id="{root}">Loading…</div>
{scripts}<script>{script}</script>
</body>
</html>
"#
        );
        // Styles may be inline: the pages' components inject <style> elements and style
        // attributes whose text varies, and CSS cannot run script; scripts stay limited to the
        // vendored files and the one hashed inline script; icons are data: URIs.
        let csp = format!(
            "default-src 'none'; script-src 'self' '{}'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; {extra_sources}connect-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            sha256_source(script),
        );
        Self {
            html: Bytes::from(html),
            csp: policy(&csp),
        }
    }

    /// The page, with its own policy, revalidated on every load so a new binary's page (with
    /// new asset names) is seen at once.
    pub fn response(&self) -> Response {
        (
            [
                (header::CONTENT_SECURITY_POLICY, self.csp.clone()),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            axum::response::Html(self.html.clone()),
        )
            .into_response()
    }
}

/// A CSP hash source for an inline script or style.
pub(crate) fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// A page's policy as a header value. The policies are ASCII built from constants and hashes;
/// were one ever unusable, the page would get the default policy, which lets nothing run.
fn policy(csp: &str) -> HeaderValue {
    HeaderValue::from_str(csp)
        .unwrap_or_else(|_| HeaderValue::from_static(super::security::DEFAULT_CSP))
}
