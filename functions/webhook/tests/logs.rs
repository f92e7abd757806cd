//! The secret never reaches the logs. A binary of its own: it installs a global subscriber,
//! which would race with (and capture) other tests' logs in the shared binary.

#[allow(dead_code)]
#[path = "webhook/support.rs"]
mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use plexsync::testing::fixtures;
use support::*;

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_contain_the_secret() {
    let capture = Capture::default();
    let writer = capture.clone();
    let sub = lambda_http::tracing::subscriber::fmt()
        .with_max_level(lambda_http::tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    lambda_http::tracing::subscriber::util::SubscriberInitExt::init(sub);

    let h = harness().await;
    let payload = fixtures::plex_episode_scrobble();
    let wrong = format!("secret={}", "f".repeat(h.secret.len()));
    assert_eq!(
        h.call(Event::plex(h.query(), &payload).request())
            .await
            .status()
            .as_u16(),
        202
    );
    assert_eq!(
        h.call(Event::plex(wrong, &payload).request())
            .await
            .status()
            .as_u16(),
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
            .call(Event::plex(broken.query(), &payload).request())
            .await
            .status()
            .as_u16(),
        503
    );

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(logs.contains("webhook accepted"), "{logs}");
    assert!(logs.contains("could not enqueue webhook event"), "{logs}");
    assert!(logs.contains("The Office"), "logs carry the show: {logs}");
    assert!(!logs.contains(&h.secret), "webhook secret logged");
    assert!(!logs.contains(&broken.secret), "webhook secret logged");
}
