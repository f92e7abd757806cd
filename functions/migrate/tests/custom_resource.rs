//! The migrate custom resource against a real database and a wiremock stand-in for
//! CloudFormation's pre-signed response URL.

use std::time::Duration;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest as Request;
use migrate::Invocation;
use plexsync::{db, testing};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const STACK_ID: &str =
    "arn:aws:cloudformation:eu-west-1:123456789012:stack/plexsync/5b6c7d80-ad1f-11ef-8b51-0a1b2c3d4e5f";

/// A request as CloudFormation sends it (Update/Delete carry a PhysicalResourceId).
fn request(kind: &str, response_url: &str) -> Request {
    let mut event = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:plexsync-MigrateFunction-AbC123",
        "ResponseURL": response_url,
        "StackId": STACK_ID,
        "RequestId": "9d2f6c1e-0b8a-4f3e-a1d2-6b7c8d9e0f10",
        "LogicalResourceId": "Migrations",
        "ResourceType": "Custom::Migrations",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:plexsync-MigrateFunction-AbC123",
            "MigrationsVersion": "2026-11-28T18:00:00Z"
        }
    });
    if kind != "Create" {
        event["PhysicalResourceId"] = json!("Migrations-migrations");
    }
    if kind == "Update" {
        event["OldResourceProperties"] = json!({"MigrationsVersion": "2026-11-27T09:00:00Z"});
    }
    serde_json::from_value(event).expect("a valid custom resource request")
}

async fn cloudformation() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/cfn-response"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// The single response body CloudFormation received.
async fn sent(server: &MockServer) -> (Value, wiremock::Request) {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "exactly one response is sent");
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    (body, requests[0].clone())
}

fn invocation() -> Invocation {
    Invocation {
        budget: Duration::from_secs(60),
        log_stream: Some("2026/11/28/[$LATEST]0123456789abcdef".into()),
    }
}

fn unreachable_pool() -> db::DbPool {
    db::pool(&SecretString::from(
        "postgres://plexsync:hunter2-secret@127.0.0.1:1/plexsync".to_string(),
    ))
    .unwrap()
}

/// Sends CloudFormation's `kind` request to the handler, whose response goes to `cfn`.
async fn handle(
    cfn: &MockServer,
    kind: &str,
    target: Result<migrate::Target<'_>, &str>,
    invocation: &Invocation,
) -> aws_lambda_events::event::cloudformation::CloudFormationCustomResourceResponse {
    let req = request(kind, &format!("{}/cfn-response", cfn.uri()));
    migrate::handle_migrations(&migrate::http_client(), target, req, invocation)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_applies_migrations_and_reports_success() {
    let cfn = cloudformation().await;
    let (_, url) = testing::empty_db().await;
    let pool = db::pool(&SecretString::from(url)).unwrap();

    handle(
        &cfn,
        "Create",
        Ok(migrate::Target::owner_only(&pool)),
        &invocation(),
    )
    .await;

    let (body, raw) = sent(&cfn).await;
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["StackId"], STACK_ID);
    assert_eq!(body["RequestId"], "9d2f6c1e-0b8a-4f3e-a1d2-6b7c8d9e0f10");
    assert_eq!(body["LogicalResourceId"], "Migrations");
    assert_eq!(body["PhysicalResourceId"], "Migrations-migrations");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains("V1__tracker_baseline"), "{reason}");
    // The URL is pre-signed for no Content-Type; sending one breaks the S3 signature.
    assert!(raw.headers.get("content-type").is_none());

    let client = pool.get().await.unwrap();
    let exists: bool = client
        .query_one("SELECT to_regclass('plex_webhook_logs') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(exists, "the schema was created");
}

#[tokio::test]
async fn update_on_a_migrated_database_keeps_the_physical_id() {
    let cfn = cloudformation().await;
    let test_db = testing::fresh_db().await;

    handle(
        &cfn,
        "Update",
        Ok(migrate::Target::owner_only(&test_db.pool)),
        &invocation(),
    )
    .await;

    let (body, _) = sent(&cfn).await;
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], "Migrations-migrations");
    assert_eq!(body["Reason"], "migrations up to date");
}

#[tokio::test]
async fn delete_succeeds_without_touching_the_database() {
    let cfn = cloudformation().await;
    let pool = unreachable_pool();

    handle(
        &cfn,
        "Delete",
        Ok(migrate::Target::owner_only(&pool)),
        &invocation(),
    )
    .await;

    let (body, _) = sent(&cfn).await;
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], "Migrations-migrations");
}

