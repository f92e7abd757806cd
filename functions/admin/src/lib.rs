#![warn(unreachable_pub)]
//! `admin` function: the admin web page. `GET /` is the page, `GET /admin/{asset}` its script,
//! styles and icon. The files in `assets/` are compiled into the binary; the function has no
//! database, no secrets and no configuration. The page itself calls the management API
//! (same origin) with the API token the user pastes.
//!
//! Every response carries a strict Content-Security-Policy (scripts, styles and requests only
//! from this origin; no inline script) and the usual hardening headers. The page is revalidated
//! on every load (`no-cache` + `ETag`); it links its assets as `/admin/<name>?v=<hash>`, and a
//! request with the current hash is cached for a year, so a deploy is seen at once and a
//! reload costs one 304.

use std::{borrow::Cow, collections::HashMap, io::Write, sync::OnceLock};

use flate2::{write::GzEncoder, Compression};
use lambda_http::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    Body, Request, RequestExt, Response,
};
use plexsync::api::{
    match_route, method_not_allowed, route_not_found, routes, ApiError, RouteError,
};
use rust_embed::Embed;
use sha2::{Digest, Sha256};

#[derive(Embed)]
#[folder = "assets/"]
struct Assets;

/// The page's own file name among the assets (served at `/`).
const PAGE: &str = "index.html";

/// `default-src 'none'`: everything not listed is refused. The chart is inline SVG built by the
/// script (no inline script or style attribute is needed).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Cache-Control for the page and for an asset requested without its current hash.
const REVALIDATE: &str = "no-cache";
/// Cache-Control for an asset requested with its current `?v=` hash: the URL changes with
/// the content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// One file as served.
struct Asset {
    body: Cow<'static, [u8]>,
    /// Compressed on first use: gzipping the ~85 KB of assets at load took 4 ms of a 7 ms cold
    /// start (BENCHMARKS.md), and a warm instance serves most requests from the browser cache.
    /// `None`: not worth compressing (images).
    gzip: Option<OnceLock<Vec<u8>>>,
    content_type: HeaderValue,
    /// Short content hash: the `?v=` value and (quoted) the ETag.
    version: String,
}

impl Asset {
    fn new(name: &str, body: Cow<'static, [u8]>) -> Self {
        let version = hex::encode(&Sha256::digest(&body)[..8]);
        let content_type = content_type(name);
        let gzip = compressible(&content_type).then(OnceLock::new);
        Self {
            body,
            gzip,
            content_type,
            version,
        }
    }

    fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

fn content_type(name: &str) -> HeaderValue {
    let mime = mime_guess_for(name);
    let text = mime.starts_with("text/") || mime.ends_with("javascript") || mime.ends_with("+xml");
    let value = if text {
        format!("{mime}; charset=utf-8")
    } else {
        mime
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

fn mime_guess_for(name: &str) -> String {
    Assets::get(name)
        .map(|f| f.metadata.mimetype().to_string())
        .unwrap_or_else(|| "application/octet-stream".into())
}

impl Asset {
    /// The gzipped body, compressed now if this is its first use.
    fn gzipped(&self) -> Option<&[u8]> {
        let cell = self.gzip.as_ref()?;
        Some(cell.get_or_init(|| gzip(&self.body)))
    }
}

fn compressible(content_type: &HeaderValue) -> bool {
    content_type.to_str().is_ok_and(|t| t.contains("charset"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// The embedded files, ready to serve. Built once per cold start.
pub struct Site {
    assets: HashMap<String, Asset>,
}

impl Default for Site {
    fn default() -> Self {
        Self::load()
    }
}

impl Site {
    /// Reads the embedded files and links the page to its assets' current versions; the text
    /// files are gzipped on first use.
    pub fn load() -> Self {
        let mut assets: HashMap<String, Asset> = Assets::iter()
            .filter(|name| name != PAGE)
            .filter_map(|name| {
                let file = Assets::get(&name)?;
                Some((name.to_string(), Asset::new(&name, file.data)))
            })
            .collect();
        let mut page = Assets::get(PAGE)
            .map(|f| String::from_utf8_lossy(&f.data).into_owned())
            .unwrap_or_default();
        for (name, asset) in &assets {
            page = page.replace(
                &format!("\"/admin/{name}\""),
                &format!("\"/admin/{name}?v={}\"", asset.version),
            );
        }
        assets.insert(
            PAGE.to_string(),
            Asset::new(PAGE, Cow::Owned(page.into_bytes())),
        );
        Self { assets }
    }

    /// Total size of the assets as served gzipped (what a first visit downloads, at most).
    pub fn gzipped_size(&self) -> usize {
        self.assets
            .values()
            .map(|a| a.gzipped().map_or(a.body.len(), <[u8]>::len))
            .sum()
    }

    /// Serves one request.
    pub fn handle(&self, req: &Request) -> Response<Body> {
        let mut resp = match match_route(routes::ADMIN, req.method().as_str(), req.uri().path()) {
            Ok(route) => {
                let name = route.param("asset").unwrap_or(PAGE);
                match self.assets.get(name) {
                    Some(asset) => self.serve(req, name, asset),
                    None => ApiError::NotFound(format!("no asset {name:?}")).into_response(),
                }
            }
            Err(RouteError::NotFound) => route_not_found(req).into_response(),
            Err(RouteError::MethodNotAllowed(allowed)) => {
                method_not_allowed(req, &allowed).into_response()
            }
        };
        security_headers(resp.headers_mut());
        resp
    }

    fn serve(&self, req: &Request, name: &str, asset: &Asset) -> Response<Body> {
        let versioned = name != PAGE
            && req
                .query_string_parameters_ref()
                .and_then(|q| q.first("v"))
                .is_some_and(|v| v == asset.version);
        let cache = if versioned { IMMUTABLE } else { REVALIDATE };
        let etag = asset.etag();
        let builder = Response::builder()
            .header(header::CACHE_CONTROL, cache)
            .header(header::ETAG, &etag)
            .header(header::VARY, "Accept-Encoding");
        if if_none_match(req.headers(), &etag) {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::Empty)
                .unwrap_or_default();
        }
        let builder = builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, asset.content_type.clone());
        match asset.gzipped() {
            Some(gz) if accepts_gzip(req.headers()) => builder
                .header(header::CONTENT_ENCODING, "gzip")
                .body(Body::Binary(gz.to_vec())),
            _ => builder.body(Body::Binary(asset.body.to_vec())),
        }
        .unwrap_or_default()
    }
}

/// Headers on every answer, the page's and errors alike.
fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // For browsers older than CSP's frame-ancestors.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    // API Gateway serves HTTPS only; browsers ignore this header over plain http (make dev).
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

/// `gzip` listed in Accept-Encoding and not refused with `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing is compressed at load (the cold start); an asset is, once, when first served
    /// to a browser that accepts gzip.
    #[test]
    fn assets_are_gzipped_on_first_use_not_at_load() {
        let site = Site::load();
        fn compressed(site: &Site) -> Vec<&str> {
            let mut names: Vec<&str> = site
                .assets
                .iter()
                .filter(|(_, a)| a.gzip.as_ref().is_some_and(|c| c.get().is_some()))
                .map(|(n, _)| n.as_str())
                .collect();
            names.sort_unstable();
            names
        }
        assert!(compressed(&site).is_empty(), "{:?}", compressed(&site));
        let req = lambda_http::http::Request::builder()
            .uri("/admin/app.js")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::Empty)
            .unwrap();
        let res = site.handle(&req);
        assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(compressed(&site), ["app.js"]);
    }
}
