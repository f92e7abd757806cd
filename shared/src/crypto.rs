//! AES-256-GCM for the Plex token at rest.
//!
//! Ciphertext format: `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`, with a fresh random
//! 12-byte nonce per message (not a 16-byte IV: docs/architecture.md, "Flaws") and `v1.<key id>`
//! authenticated as associated data. The key id lets keys rotate: decryption picks the key by id,
//! encryption always uses the current one.
//!
//! Key material in the secret is either 64 hex characters (32 raw bytes) or any string of at
//! least 32 characters (such as a Secrets Manager generated password), hashed with SHA-256 into
//! 32 bytes. To rotate, store `{"current": "<new>", "previous": ["<old>", ...]}`.

use aes_gcm::{
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
    Aes256Gcm, Nonce,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const MIN_PASSPHRASE_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("encryption key is unusable: {0}")]
    InvalidKey(String),
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext version {0:?} is not supported")]
    UnsupportedVersion(String),
    #[error("ciphertext was made with key {0}, which is not configured")]
    UnknownKey(String),
    #[error("ciphertext failed authentication (tampered, or wrong key)")]
    Decrypt,
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    fn from_material(material: &str) -> Result<Self, CryptoError> {
        let material = material.trim();
        let bytes: [u8; 32] = if material.len() == 64
            && material.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let mut out = [0u8; 32];
            hex::decode_to_slice(material, &mut out)
                .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
            out
        } else if material.len() >= MIN_PASSPHRASE_LEN {
            Sha256::digest(material.as_bytes()).into()
        } else {
            return Err(CryptoError::InvalidKey(format!(
                "expected 64 hex characters or a random string of at least {MIN_PASSPHRASE_LEN} characters"
            )));
        };
        // The id is derived from the key itself, so it needs no separate bookkeeping and
        // reveals nothing useful (a truncated hash of a domain-separated key).
        let mut hasher = Sha256::new();
        hasher.update(b"plexsync key id\0");
        hasher.update(bytes);
        let id = hex::encode(&hasher.finalize()[..4]);
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
        Ok(Self { id, cipher })
    }
}

/// The current key plus any previous keys still accepted for decryption.
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RotatingSecret {
    current: String,
    #[serde(default)]
    previous: Vec<String>,
}

impl Keyring {
    /// Builds the keyring from the secret's string value (plain key or rotation JSON).
    pub fn from_secret(secret: &SecretString) -> Result<Self, CryptoError> {
        let raw = secret.expose_secret().trim();
        if raw.starts_with('{') {
            let parsed: RotatingSecret = serde_json::from_str(raw).map_err(|_| {
                CryptoError::InvalidKey(
                    "rotation JSON must be {\"current\":..., \"previous\":[...]}".into(),
                )
            })?;
            Ok(Self {
                current: Key::from_material(&parsed.current)?,
                previous: parsed
                    .previous
                    .iter()
                    .map(|m| Key::from_material(m))
                    .collect::<Result<_, _>>()?,
            })
        } else {
            Ok(Self {
                current: Key::from_material(raw)?,
                previous: Vec::new(),
            })
        }
    }

    #[cfg(test)]
    fn current_key_id(&self) -> &str {
        &self.current.id
    }