#[tokio::test]
async fn unreachable_database_is_reported_as_failed_without_the_password() {
    let cfn = cloudformation().await;
    let pool = unreachable_pool();

    let response = handle(
        &cfn,
        "Create",
        Ok(migrate::Target::owner_only(&pool)),
        &invocation(),
    )
    .await;

    let (body, _) = sent(&cfn).await;
    assert_eq!(body["Status"], "FAILED");
    assert_eq!(body["RequestId"], "9d2f6c1e-0b8a-4f3e-a1d2-6b7c8d9e0f10");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains("database"), "{reason}");
    assert!(reason.contains("[$LATEST]0123456789abcdef"), "{reason}");
    assert!(!reason.contains("hunter2"), "the password leaked: {reason}");
    assert_eq!(
        response.status,
        aws_lambda_events::event::cloudformation::CloudFormationCustomResourceResponseStatus::Failed
    );
}

#[tokio::test]
async fn a_pool_that_could_not_be_built_is_reported_as_failed() {
    let cfn = cloudformation().await;

    handle(
        &cfn,
        "Update",
        Err("environment variable DATABASE_URL is not set"),
        &invocation(),
    )
    .await;

    let (body, _) = sent(&cfn).await;
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"]
        .as_str()
        .unwrap()
        .starts_with("environment variable DATABASE_URL is not set"));
}

#[tokio::test]
async fn a_held_migration_lock_fails_within_the_budget_instead_of_hanging() {
    let cfn = cloudformation().await;
    let test_db = testing::fresh_db().await;
    // Another deploy is migrating: it holds the same advisory lock as db::migrate.
    let holder = test_db.pool.get().await.unwrap();
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&0x706c_6578_7379_6e63_i64])
        .await
        .unwrap();

    let invocation = Invocation {
        budget: Duration::from_secs(1),
        log_stream: None,
    };
    handle(
        &cfn,
        "Update",
        Ok(migrate::Target::owner_only(&test_db.pool)),
        &invocation,
    )
    .await;

    let (body, _) = sent(&cfn).await;
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().contains("did not finish"));
}

#[tokio::test]
async fn a_rejected_response_is_retried() {
    let cfn = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&cfn)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&cfn)
        .await;

    handle(
        &cfn,
        "Delete",
        Ok(migrate::Target::owner_only(&unreachable_pool())),
        &invocation(),
    )
    .await;

    let requests = cfn.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "one 503, then the accepted retry");
}

/// On AWS the migrate function gets the owner's URL (`OWNER_DATABASE_URL`) besides the
/// functions' (`DATABASE_URL`): it migrates as the owner and grants the runtime role.
#[tokio::test]
async fn update_migrates_as_owner_and_grants_the_runtime_role() {
    let cfn = cloudformation().await;
    let (name, owner_url) = testing::empty_db().await;
    let role = format!("plexsync_rt_{}", testing::unique_suffix());
    let runtime_url = testing::url_as(&owner_url, &role, "rt-secret-pw-1");
    let setup = migrate::Setup::from_env(&plexsync::env::Env::from_map([
        ("OWNER_DATABASE_URL", owner_url.as_str()),
        ("DATABASE_URL", runtime_url.as_str()),
    ]))
    .unwrap();
    handle(&cfn, "Update", Ok(setup.target()), &invocation()).await;

    let (body, _) = sent(&cfn).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains("V1__tracker_baseline"), "{reason}");
    assert!(reason.contains(&format!("runtime role {role}")), "{reason}");
    assert!(!reason.contains("rt-secret-pw-1"));

    let (rt, connection) = tokio_postgres::connect(&runtime_url, tokio_postgres::NoTls)
        .await
        .expect("the runtime role logs in");
    let connection = tokio::spawn(connection);
    rt.query_one("SELECT count(*) FROM plex_webhook_logs", &[])
        .await
        .expect("the runtime role reads plexsync's tables");
    let err = rt
        .batch_execute("CREATE TABLE sneaky (id integer)")
        .await
        .expect_err("no DDL");
    assert_eq!(err.code().map(|c| c.code()), Some("42501"));
    drop(rt);
    let _ = connection.await;
    drop(setup);
    testing::drop_db_and_role(&name, &role).await;
}
