//! Secrets Manager reader with a TTL cache, so a warm function does not call Secrets Manager
//! on every request, and a rotated secret still takes effect without a cold start.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use aws_sdk_secretsmanager::{error::ProvideErrorMetadata, Client};
use secrecy::SecretString;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The message names the secret id and the service error code, never a value.
    #[error("secrets manager call for {id} failed: {detail}")]
    Unavailable { id: String, detail: String },
}

#[derive(Clone)]
struct Entry {
    value: Option<SecretString>,
    fetched_at: Instant,
}

pub struct SecretsCache {
    client: Client,
    ttl: Duration,
    min_refresh_interval: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl SecretsCache {
    /// Five minutes of caching; a forced refresh at most every ten seconds per secret.
    pub fn new(client: Client) -> Self {
        Self::with_timings(client, Duration::from_secs(300), Duration::from_secs(10))
    }

    pub fn with_timings(client: Client, ttl: Duration, min_refresh_interval: Duration) -> Self {
        Self {
            client,
            ttl,
            min_refresh_interval,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The secret's value, or `None` when the secret does not exist (yet).
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: &str) -> Result<Option<SecretString>, SecretsError> {
        self.read_unless_fresher_than(id, self.ttl).await
    }

    /// Re-reads the secret unless it was read within the minimum refresh interval. Used when a
    /// presented credential does not match: the secret may have been rotated. The interval
    /// keeps a stream of bad requests from turning into a stream of Secrets Manager calls.
    #[tracing::instrument(skip(self))]
    pub async fn refresh(&self, id: &str) -> Result<Option<SecretString>, SecretsError> {
        self.read_unless_fresher_than(id, self.min_refresh_interval)
            .await
    }

    async fn read_unless_fresher_than(
        &self,
        id: &str,
        max_age: Duration,
    ) -> Result<Option<SecretString>, SecretsError> {
        let mut entries = self.entries.lock().await;
        if let Some(entry) = entries.get(id) {
            if entry.fetched_at.elapsed() < max_age {
                return Ok(entry.value.clone());
            }
        }
        let value = self.fetch(id).await?;
        entries.insert(
            id.to_string(),
            Entry {
                value: value.clone(),
                fetched_at: Instant::now(),
            },
        );
        Ok(value)
    }

    /// Writes a new value (creating the secret if needed) and caches it.
    #[tracing::instrument(skip(self, value))]
    pub async fn put(&self, id: &str, value: &SecretString) -> Result<(), SecretsError> {
        use secrecy::ExposeSecret;
        let put = self
            .client
            .put_secret_value()
            .secret_id(id)
            .secret_string(value.expose_secret())
            .send()
            .await;
        match put {
            Ok(_) => {}
            Err(err) if err.code() == Some("ResourceNotFoundException") => {
                self.client
                    .create_secret()
                    .name(id)
                    .secret_string(value.expose_secret())
                    .send()
                    .await
                    .map_err(|e| unavailable(id, &e))?;
            }
            Err(err) => return Err(unavailable(id, &err)),
        }
        self.entries.lock().await.insert(
            id.to_string(),
            Entry {
                value: Some(value.clone()),
                fetched_at: Instant::now(),
            },
        );
        Ok(())
    }

    async fn fetch(&self, id: &str) -> Result<Option<SecretString>, SecretsError> {
        match self.client.get_secret_value().secret_id(id).send().await {
            Ok(out) => Ok(out
                .secret_string()
                .map(|s| SecretString::from(s.to_string()))),
            Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(err) => Err(unavailable(id, &err)),
        }
    }
}

fn unavailable<E: ProvideErrorMetadata + std::fmt::Display>(id: &str, err: &E) -> SecretsError {
    SecretsError::Unavailable {
        id: id.to_string(),
        detail: err
            .code()
            .map(str::to_owned)
            .unwrap_or_else(|| err.to_string()),
    }
}
