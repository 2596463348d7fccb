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

/// One embedded file: the name it is served as, its media type, its bytes.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// A `text/javascript` or `text/css` file of `assets/<dir>/`, embedded at build time.
macro_rules! asset {
    ($dir:literal, $name:literal, js) => {
        $crate::http::assets::Asset {
            name: $name,
            content_type: "text/javascript; charset=utf-8",
            bytes: include_bytes!(concat!("../../assets/", $dir, "/", $name)),
        }
    };
    ($dir:literal, $name:literal, css) => {
        $crate::http::assets::Asset {
            name: $name,
            content_type: "text/css; charset=utf-8",
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
                (header::CONTENT_TYPE, asset.content_type),
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

/// An HTML page the binary serves (GraphiQL, the REST docs): its own policy, and revalidated
/// on every load, so a new binary's page (with new asset names) is seen at once.
pub fn page(html: &Bytes, csp: &HeaderValue) -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, csp.clone()),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        axum::response::Html(html.clone()),
    )
        .into_response()
}

/// A CSP hash source for an inline script or style.
pub fn sha256_source(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// A page's policy as a header value. The policies are ASCII built from constants and hashes;
/// were one ever unusable, the page would get the default policy, which lets nothing run.
pub fn policy(csp: &str) -> HeaderValue {
    HeaderValue::from_str(csp)
        .unwrap_or_else(|_| HeaderValue::from_static(super::security::DEFAULT_CSP))
}