    pub fn encrypt(&self, plaintext: &SecretString) -> String {
        let header = format!("{VERSION}.{}", self.current.id);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and in-memory buffers cannot fail.
        let sealed = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: header.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{header}.{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Whether `ciphertext` was sealed with another key than the current one: after a rotation
    /// it still opens (while the old key is listed under `previous`) and should be sealed again,
    /// so the old key can be retired.
    pub fn needs_reencryption(&self, ciphertext: &str) -> bool {
        ciphertext
            .trim()
            .split('.')
            .nth(1)
            .is_some_and(|key_id| key_id != self.current.id)
    }

    pub fn decrypt(&self, ciphertext: &str) -> Result<SecretString, CryptoError> {
        let mut parts = ciphertext.trim().splitn(3, '.');
        let (Some(version), Some(key_id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        if version != VERSION {
            return Err(CryptoError::UnsupportedVersion(
                version.chars().take(8).collect(),
            ));
        }
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.chars().take(16).collect()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| CryptoError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let header = format!("{version}.{key_id}");
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: header.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// 32 random bytes, hex-encoded: a fresh encryption key.
pub fn generate_key_hex() -> String {
    hex::encode(Aes256Gcm::generate_key(&mut OsRng))
}

/// A random URL-safe token with `bytes` bytes of entropy (webhook secrets, API tokens).
pub fn random_token(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keyring(material: &str) -> Keyring {
        Keyring::from_secret(&SecretString::from(material.to_string())).unwrap()
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn round_trip_and_format() {
        let ring = keyring(KEY_A);
        let ct = ring.encrypt(&secret("plex-token-abc"));
        let parts: Vec<_> = ct.splitn(3, '.').collect();
        assert_eq!(parts[0], "v1");
        assert_eq!(parts[1], ring.current_key_id());
        // 12-byte nonce + 14-byte message + 16-byte tag.
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(),
            12 + 14 + 16
        );
        assert!(!ct.contains("plex-token-abc"));
        assert_eq!(ring.decrypt(&ct).unwrap().expose_secret(), "plex-token-abc");
    }

    #[test]
    fn nonces_are_fresh() {
        let ring = keyring(KEY_A);
        let a = ring.encrypt(&secret("same"));
        let b = ring.encrypt(&secret("same"));
        assert_ne!(a, b);
    }

    #[test]
    fn tampering_is_detected() {
        let ring = keyring(KEY_A);
        let ct = ring.encrypt(&secret("plex-token"));
        let (head, data) = ct.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(data).unwrap();
        for i in [0, 12, bytes.len() - 1] {
            bytes[i] ^= 0x01;
            let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert_eq!(
                ring.decrypt(&forged).unwrap_err(),
                CryptoError::Decrypt,
                "byte {i}"
            );
            bytes[i] ^= 0x01;
        }
    }

    #[test]
    fn wrong_key_and_malformed_inputs_give_typed_errors() {
        let ring = keyring(KEY_A);
        let other = keyring(&"ab".repeat(32));
        let ct = ring.encrypt(&secret("plex-token"));
        assert!(matches!(
            other.decrypt(&ct),
            Err(CryptoError::UnknownKey(_))
        ));
        // Same id, different key material: forge the header to force the AEAD check.
        let (_, rest) = ct.split_once('.').unwrap();
        let (_, data) = rest.split_once('.').unwrap();
        let forged = format!("v1.{}.{data}", other.current_key_id());
        assert_eq!(other.decrypt(&forged).unwrap_err(), CryptoError::Decrypt);

        assert_eq!(ring.decrypt("").unwrap_err(), CryptoError::Malformed);
        assert_eq!(ring.decrypt("v1.abc").unwrap_err(), CryptoError::Malformed);
        assert!(matches!(
            ring.decrypt("v9.x.y"),
            Err(CryptoError::UnsupportedVersion(_))
        ));
        let short = format!("v1.{}.AAAA", ring.current_key_id());
        assert_eq!(ring.decrypt(&short).unwrap_err(), CryptoError::Malformed);
        let not_b64 = format!("v1.{}.!!!!", ring.current_key_id());
        assert_eq!(ring.decrypt(&not_b64).unwrap_err(), CryptoError::Malformed);
    }

    #[test]
    fn rotation_decrypts_old_and_encrypts_with_new() {
        let old = keyring(KEY_A);
        let ct_old = old.encrypt(&secret("token-1"));
        let rotated = keyring(&format!(
            r#"{{"current":"{}","previous":["{KEY_A}"]}}"#,
            "cd".repeat(32)
        ));
        assert_eq!(rotated.decrypt(&ct_old).unwrap().expose_secret(), "token-1");
        let ct_new = rotated.encrypt(&secret("token-1"));
        assert_ne!(ct_new.split('.').nth(1), ct_old.split('.').nth(1));
        assert_eq!(ct_new.split('.').nth(1), Some(rotated.current_key_id()));
        assert!(matches!(
            old.decrypt(&ct_new),
            Err(CryptoError::UnknownKey(_))
        ));
        // Only what the old key sealed needs sealing again.
        assert!(rotated.needs_reencryption(&ct_old));
        assert!(!rotated.needs_reencryption(&ct_new));
        assert!(!old.needs_reencryption(&ct_old));
    }

    #[test]
    fn key_material_is_validated() {
        for bad in ["", "short", "{\"current\": 1}", "{\"current\":\"short\"}"] {
            assert!(
                matches!(
                    Keyring::from_secret(&secret(bad)),
                    Err(CryptoError::InvalidKey(_))
                ),
                "{bad:?}"
            );
        }
        // A generated 40-character password is accepted (hashed into a key).
        let ring = keyring("Zq8!xV2#mN4$pL6^rT8&wY0*bH3(cJ5)dK7_eF9+");
        assert_eq!(
            ring.decrypt(&ring.encrypt(&secret("t")))
                .unwrap()
                .expose_secret(),
            "t"
        );
        assert_eq!(generate_key_hex().len(), 64);
        assert_eq!(URL_SAFE_NO_PAD.decode(random_token(32)).unwrap().len(), 32);
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let ring = keyring(KEY_A);
        let dbg = format!("{ring:?}");
        assert!(!dbg.contains(KEY_A) && dbg.contains(ring.current_key_id()));
    }

    proptest! {
        #[test]
        fn any_plaintext_round_trips(text in ".{0,300}") {
            let ring = keyring(KEY_A);
            let back = ring.decrypt(&ring.encrypt(&secret(&text))).unwrap();
            prop_assert_eq!(back.expose_secret(), text.as_str());
        }

        #[test]
        fn arbitrary_input_never_panics(input in ".{0,200}") {
            let _ = keyring(KEY_A).decrypt(&input);
        }
    }
}
