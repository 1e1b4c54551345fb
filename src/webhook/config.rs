//! The webhook's configuration file (YAML). Every object rejects unknown
//! fields: a typo in a setting that decides where keys are mounted must
//! stop the webhook at start, not be silently ignored.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::WebhookError;
use crate::provenance::{ProductsAs, DEFAULT_BUILDER_ID};
use crate::sign::service::BuilderIds;

/// Longest configuration file read (it is a few hundred bytes in practice).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// provenant's own image, by digest (`REPO@sha256:HEX`): the containers
    /// that hold the key run exactly the binary the operator chose. May be
    /// left out when `provenant webhook --image` gives it (the install kit
    /// passes the webhook's own image, so one `kustomize edit set image`
    /// sets both).
    #[serde(default)]
    pub image: String,
    #[serde(default = "default_pull_policy")]
    pub image_pull_policy: String,
    /// `builder.id` written into every attestation signed with the key
    /// Secret (default `https://provenant.dev/builders/local/v1`). With a
    /// signer, the signer fixes the builder ids: `signing.signer.builders`.
    #[serde(default)]
    pub builder_id: Option<String>,
    pub signing: Signing,
    #[serde(default)]
    pub publish: Publish,
    /// The uid provenant's containers run as (never the builder's).
    #[serde(default = "default_uid")]
    pub run_as_user: i64,
    #[serde(default)]
    pub products_as: ProductsAsSetting,
    #[serde(default)]
    pub resources: Resources,
    /// The pod's `terminationGracePeriodSeconds` is raised to at least this:
    /// the sidecar finalizes (and publishes) after SIGTERM within it.
    #[serde(default = "default_grace")]
    pub min_termination_grace_period_seconds: i64,
    /// The answer for a pod a profile matched but that cannot be
    /// instrumented (unexpected layout): `Fail` denies it, so no build runs
    /// unobserved; `Ignore` lets it run without provenance (logged, and a
    /// warning is returned to the client).
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    #[serde(default)]
    pub profiles: Profiles,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProductsAsSetting {
    #[default]
    Files,
    Dirhash,
}

impl ProductsAsSetting {
    pub fn get(self) -> ProductsAs {
        match self {
            ProductsAsSetting::Files => ProductsAs::Files,
            ProductsAsSetting::Dirhash => ProductsAs::Dirhash,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

/// Exactly one of `key` and `signer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Signing {
    pub key: Option<KeySecret>,
    pub signer: Option<RemoteSigner>,
}

/// A cosign-compatible key in a Secret of the build's namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySecret {
    pub secret_name: String,
    #[serde(default = "default_key_item")]
    pub key_item: String,
    /// Item of the same Secret holding COSIGN_PASSWORD, for encrypted keys.
    pub password_item: Option<String>,
}

/// A `provenant signer` that knows each sidecar by its pod's projected
/// service-account token (docs/pod-mode.md, "Remote signer").
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteSigner {
    /// `https://...`: the sidecar sends its token there.
    pub url: String,
    /// The CA certificates (PEM) the signer's certificate chains to, as a
    /// file the webhook reads (and reads again when it changes). Each pod
    /// gets them in an annotation, projected into the sidecar as
    /// `--signer-ca`: no build namespace needs a copy of its own.
    pub ca_file: PathBuf,
    /// The audience of the sidecar's token: the signer's
    /// `--oidc-audience`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Lifetime of the sidecar's token; 600 (Kubernetes' minimum) keeps
    /// a stolen one useful for the shortest time.
    #[serde(default = "default_token_expiration")]
    pub token_expiration_seconds: i64,
    /// The signer's `--builder` rules, exactly as given to it
    /// (`NAMESPACE[/SERVICEACCOUNT]=URI`, `*=URI`): the builder id each
    /// pod's sidecar passes is the one the signer demands of that pod.
    pub builders: Vec<String>,
    /// `builders`, parsed by the signer's own code.
    #[serde(skip)]
    pub builder_ids: BuilderIds,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Publish {
    #[serde(default)]
    pub enabled: bool,
    /// A `kubernetes.io/dockerconfigjson` Secret with push access to the
    /// images' repositories (kpack's own registry Secret works).
    pub credentials_secret_name: Option<String>,
    #[serde(default = "default_dockerconfig_item")]
    pub credentials_item: String,
    /// Registries reached over plain HTTP.
    #[serde(default)]
    pub plain_http: Vec<String>,
}

impl Default for Publish {
    fn default() -> Self {
        Publish {
            enabled: false,
            credentials_secret_name: None,
            credentials_item: default_dockerconfig_item(),
            plain_http: Vec::new(),
        }
    }
}

/// Requests and limits of provenant's containers, from the sizing formula
/// of docs/pod-mode.md: memory `32Mi + 0.6Ki` per file in the watched roots.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default = "default_files")]
    pub expected_files: u64,
    #[serde(default = "default_cpu")]
    pub cpu_request: String,
    /// No CPU limit by default: throttling would stretch finalize past the
    /// grace period on a busy node.
    pub cpu_limit: Option<String>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            expected_files: default_files(),
            cpu_request: default_cpu(),
            cpu_limit: None,
        }
    }
}

