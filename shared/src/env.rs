//! The environment reader: typed settings read from the environment once, at start. A missing or malformed
//! variable stops the function with a message naming it (the README's "Configuration" lists them).

use std::collections::HashMap;

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::secrets::SecretsCache;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Variables whose value may come from Secrets Manager instead: when the variable is unset and
/// its `_SECRET_ID` companion names a secret, the secret's string is the value, read once at
/// cold start. On AWS the template passes only the secret ARNs, so the values never sit in the
/// function's configuration (readable with `lambda:GetFunctionConfiguration`) and a changed
/// secret takes effect at the next cold start, without a deploy. Locally the plain variables
/// are simpler.
pub const SECRET_BACKED: [(&str, &str); 3] = [
    ("DATABASE_URL", "DATABASE_URL_SECRET_ID"),
    ("OWNER_DATABASE_URL", "OWNER_DATABASE_URL_SECRET_ID"),
    ("TMDB_API_TOKEN", "TMDB_API_TOKEN_SECRET_ID"),
];

/// Where variables come from: the process environment, or a map in tests (tests run in
/// parallel, so they must not mutate the real environment).
pub struct Env {
    lookup: Lookup,
}

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Env {
    pub fn from_process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    pub fn from_map<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// This environment with each [`SECRET_BACKED`] variable that is unset but has its
    /// `_SECRET_ID` set filled in from Secrets Manager (through the secrets cache).
    pub async fn with_secrets(self, secrets: &SecretsCache) -> Result<Self, EnvError> {
        let mut resolved = HashMap::new();
        for (name, id_name) in SECRET_BACKED {
            if self.optional(name).is_some() {
                continue;
            }
            let Some(id) = self.optional(id_name) else {
                continue;
            };
            let value = secrets
                .get(&id)
                .await
                .map_err(|e| EnvError::Invalid {
                    name: id_name,
                    reason: e.to_string(),
                })?
                .ok_or_else(|| EnvError::Invalid {
                    name: id_name,
                    reason: format!("secret {id} does not exist or holds no string"),
                })?;
            resolved.insert(name, value.expose_secret().to_string());
        }
        let fallback = self.lookup;
        Ok(Self {
            lookup: Box::new(move |name| resolved.get(name).cloned().or_else(|| fallback(name))),
        })
    }

    /// The value, with surrounding whitespace removed; empty counts as unset.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, EnvError> {
        self.optional(name).ok_or(EnvError::Missing(name))
    }

    pub fn secret(&self, name: &'static str) -> Result<SecretString, EnvError> {
        self.required(name).map(SecretString::from)
    }

    pub fn url(&self, name: &'static str) -> Result<Url, EnvError> {
        parse_http_url(name, &self.required(name)?)
    }

    pub fn url_or(&self, name: &'static str, default: &str) -> Result<Url, EnvError> {
        match self.optional(name) {
            Some(v) => parse_http_url(name, &v),
            None => parse_http_url(name, default),
        }
    }

    /// Comma-separated CIDRs (IPv4 and IPv6); a bare address means a single host.
    pub fn cidrs(&self, name: &'static str) -> Result<Vec<IpNet>, EnvError> {
        let Some(raw) = self.optional(name) else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| EnvError::Invalid {
                        name,
                        reason: format!(
                            "{s:?} is not a CIDR such as 203.0.113.0/24 or 2001:db8::/32"
                        ),
                    })
            })
            .collect()
    }
}

fn parse_http_url(name: &'static str, value: &str) -> Result<Url, EnvError> {
    let url = Url::parse(value).map_err(|e| EnvError::Invalid {
        name,
        reason: format!("not a URL ({e})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(EnvError::Invalid {
            name,
            reason: "must be an http(s) URL with a host".into(),
        });
    }
    Ok(url)
}

/// TMDB API access: base URL (wiremock in tests) and a v4 bearer token or v3 key.
#[derive(Debug, Clone)]
pub struct TmdbConfig {
    pub base_url: Url,
    pub token: SecretString,
}

impl TmdbConfig {
    const DEFAULT_BASE_URL: &'static str = "https://api.themoviedb.org";

    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Ok(Self {
            base_url: env.url_or("TMDB_BASE_URL", Self::DEFAULT_BASE_URL)?,
            token: env.secret("TMDB_API_TOKEN")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_variables_are_named() {
        let env = Env::from_map([("QUEUE_URL", "  ")]);
        assert_eq!(
            env.url("QUEUE_URL").unwrap_err(),
            EnvError::Missing("QUEUE_URL")
        );
        let err = Env::from_map([("ENCRYPTION_KEY_SECRET_ID", "k")])
            .required("WEBHOOK_SECRET_ID")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable WEBHOOK_SECRET_ID is not set"
        );
    }

    #[test]
    fn urls_are_validated_and_defaulted() {
        let env = Env::from_map([
            ("TMDB_BASE_URL", "ftp://x"),
            ("PUBLIC_BASE_URL", "not a url"),
        ]);
        assert!(matches!(
            env.url("TMDB_BASE_URL"),
            Err(EnvError::Invalid {
                name: "TMDB_BASE_URL",
                ..
            })
        ));
        assert!(matches!(
            env.url("PUBLIC_BASE_URL"),
            Err(EnvError::Invalid {
                name: "PUBLIC_BASE_URL",
                ..
            })
        ));
        let env = Env::from_map([("TMDB_API_TOKEN", "t")]);
        let tmdb = TmdbConfig::from_env(&env).unwrap();
        assert_eq!(tmdb.base_url.as_str(), "https://api.themoviedb.org/");
    }

    #[test]
    fn tmdb_token_is_required_and_not_debug_printed() {
        assert_eq!(
            TmdbConfig::from_env(&Env::from_map([("X", "y")])).unwrap_err(),
            EnvError::Missing("TMDB_API_TOKEN")
        );
        let tmdb = TmdbConfig::from_env(&Env::from_map([("TMDB_API_TOKEN", "supersecret-token")]))
            .unwrap();
        assert!(!format!("{tmdb:?}").contains("supersecret-token"));
    }

    #[test]
    fn cidrs_parse_v4_v6_and_hosts() {
        let env = Env::from_map([(
            "PLEX_ALLOWED_CIDRS",
            "203.0.113.0/24, 2001:db8::/32,198.51.100.7",
        )]);
        let nets = env.cidrs("PLEX_ALLOWED_CIDRS").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[0].contains(&"203.0.113.9".parse::<std::net::IpAddr>().unwrap()));
        assert!(nets[1].contains(&"2001:db8::1".parse::<std::net::IpAddr>().unwrap()));
        assert!(nets[2].contains(&"198.51.100.7".parse::<std::net::IpAddr>().unwrap()));
        assert!(!nets[2].contains(&"198.51.100.8".parse::<std::net::IpAddr>().unwrap()));
        assert!(Env::from_map([("X", "y")])
            .cidrs("PLEX_ALLOWED_CIDRS")
            .unwrap()
            .is_empty());
        let bad = Env::from_map([("PLEX_ALLOWED_CIDRS", "10.0.0.0/33")]);
        assert!(matches!(
            bad.cidrs("PLEX_ALLOWED_CIDRS"),
            Err(EnvError::Invalid { .. })
        ));
    }
}
