use std::time::Duration;

use plexsync::{crypto::Keyring, secrets::SecretsCache, testing};
use secrecy::{ExposeSecret, SecretString};

/// A secret holding `value` on moto and a cache over it with these timings; the client is for
/// rotating the secret behind the cache's back.
async fn cached_secret(
    value: &str,
    ttl: Duration,
    min_refresh: Duration,
) -> (SecretsCache, aws_sdk_secretsmanager::Client, String) {
    let config = testing::moto_config().await;
    let id = testing::secret(&config, value).await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let cache = SecretsCache::with_timings(client.clone(), ttl, min_refresh);
    (cache, client, id)
}

/// The value a read returned (the secret exists and was read).
fn value(read: Result<Option<SecretString>, plexsync::secrets::SecretsError>) -> String {
    read.unwrap().unwrap().expose_secret().to_string()
}

/// What the cache answers depends on the age of its entry against the TTL and the refresh
/// interval. The tests set those to "never" (an hour) or "always" (zero), so no step depends on
/// how fast moto answers on a loaded machine; a value rotated behind the cache's back tells
/// whether a read went to Secrets Manager or came from the cache.
#[tokio::test]
async fn get_and_refresh_answer_from_the_cache_within_their_intervals() {
    let hour = Duration::from_secs(3600);
    let (cache, client, id) = cached_secret("first-value", hour, hour).await;

    assert_eq!(value(cache.get(&id).await), "first-value");
    rotate(&client, &id, "second-value").await;
    // get() keeps the cached value until the TTL...
    assert_eq!(value(cache.get(&id).await), "first-value");
    // ...and so does refresh() within the minimum refresh interval (rate-limited).
    assert_eq!(value(cache.refresh(&id).await), "first-value");
}

#[tokio::test]
async fn refresh_after_its_interval_rereads_and_get_then_has_the_new_value() {
    let (cache, client, id) =
        cached_secret("first-value", Duration::from_secs(3600), Duration::ZERO).await;

    assert_eq!(value(cache.get(&id).await), "first-value");
    rotate(&client, &id, "second-value").await;
    assert_eq!(
        value(cache.get(&id).await),
        "first-value",
        "still within the TTL"
    );
    assert_eq!(value(cache.refresh(&id).await), "second-value");
    // The re-read value is what get() serves from then on.
    assert_eq!(value(cache.get(&id).await), "second-value");
}

#[tokio::test]
async fn an_expired_entry_is_reread() {
    // A TTL of zero: every entry is expired as soon as it is stored.
    let (cache, client, id) = cached_secret("v1", Duration::ZERO, Duration::ZERO).await;
    assert_eq!(value(cache.get(&id).await), "v1");
    rotate(&client, &id, "v2").await;
    assert_eq!(value(cache.get(&id).await), "v2");
}

async fn rotate(client: &aws_sdk_secretsmanager::Client, id: &str, value: &str) {
    client
        .put_secret_value()
        .secret_id(id)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn missing_secret_is_none_and_put_creates_it() {
    let config = testing::moto_config().await;
    let cache = SecretsCache::new(aws_sdk_secretsmanager::Client::new(&config));
    let id = format!("plexsync-test/absent-{}", testing::unique_suffix());
    assert!(cache.get(&id).await.unwrap().is_none());

    cache
        .put(&id, &SecretString::from("created".to_string()))
        .await
        .unwrap();
    // A new cache (a cold start) sees what was written.
    let fresh = SecretsCache::new(aws_sdk_secretsmanager::Client::new(&config));
    assert_eq!(value(fresh.get(&id).await), "created");
    cache
        .put(&id, &SecretString::from("updated".to_string()))
        .await
        .unwrap();
    let fresh = SecretsCache::new(aws_sdk_secretsmanager::Client::new(&config));
    assert_eq!(value(fresh.get(&id).await), "updated");
}

#[tokio::test]
async fn secret_read_by_arn_builds_a_working_keyring() {
    let config = testing::moto_config().await;
    let key = plexsync::crypto::generate_key_hex();
    let id = testing::secret(&config, &key).await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let arn = client
        .describe_secret()
        .secret_id(&id)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let cache = SecretsCache::new(client);
    let ring = Keyring::from_secret(&cache.get(&arn).await.unwrap().unwrap()).unwrap();
    let ct = ring.encrypt(&SecretString::from("plex-token".to_string()));
    assert_eq!(ring.decrypt(&ct).unwrap().expose_secret(), "plex-token");
}

#[tokio::test]
async fn unreachable_secrets_manager_is_an_error_naming_the_secret() {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:1")
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "t", "t", None, None, "t",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let cache = SecretsCache::new(aws_sdk_secretsmanager::Client::new(&config));
    let err = cache.get("plexsync/webhook-secret").await.unwrap_err();
    assert!(err.to_string().contains("plexsync/webhook-secret"), "{err}");
    let api: plexsync::api::ApiError = err.into();
    assert_eq!(api.status().as_u16(), 503);
}
