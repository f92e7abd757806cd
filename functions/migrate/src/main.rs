//! `migrate` function: applies `migrations/` (embedded at build time) in order, each once.
//!
//! Outside Lambda (`AWS_LAMBDA_RUNTIME_API` unset) it applies them and exits, which is how the
//! dev and test scripts use it. Inside Lambda it is a CloudFormation custom resource
//! (see the library, [`migrate::handle_migrations`]): every deploy applies pending migrations and reports the
//! result back to CloudFormation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use migrate::{Invocation, Setup};
use plexsync::lambda;

/// Kept back from the Lambda deadline for the response PUT (and its retries).
const RESPONSE_RESERVE: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::init_logging();
    // The database URLs, or their *_SECRET_ID, read from Secrets Manager (see Setup::from_env).
    let env = lambda::env_with_secrets(&lambda::sdk_config().await).await;

    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        let setup = lambda::or_exit(Setup::from_env(&lambda::or_exit(env)));
        println!("{}", migrate::migrate_and_grant(&setup.target()).await?);
        return Ok(());
    }

    // Under CloudFormation a bad database URL must become a FAILED response, not an exit that
    // leaves the stack waiting: keep the error and report it on each request.
    let setup = env
        .map_err(|e| e.to_string())
        .and_then(|env| Setup::from_env(&env));
    let http = migrate::http_client();
    let (setup, http) = (&setup, &http);
    run(service_fn(
        move |event: LambdaEvent<CloudFormationCustomResourceRequest>| async move {
            let invocation = Invocation {
                budget: budget(event.context.deadline),
                log_stream: std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").ok(),
            };
            let target = setup.as_ref().map(Setup::target).map_err(String::as_str);
            migrate::handle_migrations(http, target, event.payload, &invocation).await?;
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
