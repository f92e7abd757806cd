//! The secret never reaches the logs. A binary of its own: it installs a global subscriber,
//! which would race with (and capture) other tests' logs in the shared binary.

#[allow(dead_code)]
#[path = "webhook/support.rs"]
mod support;

use plexsync::testing::{fixtures, LogCapture};
use support::*;

#[tokio::test]
async fn logs_never_contain_the_secret() {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let sub = lambda_http::tracing::subscriber::fmt()
        .with_max_level(lambda_http::tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    lambda_http::tracing::subscriber::util::SubscriberInitExt::init(sub);

    let h = harness().await;
    let payload = fixtures::plex_episode_scrobble();
    let wrong = format!("secret={}", "f".repeat(h.secret.len()));
    h.accept(Event::plex(h.query(), &payload)).await;
    assert_eq!(
        h.send(Event::plex(wrong, &payload)).await.status().as_u16(),
        401
    );
    let broken = harness_with(Options {
        queue_url: Some(format!(
            "{}-gone.fifo",
            h.queue_url.trim_end_matches(".fifo")
        )),
        ..Options::default()
    })
    .await;
    assert_eq!(
        broken
            .send(Event::plex(broken.query(), &payload))
            .await
            .status()
            .as_u16(),
        503
    );

    let logs = capture.text();
    assert!(logs.contains("webhook accepted"), "{logs}");
    assert!(logs.contains("could not enqueue webhook event"), "{logs}");
    assert!(logs.contains("The Office"), "logs carry the show: {logs}");
    assert!(!logs.contains(&h.secret), "webhook secret logged");
    assert!(!logs.contains(&broken.secret), "webhook secret logged");
}
