//! Registry credentials: a docker `config.json` (also the content of a
//! Kubernetes `kubernetes.io/dockerconfigjson` Secret, which is what
//! `imagePullSecrets` mount) and explicit `HOST=USER` pairs, the pairs
//! winning. Every credential belongs to one registry host: the builder
//! names the images, so a credential that went to any host would go to a
//! host of the builder's choosing.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a docker config.json: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: auths.{registry}.auth is not base64 of USER:PASSWORD")]
    BadAuth { path: PathBuf, registry: String },
    #[error("--registry-auth given without a password: set PROVENANT_REGISTRY_PASSWORD or pass --registry-password-file")]
    NoPassword,
    #[error("--registry-auth {0}: expected HOST[:PORT]=USER (a registry host, not a URL or repository; a user name without ':')")]
    BadPair(String),
}

#[derive(Debug, Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Debug, Deserialize, Default)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// registry host -> (user, password)
    by_registry: BTreeMap<String, (String, String)>,
}

/// `https://index.docker.io/v1/`, `registry:5000`, `https://registry:5000/v2/`
/// all name the registry host[:port].
fn normalize(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "index.docker.io".into(),
        other => other.to_string(),
    }
}

impl Credentials {
    pub fn anonymous() -> Credentials {
        Credentials::default()
    }

    /// `config`: an explicit docker config file; otherwise `$DOCKER_CONFIG/config.json`
    /// or `~/.docker/config.json` when present.
    /// `scoped`: `HOST[:PORT]=USER` pairs, each given `password`; they
    /// override the config file for those hosts and no other.
    pub fn load(
        config: Option<&Path>,
        scoped: &[String],
        password: Option<String>,
    ) -> Result<Credentials, AuthError> {
        let mut creds = Credentials::default();
        let path = match config {
            Some(p) => Some(p.to_path_buf()),
            None => std::env::var_os("DOCKER_CONFIG")
                .map(|d| PathBuf::from(d).join("config.json"))
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
                })
                .filter(|p| p.is_file()),
        };
        if let Some(path) = path {
            let bytes = std::fs::read(&path).map_err(|source| AuthError::Read {
                path: path.clone(),
                source,
            })?;
            let cfg: DockerConfig =
                serde_json::from_slice(&bytes).map_err(|source| AuthError::Json {
                    path: path.clone(),
                    source,
                })?;
            for (registry, a) in cfg.auths {
                let pair = if let Some(auth) = a.auth.filter(|s| !s.is_empty()) {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| {
                            s.split_once(':')
                                .map(|(u, p)| (u.to_string(), p.to_string()))
                        });
                    raw.ok_or_else(|| AuthError::BadAuth {
                        path: path.clone(),
                        registry: registry.clone(),
                    })?
                } else if let (Some(u), Some(p)) = (a.username, a.password) {
                    (u, p)
                } else if let Some(t) = a.identitytoken {
                    ("<token>".to_string(), t)
                } else {
                    continue;
                };
                creds.by_registry.insert(normalize(&registry), pair);
            }
        }
        if !scoped.is_empty() {
            let password = password.ok_or(AuthError::NoPassword)?;
            for pair in scoped {
                let (host, user) = parse_pair(pair)?;
                creds.by_registry.insert(host, (user, password.clone()));
            }
        }
        Ok(creds)
    }

    /// The user and password for exactly this registry host, if any.
    pub fn for_registry(&self, registry: &str) -> Option<(&str, &str)> {
        self.by_registry
            .get(&normalize(registry))
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }
}

/// The password in `path` (a mounted Secret): the first line, without its
/// line ending; at most 4 KiB are read.
pub fn read_password(path: &Path) -> Result<String, AuthError> {
    use std::io::Read;
    let err = |source| AuthError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .map_err(err)?
        .take(4096)
        .read_to_end(&mut buf)
        .map_err(err)?;
    let s = String::from_utf8(buf).map_err(|_| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text",
        ))
    })?;
    Ok(s.lines().next().unwrap_or("").to_string())
}

/// `HOST[:PORT]=USER`.
pub fn parse_pair(pair: &str) -> Result<(String, String), AuthError> {
    let bad = || AuthError::BadPair(pair.chars().take(200).collect());
    let (host, user) = pair.split_once('=').ok_or_else(bad)?;
    let host = host.trim();
    if host.is_empty()
        || user.is_empty()
        || user.contains(':')
        || host.contains("://")
        || host.contains('/')
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok((normalize(host), user.to_string()))
}

crate::exit_class!(AuthError => crate::error::exit::CANNOT_CHECK);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerconfigjson_forms() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        std::fs::write(
            &p,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"localhost:5000":{{"username":"bob","password":"pw"}}}}}}"#),
        )
        .unwrap();
        let c = Credentials::load(Some(&p), &[], None).unwrap();
        assert_eq!(
            c.for_registry("index.docker.io"),
            Some(("alice", "s3cr:et"))
        );
        assert_eq!(c.for_registry("docker.io"), Some(("alice", "s3cr:et")));
        assert_eq!(c.for_registry("localhost:5000").unwrap().0, "bob");
        assert_eq!(c.for_registry("ghcr.io"), None);
        std::fs::write(&p, r#"{"auths":{"r":{"auth":"!!!"}}}"#).unwrap();
        let e = Credentials::load(Some(&p), &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("auths.r.auth"), "{e}");
    }

    #[test]
    fn scoped_credentials_go_to_their_host_only() {
        let d = tempfile::tempdir().unwrap();
        let empty = d.path().join("config.json");
        std::fs::write(&empty, "{}").unwrap();
        let c = Credentials::load(
            Some(&empty),
            &[
                "registry.example.com=ci".into(),
                "127.0.0.1:5000=local".into(),
            ],
            Some("pw".into()),
        )
        .unwrap();
        assert_eq!(c.for_registry("registry.example.com"), Some(("ci", "pw")));
        assert_eq!(c.for_registry("127.0.0.1:5000"), Some(("local", "pw")));
        for other in [
            "registry.example.com:443",
            "evil.example",
            "127.0.0.1:5001",
            "localhost:5000",
            "registry.example.com.evil.example",
        ] {
            assert_eq!(c.for_registry(other), None, "{other}");
        }
        assert!(matches!(
            Credentials::load(Some(&empty), &["r.example=u".into()], None),
            Err(AuthError::NoPassword)
        ));
        for bad in [
            "r.example",
            "=u",
            "r.example=",
            "https://r.example=u",
            "r.example/app=u",
            "r=u:p",
        ] {
            assert!(
                matches!(parse_pair(bad), Err(AuthError::BadPair(_))),
                "{bad}"
            );
        }
    }
}
