//! The fuzz targets of fuzz/ (webhook body path, guid parser) on the stable toolchain: proptest
//! mutates the payloads of fixtures/world.json (as JSON and as multipart bodies) and arbitrary
//! guid lines for FUZZ_SECONDS (default 3; `make reliability` runs 600 when no nightly
//! toolchain is there for cargo-fuzz). FUZZ_TARGET=webhook_body|guid runs one of them.
//! A panic anywhere in the path fails the test.

use std::time::{Duration, Instant};

use chrono::Utc;
use plexsync::payload::{Decision, ExternalIds, GuidEntry, PlexGuid};
use plexsync::queue::QueueMessage;
use plexsync::senders::Sender;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(3))
}

fn selected(target: &str) -> bool {
    std::env::var("FUZZ_TARGET").map_or(true, |t| t == target)
}

/// (sender, content type, body) seeds: every fixture payload as JSON and as multipart.
fn seeds() -> Vec<(Sender, String, Vec<u8>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/world.json");
    let world: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for (group, sender) in [
        ("plex_webhooks", Sender::Plex),
        ("jellyfin_webhooks", Sender::Jellyfin),
        ("emby_webhooks", Sender::Emby),
    ] {
        for payload in world[group].as_object().unwrap().values() {
            let json = serde_json::to_vec(payload).unwrap();
            let boundary = "------------------------d74496d66958873e";
            let mut body = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\
                 Content-Type: application/json\r\n\r\n",
                sender.multipart_field()
            )
            .into_bytes();
            body.extend_from_slice(&json);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            out.push((sender, "application/json".into(), json));
            out.push((
                sender,
                format!("multipart/form-data; boundary={boundary}"),
                body,
            ));
        }
    }
    out
}

/// The path a webhook body takes, as fuzz/fuzz_targets/webhook_body.rs drives it.
fn webhook_body(sender: Sender, content_type: &str, body: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let Ok(json) = rt.block_on(webhook::extract_payload(
        Some(content_type),
        body,
        sender.multipart_field(),
    )) else {
        return;
    };
    let Ok((Decision::Process(event), raw)) = sender.decide(&json) else {
        return;
    };
    let message = QueueMessage::new(*event, raw, Utc::now(), None, None);
    let back = QueueMessage::from_body(&message.to_body()).expect("a queued message reads back");
    assert_eq!(back.event, message.event);
}

/// Runs `test` on generated cases until the time budget is spent; returns the case count.
fn run_for<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value)) -> u64
where
    S::Value: std::fmt::Debug,
{
    let started = Instant::now();
    let mut cases = 0u64;
    while started.elapsed() < budget() {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&strategy, |v| {
                test(v);
                Ok(())
            })
            .unwrap();
        cases += 256;
    }
    println!(
        "fuzz_stable: {name}: {cases} cases in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    cases
}

#[test]
fn webhook_body_never_panics() {
    if !selected("webhook_body") {
        return;
    }
    let seeds = seeds();
    let n = seeds.len();
    // A seed with up to 8 byte edits (overwrite, insert, delete) and maybe a new content type.
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..8);
    let ct = prop::option::of(prop_oneof![
        Just("multipart/form-data".to_string()),
        Just("application/json; charset=utf-8".to_string()),
        "[ -~]{0,60}",
    ]);
    let cases = run_for("webhook_body", (0..n, edits, ct), |(i, edits, ct)| {
        let (sender, seed_ct, mut body) = seeds[i].clone();
        for (at, byte, op) in edits {
            let pos = if body.is_empty() {
                0
            } else {
                at.index(body.len())
            };
            match op {
                0 if !body.is_empty() => body[pos] = byte,
                1 => body.insert(pos, byte),
                _ if !body.is_empty() => {
                    body.remove(pos);
                }
                _ => {}
            }
        }
        webhook_body(sender, ct.as_deref().unwrap_or(&seed_ct), &body);
    });
    assert!(cases > 0);
}

#[test]
fn guid_parser_never_panics() {
    if !selected("guid") {
        return;
    }
    let line = prop_oneof![
        "(plex|local|com\\.plexapp\\.agents\\.(thetvdb|themoviedb|imdb)|tvdb|tmdb|imdb)://[ -~]{0,40}",
        ".{0,60}",
    ];
    let cases = run_for("guid", prop::collection::vec(line, 1..6), |lines| {
        let entries: Vec<GuidEntry> = lines
            .iter()
            .map(|l| {
                let _ = PlexGuid::parse(l).legacy_show_ids().cloned();
                GuidEntry { id: l.clone() }
            })
            .collect();
        let ids = ExternalIds::from_guid_array(&entries);
        if let Some(imdb) = &ids.imdb {
            assert!(imdb.starts_with("tt"), "{imdb}");
        }
    });
    assert!(cases > 0);
}
