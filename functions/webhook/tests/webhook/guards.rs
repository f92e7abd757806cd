//! Secret, allowlist, rate limit and queue failure: the guards in front of the queue.

use std::time::Duration;

use plexsync::{metrics, secrets::SecretsCache, testing, testing::fixtures};

use crate::support::*;

fn rotating_cache(client: aws_sdk_secretsmanager::Client) -> SecretsCache {
    // Long TTL, immediate forced refresh: only the mismatch path can pick up a rotation.
    SecretsCache::with_timings(client, Duration::from_secs(3600), Duration::ZERO)
}

fn sticky_cache(client: aws_sdk_secretsmanager::Client) -> SecretsCache {
    SecretsCache::with_timings(client, Duration::from_secs(3600), Duration::from_secs(3600))
}

/// A harness whose cache was warmed with the old secret (one scrobble accepted) before the
/// secret was rotated in Secrets Manager; returns it with the new secret.
async fn warmed_then_rotated(
    cache: fn(aws_sdk_secretsmanager::Client) -> SecretsCache,
) -> (Harness, String) {
    let h = harness_with(Options {
        secrets_cache: cache,
        ..Options::default()
    })
    .await;
    h.accept(Event::plex(h.query(), &fixtures::plex_episode_scrobble()))
        .await;
    let new_secret: String = (0..6).map(|_| testing::unique_suffix()).collect();
    aws_sdk_secretsmanager::Client::new(&h.aws)
        .put_secret_value()
        .secret_id(&h.secret_id)
        .secret_string(&new_secret)
        .send()
        .await
        .expect("rotate secret on moto");
    (h, new_secret)
}

#[tokio::test]
async fn missing_or_wrong_secret_is_401_without_a_hint() {
    let h = harness().await;
    let payload = fixtures::plex_episode_scrobble();
    let wrong_same_length = "0".repeat(h.secret.len());
    let almost = format!("{}x", &h.secret[..h.secret.len() - 1]);
    let mut messages = Vec::new();
    for query in [
        String::new(),
        "secret=".to_string(),
        "token=abc".to_string(),
        format!("secret={wrong_same_length}"),
        format!("secret={almost}"),
        format!("secret={}extra", h.secret),
    ] {
        let resp = h.send(Event::plex(query.clone(), &payload)).await;
        let msg = assert_error(&resp, 401, "unauthorized");
        assert!(!String::from_utf8_lossy(resp.body().as_ref()).contains(&h.secret));
        messages.push(msg);
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "every 401 reads the same: {messages:?}");
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn secret_not_configured_is_503_pointing_at_config() {
    let h = harness_with(Options {
        with_secret: false,
        ..Options::default()
    })
    .await;
    let resp = h
        .send(Event::plex(
            "secret=anything",
            &fixtures::plex_episode_scrobble(),
        ))
        .await;
    let msg = assert_error(&resp, 503, "unavailable");
    assert!(msg.contains("POST /api/plex/config"), "{msg}");
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn rotated_secret_takes_effect_without_a_cold_start() {
    let (h, new_secret) = warmed_then_rotated(rotating_cache).await;
    let mut next = fixtures::plex_episode_scrobble();
    next["Metadata"]["ratingKey"] = "48214".into();
    next["Metadata"]["index"] = 2.into();
    h.accept(Event::plex(format!("secret={new_secret}"), &next))
        .await;
    let resp = h.send(Event::plex(h.query(), &next)).await;
    assert_error(&resp, 401, "unauthorized");

    let keys: Vec<_> = h
        .received()
        .await
        .into_iter()
        .map(|r| r.message.event.item_rating_key)
        .collect();
    assert_eq!(keys, ["48213", "48214"]);
}

#[tokio::test]
async fn forced_refresh_is_rate_limited() {
    let (h, new_secret) = warmed_then_rotated(sticky_cache).await;
    let payload = fixtures::plex_episode_scrobble();
    // Within the minimum refresh interval a mismatch does not re-read Secrets Manager, so a
    // stream of bad guesses cannot become a stream of Secrets Manager calls.
    let resp = h
        .send(Event::plex(format!("secret={new_secret}"), &payload))
        .await;
    assert_error(&resp, 401, "unauthorized");
    h.accept(Event::plex(h.query(), &payload)).await;
}

#[tokio::test]
async fn source_outside_the_allowlist_is_403() {
    let h = harness_with(Options {
        allowed_cidrs: "203.0.113.0/24, 2001:db8::/32",
        ..Options::default()
    })
    .await;
    let payload = fixtures::plex_episode_scrobble();
    let resp = h.send(Event::plex(h.query(), &payload).from(PLEX_IP)).await;
    let msg = assert_error(&resp, 403, "forbidden");
    assert!(msg.contains(PLEX_IP), "{msg}");
    let resp = h
        .send(Event::plex(h.query(), &payload).from("2001:db9::1"))
        .await;
    assert_error(&resp, 403, "forbidden");
    h.assert_queue_empty().await;

    h.accept(Event::plex(h.query(), &payload).from("203.0.113.40"))
        .await;
    let mut next = fixtures::plex_episode_scrobble();
    next["Metadata"]["ratingKey"] = "48214".into();
    h.accept(Event::plex(h.query(), &next).from("2001:db8:5::17"))
        .await;
    let ips: Vec<_> = h
        .received()
        .await
        .into_iter()
        .map(|r| r.message.source_ip.unwrap_or_default())
        .collect();
    assert_eq!(ips, ["203.0.113.40", "2001:db8:5::17"]);
}

#[tokio::test]
async fn the_101st_request_in_a_minute_is_429_with_retry_after() {
    let h = harness().await;
    let play = fixtures::with_event(fixtures::plex_episode_scrobble(), "media.play");
    for i in 0..100 {
        let resp = h.send(Event::json(h.query(), &play)).await;
        assert_eq!(resp.status().as_u16(), 200, "request {}", i + 1);
    }
    // Even a valid scrobble is refused, and does not reach the queue.
    let resp = h
        .send(Event::plex(h.query(), &fixtures::plex_episode_scrobble()))
        .await;
    assert_error(&resp, 429, "rate_limited");
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    h.assert_queue_empty().await;

    // Another source has its own budget.
    h.accept(Event::plex(h.query(), &fixtures::plex_episode_scrobble()).from("203.0.113.40"))
        .await;
}

#[tokio::test]
async fn queue_failure_is_503_and_never_a_silent_accept() {
    let aws_endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let missing = format!(
        "{}/123456789012/plexsync-missing-{}.fifo",
        aws_endpoint.trim_end_matches('/'),
        testing::unique_suffix()
    );
    let h = harness_with(Options {
        queue_url: Some(missing),
        ..Options::default()
    })
    .await;
    let (resp, emf) =
        metrics::capture(h.send(Event::plex(h.query(), &fixtures::plex_episode_scrobble()))).await;
    let msg = assert_error(&resp, 503, "unavailable");
    assert!(msg.contains("try again"), "{msg}");
    assert!(!String::from_utf8_lossy(resp.body().as_ref()).contains(&h.secret));
    // The line the EnqueueFailed alarm reads.
    assert_eq!(emf.len(), 1, "{emf:?}");
    let doc: serde_json::Value = serde_json::from_str(&emf[0]).unwrap();
    let directive = &doc["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "plexsync");
    assert_eq!(directive["Metrics"][0]["Name"], "EnqueueFailures");
    assert_eq!(doc["EnqueueFailures"], 1.0);
}
