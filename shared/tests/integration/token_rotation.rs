//! The stored Plex token after a key rotation: re-encrypted with the current key on its next
//! use, without overwriting a token saved meanwhile.

use plexsync::{
    crypto::{generate_key_hex, Keyring},
    plex::open_stored_token,
    store::settings::{self, EncryptedToken, SaveSettings},
    testing,
};
use secrecy::{ExposeSecret, SecretString};

fn keyring(raw: &str) -> Keyring {
    Keyring::from_secret(&SecretString::from(raw.to_string())).unwrap()
}

async fn save_token(pool: &plexsync::db::DbPool, ciphertext: &str) {
    let client = pool.get().await.unwrap();
    settings::save(
        &client,
        &SaveSettings {
            encrypted_token: Some(ciphertext),
            server_url: Some("https://plex.example.com:32400"),
            allow_insecure_http: false,
            server_name: None,
            server_uuid: None,
            account_id: 1,
            account_name: "alice",
            enabled: None,
            auto_add_shows: None,
            auto_mark_watched: None,
            allowed_accounts: None,
        },
    )
    .await
    .unwrap();
}

async fn stored(pool: &plexsync::db::DbPool) -> EncryptedToken {
    let client = pool.get().await.unwrap();
    settings::load(&client)
        .await
        .unwrap()
        .unwrap()
        .encrypted_token
}

#[tokio::test]
async fn a_token_sealed_with_a_previous_key_is_sealed_again_on_use() {
    let db = testing::fresh_db().await;
    let (old_key, new_key) = (generate_key_hex(), generate_key_hex());
    let old = keyring(&old_key);
    save_token(
        &db.pool,
        &old.encrypt(&SecretString::from("tok-1".to_string())),
    )
    .await;
    let rotated = keyring(&format!(
        r#"{{"current":"{new_key}","previous":["{old_key}"]}}"#
    ));

    let before = stored(&db.pool).await;
    let token = open_stored_token(&db.pool, &rotated, &before)
        .await
        .unwrap();
    assert_eq!(token.expose_secret(), "tok-1");
    let after = stored(&db.pool).await;
    assert_ne!(after, before);
    assert!(!rotated.needs_reencryption(&after.0));
    assert_eq!(
        keyring(&new_key).decrypt(&after.0).unwrap().expose_secret(),
        "tok-1",
        "the new key alone opens it"
    );
}

#[tokio::test]
async fn a_token_saved_meanwhile_is_not_overwritten() {
    let db = testing::fresh_db().await;
    let (old_key, new_key) = (generate_key_hex(), generate_key_hex());
    let old = keyring(&old_key);
    let rotated = keyring(&format!(
        r#"{{"current":"{new_key}","previous":["{old_key}"]}}"#
    ));
    save_token(
        &db.pool,
        &old.encrypt(&SecretString::from("tok-1".to_string())),
    )
    .await;
    let read_before_the_save = stored(&db.pool).await;
    // The user saves a new token between this use's read and its write-back.
    let newer = rotated.encrypt(&SecretString::from("tok-2".to_string()));
    save_token(&db.pool, &newer).await;

    let token = open_stored_token(&db.pool, &rotated, &read_before_the_save)
        .await
        .unwrap();
    assert_eq!(token.expose_secret(), "tok-1", "this use had read tok-1");
    assert_eq!(stored(&db.pool).await.0, newer, "the newer token stays");
}
