//! Plex Media Server client: reads a show's metadata, whose `Guid` array (unlike an episode's)
//! holds the *show's* external ids. Home servers are usually unreachable from AWS, so calls are
//! short and the caller treats most failures as "this step is not available".

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize};
use url::Url;

use crate::crypto::{CryptoError, Keyring};
use crate::db::DbPool;
use crate::payload::{ExternalIds, GuidEntry};
use crate::store::settings::{self, EncryptedToken};

#[derive(Debug, thiserror::Error)]
pub enum PlexError {
    /// The server did not answer in time: may work on a later attempt.
    #[error("Plex server timed out")]
    Timeout,
    /// Connection refused, DNS failure, TLS trouble: the server is not reachable from here.
    #[error("Plex server unreachable: {0}")]
    Unreachable(String),
    /// 401/403: the stored token is not (or no longer) accepted by the server.
    #[error("Plex server rejected the token")]
    Rejected,
    /// The server answered but not with what was asked (unknown key, bad JSON, a redirect).
    #[error("Plex server answered unexpectedly: {0}")]
    Unexpected(String),
    /// The server URL is plain http and the user did not allow that: the token is not sent.
    #[error(
        "the Plex server URL is plain http, so the token would travel unencrypted: use the \
         server's https address, or save the configuration with allowInsecureHttp for a server \
         on your own network"
    )]
    PlainHttp,
}

/// A Plex server's base URL, cleared to receive the token: https, or plain http only when the
/// user opted in (`allowInsecureHttp`, a server on their own network). Every token-bearing call
/// takes one, so no path sends the token in clear by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(Url);

impl ServerUrl {
    pub fn new(url: Url, allow_plain_http: bool) -> Result<Self, PlexError> {
        match url.scheme() {
            "https" => Ok(Self(url)),
            "http" if allow_plain_http => Ok(Self(url)),
            "http" => Err(PlexError::PlainHttp),
            other => Err(PlexError::Unexpected(format!(
                "server URL scheme {other:?} is not http(s)"
            ))),
        }
    }

    /// From the stored text (`plex_config.plex_server_url`) and the stored opt-in.
    pub fn parse(raw: &str, allow_plain_http: bool) -> Result<Self, PlexError> {
        let url = Url::parse(raw.trim())
            .map_err(|e| PlexError::Unexpected(format!("server URL: {e}")))?;
        Self::new(url, allow_plain_http)
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

/// One episode of `allLeaves`, with the server owner's watch state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlexLeaf {
    #[serde(default)]
    pub rating_key: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// Season number.
    #[serde(default)]
    pub parent_index: Option<i64>,
    /// Episode number.
    #[serde(default)]
    pub index: Option<i64>,
    /// Absent (or 0) when unwatched.
    #[serde(default)]
    pub view_count: Option<i64>,
    /// Unix seconds of the last play.
    #[serde(default)]
    pub last_viewed_at: Option<i64>,
    #[serde(default)]
    pub guid: Option<String>,
    /// The *episode's* ids (with `includeGuids=1`).
    #[serde(rename = "Guid", default)]
    pub guids: Vec<GuidEntry>,
}

/// One library section (`/library/sections`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlexSection {
    pub key: String,
    /// `show`, `movie`, `artist`, `photo`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub title: Option<String>,
}

/// One show of a TV section (`/library/sections/{key}/all`), with its own ids and how much of
/// it the token's account has watched.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlexSectionShow {
    pub rating_key: String,
    #[serde(default)]
    pub guid: Option<String>,
    pub title: String,
    /// The show's first-air year.
    #[serde(default)]
    pub year: Option<i64>,
    #[serde(default)]
    pub leaf_count: Option<i64>,
    #[serde(default)]
    pub viewed_leaf_count: Option<i64>,
    /// Unix seconds of the latest play of any of its episodes.
    #[serde(default)]
    pub last_viewed_at: Option<i64>,
    /// The *show's* ids (with `includeGuids=1`).
    #[serde(rename = "Guid", default)]
    pub guids: Vec<GuidEntry>,
}

/// What the server says about a show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexShow {
    pub guid: Option<String>,
    pub title: Option<String>,
    pub year: Option<i64>,
    pub ids: ExternalIds,
}

#[derive(Debug, Clone)]
pub struct PlexServerClient {
    http: reqwest::Client,
}

/// Every answer of the server's JSON API: `{"MediaContainer": {"Metadata": [...]}}`, or
/// `"Directory"` for the library sections.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "MediaContainer")]
    container: Container<T>,
}

#[derive(Deserialize)]
struct Container<T> {
    #[serde(rename = "Metadata", alias = "Directory", default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    guid: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    year: Option<i64>,
    #[serde(rename = "Guid", default)]
    guids: Vec<GuidEntry>,
}

impl PlexServerClient {
    pub fn new() -> Result<Self, PlexError> {
        Self::with_timeout(Duration::from_secs(4))
    }