impl Resources {
    /// `32Mi + 0.6Ki * files`, rounded up to a whole Mi.
    pub fn memory(&self) -> String {
        let ki = 32 * 1024 + (self.expected_files.saturating_mul(6)).div_ceil(10);
        format!("{}Mi", ki.div_ceil(1024))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profiles {
    #[serde(default)]
    pub kpack: Toggle,
    #[serde(default)]
    pub tekton: TektonProfile,
    #[serde(default)]
    pub opt_in: Toggle,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toggle {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for Toggle {
    fn default() -> Self {
        Toggle { enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TektonProfile {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Kubernetes 1.29+ native sidecar (an init container with
    /// `restartPolicy: Always`); `false` for a Tekton-style sidecar that
    /// Tekton stops with SIGTERM after the last step.
    #[serde(default = "yes")]
    pub native_sidecar: bool,
    /// Repositories (`registry/repository` globs) the sidecar may accept as
    /// image subjects from the Task's results: a TaskRun names its image in
    /// parameters the webhook cannot trust, so the operator lists them.
    #[serde(default)]
    pub allow_image_repos: Vec<String>,
}

impl Default for TektonProfile {
    fn default() -> Self {
        TektonProfile {
            enabled: true,
            native_sidecar: true,
            allow_image_repos: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_pull_policy() -> String {
    "IfNotPresent".into()
}
fn default_audience() -> String {
    "provenant-signer".into()
}
fn default_token_expiration() -> i64 {
    600
}
fn default_uid() -> i64 {
    65532
}
fn default_grace() -> i64 {
    60
}
fn default_key_item() -> String {
    "cosign.key".into()
}
fn default_dockerconfig_item() -> String {
    ".dockerconfigjson".into()
}
fn default_files() -> u64 {
    100_000
}
fn default_cpu() -> String {
    "100m".into()
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> WebhookError {
    WebhookError::Config(format!("{field}: {reason}"))
}

/// A DNS-1123 subdomain (Secret names).
pub(crate) fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A Secret key (data item) name.
fn is_item_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

impl Config {
    pub fn load(path: &Path, image: Option<&str>) -> Result<Config, WebhookError> {
        use std::io::Read;
        let name = path.display().to_string();
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
            .map_err(|source| WebhookError::ReadConfig {
                path: name.clone(),
                source,
            })?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(WebhookError::Config(format!(
                "{name}: larger than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        Self::parse(&text, image).map_err(|e| match e {
            WebhookError::Config(m) => WebhookError::Config(format!("{name}: {m}")),
            e => e,
        })
    }

    /// `image` (from the command line) replaces the file's `image`.
    pub fn parse(text: &str, image: Option<&str>) -> Result<Config, WebhookError> {
        let mut c: Config = serde_yaml_ng::from_str(text)
            .map_err(|e| WebhookError::Config(e.to_string().replace('\n', " ")))?;
        if let Some(i) = image {
            c.image = i.to_string();
        }
        c.validate()?;
        if let Some(s) = c.signing.signer.as_mut() {
            for (i, b) in s.builders.iter().enumerate() {
                s.builder_ids
                    .add(b)
                    .map_err(|e| invalid(&format!("signing.signer.builders[{i}]"), e))?;
            }
        }
        Ok(c)
    }

    /// The builder id of statements signed with the key Secret.
    pub fn key_builder_id(&self) -> &str {
        self.builder_id.as_deref().unwrap_or(DEFAULT_BUILDER_ID)
    }

    fn validate(&self) -> Result<(), WebhookError> {
        let (repo, digest) = self
            .image
            .split_once('@')
            .ok_or_else(|| invalid("image", "must be pinned by digest (REPO@sha256:HEX)"))?;
        if repo.is_empty() || crate::provenance::parse_sha256_digest(digest).is_none() {
            return Err(invalid(
                "image",
                "must be pinned by digest (REPO@sha256:HEX)",
            ));
        }
        if !matches!(
            self.image_pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err(invalid(
                "imagePullPolicy",
                "must be Always, IfNotPresent or Never",
            ));
        }
        if let Some(id) = &self.builder_id {
            crate::sign::service::check_builder_uri(id).map_err(|e| invalid("builderId", e))?;
        }
        if self.run_as_user <= 0 {
            return Err(invalid(
                "runAsUser",
                "must be a non-root uid (restricted Pod Security)",
            ));
        }
        if !(1..=3600).contains(&self.min_termination_grace_period_seconds) {
            return Err(invalid(
                "minTerminationGracePeriodSeconds",
                "must be 1..3600",
            ));
        }
        match (&self.signing.key, &self.signing.signer) {
            (Some(k), None) => {
                if !is_object_name(&k.secret_name) {
                    return Err(invalid("signing.key.secretName", "not a Secret name"));
                }
                if !is_item_name(&k.key_item) {
                    return Err(invalid("signing.key.keyItem", "not a Secret key name"));
                }
                if let Some(p) = &k.password_item {
                    if !is_item_name(p) {
                        return Err(invalid("signing.key.passwordItem", "not a Secret key name"));
                    }
                }
            }
            (None, Some(s)) => {
                if !s.url.starts_with("https://")
                    || s.url.len() <= "https://".len()
                    || s.url
                        .contains(|c: char| c.is_whitespace() || c.is_control())
                {
                    return Err(invalid(
                        "signing.signer.url",
                        "must be an https:// URL (the sidecar sends its token there)",
                    ));
                }
                if self.builder_id.is_some() {
                    return Err(invalid(
                        "builderId",
                        "the signer fixes builder ids: list its --builder rules in signing.signer.builders instead",
                    ));
                }
                if !s.ca_file.is_absolute() {
                    return Err(invalid("signing.signer.caFile", "must be an absolute path"));
                }
                if s.audience.is_empty()
                    || s.audience.len() > 253
                    || s.audience
                        .contains(|c: char| c.is_whitespace() || c.is_control())
                {
                    return Err(invalid(
                        "signing.signer.audience",
                        "must be the signer's --oidc-audience",
                    ));
                }
                // The API server refuses less than 10 minutes; more than a
                // day is a token worth stealing.
                if !(600..=86400).contains(&s.token_expiration_seconds) {
                    return Err(invalid(
                        "signing.signer.tokenExpirationSeconds",
                        "must be 600..86400",
                    ));
                }
                if s.builders.is_empty() {
                    return Err(invalid(
                        "signing.signer.builders",
                        "give the signer's --builder rules (NAMESPACE[/SERVICEACCOUNT]=URI or *=URI)",
                    ));
                }
            }
            _ => {
                return Err(invalid(
                    "signing",
                    "give exactly one of key (a Secret) or signer (a URL)",
                ))
            }
        }
        if let Some(n) = &self.publish.credentials_secret_name {
            if !is_object_name(n) {
                return Err(invalid(
                    "publish.credentialsSecretName",
                    "not a Secret name",
                ));
            }
        }
        if !is_item_name(&self.publish.credentials_item) {
            return Err(invalid("publish.credentialsItem", "not a Secret key name"));
        }
        for r in &self.publish.plain_http {
            if r.is_empty() || r.contains(['/', ' ', ',']) {
                return Err(invalid(
                    "publish.plainHttp",
                    format!("'{r}' is not HOST[:PORT]"),
                ));
            }
        }
        for (i, r) in self.profiles.tekton.allow_image_repos.iter().enumerate() {
            if r.is_empty() || r.contains([',', ' ']) {
                return Err(invalid(
                    &format!("profiles.tekton.allowImageRepos[{i}]"),
                    "must be a registry/repository glob without ',' or spaces",
                ));
            }
        }
        if self.resources.expected_files > 100_000_000 {
            return Err(invalid("resources.expectedFiles", "at most 100000000"));
        }
        for (f, v) in [
            ("resources.cpuRequest", Some(&self.resources.cpu_request)),
            ("resources.cpuLimit", self.resources.cpu_limit.as_ref()),
        ] {
            if let Some(v) = v {
                if !is_quantity(v) {
                    return Err(invalid(f, format!("'{v}' is not a CPU quantity")));
                }
            }
        }
        Ok(())
    }
}

/// `100m`, `1`, `0.5`: what the API server accepts for CPU.
fn is_quantity(s: &str) -> bool {
    let n = s.strip_suffix('m').unwrap_or(s);
    !n.is_empty()
        && n.len() <= 20
        && n.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && n.bytes().filter(|b| *b == b'.').count() <= 1
        && n.bytes().any(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "image: r.example/provenant@sha256:0000000000000000000000000000000000000000000000000000000000000000\nsigning:\n  key:\n    secretName: provenant-signing-key\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MIN, None).unwrap();
        assert_eq!(c.run_as_user, 65532);
        assert!(c.profiles.kpack.enabled && c.profiles.tekton.native_sidecar);
        assert_eq!(c.resources.memory(), "91Mi");
        assert_eq!(c.failure_policy, FailurePolicy::Fail);
    }

    #[test]
    fn unknown_fields_and_tags_are_refused() {
        let e = Config::parse(&format!("{MIN}publsh: {{enabled: true}}\n"), None).unwrap_err();
        assert!(e.to_string().contains("unknown field `publsh`"), "{e}");
        let e = Config::parse(
            &MIN.replace(
                "@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                ":latest",
            ),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("image"), "{e}");
        let e = Config::parse(
            &format!(
                "{MIN}  signer: {{url: https://s, caFile: /ca.crt, builders: ['*=https://b']}}\n"
            ),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
    }

    const SIGNER: &str = "image: r.example/provenant@sha256:0000000000000000000000000000000000000000000000000000000000000000\nsigning:\n  signer:\n    url: https://provenant-signer.provenant-system.svc:8788\n    caFile: /var/run/provenant/signer-ca/ca.crt\n    builders: ['*=https://ci.example/any', 'team-a=https://ci.example/a', 'team-a/release=https://ci.example/a-release']\n";

    #[test]
    fn signer_builder_ids_resolve_as_the_signer_does() {
        let c = Config::parse(SIGNER, None).unwrap();
        let s = c.signing.signer.as_ref().unwrap();
        assert_eq!(s.audience, "provenant-signer");
        assert_eq!(s.token_expiration_seconds, 600);
        let id = |ns, sa| s.builder_ids.for_service_account(ns, sa);
        assert_eq!(
            id("team-a", "release"),
            Some("https://ci.example/a-release")
        );
        assert_eq!(id("team-a", "default"), Some("https://ci.example/a"));
        assert_eq!(id("team-b", "default"), Some("https://ci.example/any"));
    }

    #[test]
    fn signer_settings_are_checked() {
        for (change, needle) in [
            (
                ("url: https://", "url: http://"),
                "signing.signer.url: must be an https:// URL",
            ),
            (
                ("caFile: /var", "caFile: var"),
                "signing.signer.caFile: must be an absolute path",
            ),
            (
                (
                    "    builders: ['*=https://ci.example/any', ",
                    "    builders: ['team a=https://x', ",
                ),
                "signing.signer.builders[0]: 'team a=https://x'",
            ),
            (
                (
                    "    builders: ['*=https://ci.example/any', ",
                    "    builders: ['*=not a uri', ",
                ),
                "signing.signer.builders[0]: builder id 'not a uri' is not a URI",
            ),
            (
                (
                    "    caFile:",
                    "    tokenExpirationSeconds: 599\n    caFile:",
                ),
                "tokenExpirationSeconds: must be 600..86400",
            ),
            (
                ("    caFile:", "    tokenSecretName: t\n    caFile:"),
                "unknown field `tokenSecretName`",
            ),
            (
                ("signing:", "builderId: https://ci.example/x\nsigning:"),
                "builderId: the signer fixes builder ids",
            ),
        ] {
            let text = SIGNER.replacen(change.0, change.1, 1);
            assert_ne!(text, SIGNER, "{needle}");
            let e = Config::parse(&text, None).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let e = Config::parse(
            &SIGNER.replace(
                "    builders: ['*=https://ci.example/any', 'team-a=https://ci.example/a', 'team-a/release=https://ci.example/a-release']\n",
                "    builders: []\n",
            ),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("signing.signer.builders: give the signer's --builder rules"),
            "{e}"
        );
    }

    #[test]
    fn sizing_formula() {
        let r = Resources {
            expected_files: 0,
            ..Default::default()
        };
        assert_eq!(r.memory(), "32Mi");
        let r = Resources {
            expected_files: 10_000,
            ..Default::default()
        };
        assert_eq!(r.memory(), "38Mi");
    }
}
