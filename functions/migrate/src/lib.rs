#![warn(unreachable_pub)]
//! The `migrate` function as a CloudFormation custom resource: Create and Update apply the
//! migrations, Delete leaves the database alone, and every request ends with a response PUT to
//! the pre-signed `ResponseURL`. CloudFormation waits up to an hour for that response, so each
//! failure (no database, a bad URL, a migration error, the time budget running out) is reported
//! as `FAILED` instead of leaving the stack stuck.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::SecretString;

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest as Request,
    CloudFormationCustomResourceResponse as Response,
    CloudFormationCustomResourceResponseStatus as Status,
};

use plexsync::db::{self, DbPool};
use plexsync::env::Env;
use plexsync::store::roles::{self, RuntimeRole};

/// CloudFormation rejects response bodies over 4 KiB; the reason is the only free-form part.
const MAX_REASON: usize = 1000;
const SEND_ATTEMPTS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("could not send the response to CloudFormation: {0}")]
    Send(#[from] reqwest::Error),
    #[error("CloudFormation's response URL answered {0}")]
    Status(reqwest::StatusCode),
    #[error("unknown custom resource request type")]
    UnknownRequest,
}

/// The HTTP client for response URLs: bounded, so a dead endpoint cannot eat the time budget.
pub fn http_client() -> reqwest::Client {
    plexsync::tls::http_client_builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("a reqwest client with timeouts builds")
}

/// Per-invocation facts that are not in the request itself.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// How long migrations may take before the request is answered `FAILED` (leave room for the
    /// response PUT before the Lambda timeout).
    pub budget: Duration,
    /// Named in failure reasons so the operator knows where the details are.
    pub log_stream: Option<String>,
}

/// What a run works on: the database, reached as the owner role, and the functions' runtime
/// role whose grants it keeps up to date (none locally, where everything runs as the owner).
pub struct Target<'a> {
    pub pool: &'a DbPool,
    pub runtime_role: Option<&'a RuntimeRole>,
}

impl<'a> Target<'a> {
    /// Migrations only, no runtime role.
    pub fn owner_only(pool: &'a DbPool) -> Self {
        Self {
            pool,
            runtime_role: None,
        }
    }
}

/// The pool and runtime role, built once per cold start from the environment.
pub struct Setup {
    pool: DbPool,
    runtime_role: Option<RuntimeRole>,
}

impl Setup {
    /// `OWNER_DATABASE_URL` set (on AWS): migrations connect with it, and `DATABASE_URL` (what
    /// the other functions connect with) names the runtime role to create and grant. Unset
    /// (local development and tests): `DATABASE_URL` is the owner and nothing is granted.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let owner = env.optional("OWNER_DATABASE_URL").map(SecretString::from);
        let (owner_url, runtime_role) = match owner {
            Some(owner) => {
                let runtime = env.secret("DATABASE_URL").map_err(|e| e.to_string())?;
                let role = RuntimeRole::from_url(&runtime)
                    .map_err(|e| format!("DATABASE_URL (the runtime role): {e}"))?;
                (owner, Some(role))
            }
            None => (env.secret("DATABASE_URL").map_err(|e| e.to_string())?, None),
        };
        let pool =
            db::pool_with(&owner_url, db::PoolSettings::MIGRATIONS).map_err(|e| e.to_string())?;
        Ok(Self { pool, runtime_role })
    }

    pub fn target(&self) -> Target<'_> {
        Target {
            pool: &self.pool,
            runtime_role: self.runtime_role.as_ref(),
        }
    }
}