    /// For whole listings (a show's episodes for the history sync, a library section of a few
    /// thousand shows for the import): a home server takes seconds to answer those.
    pub fn for_listings() -> Result<Self, PlexError> {
        Self::with_timeout(Duration::from_secs(10))
    }

    pub fn with_timeout(timeout: Duration) -> Result<Self, PlexError> {
        let http = crate::tls::http_client_builder()
            // A redirect would carry X-Plex-Token to wherever it points (another host, or
            // http): none is followed.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .user_agent("plexsync/0.1")
            .build()
            .map_err(|e| PlexError::Unexpected(format!("HTTP client: {e}")))?;
        Ok(Self { http })
    }

    /// `GET {server}/library/metadata/{rating_key}` → the show's guid and ids.
    #[tracing::instrument(skip(self, token))]
    pub async fn show(
        &self,
        server: &ServerUrl,
        rating_key: &str,
        token: &SecretString,
    ) -> Result<PlexShow, PlexError> {
        let path = format!("library/metadata/{}", numeric(rating_key)?);
        let item = self
            .items::<Item>(server, &path, token, "metadata")
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| PlexError::Unexpected("no metadata for the show".into()))?;
        Ok(PlexShow {
            ids: ExternalIds::from_guid_array(&item.guids),
            guid: item.guid,
            title: item.title,
            year: item.year,
        })
    }

    /// `GET {server}/library/sections` → the library sections.
    #[tracing::instrument(skip(self, token))]
    pub async fn sections(
        &self,
        server: &ServerUrl,
        token: &SecretString,
    ) -> Result<Vec<PlexSection>, PlexError> {
        self.items(server, "library/sections", token, "section list")
            .await
    }

    /// `GET {server}/library/sections/{key}/all?type=2&includeGuids=1` → every show of a TV
    /// section, with its ids and watch counts.
    #[tracing::instrument(skip(self, token))]
    pub async fn section_shows(
        &self,
        server: &ServerUrl,
        section_key: &str,
        token: &SecretString,
    ) -> Result<Vec<PlexSectionShow>, PlexError> {
        let path = format!(
            "library/sections/{}/all?type=2&includeGuids=1",
            numeric(section_key)?
        );
        self.items(server, &path, token, "show list").await
    }

    /// `GET {server}/library/metadata/{rating_key}/allLeaves?includeGuids=1` → every episode of
    /// the show with its watch state (the token's account's) and its ids.
    #[tracing::instrument(skip(self, token))]
    pub async fn all_leaves(
        &self,
        server: &ServerUrl,
        rating_key: &str,
        token: &SecretString,
    ) -> Result<Vec<PlexLeaf>, PlexError> {
        let path = format!(
            "library/metadata/{}/allLeaves?includeGuids=1",
            numeric(rating_key)?
        );
        self.items(server, &path, token, "episode list").await
    }

    /// The items of a GET's media container; `what` names them when the JSON is unreadable.
    async fn items<T: DeserializeOwned>(
        &self,
        server: &ServerUrl,
        path: &str,
        token: &SecretString,
        what: &str,
    ) -> Result<Vec<T>, PlexError> {
        let envelope: Envelope<T> = self
            .get(server, path, token)
            .await?
            .json()
            .await
            .map_err(|e| PlexError::Unexpected(format!("unreadable {what}: {e}")))?;
        Ok(envelope.container.items)
    }

    /// A JSON GET with the token header; non-success statuses become errors.
    async fn get(
        &self,
        server: &ServerUrl,
        path: &str,
        token: &SecretString,
    ) -> Result<reqwest::Response, PlexError> {
        // `join` would drop the last segment of a server URL without a trailing slash.
        let mut base = server.as_url().clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let url = base
            .join(path)
            .map_err(|e| PlexError::Unexpected(format!("server URL: {e}")))?;
        let response = self
            .http
            .get(url)
            .header("X-Plex-Token", token.expose_secret())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    PlexError::Timeout
                } else {
                    // `without_url` keeps the server address out of the error text.
                    PlexError::Unreachable(e.without_url().to_string())
                }
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(PlexError::Rejected);
        }
        if status.is_redirection() {
            return Err(PlexError::Unexpected(format!(
                "status {status}: a redirect, not followed so the token stays with the server"
            )));
        }
        if !status.is_success() {
            return Err(PlexError::Unexpected(format!("status {status}")));
        }
        Ok(response)
    }
}

/// Opens the stored Plex token. One sealed with a previous key (the encryption key was rotated
/// since) is sealed again with the current key and written back on this use, so the old key
/// can leave the keyring once every deployment has used the token. A failed write-back is only
/// logged: the token still opened, and the next use tries again.
pub async fn open_stored_token(
    pool: &DbPool,
    keyring: &Keyring,
    stored: &EncryptedToken,
) -> Result<SecretString, CryptoError> {
    let token = keyring.decrypt(&stored.0)?;
    if keyring.needs_reencryption(&stored.0) {
        let resealed = keyring.encrypt(&token);
        let written = match pool.get().await {
            Ok(client) => settings::replace_encrypted_token(&client, stored, &resealed)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(replaced) => tracing::info!(
                replaced,
                "stored Plex token re-encrypted with the current key"
            ),
            Err(error) => {
                tracing::warn!(%error, "stored Plex token not re-encrypted; next use retries")
            }
        }
    }
    Ok(token)
}

