//! Secret-backed variables: the functions get `DATABASE_URL_SECRET_ID` and
//! `TMDB_API_TOKEN_SECRET_ID` (ARNs) and read the values at cold start, through the secrets cache.

use plexsync::{env::Env, pipeline::Pipeline, secrets::SecretsCache, testing};
use secrecy::ExposeSecret;

#[tokio::test]
async fn secret_ids_fill_in_the_values_and_plain_variables_win() {
    let aws = testing::moto_config().await;
    let url_id = testing::secret(&aws, "postgres://app:pw@db.example:5432/plexsync").await;
    let token_id = testing::secret(&aws, "tmdb-v4-token-from-secrets").await;
    let cache = SecretsCache::new(aws_sdk_secretsmanager::Client::new(&aws));

    let env = Env::from_map([
        ("DATABASE_URL_SECRET_ID", url_id.as_str()),
        ("TMDB_API_TOKEN_SECRET_ID", token_id.as_str()),
    ])
    .with_secrets(&cache)
    .await
    .unwrap();
    assert_eq!(
        env.secret("DATABASE_URL").unwrap().expose_secret(),
        "postgres://app:pw@db.example:5432/plexsync"
    );
    assert_eq!(
        env.secret("TMDB_API_TOKEN").unwrap().expose_secret(),
        "tmdb-v4-token-from-secrets"
    );

    // A plain variable (local use) is not overridden.
    let env = Env::from_map([
        ("TMDB_API_TOKEN", "plain-local-token"),
        ("TMDB_API_TOKEN_SECRET_ID", token_id.as_str()),
    ])
    .with_secrets(&cache)
    .await
    .unwrap();
    assert_eq!(
        env.secret("TMDB_API_TOKEN").unwrap().expose_secret(),
        "plain-local-token"
    );

    // A missing secret stops the start, naming the variable (not the value of anything).
    let err = Env::from_map([("DATABASE_URL_SECRET_ID", "plexsync-test/does-not-exist")])
        .with_secrets(&cache)
        .await
        .err()
        .expect("a missing secret is an error");
    assert!(err.to_string().contains("DATABASE_URL_SECRET_ID"), "{err}");
}

/// The processor's real start-up path with only secret ids in its environment, against moto and
/// Postgres: its pool reaches the database the secret names.
#[tokio::test]
async fn the_processor_starts_from_secret_ids() {
    let aws = testing::moto_config().await;
    let test_db = testing::fresh_db().await;
    let url_id = testing::secret(&aws, test_db.url.expose_secret()).await;
    let token_id = testing::secret(&aws, "tmdb-v4-token-from-secrets").await;
    let key_id = testing::secret(&aws, &plexsync::crypto::generate_key_hex()).await;
    let cache = SecretsCache::new(aws_sdk_secretsmanager::Client::new(&aws));
    let env = Env::from_map([
        ("DATABASE_URL_SECRET_ID", url_id.as_str()),
        ("TMDB_API_TOKEN_SECRET_ID", token_id.as_str()),
        ("ENCRYPTION_KEY_SECRET_ID", key_id.as_str()),
    ])
    .with_secrets(&cache)
    .await
    .unwrap();
    let pipeline = Pipeline::from_env(&env, &aws).expect("the processor state builds");
    let database: String = pipeline
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(database, test_db.name);
}
