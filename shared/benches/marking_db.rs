//! Marking an episode against a real Postgres (`make bench` starts it): the processor's
//! per-message database work. One show of The Office's size (9 seasons, 201 episodes) so the
//! JSONB rewrite is realistic. Each timed iteration marks one unwatched episode in its own
//! transaction (row lock, idempotency insert, seasons rewrite, counts); resetting the episode
//! between iterations is not timed.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use plexsync::{
    episodes::{mark_episode, MarkOutcome, MarkRequest},
    testing,
};
use serde_json::json;

fn seasons() -> serde_json::Value {
    let sizes = [6, 22, 22, 14, 26, 26, 26, 24, 23];
    json!(sizes
        .iter()
        .enumerate()
        .map(|(s, n)| json!({
            "seasonNumber": s + 1,
            "episodes": (1..=*n).map(|e| json!({
                "episodeNumber": e, "title": format!("Episode {e}"), "airDate": "2005-03-24",
                "watched": false, "dateWatched": null
            })).collect::<Vec<_>>()
        }))
        .collect::<Vec<_>>())
}

fn marking(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(testing::fresh_db());
    let show_id: i32 = rt.block_on(async {
        let client = db.pool.get().await.unwrap();
        client
            .query_one(
                "INSERT INTO tvshows (tmdb_id, title, seasons, total_episodes) VALUES (2316, 'The Office', $1, 189) RETURNING id",
                &[&seasons()],
            )
            .await
            .unwrap()
            .get(0)
    });
    let mut n: u64 = 0;
    c.bench_function("mark_episode_201_episode_show", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pool = db.pool.clone();
            let start_n = n;
            n += iters;
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let key = format!("bench-{}", start_n + i);
                    let start = Instant::now();
                    let outcome = mark_episode(
                        &pool,
                        &MarkRequest {
                            tvshow_id: plexsync::ids::ShowId(show_id),
                            season: 5,
                            episode: 10,
                            watched_at: chrono::Utc::now(),
                            idempotency_key: Some(&key),
                            message_id: None,
                        },
                    )
                    .await
                    .unwrap();
                    total += start.elapsed();
                    assert!(matches!(outcome, MarkOutcome::Marked { .. }), "{outcome:?}");
                    // Untimed: make the episode unwatched again for the next iteration.
                    pool.get()
                        .await
                        .unwrap()
                        .execute(
                            "UPDATE tvshows SET seasons = jsonb_set(seasons, '{4,episodes,9,watched}', 'false') WHERE id = $1",
                            &[&show_id],
                        )
                        .await
                        .unwrap();
                }
                total
            }
        })
    });
}

criterion_group!(benches, marking);
criterion_main!(benches);
