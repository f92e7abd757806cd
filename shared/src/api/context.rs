//! What every management function holds (pool, secrets, API token id, CORS), and what runs
//! before and after each handler: preflight, authentication, routing, CORS headers.

use std::{future::Future, sync::Arc};

use aws_config::SdkConfig;
use lambda_http::{
    http::{header, HeaderValue, Method, StatusCode},
    Body, Request, Response,
};

use super::{
    auth::check_bearer,
    cors::Cors,
    error::{respond, ApiError},
    router::{match_route, method_not_allowed, route_not_found, RouteError, RouteMatch},
    routes::Route,
};
use crate::{
    crypto::Keyring,
    db::{self, DbPool},
    env::{Env, EnvError},
    secrets::SecretsCache,
};

/// What every management function holds: the pool, the secrets cache, the API token's secret
/// id and the CORS policy. Built once per cold start.
pub struct ApiContext {
    pub pool: DbPool,
    pub secrets: Arc<SecretsCache>,
    pub cors: Cors,
    api_token_id: String,
}

impl ApiContext {
    pub fn new(pool: DbPool, secrets: Arc<SecretsCache>, api_token_id: String, cors: Cors) -> Self {
        Self {
            pool,
            secrets,
            cors,
            api_token_id,
        }
    }

    /// From `DATABASE_URL`, `API_TOKEN_SECRET_ID` and `CORS_ALLOWED_ORIGINS`.
    pub fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, EnvError> {
        let pool = db::pool_from_env(env)?;
        let secrets = Arc::new(SecretsCache::new(aws_sdk_secretsmanager::Client::new(sdk)));
        Ok(Self::new(
            pool,
            secrets,
            env.required("API_TOKEN_SECRET_ID")?,
            Cors::from_env(env)?,
        ))
    }

    /// The keyring for the stored Plex token, from the encryption key secret `secret_id`.
    pub async fn keyring(&self, secret_id: &str) -> Result<Keyring, ApiError> {
        let key =
            self.secrets.get(secret_id).await?.ok_or_else(|| {
                ApiError::Internal("the encryption key secret does not exist".into())
            })?;
        Ok(Keyring::from_secret(&key)?)
    }

    /// `Authorization: Bearer <API token>`, compared in constant time. On a mismatch the secret
    /// is re-read once (it may have been rotated; the cache rate-limits the re-reads).
    #[tracing::instrument(skip_all)]
    async fn authorize(&self, req: &Request) -> Result<(), ApiError> {
        if !req.headers().contains_key(header::AUTHORIZATION) {
            return Err(ApiError::Unauthorized);
        }
        if let Some(token) = self.secrets.get(&self.api_token_id).await? {
            if check_bearer(req, &token).is_ok() {
                return Ok(());
            }
        }
        match self.secrets.refresh(&self.api_token_id).await? {
            Some(token) => check_bearer(req, &token),
            None => {
                tracing::warn!(secret_id = %self.api_token_id, "API token secret does not exist");
                Err(ApiError::Unauthorized)
            }
        }
    }

    /// Everything before the handler: CORS preflight, auth, routing. `Err` is the finished
    /// response (preflight, 401, 404, 405).
    pub async fn begin(
        &self,
        req: &Request,
        routes: &[Route],
    ) -> Result<RouteMatch, Response<Body>> {
        let path = req.uri().path();
        if req.method() == Method::OPTIONS {
            let methods: Vec<&str> = match match_route(routes, "OPTIONS", path) {
                Err(RouteError::MethodNotAllowed(m)) => m,
                _ => return Err(route_not_found(req).into_response()),
            };
            return Err(self.cors.preflight(req, &methods));
        }
        if let Err(err) = self.authorize(req).await {
            let mut resp = err.into_response();
            if resp.status() == StatusCode::UNAUTHORIZED {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return Err(self.finish(req, resp));
        }
        match match_route(routes, req.method().as_str(), path) {
            Ok(m) => Ok(m),
            Err(RouteError::NotFound) => {
                Err(self.finish(req, route_not_found(req).into_response()))
            }
            Err(RouteError::MethodNotAllowed(m)) => {
                Err(self.finish(req, method_not_allowed(req, &m).into_response()))
            }
        }
    }

    /// Serves one request: [`begin`](Self::begin), then `handler` with the matched route (its
    /// error becomes the JSON error response), then [`finish`](Self::finish).
    pub async fn serve<F, Fut>(&self, req: &Request, routes: &[Route], handler: F) -> Response<Body>
    where
        F: FnOnce(RouteMatch) -> Fut,
        Fut: Future<Output = Result<Response<Body>, ApiError>>,
    {
        match self.begin(req, routes).await {
            Ok(route) => self.finish(req, respond(handler(route).await)),
            Err(resp) => resp,
        }
    }

    /// Adds the CORS headers to the handler's response.
    pub fn finish(&self, req: &Request, mut resp: Response<Body>) -> Response<Body> {
        self.cors.decorate(req, &mut resp);
        resp
    }
}
