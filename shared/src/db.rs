//! Postgres access: a lazily connecting deadpool pool (TLS as the URL's `sslmode` says) and the
//! embedded migrations.
//!
//! `sslmode`, as tokio-postgres parses it (libpq's `verify-ca` / `verify-full` are refused):
//! - `disable`: plaintext only;
//! - `prefer` (the default when the URL names none): TLS when the server offers it, plaintext
//!   when it does not. As with libpq's `prefer`, the certificate is not checked: this keeps a
//!   passive listener out but not an active one, who could as well answer "no TLS";
//! - `require`: TLS or no connection, and the certificate must chain to the compiled-in roots
//!   (or `PGSSLROOTCERT`) and name the host: libpq's `verify-full`, stricter than libpq's
//!   `require`.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::SslMode;

use crate::env::{Env, EnvError};
use crate::store;

pub use deadpool_postgres::{Object as Client, Pool as DbPool};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is invalid: {0}")]
    Config(String),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl DbError {
    /// Whether retrying later may succeed (connection trouble), as opposed to a bug or bad data.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            Self::Query(e) => {
                let sqlstate_transient = e.code().is_some_and(|c| {
                    let c = c.code();
                    // connection exceptions, insufficient resources, operator intervention,
                    // serialization failure / deadlock
                    c.starts_with("08")
                        || c.starts_with("53")
                        || c.starts_with("57")
                        || c == "40001"
                        || c == "40P01"
                        // lock_timeout expired: the lock holder finishes, a retry gets it
                        || c == "55P03"
                });
                // A dropped connection surfaces as an I/O error in the source chain; a client-side
                // bug (say, a parameter of the wrong type) has neither and is not worth retrying.
                let io = std::error::Error::source(e)
                    .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
                e.is_closed() || sqlstate_transient || io
            }
            Self::Config(_) | Self::Migration(_) => false,
        }
    }
}

/// How a pool's connections behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections one instance may hold. A Lambda instance serves one request at a time, so
    /// 2 is enough (a transaction plus a log write) and keeps instances x connections small.
    pub max_size: usize,
    /// Longest a statement may run, and longest it may wait for a lock: a stuck query or a
    /// held row lock fails the message fast (it is retried) instead of eating the invocation.
    /// `None` for migrations, which may legitimately take long.
    pub statement_timeout: Option<Duration>,
    pub lock_timeout: Option<Duration>,
    /// A connection checked out less than this long ago is handed out again without the
    /// liveness query ([`verify_if_idle`]).
    pub verify_after_idle: Duration,
}

impl PoolSettings {
    /// The functions' settings.
    pub const RUNTIME: Self = Self {
        max_size: 2,
        statement_timeout: Some(Duration::from_secs(15)),
        lock_timeout: Some(Duration::from_secs(5)),
        verify_after_idle: Duration::from_secs(5),
    };
    /// Migrations: one connection, no statement or lock limit.
    pub const MIGRATIONS: Self = Self {
        max_size: 1,
        statement_timeout: None,
        lock_timeout: None,
        verify_after_idle: Duration::from_secs(5),
    };

    /// [`Self::RUNTIME`] with the size from `DATABASE_POOL_SIZE` when set (the template sets
    /// it per function, next to the concurrency that multiplies it).
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let max_size = match env.optional("DATABASE_POOL_SIZE") {
            None => Self::RUNTIME.max_size,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=16).contains(&n) => n,
                _ => {
                    return Err(EnvError::Invalid {
                        name: "DATABASE_POOL_SIZE",
                        reason: format!("{v:?} is not a number from 1 to 16"),
                    })
                }
            },
        };
        Ok(Self {
            max_size,
            ..Self::RUNTIME
        })
    }
}

/// The pool a function uses: `DATABASE_URL` and `DATABASE_POOL_SIZE`.
pub fn pool_from_env(env: &Env) -> Result<Pool, EnvError> {
    let settings = PoolSettings::from_env(env)?;
    pool_with(&env.secret("DATABASE_URL")?, settings).map_err(|e| EnvError::Invalid {
        name: "DATABASE_URL",
        reason: e.to_string(),
    })
}

/// Builds the pool without connecting: the first query connects, so a cold start never waits
/// for (or fails on) the database. Four connections, runtime timeouts (tests, tools).
pub fn pool(url: &SecretString) -> Result<Pool, DbError> {
    pool_with(
        url,
        PoolSettings {
            max_size: 4,
            ..PoolSettings::RUNTIME
        },
    )
}

pub fn pool_with(url: &SecretString, settings: PoolSettings) -> Result<Pool, DbError> {
    let config: tokio_postgres::Config = url
        .expose_secret()
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::Config(parse_error(&e)))?;
    pool_from_config(config, settings)
}

