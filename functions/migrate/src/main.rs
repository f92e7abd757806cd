//! `migrate` function: applies `migrations/` (embedded at build time) in order, each once.
//!
//! Outside Lambda (`AWS_LAMBDA_RUNTIME_API` unset) it applies them and exits, which is how the
//! dev and test scripts use it. Inside Lambda it applies them on each invocation.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use plexsync::{config, db};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    plexsync::telemetry::init();
    let env = config::Env::from_process();
    let url = config::or_exit(env.secret("DATABASE_URL"));
    let pool = db::pool(&url)?;

    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
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

    let pool = &pool;
    run(service_fn(move |_event: LambdaEvent<Value>| async move {
        let applied = db::migrate(pool).await?;
        tracing::info!(?applied, "migrations applied");
        Ok::<_, Error>(json!({ "applied": applied }))
    }))
    .await
}
