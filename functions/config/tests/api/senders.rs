//! `GET /api/senders` and `PUT /api/senders/{sender}`: every sender's webhook URL, and the
//! Jellyfin / Emby settings the processor's account filter reads.

use plexsync::api::testing::{authed, json};
use serde_json::{json, Value};

use crate::support::*;

fn by_sender<'a>(list: &'a Value, sender: &str) -> &'a Value {
    list["senders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sender"] == sender)
        .unwrap_or_else(|| panic!("{sender} missing from {list}"))
}

fn secret_in(url: &str, path: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    assert_eq!(url.path(), path);
    url.query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
        .expect("secret query parameter")
}

#[tokio::test]
async fn every_sender_is_listed_and_unconfigured_ones_have_no_url() {
    let h = Harness::new().await;
    let resp = h.call(authed("GET", "/api/senders", None)).await;
    assert_eq!(resp.status(), 200);
    let list = json(&resp);
    let names: Vec<_> = list["senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sender"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["plex", "jellyfin", "emby"]);
    for s in list["senders"].as_array().unwrap() {
        assert_eq!(s["configured"], false, "{s}");
        assert_eq!(s["webhookUrl"], Value::Null, "{s}");
    }
}

#[tokio::test]
async fn enabling_jellyfin_creates_the_secret_and_shows_each_senders_url() {
    let h = Harness::new().await;
    let resp = h
        .call(authed(
            "PUT",
            "/api/senders/jellyfin",
            Some(json!({"account": " alice ", "allowedAccounts": ["bob"]})),
        ))
        .await;
    assert_eq!(resp.status(), 200, "{}", json(&resp));
    let saved = json(&resp);
    assert_eq!(saved["sender"], "jellyfin");
    assert_eq!(saved["configured"], true);
    assert_eq!(saved["enabled"], true);
    assert_eq!(saved["account"], "alice");
    assert_eq!(saved["allowedAccounts"], json!(["bob"]));
    let jellyfin_url = saved["webhookUrl"].as_str().unwrap();
    let secret = secret_in(jellyfin_url, "/api/jellyfin/webhook");
    assert!(jellyfin_url.starts_with(PUBLIC_BASE));
    // What the webhook function will compare against.
    assert_eq!(h.stored_webhook_secret().await.as_deref(), Some(&*secret));

    // Plex configured afterwards adopts the same secret: one secret, one URL per sender.
    h.plex_tv_ok().await;
    let plex = json(&h.post(json!({"plexToken": PLEX_TOKEN})).await);
    assert_eq!(secret_of(plex["webhookUrl"].as_str().unwrap()), secret);
    let emby = h
        .call(authed(
            "PUT",
            "/api/senders/emby",
            Some(json!({"account": "d1e2f3a4b5c64d7e8f9a0b1c2d3e4f5a", "autoAddShows": false})),
        ))
        .await;
    assert_eq!(emby.status(), 200);

    let list = json(&h.call(authed("GET", "/api/senders", None)).await);
    for (sender, path) in [
        ("plex", "/api/plex/webhook"),
        ("jellyfin", "/api/jellyfin/webhook"),
        ("emby", "/api/emby/webhook"),
    ] {
        let s = by_sender(&list, sender);
        assert_eq!(s["configured"], true, "{s}");
        assert_eq!(secret_in(s["webhookUrl"].as_str().unwrap(), path), secret);
    }
    assert_eq!(by_sender(&list, "plex")["account"], "alice");
    assert_eq!(by_sender(&list, "emby")["autoAddShows"], false);
    assert_eq!(by_sender(&list, "jellyfin")["autoAddShows"], true);
}

#[tokio::test]
async fn a_second_save_keeps_what_it_does_not_mention() {
    let h = Harness::new().await;
    let put = |body: Value| authed("PUT", "/api/senders/emby", Some(body));
    h.call(put(
        json!({"account": "alice", "allowedAccounts": ["bob", "carol"], "autoMarkWatched": false}),
    ))
    .await;
    let again = json(
        &h.call(put(json!({"account": "alice", "enabled": false})))
            .await,
    );
    assert_eq!(again["enabled"], false);
    assert_eq!(again["allowedAccounts"], json!(["bob", "carol"]));
    assert_eq!(again["autoMarkWatched"], false);
    let row = h
        .db
        .client()
        .await
        .query_one(
            "SELECT enabled, account, allowed_accounts FROM media_senders WHERE sender = 'emby'",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "alice");
}

#[tokio::test]
async fn bad_saves_are_clear_400s_or_404s_and_store_nothing() {
    let h = Harness::new().await;
    let cases = [
        (
            "/api/senders/plex",
            json!({"account": "alice"}),
            400,
            "POST /api/plex/config",
        ),
        (
            "/api/senders/kodi",
            json!({"account": "alice"}),
            404,
            "jellyfin",
        ),
        ("/api/senders/jellyfin", json!({}), 400, "account"),
        (
            "/api/senders/jellyfin",
            json!({"account": "  "}),
            400,
            "account",
        ),
        (
            "/api/senders/jellyfin",
            json!({"account": "alice", "colour": "red"}),
            400,
            "colour",
        ),
        (
            "/api/senders/jellyfin",
            json!({"account": "alice", "allowedAccounts": [""]}),
            400,
            "allowedAccounts",
        ),
        ("/api/senders/emby", json!({"account": 7}), 400, "account"),
    ];
    for (path, body, status, mention) in cases {
        let resp = h.call(authed("PUT", path, Some(body.clone()))).await;
        let out = json(&resp);
        assert_eq!(resp.status().as_u16(), status, "{path} {body}: {out}");
        assert_eq!(out["status"], "error", "{out}");
        assert!(
            out["message"].as_str().unwrap().contains(mention),
            "{path} {body}: {out}"
        );
    }
    let stored =
        h.db.client()
            .await
            .query_one("SELECT count(*) FROM media_senders", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
    assert_eq!(stored, 0);
    assert_eq!(h.stored_webhook_secret().await, None);
}
