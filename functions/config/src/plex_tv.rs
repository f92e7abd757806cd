//! plex.tv client: validates a Plex token (whose account is it) and discovers the Plex Media
//! Server the account owns. The token travels in a header, never in a URL, so it cannot end up
//! in an error message or a log line.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use plexsync::{
    api::ApiError,
    env::{Env, EnvError},
};

/// plex.tv's base URL: `PLEX_TV_BASE_URL` (a stub in tests and `make dev`) or the real one.
pub fn base_url(env: &Env) -> Result<Url, EnvError> {
    env.url_or("PLEX_TV_BASE_URL", "https://plex.tv")
}

/// Sent as `X-Plex-Client-Identifier` / `X-Plex-Product`: plex.tv wants a stable client id.
const CLIENT_IDENTIFIER: &str = "plexsync-backend";
const PRODUCT: &str = "plexsync";

#[derive(Debug, thiserror::Error)]
pub enum PlexTvError {
    #[error("token rejected by plex.tv")]
    Rejected,
    #[error("plex.tv is unreachable: {0}")]
    Unavailable(String),
    #[error("plex.tv answered unexpectedly: {0}")]
    Unexpected(String),
}

impl From<PlexTvError> for ApiError {
    fn from(err: PlexTvError) -> Self {
        match err {
            PlexTvError::Rejected => ApiError::Unprocessable(err.to_string()),
            other => {
                tracing::warn!(error = %other, "plex.tv call failed");
                ApiError::BadGateway(other.to_string())
            }
        }
    }
}

/// The plex.tv account a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexAccount {
    pub id: i64,
    pub username: String,
}

/// A Plex Media Server the account owns, with the connection we would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexServer {
    pub name: String,
    /// `clientIdentifier`: the `Server.uuid` of webhook payloads.
    pub uuid: String,
    pub url: Option<Url>,
}

#[derive(Deserialize)]
struct UserBody {
    id: i64,
    username: Option<String>,
    title: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    name: Option<String>,
    client_identifier: Option<String>,
    #[serde(default)]
    provides: String,
    #[serde(default)]
    owned: bool,
    #[serde(default)]
    connections: Vec<Connection>,
}

#[derive(Deserialize)]
struct Connection {
    #[serde(default)]
    protocol: String,
    uri: String,
    #[serde(default)]
    local: bool,
    #[serde(default)]
    relay: bool,
}

pub struct PlexTvClient {
    http: reqwest::Client,
    base: Url,
}

