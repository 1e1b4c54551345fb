//! Registry credentials: a docker `config.json` (also the content of a
//! Kubernetes `kubernetes.io/dockerconfigjson` Secret, which is what
//! `imagePullSecrets` mount) and explicit flags, the flags winning.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use oci_client::secrets::RegistryAuth;
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
    #[error(
        "--registry-username given without --registry-password (or PROVENANT_REGISTRY_PASSWORD)"
    )]
    NoPassword,
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
    /// From flags: used for every registry.
    explicit: Option<(String, String)>,
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
    pub fn load(
        config: Option<&Path>,
        username: Option<String>,
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
        match (username, password) {
            (Some(u), Some(p)) => creds.explicit = Some((u, p)),
            (Some(_), None) => return Err(AuthError::NoPassword),
            _ => {}
        }
        Ok(creds)
    }

    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        if let Some((u, p)) = &self.explicit {
            return RegistryAuth::Basic(u.clone(), p.clone());
        }
        match self.by_registry.get(&normalize(registry)) {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

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
        let c = Credentials::load(Some(&p), None, None).unwrap();
        assert!(
            matches!(c.for_registry("index.docker.io"), RegistryAuth::Basic(u, p) if u == "alice" && p == "s3cr:et")
        );
        assert!(
            matches!(c.for_registry("localhost:5000"), RegistryAuth::Basic(u, _) if u == "bob")
        );
        assert!(matches!(c.for_registry("ghcr.io"), RegistryAuth::Anonymous));
        std::fs::write(&p, r#"{"auths":{"r":{"auth":"!!!"}}}"#).unwrap();
        let e = Credentials::load(Some(&p), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("auths.r.auth"), "{e}");
    }
}
