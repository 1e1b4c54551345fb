//! `provenant webhook`: a Kubernetes mutating admission webhook that puts
//! `provenant snapshot` (init container) and `provenant record` (sidecar)
//! into build pods that nobody can edit by hand: kpack's, Tekton's, and
//! pods that opt in with an annotation.
//!
//! The flow for one AdmissionReview (`admission.k8s.io/v1`):
//! [`Webhook::review`] parses it, keeps to pods being created, picks a
//! profile ([`profiles`]), checks the pod does not already carry (or
//! imitate) provenant's containers, and returns a JSONPatch made of `add`
//! operations only ([`inject`]): fields this build of k8s-openapi does not
//! know are never rewritten, because the pod is never re-serialized.
//! [`server`] serves it over TLS with the certificate reloaded when its
//! files change.
pub mod config;
pub mod inject;
pub mod profiles;
pub mod server;
pub mod signer_ca;

use k8s_openapi::api::core::v1::Pod;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube_core::DynamicObject;

pub use config::{Config, FailurePolicy};

/// Largest request body read. The API server caps a request at 3 MiB and
/// etcd an object at 1.5 MiB; an AdmissionReview of a pod being created is
/// the pod plus a little.
pub const MAX_BODY: usize = 4 << 20;

/// Annotation set on every pod the webhook instrumented (value: profile).
pub const INJECTED_ANNOTATION: &str = "provenant.dev/injected";
/// Annotation (or label) by which any pod opts in.
pub const OPT_IN: &str = "provenant.dev/inject";
/// Annotation holding the signer's CA certificates (PEM), which the
/// sidecar gets as `--signer-ca` through a projected downward-API file.
pub const SIGNER_CA_ANNOTATION: &str = "provenant.dev/signer-ca";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot read webhook configuration {path}: {source}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

crate::exit_class!(WebhookError => crate::error::exit::CANNOT_CHECK);

/// Why a pod a profile matched cannot be instrumented: an unexpected
/// layout. Answered per the configured failure policy.
#[derive(Debug, thiserror::Error)]
#[error("{profile} profile: {reason}")]
pub struct Unsupported {
    pub profile: &'static str,
    pub reason: String,
}

impl Unsupported {
    pub fn new(profile: &'static str, reason: impl Into<String>) -> Self {
        Unsupported {
            profile,
            reason: reason.into(),
        }
    }
}

/// The HTTP answer to one POST /mutate.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// For the log line: `patched:kpack`, `unchanged`, `denied`, `invalid`...
    pub decision: String,
}

pub struct Webhook {
    pub config: Config,
    /// With a signer: its CA, read from `signing.signer.caFile`.
    signer_ca: Option<signer_ca::SignerCa>,
}

impl Webhook {
    /// Reads what the configuration names (the signer's CA): a file that
    /// is missing or not certificates stops the webhook at start.
    pub fn new(config: Config) -> Result<Self, WebhookError> {
        let signer_ca = match &config.signing.signer {
            Some(s) => Some(signer_ca::SignerCa::load(&s.ca_file)?),
            None => None,
        };
        Ok(Webhook { config, signer_ca })
    }