/// Rating keys are numeric; anything else could walk the server's paths.
fn numeric(rating_key: &str) -> Result<&str, PlexError> {
    if rating_key.is_empty() || !rating_key.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PlexError::Unexpected(format!(
            "rating key {rating_key:?} is not numeric"
        )));
    }
    Ok(rating_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures;
    use wiremock::{
        matchers::{header, method, path},
        Mock, MockServer, ResponseTemplate,
    };

    /// The stubs listen on plain http, as a LAN server the user allowed.
    fn local(uri: &str) -> ServerUrl {
        ServerUrl::parse(uri, true).unwrap()
    }

    fn token() -> SecretString {
        SecretString::from("tok-123".to_string())
    }

    /// Show 48200 (The Office) as the stub server at `uri` answers it.
    async fn show_48200(uri: &str) -> Result<PlexShow, PlexError> {
        PlexServerClient::new()
            .unwrap()
            .show(&local(uri), "48200", &token())
            .await
    }

    fn the_office() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(fixtures::plex_server_show_the_office())
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_so_the_token_stays_with_the_server() {
        let server = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        // Another host: it must never be asked (with or without the token).
        Mock::given(method("GET"))
            .respond_with(the_office())
            .expect(0)
            .mount(&elsewhere)
            .await;
        Mock::given(method("GET"))
            .and(path("/library/metadata/48200"))
            .respond_with(ResponseTemplate::new(302).insert_header(
                "location",
                format!("{}/library/metadata/48200", elsewhere.uri()),
            ))
            .expect(1)
            .mount(&server)
            .await;
        let err = show_48200(&server.uri()).await.unwrap_err();
        assert!(err.to_string().contains("not followed"), "{err}");
        assert!(elsewhere.received_requests().await.unwrap().is_empty());
        elsewhere.verify().await;
    }

    #[tokio::test]
    async fn plain_http_needs_the_opt_in_and_nothing_is_sent_without_it() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(the_office())
            .expect(0)
            .mount(&server)
            .await;
        assert!(matches!(
            ServerUrl::parse(&server.uri(), false),
            Err(PlexError::PlainHttp)
        ));
        assert!(ServerUrl::parse("https://plex.example.com:32400", false).is_ok());
        assert!(ServerUrl::parse("ftp://plex.example.com", true).is_err());
        let message = PlexError::PlainHttp.to_string();
        assert!(message.contains("allowInsecureHttp"), "{message}");
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn reads_show_ids_with_token_header() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/library/metadata/48200"))
            .and(header("x-plex-token", "tok-123"))
            .and(header("accept", "application/json"))
            .respond_with(the_office())
            .expect(1)
            .mount(&server)
            .await;
        let show = show_48200(&server.uri()).await.unwrap();
        assert_eq!(show.ids.tmdb, Some(2316));
        assert_eq!(show.ids.tvdb, Some(73244));
        assert_eq!(show.year, Some(2005));
    }

    #[tokio::test]
    async fn reads_all_leaves_under_a_server_path_prefix() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/plex/library/metadata/48200/allLeaves"))
            .and(header("x-plex-token", "tok-123"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(fixtures::plex_server_office_all_leaves()),
            )
            .expect(1)
            .mount(&server)
            .await;
        let leaves = PlexServerClient::new()
            .unwrap()
            .all_leaves(&local(&format!("{}/plex", server.uri())), "48200", &token())
            .await
            .unwrap();
        assert_eq!(leaves.len(), 5);
        assert_eq!(leaves[0].parent_index, Some(1));
        assert_eq!(leaves[0].index, Some(1));
        assert_eq!(leaves[0].view_count, Some(2));
        assert_eq!(leaves[0].last_viewed_at, Some(1700000000));
        assert_eq!(leaves[2].view_count, None);
    }

    #[tokio::test]
    async fn slow_server_is_a_timeout_and_401_rejected() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/library/metadata/1"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/library/metadata/2"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let url = local(&server.uri());
        let token = SecretString::from("t".to_string());
        // Only the slow answer gets a short timeout: the others must not depend on how fast a
        // loaded machine serves them.
        let impatient = PlexServerClient::with_timeout(Duration::from_millis(200)).unwrap();
        assert!(matches!(
            impatient.show(&url, "1", &token).await,
            Err(PlexError::Timeout)
        ));
        let client = PlexServerClient::with_timeout(Duration::from_secs(30)).unwrap();
        assert!(matches!(
            client.show(&url, "2", &token).await,
            Err(PlexError::Rejected)
        ));
        assert!(matches!(
            client.show(&url, "../x", &token).await,
            Err(PlexError::Unexpected(_))
        ));
    }
}
