//! History sync: what Plex has watched is marked in the tracker; its errors change nothing.

use std::time::Duration;

use chrono::{SecondsFormat, TimeZone, Utc};
use lambda_http::{Body, Response};
use plexsync::{
    api::testing::{authed, json, text},
    plex::PlexServerClient,
    testing::fixtures,
    tmdb::SeasonDetails,
};
use serde_json::{json, Value};
use wiremock::{
    matchers::{header, method, path},
    Mock, ResponseTemplate,
};

use crate::support::*;

fn at(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Harness {
    /// Gives The Office its season 1 (six episodes); S01E04 watched by hand in 2019.
    async fn office_season_1(&self) {
        let season: SeasonDetails =
            serde_json::from_value(fixtures::tmdb_the_office_season_1()).unwrap();
        let mut seasons = json!([plexsync::episodes::season_from_tmdb(&season)]);
        seasons[0]["episodes"][3]["watched"] = json!(true);
        seasons[0]["episodes"][3]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
        self.db.client().await
            .execute(
                "UPDATE tvshows SET seasons = $2, watched_episodes = 1, total_episodes = 6 WHERE id = $1",
                &[&self.office_show, &seasons],
            )
            .await
            .unwrap();
    }

    async fn office_episodes(&self) -> (Vec<Value>, i32) {
        let row = self
            .db
            .client()
            .await
            .query_one(
                "SELECT seasons, watched_episodes FROM tvshows WHERE id = $1",
                &[&self.office_show],
            )
            .await
            .unwrap();
        let seasons: Value = row.get(0);
        (
            seasons[0]["episodes"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            row.get(1),
        )
    }

    async fn serve_leaves(&self, response: ResponseTemplate) {
        self.plex.reset().await;
        Mock::given(method("GET"))
            .and(path("/library/metadata/48200/allLeaves"))
            .and(header("x-plex-token", PLEX_TOKEN))
            .and(header("accept", "application/json"))
            .respond_with(response)
            .mount(&self.plex)
            .await;
    }

    async fn sync(&self, id: i32) -> Response<Body> {
        let resp = self
            .call(authed(
                "POST",
                &format!("/api/plex/mappings/{id}/sync"),
                None,
            ))
            .await;
        assert!(
            !text(&resp).contains(PLEX_TOKEN),
            "token leaked: {}",
            text(&resp)
        );
        resp
    }

    async fn set_config(&self, sql: &str) {
        self.db.client().await.execute(sql, &[]).await.unwrap();
    }
}

#[tokio::test]
async fn sync_marks_what_plex_has_watched_and_keeps_manual_dates() {
    let h = Harness::new().await;
    h.office_season_1().await;
    h.serve_leaves(
        ResponseTemplate::new(200).set_body_json(fixtures::plex_server_office_all_leaves()),
    )
    .await;

    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    let body = json(&resp);
    assert_eq!(body["success"], true);
    assert_eq!(body["mappingId"], h.office);
    assert_eq!(body["tvshowId"], h.office_show);
    assert_eq!(body["watchedInPlex"], 4);
    assert_eq!(body["marked"], 2);
    assert_eq!(body["alreadyWatched"], 1);
    assert_eq!(
        body["notInTracker"], 1,
        "S02E01 is not in the tracker's seasons"
    );
    assert_eq!(body["markedEpisodes"], json!(["S01E01", "S01E02"]));

    let (episodes, watched) = h.office_episodes().await;
    assert_eq!(episodes[0]["watched"], true);
    assert_eq!(episodes[0]["dateWatched"], at(1700000000).as_str());
    assert_eq!(episodes[1]["dateWatched"], at(1700086400).as_str());
    assert_eq!(episodes[2]["watched"], false, "only started in Plex");
    assert_eq!(
        episodes[3]["dateWatched"], "2019-05-01T20:00:00.000Z",
        "kept"
    );
    assert_eq!(episodes[4]["watched"], false);
    assert_eq!(watched, 3);

    // Again: nothing new, nothing overwritten.
    let again = json(&h.sync(h.office).await);
    assert_eq!(again["marked"], 0);
    assert_eq!(again["alreadyWatched"], 3);
    assert_eq!(h.office_episodes().await.0, episodes);
}

/// Issue 12: the sync rewrote the show's whole seasons JSON once per episode, in one
/// transaction holding the show's lock. It must write the show row once, whatever the number of
/// episodes; a sync that marks nothing only notes the sync (one write too).
#[tokio::test]
async fn sync_writes_the_show_row_once() {
    let h = Harness::new().await;
    h.office_season_1().await;
    h.serve_leaves(
        ResponseTemplate::new(200).set_body_json(fixtures::plex_server_office_all_leaves()),
    )
    .await;
    // Every write of a tvshows row leaves a row here.
    h.db.client()
        .await
        .batch_execute(
            "CREATE TABLE show_writes (id int);
         CREATE FUNCTION note_show_write() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO show_writes VALUES (NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER note_show_write AFTER UPDATE ON tvshows
           FOR EACH ROW EXECUTE FUNCTION note_show_write();",
        )
        .await
        .unwrap();
    let writes = || async {
        h.db.client()
            .await
            .query_one("SELECT count(*) FROM show_writes", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    let body = json(&h.sync(h.office).await);
    assert_eq!(body["marked"], 2, "{body}");
    assert_eq!(
        writes().await,
        1,
        "two episodes marked, the show written once"
    );
    let again = json(&h.sync(h.office).await);
    assert_eq!(again["alreadyWatched"], 3, "{again}");
    assert_eq!(writes().await, 2);
}

#[tokio::test]
async fn sync_errors_have_their_statuses_and_change_nothing() {
    let mut h = Harness::new().await;
    h.office_season_1().await;
    let before = h.office_episodes().await;

    let resp = h.sync(h.got).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(
        json(&resp)["message"],
        "mapping is not linked to a tracker show"
    );
    assert_eq!(h.sync(999999).await.status(), 404);
    let resp = h
        .call(authed("POST", "/api/plex/mappings/x/sync", None))
        .await;
    assert_eq!(resp.status(), 400);

    // The Plex server rejects the token.
    h.serve_leaves(
        ResponseTemplate::new(401)
            .set_body_string("<html><head><title>Unauthorized</title></head></html>"),
    )
    .await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json(&resp)["message"], "Plex server rejected the token");

    // The server errors, answers garbage, or is too slow.
    h.serve_leaves(ResponseTemplate::new(500)).await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 502);
    assert!(json(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("Plex server"));
    h.serve_leaves(ResponseTemplate::new(200).set_body_string("<MediaContainer size=\"0\"/>"))
        .await;
    assert_eq!(h.sync(h.office).await.status(), 502);
    h.serve_leaves(
        ResponseTemplate::new(200)
            .set_body_json(fixtures::plex_server_office_all_leaves())
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let patient = std::mem::replace(
        &mut h.state.plex,
        PlexServerClient::with_timeout(Duration::from_millis(500)).unwrap(),
    );
    let resp = h.sync(h.office).await;
    h.state.plex = patient;
    assert_eq!(resp.status(), 502);
    assert!(json(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("did not answer in time"));

    // Unreachable: nothing listens there.
    h.set_config("UPDATE plex_config SET plex_server_url = 'http://127.0.0.1:9'")
        .await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 502);
    let body = json(&resp);
    assert_eq!(body["error"], "bad_gateway");
    assert!(
        body["message"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );

    // A plain http server the user did not allow (a URL stored before the opt-in existed):
    // a clear 422 and nothing, token included, sent to it.
    h.serve_leaves(
        ResponseTemplate::new(200).set_body_json(fixtures::plex_server_office_all_leaves()),
    )
    .await;
    h.set_config(&format!(
        "UPDATE plex_config SET plex_server_url = '{}', allow_insecure_http = false",
        h.plex.uri()
    ))
    .await;
    h.plex.reset().await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 422, "{}", text(&resp));
    let message = json(&resp)["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("plain http") && message.contains("allowInsecureHttp"),
        "{message}"
    );
    assert!(h.plex.received_requests().await.unwrap().is_empty());
    h.set_config("UPDATE plex_config SET allow_insecure_http = true")
        .await;

    // No server URL, integration disabled, not configured at all.
    h.set_config("UPDATE plex_config SET plex_server_url = NULL")
        .await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 422);
    assert!(json(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("server URL"));
    h.set_config("UPDATE plex_config SET plex_server_url = 'http://127.0.0.1:9', enabled = false")
        .await;
    assert_eq!(h.sync(h.office).await.status(), 422);
    h.set_config("DELETE FROM plex_config").await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json(&resp)["message"], "Plex is not configured");

    // Sync turned off for the show.
    assert_eq!(
        h.call(authed(
            "DELETE",
            &format!("/api/plex/mappings/{}", h.office),
            None
        ))
        .await
        .status(),
        200
    );
    assert_eq!(h.sync(h.office).await.status(), 409);

    assert_eq!(h.office_episodes().await, before, "nothing marked");
}

#[tokio::test]
async fn a_sync_still_running_at_its_budget_answers_503_and_saves_nothing() {
    let mut h = Harness::new().await;
    h.office_season_1().await;
    h.serve_leaves(
        ResponseTemplate::new(200).set_body_json(fixtures::plex_server_office_all_leaves()),
    )
    .await;
    let before = h.office_episodes().await;
    h.state.sync_budget = Duration::from_secs(1);
    // The tracker is busy with the show (its row locked) for longer than the sync's budget.
    let mut holder = h.db.pool.get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT id FROM tvshows WHERE id = $1 FOR UPDATE",
        &[&h.office_show],
    )
    .await
    .unwrap();

    let resp = h.sync(h.office).await;
    tx.rollback().await.unwrap();

    assert_eq!(resp.status(), 503, "{}", text(&resp));
    let message = json(&resp)["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("did not finish within 1 s") && message.contains("safe to run again"),
        "{message}"
    );
    assert_eq!(h.office_episodes().await, before, "nothing saved");
}

#[tokio::test]
async fn after_a_key_rotation_the_stored_token_is_reencrypted_on_its_next_use() {
    use plexsync::crypto::{generate_key_hex, Keyring};
    use secrecy::{ExposeSecret, SecretString};

    let h = Harness::new().await;
    h.office_season_1().await;
    h.serve_leaves(
        ResponseTemplate::new(200).set_body_json(fixtures::plex_server_office_all_leaves()),
    )
    .await;
    let stored = || async {
        let row =
            h.db.client()
                .await
                .query_one("SELECT plex_token FROM plex_config WHERE user_id = 1", &[])
                .await
                .unwrap();
        row.get::<_, String>(0)
    };
    let old_ciphertext = stored().await;

    // Rotate: a new current key, the old one kept for decryption only.
    let new_key = generate_key_hex();
    let rotated =
        SecretString::from(json!({"current": new_key, "previous": [h.key_hex]}).to_string());
    h.state
        .api
        .secrets
        .put(&h.state.encryption_key_id, &rotated)
        .await
        .unwrap();
    let rotated = Keyring::from_secret(&rotated).unwrap();
    assert!(rotated.needs_reencryption(&old_ciphertext));

    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));

    let now = stored().await;
    assert_ne!(now, old_ciphertext, "re-encrypted on this use");
    assert!(
        !rotated.needs_reencryption(&now),
        "sealed with the current key"
    );
    // The new key alone opens it: the old key can be retired.
    let new_only = Keyring::from_secret(&SecretString::from(new_key)).unwrap();
    assert_eq!(new_only.decrypt(&now).unwrap().expose_secret(), PLEX_TOKEN);

    // A use under the current key writes nothing.
    assert_eq!(h.sync(h.office).await.status(), 200);
    assert_eq!(stored().await, now);
}

/// The function's real start-up path (`State::from_env`, as `main` runs it) with only secret
/// ids in its environment, against moto and Postgres: the pool reaches the database the secret
/// names, the API token and the encryption key come from Secrets Manager, and a history sync
/// decrypts the stored Plex token with that key to ask the Plex server.
#[tokio::test]
async fn the_function_starts_from_its_environment_and_syncs() {
    let mut h = Harness::new().await;
    h.office_season_1().await;
    h.serve_leaves(
        ResponseTemplate::new(200).set_body_json(fixtures::plex_server_office_all_leaves()),
    )
    .await;
    let sdk = plexsync::testing::moto_config().await;
    let url_id =
        plexsync::testing::secret(&sdk, secrecy::ExposeSecret::expose_secret(&h.db.url)).await;
    let token_id = plexsync::testing::secret(&sdk, plexsync::api::testing::API_TOKEN).await;
    let env = plexsync::env::Env::from_map([
        ("DATABASE_URL_SECRET_ID", url_id.as_str()),
        ("API_TOKEN_SECRET_ID", token_id.as_str()),
        (
            "ENCRYPTION_KEY_SECRET_ID",
            h.state.encryption_key_id.as_str(),
        ),
    ])
    .with_secrets(&plexsync::api::testing::secrets_cache(&sdk))
    .await
    .unwrap();
    h.state = mappings::State::from_env(&env, &sdk).expect("the mappings state builds");

    let resp = h.call(authed("GET", "/api/plex/mappings", None)).await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    assert_eq!(ids(&json(&resp)).len(), 3);
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    assert_eq!(json(&resp)["markedEpisodes"], json!(["S01E01", "S01E02"]));
    assert_eq!(h.office_episodes().await.1, 3);
    // A wrong token is still refused by the state built from the environment.
    let resp = h
        .call(plexsync::api::testing::request(
            "GET",
            "/api/plex/mappings",
            Some("not-the-token"),
            Body::Empty,
        ))
        .await;
    assert_eq!(resp.status(), 401);
}
