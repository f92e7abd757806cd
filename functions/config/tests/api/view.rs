//! Reading the settings (never the token) and the soft delete.

use plexsync::api::testing::{authed, json, text};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn get_never_returns_the_token_and_has_the_documented_shape() {
    let h = Harness::new().await;
    let before = json(&h.call(authed("GET", "/api/plex/config", None)).await);
    assert_eq!(
        before,
        json!({
            "configured": false, "enabled": false, "autoAddShows": true, "autoMarkWatched": true,
            "serverName": null, "serverUrl": null, "allowInsecureHttp": false, "plexTokenSet": false, "plexAccountName": null,
            "allowedAccounts": [], "lastWebhookReceived": null, "webhookUrl": null
        })
    );
    h.plex_tv_ok().await;
    let saved = json(
        &h.post(json!({"plexToken": PLEX_TOKEN, "autoAddShows": false}))
            .await,
    );
    h.db.client()
        .await
        .execute(
            "UPDATE plex_config SET last_webhook_received = '2026-11-28T17:00:00Z'",
            &[],
        )
        .await
        .unwrap();
    let resp = h.call(authed("GET", "/api/plex/config", None)).await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["configured"], true);
    assert_eq!(body["enabled"], true);
    assert_eq!(body["autoAddShows"], false);
    assert_eq!(body["autoMarkWatched"], true);
    assert_eq!(body["serverName"], "basement-nas");
    assert_eq!(body["plexAccountName"], "alice");
    assert_eq!(body["lastWebhookReceived"], "2026-11-28T17:00:00Z");
    assert_eq!(body["webhookUrl"], saved["webhookUrl"]);
    assert!(body.get("plexToken").is_none());
    assert_eq!(body["plexTokenSet"], true, "only whether one is set");
    let stored: String = h.config_row().await.unwrap().get(0);
    assert!(!text(&resp).contains(&stored), "not even the ciphertext");
}

#[tokio::test]
async fn delete_soft_disables_and_keeps_mappings() {
    let h = Harness::new().await;
    let resp = h.call(authed("DELETE", "/api/plex/config", None)).await;
    assert_eq!(resp.status(), 404, "nothing to disable yet");
    h.plex_tv_ok().await;
    h.post(json!({"plexToken": PLEX_TOKEN})).await;
    let client = h.db.client().await;
    client
        .execute(
            "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title)
             VALUES ($1, '48200', 'plex://show/5d9c086c46115600200aa2fe', 'The Office')",
            &[&plexsync::testing::fixtures::server_uuid()],
        )
        .await
        .unwrap();
    let resp = h.call(authed("DELETE", "/api/plex/config", None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp), json!({"success": true, "enabled": false}));
    let row = h.config_row().await.expect("row kept");
    assert!(!row.get::<_, bool>(6));
    let n: i64 = client
        .query_one("SELECT count(*) FROM plex_show_mappings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "mappings kept");
    let view = json(&h.call(authed("GET", "/api/plex/config", None)).await);
    assert_eq!(view["configured"], true);
    assert_eq!(view["enabled"], false);
    // Saving again re-enables only when asked.
    h.post(json!({"plexToken": PLEX_TOKEN, "enabled": true}))
        .await;
    assert!(h.config_row().await.unwrap().get::<_, bool>(6));
}
