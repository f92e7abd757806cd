//! The admin function as a browser meets it: the page and assets, their headers (CSP,
//! hardening, caching), gzip, 304s, errors; and the page's own rules (no inline script, nothing
//! from another origin, a size budget, a label for every control).

use std::io::Read;

use admin::{Site, CONTENT_SECURITY_POLICY};
use lambda_http::{
    http::{self, StatusCode},
    Body, Request, RequestExt, Response,
};

fn get(path: &str) -> Request {
    request("GET", path, &[])
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut b = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Body::Empty).unwrap();
    let params: std::collections::HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    req.with_query_string_parameters(params)
}

fn body(resp: &Response<Body>) -> Vec<u8> {
    match resp.body() {
        Body::Empty => vec![],
        Body::Text(t) => t.as_bytes().to_vec(),
        Body::Binary(b) => b.clone(),
        _ => unreachable!(),
    }
}

fn text(resp: &Response<Body>) -> String {
    String::from_utf8(body(resp)).unwrap()
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header"))
}

fn assert_hardened(resp: &Response<Body>) {
    assert_eq!(
        header(resp, "content-security-policy"),
        CONTENT_SECURITY_POLICY
    );
    assert_eq!(header(resp, "x-content-type-options"), "nosniff");
    assert_eq!(header(resp, "referrer-policy"), "no-referrer");
    assert_eq!(header(resp, "x-frame-options"), "DENY");
}

/// The `?v=` links the page carries, by asset name.
fn linked_assets(page: &str) -> Vec<(String, String)> {
    page.match_indices("\"/admin/")
        .map(|(i, _)| {
            let rest = &page[i + 1..];
            let url = &rest[..rest.find('"').unwrap()];
            let (path, version) = url.split_once("?v=").expect("linked with ?v=");
            (path.to_string(), version.to_string())
        })
        .collect()
}

#[test]
fn the_page_is_served_at_the_root_with_a_strict_policy() {
    let site = Site::load();
    let resp = site.handle(&get("/"));
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&resp, "cache-control"), "no-cache");
    assert!(header(&resp, "etag").starts_with('"'));
    assert_hardened(&resp);
    let csp = CONTENT_SECURITY_POLICY;
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self';"));
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert!(csp.contains("frame-ancestors 'none'"));
    let page = text(&resp);
    assert!(page.contains("<title>plexsync</title>"));
    let assets = linked_assets(&page);
    let names: Vec<&str> = assets.iter().map(|(p, _)| p.as_str()).collect();
    for needed in ["/admin/app.js", "/admin/style.css", "/admin/favicon.svg"] {
        assert!(names.contains(&needed), "{needed} not linked: {names:?}");
    }
}

#[test]
fn a_versioned_asset_is_cached_for_good_an_unversioned_one_revalidates() {
    let site = Site::load();
    let page = text(&site.handle(&get("/")));
    for (path, version) in linked_assets(&page) {
        let resp = site.handle(&get(&format!("{path}?v={version}")));
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&resp, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&resp, "etag"), format!("\"{version}\""));
        assert_hardened(&resp);

        let stale = site.handle(&get(&format!("{path}?v=0000000000000000")));
        assert_eq!(header(&stale, "cache-control"), "no-cache", "{path}");
        let plain = site.handle(&get(&path));
        assert_eq!(header(&plain, "cache-control"), "no-cache", "{path}");
        assert_eq!(body(&plain), body(&resp));
    }
    let js = site.handle(&get("/admin/app.js"));
    assert_eq!(
        header(&js, "content-type"),
        "text/javascript; charset=utf-8"
    );
    let css = site.handle(&get("/admin/style.css"));
    assert_eq!(header(&css, "content-type"), "text/css; charset=utf-8");
}

#[test]
fn a_matching_etag_gets_304_without_a_body() {
    let site = Site::load();
    let first = site.handle(&get("/admin/app.js"));
    let etag = header(&first, "etag").to_string();
    let again = site.handle(&request(
        "GET",
        "/admin/app.js",
        &[("if-none-match", &format!("W/\"x\", {etag}"))],
    ));
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(body(&again).is_empty());
    assert_eq!(header(&again, "etag"), etag);
    assert_hardened(&again);
    let changed = site.handle(&request(
        "GET",
        "/admin/app.js",
        &[("if-none-match", "\"0123\"")],
    ));
    assert_eq!(changed.status(), StatusCode::OK);
}

