//! The shared token bucket (TMDB's limit across every instance): slots are reserved in order,
//! debt is bounded by `max_wait`, and concurrent callers never get the same slot.

use std::time::Duration;

use plexsync::store::rate_limit::{reserve, Bucket, Slot};
use plexsync::testing;

/// So slow a refill that the test's own milliseconds do not move the figures.
const SLOW: Bucket = Bucket {
    rate: 0.01,
    burst: 2.0,
    max_wait: Duration::from_secs(250),
};

fn wait_secs(slot: Slot) -> f64 {
    match slot {
        Slot::After(d) => d.as_secs_f64(),
        Slot::Busy => f64::INFINITY,
    }
}

#[tokio::test]
async fn burst_goes_now_then_each_caller_waits_for_its_own_slot_then_busy() {
    let db = testing::fresh_db().await;
    let client = db.pool.get().await.unwrap();
    let mut waits = Vec::new();
    for _ in 0..5 {
        waits.push(wait_secs(reserve(&client, "tmdb", SLOW).await.unwrap()));
    }
    assert_eq!(&waits[..2], &[0.0, 0.0], "the burst: {waits:?}");
    assert!((waits[2] - 100.0).abs() < 1.0, "one token later: {waits:?}");
    assert!(
        (waits[3] - 200.0).abs() < 1.0,
        "two tokens later: {waits:?}"
    );
    assert_eq!(
        waits[4],
        f64::INFINITY,
        "beyond max_wait: busy, not reserved"
    );
    // Another bucket is independent.
    assert_eq!(
        reserve(&client, "other", SLOW).await.unwrap(),
        Slot::After(Duration::ZERO)
    );
}

#[tokio::test]
async fn concurrent_reservations_each_get_a_distinct_slot() {
    let db = testing::fresh_db().await;
    let bucket = Bucket {
        rate: 0.01,
        burst: 1.0,
        max_wait: Duration::from_secs(10_000),
    };
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                let client = pool.get().await.unwrap();
                wait_secs(reserve(&client, "tmdb", bucket).await.unwrap())
            })
        })
        .collect();
    let mut waits = Vec::new();
    for t in tasks {
        waits.push(t.await.unwrap());
    }
    waits.sort_by(f64::total_cmp);
    // Slots 0, 100, 200, ... 700 s: one token each, none shared.
    for (i, w) in waits.iter().enumerate() {
        assert!((w - 100.0 * i as f64).abs() < 1.0, "{waits:?}");
    }
}
