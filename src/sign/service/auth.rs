//! Who is calling, and which `builder.id` that caller's statements must
//! carry. Three ways a caller proves itself, strongest first:
//!
//! * a projected service-account token (a JWT the cluster's issuer
//!   signed, see `oidc.rs`): the caller is one pod, and its statements must
//!   be about that pod;
//! * a client certificate (mTLS, `--client-ca`) when no token is asked for;
//! * the shared bearer token (`--token-file`): anyone holding it.
//!
//! The builder id is the signer's to fix, never the caller's: per
//! namespace or service account for service-account callers, one id for
//! the others.
use std::sync::Arc;

use serde::Serialize;
use zeroize::Zeroizing;

use super::oidc::Oidc;

/// A pod, as its service-account token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeIdentity {
    pub issuer: String,
    pub namespace: String,
    pub service_account: String,
    pub pod: String,
    pub pod_uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertIdentity {
    /// Hex SHA-256 of the certificate DER.
    pub sha256: String,
    pub subject: String,
    /// Subject alternative names (DNS names, URIs, e-mail addresses, IPs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// Longest name kept from a certificate, and how many: the certificate
/// passed the client CA, but a CA can sign silly things.
const MAX_NAME: usize = 256;
const MAX_NAMES: usize = 16;

fn capped(s: String) -> String {
    if s.len() <= MAX_NAME {
        return s;
    }
    let mut end = MAX_NAME;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl CertIdentity {
    pub(super) fn from_der(der: &[u8]) -> CertIdentity {
        use x509_parser::extensions::GeneralName;
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der));
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return CertIdentity {
                sha256,
                subject: String::new(),
                names: Vec::new(),
            };
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in san.value.general_names.iter().take(MAX_NAMES) {
                let s = match n {
                    GeneralName::DNSName(d) => format!("dns:{d}"),
                    GeneralName::URI(u) => format!("uri:{u}"),
                    GeneralName::RFC822Name(m) => format!("email:{m}"),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => format!("ip:{}", std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])),
                        16 => {
                            let mut b = [0u8; 16];
                            b.copy_from_slice(ip);
                            format!("ip:{}", std::net::Ipv6Addr::from(b))
                        }
                        _ => continue,
                    },
                    _ => continue,
                };
                names.push(capped(s));
            }
        }
        CertIdentity {
            sha256,
            subject: capped(cert.subject().to_string()),
            names,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Caller {
    /// A pod, by its projected service-account token.
    ServiceAccount(KubeIdentity),
    /// A client certificate, the only credential asked for.
    ClientCertificate(CertIdentity),
    /// Whoever holds the shared token.
    SharedToken,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::ServiceAccount(k) => write!(
                f,
                "pod {}/{} (service account {})",
                k.namespace, k.pod, k.service_account
            ),
            Caller::ClientCertificate(c) => write!(f, "client certificate {}", c.subject),
            Caller::SharedToken => f.write_str("shared-token caller"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    AnyNamespace,
    Namespace(String),
    ServiceAccount(String, String),
}

/// The builder id each caller's statements must carry.
#[derive(Debug, Clone, Default)]
pub struct BuilderIds {
    rules: Vec<(Selector, String)>,
    /// For callers without a service-account identity (shared token,
    /// client certificate alone).
    pub other: Option<String>,
}

/// A Kubernetes name: a DNS label or subdomain, as namespaces and service
/// accounts are.
fn kube_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// A builder id must be a URI (SLSA: `TypeURI`).
pub fn check_builder_uri(uri: &str) -> Result<(), String> {
    let scheme_ok = uri.split_once(':').is_some_and(|(s, rest)| {
        !s.is_empty()
            && !rest.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if !scheme_ok || uri.chars().any(char::is_whitespace) {
        return Err(format!("builder id '{uri}' is not a URI"));
    }
    Ok(())
}

impl BuilderIds {
    /// Whether any rule is for service-account callers.
    pub fn has_namespace_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// `NAMESPACE=URI`, `NAMESPACE/SERVICEACCOUNT=URI` or `*=URI` (every
    /// namespace without a rule of its own).
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (sel, uri) = spec
            .split_once('=')
            .ok_or_else(|| format!("'{spec}': expected NAMESPACE[/SERVICEACCOUNT]=URI"))?;
        check_builder_uri(uri)?;
        let selector = match sel.split_once('/') {
            _ if sel == "*" => Selector::AnyNamespace,
            Some((ns, sa)) if kube_name(ns) && kube_name(sa) => {
                Selector::ServiceAccount(ns.into(), sa.into())
            }
            None if kube_name(sel) => Selector::Namespace(sel.into()),
            _ => {
                return Err(format!(
                    "'{spec}': '{sel}' is not NAMESPACE, NAMESPACE/SERVICEACCOUNT or *"
                ))
            }
        };
        if self.rules.iter().any(|(s, _)| *s == selector) {
            return Err(format!("'{spec}': '{sel}' has a builder id already"));
        }
        self.rules.push((selector, uri.to_string()));
        Ok(())
    }

    /// The id a service account's statements must carry: the most
    /// specific rule. The webhook resolves the same rules for the pods it
    /// instruments, so that both agree by construction.
    pub fn for_service_account(&self, namespace: &str, service_account: &str) -> Option<&str> {
        let find = |want: &Selector| {
            self.rules
                .iter()
                .find(|(s, _)| s == want)
                .map(|(_, u)| u.as_str())
        };
        find(&Selector::ServiceAccount(
            namespace.into(),
            service_account.into(),
        ))
        .or_else(|| find(&Selector::Namespace(namespace.into())))
        .or_else(|| find(&Selector::AnyNamespace))
    }

    /// The id `caller`'s statements must carry: the most specific rule.
    pub fn for_caller(&self, caller: &Caller) -> Result<&str, String> {
        match caller {
            Caller::ServiceAccount(k) => self
                .for_service_account(&k.namespace, &k.service_account)
                .ok_or_else(|| {
                    format!(
                        "no builder id configured for namespace {} (service account {})",
                        k.namespace, k.service_account
                    )
                }),
            _ => self
                .other
                .as_deref()
                .ok_or_else(|| format!("no builder id configured for a {caller}")),
        }
    }
}

/// Checks the credentials of a request.
pub(super) struct Authenticator {
    pub shared_token: Option<Zeroizing<String>>,
    pub oidc: Option<Arc<Oidc>>,
    pub client_ca: bool,
}

/// Constant-time comparison: the token must not leak through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of an `Authorization` header (the scheme is
/// case-insensitive, RFC 9110).
pub(super) fn bearer(headers: &hyper::HeaderMap) -> Option<&str> {
    let v = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Authenticator {
    fn wants_token(&self) -> bool {
        self.shared_token.is_some() || self.oidc.is_some()
    }

    /// The caller, or why it is refused. A client certificate was already
    /// verified in the handshake when `--client-ca` is set; with a token
    /// mode as well, the token decides who the caller is.
    pub(super) async fn authenticate(
        &self,
        bearer: Option<&str>,
        cert: Option<&CertIdentity>,
    ) -> Result<Caller, String> {
        if self.client_ca && cert.is_none() {
            return Err("no client certificate (this signer requires mTLS)".into());
        }
        if !self.wants_token() {
            return match cert {
                Some(c) if self.client_ca => Ok(Caller::ClientCertificate(c.clone())),
                _ => Err("no client certificate (this signer requires mTLS)".into()),
            };
        }
        let Some(token) = bearer else {
            return Err("missing bearer token".into());
        };
        if let Some(shared) = &self.shared_token {
            if same(token.as_bytes(), shared.as_bytes()) {
                return Ok(Caller::SharedToken);
            }
        }
        match &self.oidc {
            Some(oidc) if token.bytes().filter(|b| *b == b'.').count() == 2 => {
                oidc.verify(token).await.map(Caller::ServiceAccount)
            }
            Some(_) if self.shared_token.is_none() => {
                Err("bearer token is not a JWT (expected a service-account token)".into())
            }
            _ => Err("bad bearer token".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, sa: &str) -> Caller {
        Caller::ServiceAccount(KubeIdentity {
            issuer: "https://issuer".into(),
            namespace: ns.into(),
            service_account: sa.into(),
            pod: "p".into(),
            pod_uid: "u".into(),
            node: None,
        })
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let mut b = BuilderIds::default();
        b.add("*=https://ci.example/any").unwrap();
        b.add("team-a=https://ci.example/a").unwrap();
        b.add("team-a/release=https://ci.example/a-release")
            .unwrap();
        assert_eq!(
            b.for_caller(&pod("team-a", "release")).unwrap(),
            "https://ci.example/a-release"
        );
        assert_eq!(
            b.for_caller(&pod("team-a", "default")).unwrap(),
            "https://ci.example/a"
        );
        assert_eq!(
            b.for_caller(&pod("team-b", "default")).unwrap(),
            "https://ci.example/any"
        );
        assert!(b.for_caller(&Caller::SharedToken).is_err());
        assert!(b.add("team-a=https://other").is_err());
        assert!(b.add("Team_A=https://x").is_err());
        assert!(b.add("team-c=not a uri").is_err());
        assert!(b.add("team-c").is_err());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(hyper::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
