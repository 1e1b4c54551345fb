//! `kube:CONTAINER`: watch this pod's status through the API server until the
//! named container (a main container or an init container, as kpack's build
//! steps are) is terminated, and record its exit code and finish time.
//!
//! In-cluster configuration, as client-go's `rest.InClusterConfig`: the API
//! server from `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, the
//! bearer token and CA from the service-account mount (the token is re-read
//! for every request because projected tokens rotate). The pod is
//! `POD_NAMESPACE`/`POD_NAME` from the downward API, defaulting to the
//! service account's namespace and the hostname (which Kubernetes sets to
//! the pod name). `PROVENANT_SERVICEACCOUNT_DIR` moves the mount in test builds only
//! (`crate::hooks`).
//!
//! RBAC needed: `get` and `watch` on `pods` in the pod's namespace
//! (manifests/examples/pod-kube-api.yaml has the Role).
//!
//! Protocol: GET the pod; if the container is not yet terminated, watch
//! `?fieldSelector=metadata.name=NAME&watch=true&resourceVersion=RV` and read
//! the newline-delimited watch events; on `410 Gone` or a closed stream,
//! GET again and re-watch. Transient failures back off (1 s doubling to
//! 30 s); 401/403/404 are permanent and reported.
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use super::{Completed, CompletionError, Report};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Clone)]
pub struct KubeConfig {
    pub api: String,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    pub namespace: String,
    pub pod: String,
}