/// The parse error with its cause ("invalid value for option `sslmode`"): names the option,
/// never the URL or its password.
fn parse_error(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn pool_from_config(
    mut config: tokio_postgres::Config,
    settings: PoolSettings,
) -> Result<Pool, DbError> {
    config.connect_timeout(Duration::from_secs(5));
    config.application_name("plexsync");
    // Sent in the startup packet, so every connection (new or replaced) has them; options
    // already in the URL are kept.
    let mut options: Vec<String> = config
        .get_options()
        .map(str::to_owned)
        .into_iter()
        .collect();
    if let Some(t) = settings.statement_timeout {
        options.push(format!("-c statement_timeout={}", t.as_millis()));
    }
    if let Some(t) = settings.lock_timeout {
        options.push(format!("-c lock_timeout={}", t.as_millis()));
    }
    if !options.is_empty() {
        config.options(options.join(" "));
    }
    // Fast: the pool itself only checks that the connection's task still runs; the hook below
    // adds the liveness query for a connection unused for a while (see [`verify_if_idle`]).
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match config.get_ssl_mode() {
        SslMode::Disable => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
        SslMode::Prefer => Manager::from_config(config, encrypt_only_connector(), manager_config),
        SslMode::Require => Manager::from_config(config, tls_connector()?, manager_config),
        other => {
            return Err(DbError::Config(format!(
                "sslmode {other:?} is not supported"
            )))
        }
    };
    Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(6)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .pre_recycle(Hook::async_fn(move |client, metrics| {
            Box::pin(verify_if_idle(
                client,
                metrics.last_used(),
                settings.verify_after_idle,
            ))
        }))
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

/// The liveness check of a connection about to be reused, when it was idle for
/// [`PoolSettings::verify_after_idle`] or more: it answers a trivial query, or it is dropped (and another one
/// taken or opened). A Lambda instance is frozen between invocations, and a connection the
/// server or a NAT dropped meanwhile still looks open until used: without the check the first
/// query of the next message would fail, and the message come back only after the visibility
/// timeout. Within a batch, connections are reused milliseconds apart, and the query would be
/// one round trip more per message for nothing.
async fn verify_if_idle(
    client: &mut deadpool_postgres::ClientWrapper,
    idle: Duration,
    verify_after: Duration,
) -> Result<(), HookError> {
    if idle < verify_after {
        return Ok(());
    }
    match client.simple_query("").await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "an idle database connection is dead; opening another");
            Err(HookError::Backend(e))
        }
    }
}

/// The process-wide public roots ([`crate::tls`]), plus the CA bundle named by `PGSSLROOTCERT` (the libpq variable), which is how
/// the Amazon RDS CA bundle is supplied.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let mut roots = (*crate::tls::roots()).clone();
    if let Ok(path) = std::env::var("PGSSLROOTCERT") {
        let pem = std::fs::read(&path)
            .map_err(|e| DbError::Config(format!("PGSSLROOTCERT {path}: {e}")))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| DbError::Config(format!("PGSSLROOTCERT {path}: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| DbError::Config(format!("PGSSLROOTCERT {path}: {e}")))?;
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

/// `sslmode=prefer`: TLS whenever the server offers it, without checking who presents the
/// certificate (libpq's `prefer` checks nothing either). Checking would turn a server with a
/// self-signed certificate (Debian's default, RDS without its CA bundle) from "plaintext" into
/// "no connection at all", while an active attacker can downgrade `prefer` to plaintext anyway.
fn encrypt_only_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(tls)
}

/// Accepts any certificate, but still checks the handshake signatures against it, so the
/// session keys belong to whoever holds that certificate's key (not a weaker check).
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Migrations whose comments were reworded after release (they cited a document outside the
/// repository), with the checksum refinery recorded for their earlier text.
const REWORDED: [(i32, &str); 2] = [(1, "16137018667484369832"), (2, "13415879746427247875")];

/// Lets a database migrated before [`REWORDED`]'s edits take their new checksums, so refinery
/// does not abort on them as changed; any other difference still aborts.
async fn adopt_reworded(
    client: &impl deadpool_postgres::GenericClient,
    runner: &refinery::Runner,
) -> Result<(), DbError> {
    for (version, old) in REWORDED {
        let current = runner
            .get_migrations()
            .iter()
            .find(|m| m.version() == version)
            .map(|m| m.checksum().to_string());
        if let Some(new) = current {
            store::migrations::adopt_checksum(client, version, old, &new).await?;
        }
    }
    Ok(())
}

/// Applies pending migrations in order, each recorded so it runs once. A session lock
/// ([`store::migrations::lock`]) keeps two concurrent deploys (or a deploy and a test) from
/// applying the same migration twice.
///
/// Migrations the database has but this build does not know are tolerated: that is what a
/// CloudFormation rollback (older code, newer schema) looks like, and failing it would leave the
/// stack stuck in UPDATE_ROLLBACK_FAILED. Migrations are additive, so older code keeps working.
/// A *changed* migration (same version, other checksum) still aborts.
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut client = pool.get().await?;
    store::migrations::lock(&client).await?;
    let runner = embedded::migrations::runner().set_abort_missing(false);
    let adopted = adopt_reworded(&client, &runner).await;
    let raw: &mut tokio_postgres::Client = &mut client;
    let report = match adopted {
        Ok(()) => runner
            .run_async(raw)
            .await
            .map_err(|e| DbError::Migration(e.to_string())),
        Err(e) => Err(e),
    };
    // Unlock even when the run failed; the session ends with the connection anyway.
    let _ = store::migrations::unlock(&client).await;
    Ok(report?
        .applied_migrations()
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect())
}
