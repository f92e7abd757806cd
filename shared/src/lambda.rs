//! What every function's `main` does: logging, the AWS SDK configuration, the function's state
//! built once from the environment, then each event handed to the function's handler. A
//! `main.rs` is one call to [`serve_http`] or [`serve_events`].

use std::{
    fmt::Display,
    future::Future,
    time::{Duration, SystemTime},
};

use aws_config::{BehaviorVersion, SdkConfig};
use lambda_http::{Body, Request, Response};
use serde::{de::DeserializeOwned, Serialize};
use tokio::time::Instant;

use crate::env::Env;

/// Serves an API Gateway (HTTP API) function: `build` makes the state once per cold start, and
/// `handle` turns each request into a response (it never fails: errors are JSON responses).
pub async fn serve_http<S, E, Fut>(
    build: impl FnOnce(&Env, &SdkConfig) -> Result<S, E>,
    handle: impl Fn(&'static S, Request) -> Fut + Sync,
) -> Result<(), lambda_http::Error>
where
    S: Sync + 'static,
    E: Display,
    Fut: Future<Output = Response<Body>> + Send,
{
    let state = start(build).await;
    let handle = &handle;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        Ok::<_, lambda_http::Error>(handle(state, req).await)
    }))
    .await
}

/// Serves a function invoked with `Event` (an SQS batch, say): `build` makes the state once per
/// cold start, and `handle` answers each event by the invocation's deadline (when Lambda stops
/// it).
pub async fn serve_events<S, E, Event, Answer, Fut>(
    build: impl FnOnce(&Env, &SdkConfig) -> Result<S, E>,
    handle: impl Fn(&'static S, Event, Instant) -> Fut + Sync,
) -> Result<(), lambda_runtime::Error>
where
    S: Sync + 'static,
    E: Display,
    Event: DeserializeOwned,
    Answer: Serialize,
    Fut: Future<Output = Answer> + Send,
{
    let state = start(build).await;
    let handle = &handle;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Event>| async move {
            let deadline = deadline_of(&event.context);
            Ok::<_, lambda_runtime::Error>(handle(state, event.payload, deadline).await)
        },
    ))
    .await
}

/// Lambda's longest timeout: no real invocation's deadline lies further ahead, nor (when the
/// invocation starts) further behind.
const LAMBDA_MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The invocation's deadline (wall-clock milliseconds from the runtime API) as an `Instant`.
fn deadline_of(context: &lambda_runtime::Context) -> Instant {
    match context.deadline().duration_since(SystemTime::now()) {
        Ok(left) => Instant::now() + left,
        // `cargo lambda watch` (make dev, the end-to-end test) sends the constant 600000, i.e.
        // 1970, not a deadline. Taken as one, the processor saw no time left and returned every
        // record untried; its emulator enforces no deadline, so it gets Lambda's longest.
        Err(past) if past.duration() > LAMBDA_MAX_TIMEOUT => Instant::now() + LAMBDA_MAX_TIMEOUT,
        Err(_) => Instant::now(),
    }
}

/// Logging, SDK configuration and the state. The state lives as long as the process (a warm
/// instance keeps its pool, caches and clients), so it is leaked to a `'static` reference that
/// every invocation's future can hold.
async fn start<S: 'static, E: Display>(
    build: impl FnOnce(&Env, &SdkConfig) -> Result<S, E>,
) -> &'static S {
    init_logging();
    let sdk = sdk_config().await;
    let env = or_exit(env_with_secrets(&sdk).await);
    Box::leak(Box::new(or_exit(build(&env, &sdk))))
}

/// The process environment, with the values of secret-backed variables read from Secrets
/// Manager (see [`crate::env::SECRET_BACKED`]).
pub async fn env_with_secrets(sdk: &SdkConfig) -> Result<Env, crate::env::EnvError> {
    let secrets = crate::secrets::SecretsCache::new(aws_sdk_secretsmanager::Client::new(sdk));
    Env::from_process().with_secrets(&secrets).await
}

/// The runtime's subscriber honours `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG` and switches to JSON
/// when the function's log format is JSON (as the template configures).
pub fn init_logging() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// The SDK configuration, loaded once per cold start. The SDK itself honours
/// `AWS_ENDPOINT_URL` (moto locally), region and credentials from the environment; its HTTPS
/// client trusts the process-wide compiled-in roots ([`crate::tls`]), not the system store.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(crate::tls::sdk_http_client())
        .load()
        .await
}

/// Fails the start of a function with one clear line naming the problem.
pub fn or_exit<T, E: Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot start");
        eprintln!("plexsync: {err}");
        std::process::exit(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_ending_in(ms_from_now: i64) -> lambda_runtime::Context {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let mut context = lambda_runtime::Context::default();
        context.deadline = u64::try_from(now + ms_from_now).unwrap();
        context
    }

    #[test]
    fn the_runtime_deadline_becomes_an_instant_that_far_ahead() {
        let before = Instant::now();
        let deadline = deadline_of(&context_ending_in(60_000));
        // Whole seconds apart, so no clock detail can flip it.
        assert!(deadline > before + Duration::from_secs(50), "{deadline:?}");
        assert!(deadline < before + Duration::from_secs(70), "{deadline:?}");
    }

    #[test]
    fn cargo_lambda_watchs_placeholder_is_no_deadline() {
        let mut context = lambda_runtime::Context::default();
        // What `cargo lambda watch` sends in Lambda-Runtime-Deadline-Ms.
        context.deadline = 600_000;
        let before = Instant::now();
        assert!(deadline_of(&context) >= before + LAMBDA_MAX_TIMEOUT);
    }

    #[test]
    fn a_deadline_already_passed_is_now() {
        let deadline = deadline_of(&context_ending_in(-5_000));
        assert!(deadline <= Instant::now());
        assert!(deadline > Instant::now() - Duration::from_secs(1));
    }
}
