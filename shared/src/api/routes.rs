//! Every route each function serves, as data: the functions route with these tables and the
//! OpenAPI test checks `docs/openapi.yaml` against them.

/// One route: HTTP method and path pattern, with `{name}` for a path parameter. The same
/// spelling as the OpenAPI document's `paths`, so a test can compare them.
pub type Route = (&'static str, &'static str);

/// One route per sender (`plexsync::senders::Sender::webhook_path`).
pub const WEBHOOK: &[Route] = &[
    ("POST", "/api/plex/webhook"),
    ("POST", "/api/jellyfin/webhook"),
    ("POST", "/api/emby/webhook"),
];
pub const CONFIG: &[Route] = &[
    ("GET", "/api/plex/config"),
    ("POST", "/api/plex/config"),
    ("DELETE", "/api/plex/config"),
    ("GET", "/api/senders"),
    ("PUT", "/api/senders/{sender}"),
];
pub const MAPPINGS: &[Route] = &[
    ("GET", "/api/plex/mappings"),
    // Before the `{id}` routes: the table is matched in order.
    ("POST", "/api/plex/mappings/bulk"),
    ("POST", "/api/plex/mappings/{id}/confirm"),
    ("POST", "/api/plex/mappings/{id}/sync"),
    ("DELETE", "/api/plex/mappings/{id}"),
];
pub const CONFLICTS: &[Route] = &[
    ("GET", "/api/plex/conflicts"),
    ("POST", "/api/plex/conflicts/bulk"),
    ("POST", "/api/plex/conflicts/{id}/resolve"),
];
pub const LOGS: &[Route] = &[
    ("GET", "/api/plex/logs"),
    ("GET", "/api/plex/stats"),
    ("POST", "/api/plex/logs/{id}/replay"),
    ("GET", "/api/plex/dead-letters"),
    ("POST", "/api/plex/dead-letters/redrive"),
];
pub const IMPORT: &[Route] = &[("GET", "/api/plex/import"), ("POST", "/api/plex/import")];
/// The admin page and its assets (no token: the page asks for it).
pub const ADMIN: &[Route] = &[("GET", "/"), ("GET", "/admin/{asset}")];

/// (function name, its routes).
pub const ALL: &[(&str, &[Route])] = &[
    ("webhook", WEBHOOK),
    ("config", CONFIG),
    ("mappings", MAPPINGS),
    ("conflicts", CONFLICTS),
    ("logs", LOGS),
    ("import", IMPORT),
    ("admin", ADMIN),
];