impl KubeConfig {
    pub fn in_cluster() -> Result<KubeConfig, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST")
            .map_err(|_| "not in a cluster: KUBERNETES_SERVICE_HOST is not set".to_string())?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        // A test hook (crate::hooks): a release build reads the real mount.
        let dir = crate::hooks::var("PROVENANT_SERVICEACCOUNT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SA_DIR));
        let token_file = dir.join("token");
        let ca_file = dir.join("ca.crt");
        if !token_file.is_file() {
            return Err(format!(
                "no service-account token at {} (automountServiceAccountToken disabled?)",
                token_file.display()
            ));
        }
        let namespace = match std::env::var("POD_NAMESPACE") {
            Ok(ns) if !ns.is_empty() => ns,
            _ => std::fs::read_to_string(dir.join("namespace"))
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    format!(
                        "POD_NAMESPACE unset and {}: {e}",
                        dir.join("namespace").display()
                    )
                })?,
        };
        let pod = match std::env::var("POD_NAME") {
            Ok(p) if !p.is_empty() => p,
            _ => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .ok_or("POD_NAME unset and no hostname")?,
        };
        Ok(KubeConfig {
            api: format!("https://{host}:{port}"),
            token_file,
            ca_file,
            namespace,
            pod,
        })
    }

    pub fn client(self) -> Result<KubeClient, String> {
        let pem =
            std::fs::read(&self.ca_file).map_err(|e| format!("{}: {e}", self.ca_file.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not a PEM CA bundle: {e}", self.ca_file.display()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only(certs)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(KubeClient { cfg: self, http })
    }
}

pub struct KubeClient {
    cfg: KubeConfig,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Pod {
    metadata: Meta,
    spec: PodSpec,
    status: PodStatus,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Meta {
    resource_version: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec {
    containers: Vec<Named>,
    init_containers: Vec<Named>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodStatus {
    phase: String,
    container_statuses: Vec<ContainerStatus>,
    init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    state: ContainerState,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ContainerState {
    terminated: Option<Terminated>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Terminated {
    exit_code: i32,
    reason: Option<String>,
    finished_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Status {
    code: u16,
    message: String,
}

enum Step {
    Done(Completed),
    Fatal(String),
    Retry(String),
    /// The watch ended normally (server timeout): re-list at once.
    Again,
}

impl KubeClient {
    fn pod_url(&self) -> String {
        format!(
            "{}/api/v1/namespaces/{}/pods/{}",
            self.cfg.api, self.cfg.namespace, self.cfg.pod
        )
    }

    fn token(&self) -> Result<String, String> {
        std::fs::read_to_string(&self.cfg.token_file)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("{}: {e}", self.cfg.token_file.display()))
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, Step> {
        let token = self.token().map_err(Step::Retry)?;
        let resp = self
            .http
            .get(url)
            .bearer_auth(token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| Step::Retry(format!("GET {url}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<Status>(&body)
            .map(|s| s.message)
            .unwrap_or_else(|_| body.chars().take(200).collect());
        let what = format!("GET {url}: HTTP {}: {msg}", status.as_u16());
        Err(match status.as_u16() {
            401 => Step::Fatal(format!("{what} (the service-account token was rejected)")),
            403 => Step::Fatal(format!(
                "{what} (the service account needs get and watch on pods)"
            )),
            404 => Step::Fatal(format!(
                "{what} (no such pod; check POD_NAME/POD_NAMESPACE)"
            )),
            _ => Step::Retry(what),
        })
    }

    /// One GET-then-watch round.
    async fn round(&self, container: &str) -> Step {
        let pod: Pod = match self.get(&self.pod_url()).await {
            Ok(r) => match r.json().await {
                Ok(p) => p,
                Err(e) => return Step::Retry(format!("GET {}: not a Pod: {e}", self.pod_url())),
            },
            Err(s) => return s,
        };
        let names: Vec<&str> = pod
            .spec
            .containers
            .iter()
            .chain(&pod.spec.init_containers)
            .map(|c| c.name.as_str())
            .collect();
        if !names.is_empty() && !names.contains(&container) {
            return Step::Fatal(format!(
                "pod {}/{} has no container {container:?} (it has {})",
                self.cfg.namespace,
                self.cfg.pod,
                names.join(", ")
            ));
        }
        if let Some(done) = terminated(&pod, container) {
            return Step::Done(done);
        }
        let url = format!(
            "{}/api/v1/namespaces/{}/pods?fieldSelector=metadata.name%3D{}&watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds=300",
            self.cfg.api, self.cfg.namespace, self.cfg.pod, pod.metadata.resource_version
        );
        let mut resp = match self.get(&url).await {
            Ok(r) => r,
            Err(s) => return s,
        };
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => return Step::Again,
                Err(e) => return Step::Retry(format!("watch stream: {e}")),
            };
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let ev: WatchEvent = match serde_json::from_slice(&line) {
                    Ok(ev) => ev,
                    Err(e) => return Step::Retry(format!("watch stream: not a watch event: {e}")),
                };
                match ev.kind.as_str() {
                    "ADDED" | "MODIFIED" => {
                        let pod: Pod = match serde_json::from_value(ev.object) {
                            Ok(p) => p,
                            Err(e) => return Step::Retry(format!("watch event: not a Pod: {e}")),
                        };
                        if let Some(done) = terminated(&pod, container) {
                            return Step::Done(done);
                        }
                        if pod.status.phase == "Succeeded" || pod.status.phase == "Failed" {
                            return Step::Fatal(format!(
                                "pod is {} but container {container:?} has no terminated state",
                                pod.status.phase
                            ));
                        }
                    }
                    "DELETED" => {
                        let pod: Pod = serde_json::from_value(ev.object).unwrap_or_default();
                        return match terminated(&pod, container) {
                            Some(done) => Step::Done(done),
                            None => Step::Fatal(
                                "the pod was deleted before the container terminated".into(),
                            ),
                        };
                    }
                    "BOOKMARK" => {}
                    "ERROR" => {
                        let st: Status = serde_json::from_value(ev.object).unwrap_or_default();
                        if st.code == 410 {
                            // Our resourceVersion is too old: normal, re-list at once.
                            tracing::info!(message = %st.message, "kube completion: watch expired (410); re-listing");
                            return Step::Again;
                        }
                        return Step::Retry(format!("watch error {}: {}", st.code, st.message));
                    }
                    other => tracing::debug!(kind = other, "ignoring watch event"),
                }
            }
        }
    }
}

fn terminated(pod: &Pod, container: &str) -> Option<Completed> {
    let cs = pod
        .status
        .container_statuses
        .iter()
        .chain(&pod.status.init_container_statuses)
        .find(|c| c.name == container)?;
    let t = cs.state.terminated.as_ref()?;
    let at = t
        .finished_at
        .as_deref()
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    Some(Completed {
        by: "kube",
        exit: crate::provenance::ExitStatus::observed(t.exit_code, "kube"),
        at,
        detail: format!(
            "container {container} terminated ({})",
            t.reason.as_deref().unwrap_or("no reason given")
        ),
    })
}

pub(super) async fn wait(client: KubeClient, container: String) -> Report {
    let mut backoff = Duration::from_secs(1);
    loop {
        match client.round(&container).await {
            Step::Done(done) => return Ok(done),
            Step::Fatal(reason) => return Err(CompletionError::Kube { container, reason }),
            Step::Again => backoff = Duration::from_secs(1),
            Step::Retry(reason) => {
                tracing::warn!(container = %container, %reason, retry_in_ms = backoff.as_millis() as u64, "kube completion: retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
