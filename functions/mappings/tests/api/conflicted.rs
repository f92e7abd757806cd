//! `?conflicts=true` means every Plex show with an open conflict, whether or not it has a
//! mapping row yet: a show new to the processor gets its conflict first and its mapping only
//! when the conflict is resolved. Here the conflict comes from the processor itself.

use plexsync::{
    env::TmdbConfig,
    pipeline::{process_message, KeySource, Pipeline},
    plex::PlexServerClient,
    queue::QueueMessage,
    store::logs::LogStatus,
    testing::fixtures,
    tmdb::TmdbClient,
};
use secrecy::SecretString;
use serde_json::Value;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::support::*;

/// The processor over the harness's database, TMDB answering its title search.
async fn processor(h: &Harness, tmdb: &MockServer) -> Pipeline {
    Mock::given(method("GET"))
        .and(path("/3/search/tv"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::tmdb_search_the_office()))
        .mount(tmdb)
        .await;
    h.db.client().await
        .execute(
            "UPDATE plex_config SET enabled = true, auto_mark_watched = true, auto_add_shows = false",
            &[],
        )
        .await
        .unwrap();
    Pipeline {
        pool: h.db.pool.clone(),
        tmdb: TmdbClient::new(&TmdbConfig {
            base_url: tmdb.uri().parse().unwrap(),
            token: SecretString::from("eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ0ZXN0In0.c2ln".to_string()),
        })
        .unwrap(),
        plex: PlexServerClient::new().unwrap(),
        keys: KeySource::None,
    }
}

fn message(payload: Value) -> QueueMessage {
    plexsync::testing::plex_message(payload, chrono::Utc::now())
}

#[tokio::test]
async fn conflicts_filter_lists_shows_the_processor_asked_about_without_a_mapping_yet() {
    let h = Harness::new().await;
    let tmdb = MockServer::start().await;
    let pipeline = processor(&h, &tmdb).await;
    let msg = message(fixtures::plex_unmatched_episode_scrobble());
    let outcome = process_message(&pipeline, &msg, "m-unmatched", Some(1))
        .await
        .unwrap();
    assert_eq!(outcome.status, LogStatus::NeedsResolution, "{outcome:?}");
    let conflict = outcome.conflict_id.unwrap().0;

    let body = h.get("/api/plex/mappings?conflicts=true").await;
    let listed = body["mappings"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body}");
    assert_eq!(listed[0]["id"], h.got, "the mapped show with a conflict");
    let new = &listed[1];
    assert_eq!(new["id"], Value::Null, "no mapping row yet");
    assert_eq!(new["conflictId"], conflict);
    assert_eq!(new["plexRatingKey"], "61000");
    assert_eq!(new["plexGuid"], "local://61000");
    assert_eq!(new["plexTitle"], "The Office");
    assert_eq!(new["sender"], "plex");
    assert_eq!(new["tvshowId"], Value::Null);
    assert_eq!(new["syncEnabled"], true);
    assert!(new["createdAt"].is_string());

    // Unmapped too; paged by conflict.
    let both = h
        .get("/api/plex/mappings?conflicts=true&unmapped=true")
        .await;
    assert_eq!(both["mappings"], body["mappings"]);
    let first = h.get("/api/plex/mappings?conflicts=true&limit=1").await;
    assert_eq!(first["mappings"][0]["id"], h.got);
    let cursor = first["nextCursor"].as_str().unwrap();
    let rest = h
        .get(&format!(
            "/api/plex/mappings?conflicts=true&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["mappings"][0]["conflictId"], conflict);
    assert_eq!(rest["nextCursor"], Value::Null);

    // The plain list is of mapping rows: it has none for the new show.
    let all = h.get("/api/plex/mappings").await;
    assert_eq!(ids(&all).len(), 3);
}