#[test]
fn gzip_only_when_accepted_and_it_decodes_to_the_same_bytes() {
    let site = Site::load();
    let plain = site.handle(&get("/admin/app.js"));
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(header(&plain, "vary"), "Accept-Encoding");
    let gz = site.handle(&request(
        "GET",
        "/admin/app.js",
        &[("accept-encoding", "br, gzip;q=0.8")],
    ));
    assert_eq!(header(&gz, "content-encoding"), "gzip");
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&body(&gz)[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, body(&plain));
    assert!(body(&gz).len() < body(&plain).len() / 2);
    let refused = site.handle(&request(
        "GET",
        "/admin/app.js",
        &[("accept-encoding", "gzip;q=0")],
    ));
    assert!(refused.headers().get("content-encoding").is_none());
}

#[test]
fn unknown_paths_and_methods_get_json_errors_with_the_same_headers() {
    let site = Site::load();
    for (method, path, status) in [
        ("GET", "/admin/nope.js", StatusCode::NOT_FOUND),
        ("GET", "/admin/../Cargo.toml", StatusCode::NOT_FOUND),
        ("GET", "/admin/", StatusCode::NOT_FOUND),
        ("GET", "/api/plex/config", StatusCode::NOT_FOUND),
        ("POST", "/", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let resp = site.handle(&request(method, path, &[]));
        assert_eq!(resp.status(), status, "{method} {path}");
        assert_eq!(header(&resp, "content-type"), "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body(&resp)).unwrap();
        assert_eq!(json["status"], "error", "{json}");
        assert_hardened(&resp);
    }
}

#[test]
fn the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() {
    let site = Site::load();
    let page = text(&site.handle(&get("/")));
    for (i, _) in page.match_indices("<script") {
        let tag = &page[i..i + page[i..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/admin/"), "inline script: {tag}");
    }
    let lower = page.to_ascii_lowercase();
    for attr in [
        " onclick=",
        " onload=",
        " onsubmit=",
        " style=",
        "javascript:",
    ] {
        assert!(!lower.contains(attr), "{attr} in the page");
    }
    // Every src/href points at this origin (or a fragment).
    for attr in ["src=\"", "href=\""] {
        for (i, _) in page.match_indices(attr) {
            let value = &page[i + attr.len()..];
            assert!(
                value.starts_with('/') || value.starts_with('#'),
                "{attr}{}",
                &value[..value.find('"').unwrap()]
            );
        }
    }
    let css = text(&site.handle(&get("/admin/style.css")));
    assert!(
        !css.contains("url(") && !css.contains("@import"),
        "CSS fetches something"
    );
    let js = text(&site.handle(&get("/admin/app.js")));
    // Absolute URLs only: the page's words may say "plain http".
    let http_mentions: Vec<_> = ["http://", "https://"]
        .iter()
        .flat_map(|scheme| js.match_indices(scheme))
        .map(|(i, _)| &js[i..i + 30.min(js.len() - i)])
        .collect();
    assert!(
        http_mentions
            .iter()
            .all(|m| m.starts_with("http://www.w3.org/2000/svg")),
        "absolute URLs in app.js: {http_mentions:?}"
    );
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
    assert!(
        js.contains("sessionStorage")
            && !js.contains("localStorage")
            && !js.contains("document.cookie")
    );
}

#[test]
fn every_control_in_the_page_has_a_label() {
    let page = text(&Site::load().handle(&get("/")));
    for tag in ["<input", "<select", "<textarea"] {
        for (i, _) in page.match_indices(tag) {
            let el = &page[i..i + page[i..].find('>').unwrap()];
            if el.contains("type=\"radio\"") {
                // Radios sit inside their <label>.
                let before = &page[..i];
                assert!(before.rfind("<label>") > before.rfind("</label>"), "{el}");
                continue;
            }
            let id = el
                .split("id=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("control without id: {el}"));
            assert!(
                page.contains(&format!("for=\"{id}\"")),
                "no <label for=\"{id}\">"
            );
        }
    }
}

#[test]
fn all_assets_together_stay_under_100_kb_gzipped() {
    let size = Site::load().gzipped_size();
    assert!(size < 100 * 1024, "{size} bytes gzipped");
    // Not empty either: the page, script, styles and icon are all there.
    assert!(size > 5 * 1024, "{size} bytes gzipped");
}
