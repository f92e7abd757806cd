//! `docs/openapi.yaml` documents exactly the routes the functions serve: every route in
//! `api::routes` appears under `paths:` with its method, and every documented operation is
//! served. A line scan is enough for our own, consistently indented file.

use std::collections::BTreeSet;

use plexsync::api::routes;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// `(METHOD, path)` for every operation under the top-level `paths:` key.
fn documented_operations(yaml: &str) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    let mut in_paths = false;
    let mut current: Option<String> = None;
    for line in yaml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_paths = line.trim_end() == "paths:";
            current = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        let key = line
            .trim()
            .trim_end_matches(':')
            .trim_matches(|c| c == '\'' || c == '"');
        if indent == 2 && line.trim_end().ends_with(':') {
            assert!(key.starts_with('/'), "unexpected key under paths: {key}");
            current = Some(key.to_string());
        } else if indent == 4 && METHODS.contains(&key) {
            let path = current.clone().expect("method outside a path");
            ops.insert((key.to_ascii_uppercase(), path));
        }
    }
    ops
}

fn served_operations() -> BTreeSet<(String, String)> {
    routes::ALL
        .iter()
        .flat_map(|(_, table)| table.iter())
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[test]
fn openapi_documents_every_served_route_and_nothing_else() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
    let yaml = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(yaml.starts_with("openapi: 3.1"), "an OpenAPI 3.1 document");
    let documented = documented_operations(&yaml);
    let served = served_operations();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in docs/openapi.yaml but not served: {unserved:?}"
    );
    assert!(served.contains(&("POST".into(), "/api/plex/webhook".into())));
    assert_eq!(served.len(), 25);
}

#[test]
fn the_scan_finds_methods_only_under_paths() {
    let yaml = "openapi: 3.1.0\npaths:\n  /a/{id}:\n    get:\n      responses: {}\n    delete:\n      x: 1\n  '/b':\n    post:\n      y: 2\ncomponents:\n  schemas:\n    get:\n      type: object\n";
    let ops = documented_operations(yaml);
    let expected: BTreeSet<(String, String)> =
        [("GET", "/a/{id}"), ("DELETE", "/a/{id}"), ("POST", "/b")]
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
    assert_eq!(ops, expected);
}

#[test]
fn route_tables_have_no_duplicates() {
    let all: Vec<_> = routes::ALL.iter().flat_map(|(_, t)| t.iter()).collect();
    let unique: BTreeSet<_> = all.iter().collect();
    assert_eq!(all.len(), unique.len());
}
