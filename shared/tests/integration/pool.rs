//! The functions' connection pool: size from the environment, statement and lock timeouts on
//! every connection, and a connection dropped while the instance was frozen replaced unseen.

use std::time::Duration;

use plexsync::{
    db::{self, DbError, PoolSettings},
    env::Env,
    testing,
};
use secrecy::ExposeSecret;

fn env_for(url: &str, pool_size: &str) -> Env {
    Env::from_map([("DATABASE_URL", url), ("DATABASE_POOL_SIZE", pool_size)])
}

#[tokio::test]
async fn every_connection_has_statement_and_lock_timeouts_and_the_configured_size() {
    let test_db = testing::fresh_db().await;
    let pool = db::pool_from_env(&env_for(test_db.url.expose_secret(), "2")).unwrap();
    assert_eq!(pool.status().max_size, 2);
    // Both connections of the pool, not only the first.
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    for client in [&a, &b] {
        let row = client
            .query_one(
                "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            ("15s".to_string(), "5s".to_string())
        );
    }

    // A lock held elsewhere fails the waiter after lock_timeout, as a retryable error.
    a.batch_execute("BEGIN; SELECT pg_advisory_xact_lock(42)")
        .await
        .unwrap();
    let err = b
        .query_one("SELECT pg_advisory_xact_lock(42)", &[])
        .await
        .map(|_| ())
        .map_err(DbError::from)
        .expect_err("the lock is held by the other connection");
    assert_eq!(err_code(&err).as_deref(), Some("55P03"), "{err}");
    // 55P03 (lock_not_available) is the lock timeout's code; the statement timeout's is
    // 57014, so the code alone says which limit ended the wait, with no clock involved.
    assert!(
        err.is_transient(),
        "a lock timeout is retried, not a permanent failure"
    );
    a.batch_execute("ROLLBACK").await.unwrap();
}

#[test]
fn pool_size_is_validated() {
    for bad in ["0", "-1", "lots", "99"] {
        let err =
            PoolSettings::from_env(&Env::from_map([("DATABASE_POOL_SIZE", bad)])).expect_err(bad);
        assert!(err.to_string().contains("DATABASE_POOL_SIZE"), "{err}");
    }
    assert_eq!(
        PoolSettings::from_env(&Env::from_map([("X", "y")])).unwrap(),
        PoolSettings::RUNTIME
    );
}

fn err_code(err: &DbError) -> Option<String> {
    match err {
        DbError::Query(e) => e.code().map(|c| c.code().to_string()),
        _ => None,
    }
}

/// Runs `sql` on its own connection in another thread, with its own runtime, so the pool's
/// runtime does not run at all meanwhile: like a Lambda instance frozen between invocations.
fn run_elsewhere(url: String, sql: &'static str, pid: i32) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let row = client.query_one(sql, &[&pid]).await.unwrap();
            assert!(row.get::<_, bool>(0), "the backend was terminated");
            // Wait until the backend is really gone.
            for _ in 0..100 {
                let alive: bool = client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                        &[&pid],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if !alive {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("backend {pid} still alive");
        });
    })
    .join()
    .expect("terminating thread");
}

// A current-thread runtime: while the test thread blocks, the pool's connection tasks cannot
// notice the server closing the socket, as in a frozen Lambda instance.
#[tokio::test(flavor = "current_thread")]
async fn a_connection_killed_while_frozen_is_replaced_on_next_use() {
    let test_db = testing::fresh_db().await;
    let url = test_db.url.expose_secret().to_string();
    let settings = PoolSettings {
        max_size: 1,
        verify_after_idle: Duration::from_millis(100),
        ..PoolSettings::RUNTIME
    };
    let pool = db::pool_with(&test_db.url, settings).unwrap();
    let pid: i32 = {
        let client = pool.get().await.unwrap();
        client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    };
    // The server (or a NAT, or an idle timeout) drops the idle connection.
    run_elsewhere(url, "SELECT pg_terminate_backend($1)", pid);
    // Frozen longer than `verify_after_idle` (a blocking sleep: the connection's task must not
    // run), so the checkout asks the connection first; the pool's own check only sees that
    // its task has not ended. With a longer `verify_after_idle` this test fails ("Closed").
    std::thread::sleep(Duration::from_millis(200));

    // The next message's first query succeeds, on a new backend.
    let client = pool.get().await.expect("a working connection");
    let new_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("the first query after the thaw succeeds")
        .get(0);
    assert_ne!(new_pid, pid);
}

/// What a client sends first: `SSLRequest` (asks for TLS) or the plaintext startup message.
/// A listener that answers "no TLS" ('N') to an `SSLRequest` and then hangs up.
async fn first_packet_code(url_params: &str) -> u32 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 8];
        socket.read_exact(&mut head).await.unwrap();
        let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if code == SSL_REQUEST {
            socket.write_all(b"N").await.unwrap();
        }
        code
    });
    let url =
        secrecy::SecretString::from(format!("postgres://u:p@127.0.0.1:{port}/db{url_params}"));
    let pool = db::pool_with(&url, PoolSettings::RUNTIME).unwrap();
    assert!(pool.get().await.is_err(), "the listener is no Postgres");
    server.await.unwrap()
}

/// The protocol's `SSLRequest` code (1234 << 16 | 5679).
const SSL_REQUEST: u32 = 80_877_103;

#[tokio::test]
async fn prefer_and_the_default_ask_for_tls_first_and_disable_does_not() {
    assert_eq!(first_packet_code("").await, SSL_REQUEST, "no sslmode");
    assert_eq!(first_packet_code("?sslmode=prefer").await, SSL_REQUEST);
    assert_eq!(first_packet_code("?sslmode=require").await, SSL_REQUEST);
    // Protocol 3.0's startup message: plaintext straight away.
    assert_eq!(first_packet_code("?sslmode=disable").await, 196_608);
}

fn with_sslmode(url: &str, mode: &str) -> secrecy::SecretString {
    let sep = if url.contains('?') { '&' } else { '?' };
    secrecy::SecretString::from(format!("{url}{sep}sslmode={mode}"))
}

#[tokio::test]
async fn a_server_without_tls_is_used_in_plaintext_unless_tls_is_required() {
    // The local Postgres has no TLS: prefer (and the default) fall back, require refuses.
    let test_db = testing::fresh_db().await;
    let url = test_db.url.expose_secret();
    for mode in ["prefer", "disable"] {
        let pool = db::pool_with(&with_sslmode(url, mode), PoolSettings::RUNTIME).unwrap();
        let client = pool.get().await.unwrap_or_else(|e| panic!("{mode}: {e}"));
        let row = client.query_one("SELECT 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
    }
    let default = db::pool_with(&test_db.url, PoolSettings::RUNTIME).unwrap();
    let _client = default.get().await.expect("no sslmode is prefer");

    let required = db::pool_with(&with_sslmode(url, "require"), PoolSettings::RUNTIME).unwrap();
    let err = required
        .get()
        .await
        .map(|_| ())
        .expect_err("require must not fall back to plaintext");
    let text = DbError::from(err).to_string();
    assert!(text.contains("TLS"), "{text}");

    // libpq's verify modes are refused at start, not silently weakened.
    let err = db::pool_with(&with_sslmode(url, "verify-full"), PoolSettings::RUNTIME)
        .expect_err("verify-full is not parsed by tokio-postgres");
    assert!(err.to_string().contains("sslmode"), "{err}");
}
