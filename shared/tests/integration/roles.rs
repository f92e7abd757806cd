//! Least privilege: the functions' runtime role reads and writes plexsync's tables and
//! `tvshows`, and cannot DROP, ALTER or CREATE anything.

use plexsync::{
    store::roles::{grant_runtime, RuntimeRole},
    testing,
};
use secrecy::{ExposeSecret, SecretString};

use crate::sql::texts;

const DENIED: &str = "42501"; // insufficient_privilege

#[tokio::test]
async fn the_runtime_role_may_use_the_tables_but_not_change_the_schema() {
    let test_db = testing::fresh_db().await;
    let name = format!("plexsync_rt_{}", testing::unique_suffix());
    let url = testing::url_as(test_db.url.expose_secret(), &name, "rt-Pass'word-1");
    let role = RuntimeRole::from_url(&SecretString::from(url.clone())).unwrap();

    let tables = grant_runtime(&test_db.pool, &role).await.unwrap();
    // Every table the migrations create, except their own history.
    let owner = test_db.pool.get().await.unwrap();
    let all: Vec<String> = texts(
        &owner,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'
             AND tablename <> 'refinery_schema_history' ORDER BY 1",
    )
    .await;
    assert_eq!(tables, all);
    // Idempotent: a second deploy runs it again.
    grant_runtime(&test_db.pool, &role).await.unwrap();

    let (rt, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("the runtime role logs in with the URL's password");
    let connection = tokio::spawn(connection);

    // Reads and writes, sequences included.
    let id: i32 = rt
        .query_one(
            "INSERT INTO tvshows (title) VALUES ('Ghosts') RETURNING id",
            &[],
        )
        .await
        .expect("insert into tvshows")
        .get(0);
    rt.execute(
        "UPDATE tvshows SET status = 'Completed' WHERE id = $1",
        &[&id],
    )
    .await
    .expect("update tvshows");
    for table in &tables {
        rt.query(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("select from {table}: {e}"));
    }
    rt.execute("DELETE FROM tvshows WHERE id = $1", &[&id])
        .await
        .expect("delete from tvshows");
    let timeouts = rt
        .query_one(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(timeouts.get::<_, String>(0), "15s");
    assert_eq!(timeouts.get::<_, String>(1), "5s");

    for ddl in [
        "DROP TABLE plex_webhook_logs",
        "DROP TABLE tvshows",
        "ALTER TABLE tvshows ADD COLUMN rating integer",
        "ALTER TABLE plex_config DROP COLUMN id",
        "CREATE TABLE public.sneaky (id integer)",
        "CREATE INDEX ON tvshows (status)",
        "CREATE SCHEMA sneaky",
        "TRUNCATE plex_webhook_logs",
        "SELECT * FROM refinery_schema_history",
    ] {
        let err = rt.batch_execute(ddl).await.expect_err(ddl);
        assert_eq!(err.code().map(|c| c.code()), Some(DENIED), "{ddl}: {err}");
    }

    drop(rt);
    let _ = connection.await;
    drop(owner);
    testing::drop_db_and_role(&test_db.name, &name).await;
}

#[tokio::test]
async fn the_owner_cannot_be_the_runtime_role() {
    let test_db = testing::fresh_db().await;
    let role = RuntimeRole::from_url(&test_db.url).unwrap();
    let err = grant_runtime(&test_db.pool, &role).await.unwrap_err();
    assert!(err.to_string().contains("owner role"), "{err}");
}