impl PlexTvClient {
    pub fn new(base: Url) -> Self {
        let http = plexsync::tls::http_client_builder()
            // A redirect would carry X-Plex-Token to wherever it points: none is followed.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("plexsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { http, base }
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        url
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
        token: &SecretString,
    ) -> Result<T, PlexTvError> {
        let resp = self
            .http
            .get(url)
            .header("X-Plex-Token", token.expose_secret())
            .header("X-Plex-Client-Identifier", CLIENT_IDENTIFIER)
            .header("X-Plex-Product", PRODUCT)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| PlexTvError::Unavailable(describe(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(PlexTvError::Rejected);
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(PlexTvError::Unavailable(format!(
                "HTTP {}",
                status.as_u16()
            )));
        }
        if status.is_redirection() {
            return Err(PlexTvError::Unexpected(format!(
                "HTTP {}: a redirect, not followed so the token is not sent elsewhere",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(PlexTvError::Unexpected(format!("HTTP {}", status.as_u16())));
        }
        resp.json::<T>().await.map_err(|e| {
            PlexTvError::Unexpected(format!(
                "response is not the expected JSON: {}",
                describe(&e)
            ))
        })
    }

    /// `GET /api/v2/user`: the account the token belongs to.
    #[tracing::instrument(skip_all)]
    pub async fn account(&self, token: &SecretString) -> Result<PlexAccount, PlexTvError> {
        let user: UserBody = self.get(self.url("/api/v2/user"), token).await?;
        let username = user
            .username
            .filter(|u| !u.is_empty())
            .or(user.title)
            .unwrap_or_default();
        Ok(PlexAccount {
            id: user.id,
            username,
        })
    }

    /// `GET /api/v2/resources?includeHttps=1`: the servers the account owns, each with its
    /// preferred connection (https and reachable from the internet first).
    #[tracing::instrument(skip_all)]
    pub async fn owned_servers(
        &self,
        token: &SecretString,
    ) -> Result<Vec<PlexServer>, PlexTvError> {
        let mut url = self.url("/api/v2/resources");
        url.query_pairs_mut()
            .append_pair("includeHttps", "1")
            .append_pair("includeRelay", "1");
        let resources: Vec<Resource> = self.get(url, token).await?;
        Ok(resources
            .into_iter()
            .filter(|r| r.owned && r.provides.split(',').any(|p| p.trim() == "server"))
            .filter_map(|r| {
                Some(PlexServer {
                    url: best_connection(&r.connections),
                    name: r.name.unwrap_or_default(),
                    uuid: r.client_identifier?,
                })
            })
            .collect())
    }
}

/// Prefers https over http, remote over local, direct over relay: the processor runs in AWS,
/// so a LAN address is useless to it and a relay is slow and bandwidth-limited.
fn best_connection(connections: &[Connection]) -> Option<Url> {
    connections
        .iter()
        .filter_map(|c| Url::parse(&c.uri).ok().map(|u| (c, u)))
        .filter(|(_, u)| matches!(u.scheme(), "http" | "https"))
        .max_by_key(|(c, _)| (c.protocol == "https", !c.local, !c.relay))
        .map(|(_, u)| u)
}

/// A short reason; the URL (which carries no token) is replaced by "plex.tv".
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".into();
    }
    if err.is_connect() {
        return "connection failed".into();
    }
    let text = err.to_string();
    match err.url() {
        Some(u) => text.replace(u.as_str(), "plex.tv"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexsync::testing::fixtures;
    use wiremock::{
        matchers::{header, method, path, query_param},
        Mock, MockServer, ResponseTemplate,
    };

    const TOKEN: &str = "yZxW9vUtSrQpOnMlKjIh";

    fn token() -> SecretString {
        SecretString::from(TOKEN.to_string())
    }

    #[tokio::test]
    async fn account_sends_token_in_headers_and_reads_id_and_username() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api/v2/user"))
            .and(header("X-Plex-Token", TOKEN))
            .and(header("X-Plex-Client-Identifier", CLIENT_IDENTIFIER))
            .and(header("Accept", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_user()))
            .expect(1)
            .mount(&server)
            .await;
        let client = PlexTvClient::new(server.uri().parse().unwrap());
        let account = client.account(&token()).await.unwrap();
        assert_eq!(
            account,
            PlexAccount {
                id: 12345678,
                username: "alice".into()
            }
        );
    }

    #[tokio::test]
    async fn rejected_token_down_and_garbage_are_told_apart() {
        let server = MockServer::start().await;
        let client = PlexTvClient::new(server.uri().parse().unwrap());
        Mock::given(path("/api/v2/user"))
            .respond_with(
                ResponseTemplate::new(401).set_body_string("{\"errors\":[{\"code\":1001}]}"),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        assert!(matches!(
            client.account(&token()).await,
            Err(PlexTvError::Rejected)
        ));
        Mock::given(path("/api/v2/user"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        let err = client.account(&token()).await.unwrap_err();
        assert!(matches!(err, PlexTvError::Unavailable(_)));
        assert_eq!(ApiError::from(err).status().as_u16(), 502);
        Mock::given(path("/api/v2/user"))
            .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
            .mount(&server)
            .await;
        let err = client.account(&token()).await.unwrap_err();
        assert!(matches!(err, PlexTvError::Unexpected(_)));
        assert!(!err.to_string().contains(TOKEN));
        // Nothing listening: a network error.
        let dead = PlexTvClient::new("http://127.0.0.1:9".parse().unwrap());
        let err = dead.account(&token()).await.unwrap_err();
        assert!(matches!(err, PlexTvError::Unavailable(_)), "{err}");
        assert_eq!(ApiError::from(PlexTvError::Rejected).status().as_u16(), 422);
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_so_the_token_stays_with_plex_tv() {
        let plex_tv = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_user()))
            .expect(0)
            .mount(&elsewhere)
            .await;
        Mock::given(path("/api/v2/user"))
            .respond_with(
                ResponseTemplate::new(307)
                    .insert_header("location", format!("{}/api/v2/user", elsewhere.uri())),
            )
            .expect(1)
            .mount(&plex_tv)
            .await;
        let client = PlexTvClient::new(plex_tv.uri().parse().unwrap());
        let err = client.account(&token()).await.unwrap_err();
        assert!(matches!(err, PlexTvError::Unexpected(_)), "{err}");
        assert!(err.to_string().contains("not followed"), "{err}");
        assert!(elsewhere.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn owned_server_prefers_remote_https_direct_connection() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/api/v2/resources"))
            .and(query_param("includeHttps", "1"))
            .and(header("X-Plex-Token", TOKEN))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_resources()))
            .mount(&server)
            .await;
        let client = PlexTvClient::new(server.uri().parse().unwrap());
        let servers = client.owned_servers(&token()).await.unwrap();
        assert_eq!(
            servers.len(),
            1,
            "the shared server and the player are not owned servers"
        );
        assert_eq!(servers[0].name, "basement-nas");
        assert_eq!(servers[0].uuid, plexsync::testing::fixtures::server_uuid());
        assert_eq!(
            servers[0].url.as_ref().unwrap().as_str(),
            "https://198-51-100-23.0123456789abcdef0123456789abcdef.plex.direct:32400/"
        );
    }
}