    /// One AdmissionReview in, one out. Never panics on any input: the
    /// body is untrusted until the TLS client is known to be the API
    /// server, which this webhook does not check (any pod in the cluster
    /// can reach the Service).
    pub fn review(&self, body: &[u8]) -> Answer {
        // Fast path: a review of a pod, read straight into the Pod type.
        // Anything else (another kind, a malformed pod, another version,
        // not JSON) takes the generic path, which says why.
        if let Ok(review) = serde_json::from_slice::<AdmissionReview<Pod>>(body) {
            if is_v1(&review.types) {
                if let Ok(req) = TryInto::<AdmissionRequest<Pod>>::try_into(review) {
                    if let Some(pod) = req.object.as_ref().filter(|_| is_pod_create(&req)) {
                        let allow = AdmissionResponse::from(&req);
                        let ns = req.namespace.as_deref();
                        let name = pod_name(pod, ns);
                        return answer(self.decide_pod(allow, pod, ns, &name));
                    }
                }
            }
        }
        let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return invalid(format!(
                    "not an AdmissionReview: {}",
                    one_line(&e.to_string())
                ))
            }
        };
        if !is_v1(&review.types) {
            return invalid(format!(
                "unsupported {} '{}': this webhook speaks {} only",
                if review.types.kind == kube_core::admission::META_KIND {
                    "AdmissionReview apiVersion"
                } else {
                    "kind"
                },
                clip(if review.types.kind == kube_core::admission::META_KIND {
                    &review.types.api_version
                } else {
                    &review.types.kind
                }),
                kube_core::admission::META_API_VERSION_V1
            ));
        }
        let req: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(r) => r,
            Err(_) => return invalid("AdmissionReview without a request".into()),
        };
        answer(self.decide(&req))
    }

    fn decide(&self, req: &AdmissionRequest<DynamicObject>) -> (AdmissionResponse, String) {
        let allow = AdmissionResponse::from(req);
        if !is_pod_request(req) {
            // The shipped configuration sends pods only; anything else is
            // let through untouched: this webhook mutates nothing but pods.
            return (allow, "unchanged:not-a-pod".into());
        }
        if !matches!(req.operation, Operation::Create) {
            return (allow, "unchanged:not-create".into());
        }
        let Some(object) = &req.object else {
            return (allow, "unchanged:no-object".into());
        };
        // The fast path could not read it as a Pod: say why.
        let raw = match serde_json::to_value(object) {
            Ok(v) => v,
            Err(e) => return self.refuse(allow, "any", &format!("pod not readable: {e}")),
        };
        let pod: Pod = match serde_json::from_value(raw) {
            Ok(p) => p,
            Err(e) => {
                return self.refuse(
                    allow,
                    "any",
                    &format!("object is not a v1 Pod: {}", one_line(&e.to_string())),
                )
            }
        };
        let ns = req.namespace.as_deref();
        let name = pod_name(&pod, ns);
        self.decide_pod(allow, &pod, ns, &name)
    }

    /// The plan for `pod`, with what the running webhook adds to it.
    fn plan(
        &self,
        profile: profiles::Profile,
        pod: &Pod,
        ns: Option<&str>,
    ) -> Result<inject::Plan, Unsupported> {
        let mut plan = profiles::plan(profile, pod, ns, &self.config)?;
        plan.signer_ca = self.signer_ca.as_ref().map(|c| c.current());
        Ok(plan)
    }

    fn decide_pod(
        &self,
        allow: AdmissionResponse,
        pod: &Pod,
        ns: Option<&str>,
        name: &str,
    ) -> (AdmissionResponse, String) {
        let Some(profile) = profiles::select(pod, &self.config) else {
            return (allow, "unchanged:no-profile".into());
        };
        match inject::existing(pod, &self.config) {
            inject::Existing::None => {}
            inject::Existing::Ours => {
                // Reinvocation, or a pod created from an already mutated
                // spec: the same injection again must give the same pod.
                match self
                    .plan(profile, &inject::strip(pod), ns)
                    .map(|plan| inject::matches(pod, &plan, &self.config))
                {
                    Ok(Ok(())) => {
                        tracing::info!(pod = %name, profile = profile.name(), "already instrumented; unchanged");
                        return (allow, "unchanged:already-injected".into());
                    }
                    Ok(Err(why)) | Err(Unsupported { reason: why, .. }) => {
                        tracing::warn!(pod = %name, "denied: provenant containers not as this webhook makes them: {why}");
                        return (
                            allow.deny(format!("provenant: the pod carries provenant containers or volumes this webhook did not make ({why})")),
                            "denied:tampered".into(),
                        );
                    }
                }
            }
            inject::Existing::Forbidden(why) => {
                tracing::warn!(pod = %name, "denied: {why}");
                return (
                    allow.deny(format!("provenant: {why}")),
                    "denied:forbidden".into(),
                );
            }
        }
        let plan = match self.plan(profile, pod, ns) {
            Ok(p) => p,
            Err(u) => return self.refuse(allow, profile.name(), &u.reason),
        };
        let patch = inject::patch(pod, &plan, &self.config);
        let ops = patch.0.len();
        match allow.clone().with_patch(patch) {
            Ok(r) => {
                tracing::info!(pod = %name, profile = profile.name(), ops, "instrumented");
                (r, format!("patched:{}", profile.name()))
            }
            Err(e) => self.refuse(allow, profile.name(), &e.to_string()),
        }
    }

    /// A matched pod that cannot be instrumented: the failure policy says
    /// whether it runs anyway.
    fn refuse(
        &self,
        allow: AdmissionResponse,
        profile: &str,
        why: &str,
    ) -> (AdmissionResponse, String) {
        let msg = format!("provenant: {profile} profile: {why}");
        match self.config.failure_policy {
            FailurePolicy::Fail => {
                tracing::warn!("denied (failurePolicy Fail): {msg}");
                (allow.deny(&msg), "denied:unsupported".into())
            }
            FailurePolicy::Ignore => {
                tracing::warn!("admitted without provenance (failurePolicy Ignore): {msg}");
                let mut r = allow;
                r.warnings = Some(vec![format!("{msg}; the pod runs without provenance")]);
                (r, "unchanged:unsupported".into())
            }
        }
    }
}