/// Handles one custom-resource request for the migrations and sends the response.
///
/// `target` is `Err(reason)` when no pool could be built (missing or malformed database URL):
/// that is reported as `FAILED` too. Returns the response that was sent.
#[tracing::instrument(skip_all, fields(request_type, logical_id))]
pub async fn handle_migrations(
    http: &reqwest::Client,
    target: Result<Target<'_>, &str>,
    request: Request,
    invocation: &Invocation,
) -> Result<Response, ResponseError> {
    let common = Common::of(&request).ok_or(ResponseError::UnknownRequest)?;
    tracing::Span::current()
        .record("request_type", common.request_type)
        .record("logical_id", common.logical_id.as_str());

    let outcome = match common.request_type {
        // The schema outlives the stack: dropping the stack must not drop the data.
        "Delete" => Ok("delete: database left as it is".to_string()),
        _ => match target {
            Err(reason) => Err(reason.to_string()),
            Ok(target) => apply(&target, invocation.budget).await,
        },
    };

    let mut response = Response::default();
    response.physical_resource_id = common.physical_id.clone();
    response.stack_id = common.stack_id.clone();
    response.request_id = common.request_id.clone();
    response.logical_resource_id = common.logical_id.clone();
    match outcome {
        Ok(reason) => {
            tracing::info!(%reason, "custom resource succeeded");
            response.status = Status::Success;
            response.reason = Some(truncate(reason));
        }
        Err(reason) => {
            tracing::error!(%reason, "custom resource failed");
            response.status = Status::Failed;
            let reason = match &invocation.log_stream {
                Some(stream) => format!("{reason} (log stream {stream})"),
                None => reason,
            };
            response.reason = Some(truncate(reason));
        }
    }
    response.data = HashMap::new();
    send(http, &common.response_url, &response).await?;
    Ok(response)
}

/// Runs the migrations, then the runtime role's grants, within `budget`; the error is a reason
/// fit for CloudFormation's console (the database errors never carry a connection string or
/// password).
async fn apply(target: &Target<'_>, budget: Duration) -> Result<String, String> {
    match tokio::time::timeout(budget, migrate_and_grant(target)).await {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "migrations did not finish within {} s (another deploy holding the migration lock, \
             or the database not answering)",
            budget.as_secs()
        )),
    }
}

/// Applies pending migrations as the owner, then (when there is one) creates or updates the
/// runtime role and its grants, so tables a migration added are covered. Returns a summary.
pub async fn migrate_and_grant(target: &Target<'_>) -> Result<String, db::DbError> {
    let applied = db::migrate(target.pool).await?;
    let mut report = if applied.is_empty() {
        "migrations up to date".to_string()
    } else {
        format!("migrations applied: {}", applied.join(", "))
    };
    if let Some(role) = target.runtime_role {
        let tables = roles::grant_runtime(target.pool, role).await?;
        report.push_str(&format!(
            "; runtime role {} may read and write {} tables",
            role.name(),
            tables.len()
        ));
    }
    Ok(report)
}

/// PUTs the response. No Content-Type: the URL is pre-signed for an empty one. Retries a few
/// times because a lost response leaves the stack waiting for an hour.
async fn send(http: &reqwest::Client, url: &str, response: &Response) -> Result<(), ResponseError> {
    let body = serde_json::to_string(response).expect("the response serialises");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = http.put(url).body(body.clone()).send().await;
        let error = match result {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => ResponseError::Status(r.status()),
            Err(e) => ResponseError::Send(e),
        };
        if attempt >= SEND_ATTEMPTS {
            return Err(error);
        }
        tracing::warn!(%error, attempt, "response not accepted; retrying");
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
}

fn truncate(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// The fields every request type carries.
struct Common {
    request_type: &'static str,
    response_url: String,
    stack_id: String,
    request_id: String,
    logical_id: String,
    physical_id: String,
}

impl Common {
    fn of(request: &Request) -> Option<Self> {
        Some(match request {
            Request::Create(r) => Self {
                request_type: "Create",
                response_url: r.response_url.clone(),
                stack_id: r.stack_id.clone(),
                request_id: r.request_id.clone(),
                logical_id: r.logical_resource_id.clone(),
                // Stable across updates, so CloudFormation never "replaces" the schema.
                physical_id: format!("{}-migrations", r.logical_resource_id),
            },
            Request::Update(r) => Self {
                request_type: "Update",
                response_url: r.response_url.clone(),
                stack_id: r.stack_id.clone(),
                request_id: r.request_id.clone(),
                logical_id: r.logical_resource_id.clone(),
                physical_id: r.physical_resource_id.clone(),
            },
            Request::Delete(r) => Self {
                request_type: "Delete",
                response_url: r.response_url.clone(),
                stack_id: r.stack_id.clone(),
                request_id: r.request_id.clone(),
                logical_id: r.logical_resource_id.clone(),
                physical_id: r.physical_resource_id.clone(),
            },
            // The enum is non-exhaustive: a request type this code does not know has no fields
            // it can trust, so it is refused (logged by the runtime) rather than guessed at.
            #[allow(unreachable_patterns)]
            _ => return None,
        })
    }
}
