//! `migrate` function: applies `migrations/` (embedded at build time) in order, each once.
//!
//! Outside Lambda (`AWS_LAMBDA_RUNTIME_API` unset) it applies them and exits, which is how the
//! dev and test scripts use it. Inside Lambda it is a CloudFormation custom resource
//! (see the library, [`migrate::handle_migrations`]): every deploy applies pending migrations and reports the
//! result back to CloudFormation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use migrate::Invocation;
use plexsync::{db, lambda};

/// Kept back from the Lambda deadline for the response PUT (and its retries).
const RESPONSE_RESERVE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    // DATABASE_URL (the owner role) or DATABASE_URL_SECRET_ID, read from Secrets Manager.
    let env = lambda::env_with_secrets(&lambda::sdk_config().await).await;

    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        let env = lambda::or_exit(env);
        let url = lambda::or_exit(env.secret("DATABASE_URL"));
        let pool = db::pool_with(&url, db::PoolSettings::MIGRATIONS)?;
        let applied = db::migrate(&pool).await?;
        println!(
            "migrations applied: {}",
            if applied.is_empty() {
                "none (up to date)".to_string()
            } else {
                applied.join(", ")
            }
        );
        return Ok(());
    }

    // Under CloudFormation a bad DATABASE_URL must become a FAILED response, not an exit that
    // leaves the stack waiting: keep the error and report it on each request.
    let pool = env
        .and_then(|env| env.secret("DATABASE_URL"))
        .map_err(|e| e.to_string())
        .and_then(|url| {
            db::pool_with(&url, db::PoolSettings::MIGRATIONS).map_err(|e| e.to_string())
        });
    let http = migrate::http_client();
    let (pool, http) = (&pool, &http);
    run(service_fn(
        move |event: LambdaEvent<CloudFormationCustomResourceRequest>| async move {
            let invocation = Invocation {
                budget: budget(event.context.deadline),
                log_stream: std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").ok(),
            };
            let pool = pool.as_ref().map_err(String::as_str);
            migrate::handle_migrations(http, pool, event.payload, &invocation).await?;
            Ok::<_, Error>(())
        },
    ))
    .await
}

/// Time left for the migrations: the invocation deadline minus the response reserve.
fn budget(deadline_ms: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_millis(deadline_ms)
        .saturating_sub(now)
        .saturating_sub(RESPONSE_RESERVE)
        .max(Duration::from_secs(1))
}