/// The response as JSON, with `patch` base64-encoded as the API requires
/// for a Go `[]byte`: kube-core 5 serializes the `Vec<u8>` as an array of
/// numbers (kube-rs issue #1781), which is not the documented wire format.
fn review_json(mut response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine;
    // Taken out before serializing: as an array of numbers it would cost a
    // JSON value per byte.
    let patch = response.patch.take();
    let mut v = serde_json::to_value(response.into_review())?;
    if let (Some(p), Some(r)) = (patch, v.get_mut("response")) {
        r["patch"] = serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(p));
    }
    serde_json::to_vec(&v)
}

fn is_v1(t: &kube_core::TypeMeta) -> bool {
    t.api_version == kube_core::admission::META_API_VERSION_V1
        && t.kind == kube_core::admission::META_KIND
}

fn is_pod_request<T: kube_core::Resource>(req: &AdmissionRequest<T>) -> bool {
    req.kind.group.is_empty()
        && req.kind.version == "v1"
        && req.kind.kind == "Pod"
        && req.resource.group.is_empty()
        && req.resource.resource == "pods"
        && req.sub_resource.is_none()
}

fn is_pod_create<T: kube_core::Resource>(req: &AdmissionRequest<T>) -> bool {
    is_pod_request(req) && matches!(req.operation, Operation::Create)
}

fn answer((response, decision): (AdmissionResponse, String)) -> Answer {
    match review_json(response) {
        Ok(body) => Answer {
            status: 200,
            body,
            decision,
        },
        Err(e) => invalid(format!("cannot serialize the response: {e}")),
    }
}

fn pod_name(pod: &Pod, ns: Option<&str>) -> String {
    let ns = ns.unwrap_or("");
    let n = pod
        .metadata
        .name
        .as_deref()
        .or(pod.metadata.generate_name.as_deref())
        .unwrap_or("");
    clip(&format!("{ns}/{n}"))
}

/// A request that is not an AdmissionReview v1 with a request: the API
/// server never sends one (it is configured for v1), so it is answered with
/// HTTP 400 and an AdmissionReview saying why; were the API server to see
/// it, it would count as a failed call and apply the webhook's
/// failurePolicy.
fn invalid(reason: String) -> Answer {
    Answer {
        status: 400,
        body: review_json(AdmissionResponse::invalid(&reason)).unwrap_or_default(),
        decision: format!("invalid: {reason}"),
    }
}

fn one_line(s: &str) -> String {
    clip(&s.replace(['\n', '\r'], " "))
}

/// Caller-controlled text in messages and logs: bounded and printable.
pub(crate) fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(200)
        .collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> Webhook {
        Webhook::new(
            Config::parse(
                "image: r.example/provenant@sha256:0000000000000000000000000000000000000000000000000000000000000000\nsigning:\n  key:\n    secretName: provenant-signing-key\n",
                None,
            )
            .unwrap(),
        )
        .unwrap()
    }

    /// Truncations and byte changes of real reviews: every one gets an
    /// answer (200 or 400), none a panic.
    #[test]
    fn mangled_reviews_never_panic() {
        let h = hook();
        for f in [
            "kpack-build-pod.json",
            "tekton-taskrun-pod.json",
            "opt-in-pod.json",
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/admission")
                .join(f);
            let body = std::fs::read(path).unwrap();
            assert_eq!(h.review(&body).status, 200);
            let step = (body.len() / 300).max(1);
            for cut in (0..body.len()).step_by(step) {
                let a = h.review(&body[..cut]);
                assert!(a.status == 200 || a.status == 400, "{f} cut at {cut}");
                for b in [b'0', b'"', b'{', b']', 0xff] {
                    let mut m = body.clone();
                    m[cut] = b;
                    let a = h.review(&m);
                    assert!(a.status == 200 || a.status == 400, "{f} byte {cut}");
                }
            }
        }
        // Nesting deeper than the JSON parser's limit.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(h.review(deep.as_bytes()).status, 400);
    }
}
