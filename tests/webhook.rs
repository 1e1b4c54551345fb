//! `provenant webhook` served over TLS, as the API server would call it.
//!
//! No API server runs here: the requests are AdmissionReview fixtures
//! (tests/fixtures/admission, written from the pod layouts of kpack v0.17.2
//! `pkg/apis/build/v1alpha2/build_pod.go` and Tekton Pipelines v1.15.0
//! `pkg/pod/pod.go`, `pkg/pod/entrypoint.go`; see generate.py there). The
//! returned JSONPatch is applied by Python's `jsonpatch`, an independent
//! RFC 6902 implementation, and the patched pod validated by
//! kubernetes-validate (strict) for Kubernetes 1.29 and 1.33
//! (tests/interop/admission.py); a second admission of the patched pod
//! must give no patch. Garbage requests must give a clear answer.
mod common;
#[path = "signer_support/mod.rs"]
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const VERSIONS: &str = "1.29.0,1.33.0";
const IMAGE: &str = "registry.example.com/provenant@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name)
}

pub struct Hook {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Hook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn self_signed(dir: &Path, prefix: &str) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.join(format!("{prefix}.crt")), ck.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{prefix}.key")),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
}

pub fn config_yaml(extra: &str) -> String {
    format!(
        "image: {IMAGE}\nbuilderId: https://ci.example.com/clusters/test\nsigning:\n  key:\n    secretName: provenant-signing-key\n    passwordItem: COSIGN_PASSWORD\n{extra}"
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start(config: &str) -> Hook {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "tls");
    std::fs::copy(dir.path().join("tls.crt"), dir.path().join("ca.pem")).unwrap();
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("webhook.log")).unwrap();
    let child = Command::new(bin())
        .current_dir(dir.path())
        .env("PROVENANT_LOG", "debug")
        .args([
            "webhook",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            "tls.crt",
            "--tls-key",
            "tls.key",
            "--config",
            "config.yaml",
            "--reload-interval-ms",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let hook = Hook {
        child,
        url: format!("https://127.0.0.1:{port}"),
        dir,
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(hook.dir.path().join("webhook.log"))
        .unwrap_or_default()
        .contains("webhook ready")
    {
        assert!(
            Instant::now() < deadline,
            "webhook did not start: {}",
            hook.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    hook
}

impl Hook {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("webhook.log")).unwrap_or_default()
    }

    /// The independent client: POST, apply with jsonpatch, validate, POST again.
    pub fn admit(&self, review: &Path) -> (Run, Value) {
        let out = self.dir.path().join("result.json");
        let _ = std::fs::remove_file(&out);
        let mut c = Command::new(interop_python());
        c.arg(interop_script("admission.py"))
            .arg(format!("{}/mutate", self.url))
            .arg(self.dir.path().join("ca.pem"))
            .arg(review)
            .arg(VERSIONS)
            .arg(&out);
        let r = run(c);
        let v = std::fs::read(&out)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        (r, v)
    }

    fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.dir.path().join("ca.pem")).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Raw POST to /mutate; (status, body as JSON or Null).
    pub fn post(&self, body: Vec<u8>) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = self
                .client()
                .post(format!("{}/mutate", self.url))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let b = r.bytes().await.unwrap();
            (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
        })
    }

    pub fn get(&self, path: &str) -> u16 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            self.client()
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    }
}

fn container<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {list}"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn args(c: &Value) -> Vec<String> {
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn mounts(c: &Value) -> Vec<(String, String, bool)> {
    c["volumeMounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap().to_string(),
                        m["mountPath"].as_str().unwrap().to_string(),
                        m["readOnly"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The isolation every patched pod must keep: key, token and state only in
/// provenant's containers; the key only in the recorder; builder volumes
/// read-only in provenant's containers; restricted securityContexts.
fn check_isolation(pod: &Value) {
    let spec = &pod["spec"];
    let all: Vec<&Value> = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["containers"].as_array().unwrap())
        .collect();
    for c in &all {
        let name = c["name"].as_str().unwrap();
        let ours = name.starts_with("provenant-") || name == "sidecar-provenant-record";
        for (vol, path, ro) in mounts(c) {
            if !ours {
                assert!(!vol.starts_with("provenant-"), "{name} mounts {vol}");
                continue;
            }
            if vol == "provenant-signing-key" || vol == "provenant-signer-token" {
                assert!(name.ends_with("provenant-record"), "{name} mounts the key");
                assert!(ro);
            } else if vol != "provenant-state" {
                assert!(ro, "{name} mounts builder volume {vol} at {path} writable");
            }
        }
        if ours {
            let sc = &c["securityContext"];
            assert_eq!(sc["runAsUser"], 65532, "{name}");
            assert_eq!(sc["runAsNonRoot"], true);
            assert_eq!(sc["allowPrivilegeEscalation"], false);
            assert_eq!(sc["readOnlyRootFilesystem"], true);
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
            assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
            assert_eq!(c["image"], IMAGE);
            assert!(c["resources"]["limits"]["memory"].is_string());
        }
    }
    let vols = spec["volumes"].as_array().unwrap();
    let state = vols
        .iter()
        .find(|v| v["name"] == "provenant-state")
        .unwrap();
    assert_eq!(state["emptyDir"], json!({}));
    assert!(pod["metadata"]["annotations"]["provenant.dev/injected"].is_string());
}

#[test]
fn kpack_build_pod_gains_snapshot_and_native_sidecar() {
    let h = start(&config_yaml(""));
    let (r, v) = h.admit(&fixture("kpack-build-pod.json"));
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, h.log());
    assert_eq!(v["response"]["allowed"], true);
    let pod = &v["patched"];
    let spec = &pod["spec"];
    // The sidecar must see the snapshot when it starts, and the snapshot
    // must see the source: prepare, snapshot, sidecar, then the lifecycle.
    assert_eq!(
        names(&spec["initContainers"]),
        [
            "prepare",
            "provenant-snapshot",
            "provenant-record",
            "analyze",
            "detect",
            "restore",
            "build",
            "export"
        ]
    );
    assert_eq!(names(&spec["containers"]), ["completion"]);
    let init = &spec["initContainers"];
    let record = container(init, "provenant-record");
    assert_eq!(record["restartPolicy"], "Always");
    assert!(container(init, "provenant-snapshot")["restartPolicy"].is_null());
    let a = args(record);
    for want in [
        "record",
        "--completion=sigterm",
        "--kpack-report=/var/report/report.toml",
        "--subjects=reported",
        "--key=/var/run/provenant/key/cosign.key",
        "--builder-id=https://ci.example.com/clusters/test",
    ] {
        assert!(a.contains(&want.to_string()), "{a:?} lacks {want}");
    }
    let env = record["env"].as_array().unwrap();
    let allow = env
        .iter()
        .find(|e| e["name"] == "PROVENANT_ALLOW_IMAGE_REPO")
        .unwrap();
    // Both exporter tags name the same repository: it is allowed once.
    assert_eq!(allow["value"], "registry.example.com/team/app");
    let pw = env.iter().find(|e| e["name"] == "COSIGN_PASSWORD").unwrap();
    assert_eq!(
        pw["valueFrom"]["secretKeyRef"],
        json!({"name": "provenant-signing-key", "key": "COSIGN_PASSWORD", "optional": false})
    );
    let s = args(container(init, "provenant-snapshot"));
    assert!(s.contains(&"--material=/workspace".to_string()), "{s:?}");
    assert!(s.contains(&"--workspace=/layers".to_string()), "{s:?}");
    let b = "b".repeat(64);
    let c = "c".repeat(64);
    assert!(s.contains(&format!(
        "--reference=builder=registry.example.com/kpack/builder@sha256:{b}"
    )));
    assert!(s.contains(&format!(
        "--reference=run-image=registry.example.com/paketo/run-jammy-base@sha256:{c}"
    )));
    assert!(s.iter().any(|x| x.starts_with("--image-id=completion=")));
    for c in [record, container(init, "provenant-snapshot")] {
        let m = mounts(c);
        for (vol, path) in [
            ("workspace-dir", "/workspace"),
            ("layers-dir", "/layers"),
            ("report-dir", "/var/report"),
        ] {
            assert!(m.contains(&(vol.into(), path.into(), true)), "{m:?}");
        }
        // The build's group (kpack: the builder image's gid), to read what
        // the build makes group-readable.
        assert_eq!(c["securityContext"]["runAsGroup"], 1000);
    }
    let key = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "provenant-signing-key")
        .unwrap();
    assert_eq!(key["secret"]["defaultMode"], 0o440);
    assert_eq!(spec["terminationGracePeriodSeconds"], 60);
    check_isolation(pod);
    // Everything else is as kpack made it.
    let orig: Value = read_json(&fixture("kpack-build-pod.json"));
    let o = &orig["request"]["object"];
    for n in ["prepare", "analyze", "detect", "restore", "build", "export"] {
        assert_eq!(
            container(init, n),
            container(&o["spec"]["initContainers"], n),
            "{n} changed"
        );
    }
    assert_eq!(spec["securityContext"], o["spec"]["securityContext"]);
    assert_eq!(v["second"]["allowed"], true);
}

#[test]
fn tekton_pod_native_and_legacy_sidecar() {
    for (native, extra) in [
        (
            true,
            "profiles:\n  tekton:\n    allowImageRepos: [\"registry.example.com/team/*\"]\n",
        ),
        (false, "profiles:\n  tekton:\n    nativeSidecar: false\n"),
    ] {
        let h = start(&config_yaml(extra));
        let (r, v) = h.admit(&fixture("tekton-taskrun-pod.json"));
        assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, h.log());
        let spec = &v["patched"]["spec"];
        let record_name = if native {
            assert_eq!(
                names(&spec["initContainers"]),
                [
                    "prepare",
                    "place-scripts",
                    "provenant-snapshot",
                    "provenant-record"
                ]
            );
            assert_eq!(
                names(&spec["containers"]),
                ["step-build", "step-write-results"]
            );
            "provenant-record"
        } else {
            assert_eq!(
                names(&spec["initContainers"]),
                ["prepare", "place-scripts", "provenant-snapshot"]
            );
            assert_eq!(
                names(&spec["containers"]),
                [
                    "step-build",
                    "step-write-results",
                    "sidecar-provenant-record"
                ]
            );
            "sidecar-provenant-record"
        };
        let all = json!(spec["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(spec["containers"].as_array().unwrap())
            .collect::<Vec<_>>());
        let record = container(&all, record_name);
        assert_eq!(record["restartPolicy"].as_str(), native.then_some("Always"));
        // Tekton stops a legacy sidecar by swapping its image for `nop`:
        // with no command of its own, nop's entrypoint runs and exits.
        assert!(record["command"].is_null());
        let a = args(record);
        assert!(a.contains(&"--tekton-results=/tekton/results".to_string()));
        assert!(a.contains(&"--completion=sigterm".to_string()));
        let m = mounts(record);
        for want in [
            ("tekton-internal-results", "/tekton/results"),
            ("tekton-internal-steps", "/tekton/steps"),
            ("ws-7hx2k", "/workspace/source"),
            ("ws-9qz4c", "/workspace/dockerconfig"),
        ] {
            assert!(m.contains(&(want.0.into(), want.1.into(), true)), "{m:?}");
        }
        let s = args(container(&all, "provenant-snapshot"));
        // The PVC workspace is input and output; the Secret one input only.
        for want in [
            "--material=/workspace/source",
            "--workspace=/workspace/source",
            "--material=/workspace/dockerconfig",
        ] {
            assert!(s.contains(&want.to_string()), "{s:?}");
        }
        assert!(!s.contains(&"--workspace=/workspace/dockerconfig".to_string()));
        let env = record["env"].as_array().unwrap();
        let allow = env
            .iter()
            .find(|e| e["name"] == "PROVENANT_ALLOW_IMAGE_REPO");
        assert_eq!(
            allow.map(|e| e["value"].clone()),
            native.then(|| json!("registry.example.com/team/*"))
        );
        // No fsGroup in a Tekton pod: the key is readable by provenant's
        // uid only because it is world-readable inside a volume nobody
        // else mounts.
        let key = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "provenant-signing-key")
            .unwrap();
        assert_eq!(key["secret"]["defaultMode"], 0o444);
        check_isolation(&v["patched"]);
    }
}

/// A CA for the signer, as cert-manager's Secret holds it (`ca.crt`), in
/// its own directory; returns the file and its certificate's DER.
fn signer_ca(dir: &Path) -> (PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["provenant-signer-ca".into()]).unwrap();
    let f = dir.join("ca.crt");
    std::fs::write(&f, ck.cert.pem()).unwrap();
    (f, ck.cert.der().to_vec())
}

const TEAM: &str = "https://ci.example.com/clusters/test/team";
const TEAM_KPACK: &str = "https://ci.example.com/clusters/test/team-kpack";

/// The remote signer as the install kit configures it: service-account
/// identity, builder ids for namespace `team` and its service account
/// `kpack-builder`.
fn signer_config(ca: &Path, extra: &str) -> String {
    format!(
        "image: {IMAGE}\nsigning:\n  signer:\n    url: https://provenant-signer.provenant-system.svc:8788\n    caFile: {}\n    builders:\n      - \"*=https://ci.example.com/clusters/test/any\"\n      - \"team={TEAM}\"\n      - \"team/kpack-builder={TEAM_KPACK}\"\n{extra}",
        ca.display()
    )
}

/// The certificates of a PEM text, as DER.
fn pem_ders(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|b| {
            let body: String = b
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        })
        .collect()
}

/// The sidecar's signer credentials in a patched pod: the projected token
/// (bound to the pod, for the signer's audience, 10 minutes) and the CA
/// from the pod's annotation, in one volume mounted into the recording
/// sidecar only; no container of the build mounts a token for the signer.
fn check_signer_token(pod: &Value, record_name: &str, ca_der: &[u8]) {
    let spec = &pod["spec"];
    let vol = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "provenant-signer-token")
        .expect("the signer token volume");
    assert_eq!(
        vol["projected"]["sources"],
        json!([
            {"serviceAccountToken": {"audience": "provenant-signer", "expirationSeconds": 600, "path": "token"}},
            {"downwardAPI": {"items": [{"path": "ca.crt", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations['provenant.dev/signer-ca']"}}]}}
        ])
    );
    let ca = pod["metadata"]["annotations"]["provenant.dev/signer-ca"]
        .as_str()
        .unwrap();
    assert_eq!(pem_ders(ca), [ca_der.to_vec()]);
    // No other volume of the pod holds a service-account token for the
    // signer.
    let for_signer: Vec<&str> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| {
            v["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["serviceAccountToken"]["audience"] == "provenant-signer")
        })
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(for_signer, ["provenant-signer-token"]);
    let mut mounted_in = Vec::new();
    for c in spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["containers"].as_array().unwrap())
    {
        let name = c["name"].as_str().unwrap();
        if mounts(c).iter().any(|m| m.0 == "provenant-signer-token") {
            mounted_in.push(name.to_string());
            assert!(mounts(c).contains(&(
                "provenant-signer-token".into(),
                "/var/run/provenant/signer".into(),
                true
            )));
        }
    }
    assert_eq!(mounted_in, [record_name], "the token only in the sidecar");
}

/// The pod fields the signer compares with the token, from the downward
/// API into the snapshot, which records them in the statement.
fn check_pod_identity_env(snapshot: &Value) {
    let env = snapshot["env"].as_array().unwrap();
    for (var, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_UID", "metadata.uid"),
        ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ("NODE_NAME", "spec.nodeName"),
    ] {
        let e = env
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("{var}"));
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], path, "{var}");
    }
}

#[test]
fn opted_in_pod_and_remote_signer() {
    let t = tempfile::tempdir().unwrap();
    let (ca_file, ca_der) = signer_ca(t.path());
    let cfg = signer_config(
        &ca_file,
        "publish:\n  enabled: true\n  credentialsSecretName: registry-push\n",
    );
    let h = start(&cfg);
    let (r, v) = h.admit(&fixture("opt-in-pod.json"));
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, h.log());
    let spec = &v["patched"]["spec"];
    assert_eq!(
        names(&spec["initContainers"]),
        ["fetch", "provenant-snapshot", "provenant-record"]
    );
    let init = &spec["initContainers"];
    let s = args(container(init, "provenant-snapshot"));
    assert!(s.contains(&"--workspace=/work/out".to_string()), "{s:?}");
    assert!(s.contains(&"--material=/work/src".to_string()), "{s:?}");
    let record = container(init, "provenant-record");
    let a = args(record);
    for want in [
        "--signer=https://provenant-signer.provenant-system.svc:8788",
        "--signer-ca=/var/run/provenant/signer/ca.crt",
        "--signer-token-file=/var/run/provenant/signer/token",
        // Namespace team, service account default: the namespace's rule.
        &format!("--builder-id={TEAM}"),
        "--publish",
        "--registry-config=/var/run/provenant/registry/config.json",
    ] {
        assert!(a.contains(&want.to_string()), "{a:?} lacks {want}");
    }
    assert_eq!(
        a.iter().filter(|x| x.starts_with("--builder-id")).count(),
        1
    );
    assert!(!a.iter().any(|x| x.starts_with("--key")));
    assert!(mounts(record).contains(&("work".into(), "/work".into(), true)));
    check_signer_token(&v["patched"], "provenant-record", &ca_der);
    check_pod_identity_env(container(init, "provenant-snapshot"));
    check_isolation(&v["patched"]);
}

/// Every profile with the signer: the builder id is the one the signer's
/// rules give the pod's namespace and service account (kpack's
/// `kpack-builder` has a rule of its own, Tekton's `pipeline` gets the
/// namespace's), and the token reaches the sidecar only, native or
/// Tekton-style.
#[test]
fn remote_signer_builder_ids_and_token_in_every_profile() {
    let t = tempfile::tempdir().unwrap();
    let (ca_file, ca_der) = signer_ca(t.path());
    for (fixture_name, extra, record_name, builder) in [
        ("kpack-build-pod.json", "", "provenant-record", TEAM_KPACK),
        (
            "tekton-taskrun-pod.json",
            "profiles:\n  tekton:\n    nativeSidecar: false\n",
            "sidecar-provenant-record",
            TEAM,
        ),
        ("tekton-taskrun-pod.json", "", "provenant-record", TEAM),
    ] {
        let h = start(&signer_config(&ca_file, extra));
        let (r, v) = h.admit(&fixture(fixture_name));
        assert_eq!(
            r.code,
            0,
            "{fixture_name}: {}\n{}\n{}",
            r.stdout,
            r.stderr,
            h.log()
        );
        let pod = &v["patched"];
        let spec = &pod["spec"];
        let all = json!(spec["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(spec["containers"].as_array().unwrap())
            .collect::<Vec<_>>());
        let a = args(container(&all, record_name));
        assert!(
            a.contains(&format!("--builder-id={builder}")),
            "{fixture_name}: {a:?}"
        );
        check_signer_token(pod, record_name, &ca_der);
        check_pod_identity_env(container(&all, "provenant-snapshot"));
        check_isolation(pod);
        assert_eq!(v["second"]["allowed"], true);
    }
}

#[test]
fn remote_signer_refusals_and_the_ca_handed_out() {
    let t = tempfile::tempdir().unwrap();
    let (ca_file, ca_der) = signer_ca(t.path());
    // A namespace the signer has no builder id for: the signer would
    // refuse every statement, so the pod is not instrumented (Fail: denied,
    // saying why).
    let cfg = signer_config(&ca_file, "").replace(
        "      - \"*=https://ci.example.com/clusters/test/any\"\n      - \"team=",
        "      - \"other=",
    );
    let h = start(&cfg);
    let (status, v) = h.post(std::fs::read(fixture("opt-in-pod.json")).unwrap());
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "no builder id for namespace team (service account default) in signing.signer.builders"
        ),
        "{msg}"
    );
    // kpack's service account has a rule of its own there.
    let (_, v) = h.post(std::fs::read(fixture("kpack-build-pod.json")).unwrap());
    assert_eq!(v["response"]["allowed"], true, "{v}");
    drop(h);

    let h = start(&signer_config(&ca_file, ""));
    // A build container with a token for the signer's audience could have
    // statements about this pod signed without the sidecar: denied. A
    // token for another audience (the API server's) is the signer's
    // refusal to make, not the webhook's.
    for (audience, allowed) in [
        ("provenant-signer", false),
        ("https://kubernetes.default.svc", true),
    ] {
        let mut pod = kpack_pod();
        pod["spec"]["volumes"].as_array_mut().unwrap().push(json!({
            "name": "my-token",
            "projected": {"sources": [{"serviceAccountToken": {"audience": audience, "path": "t"}}]}
        }));
        pod["spec"]["initContainers"][4]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "my-token", "mountPath": "/t"}));
        let (_, v) = h.post(review_of(pod));
        assert_eq!(v["response"]["allowed"], allowed, "{audience}: {v}");
        if !allowed {
            assert!(v["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("container build mounts volume my-token"));
        }
    }
    // A CA the pod's creator put into the annotation is replaced by the
    // signer's.
    let mut r = read_json(&fixture("kpack-build-pod.json"));
    r["request"]["object"]["metadata"]["annotations"]["provenant.dev/signer-ca"] =
        json!("-----BEGIN CERTIFICATE-----\nMIIB...attacker\n-----END CERTIFICATE-----\n");
    let f = t.path().join("review.json");
    std::fs::write(&f, serde_json::to_vec(&r).unwrap()).unwrap();
    let (res, v) = h.admit(&f);
    assert_eq!(res.code, 0, "{}\n{}", res.stdout, res.stderr);
    check_signer_token(&v["patched"], "provenant-record", &ca_der);
    let genuine = v["patched"].clone();
    // An instrumented pod whose CA was changed is not one this webhook made.
    let mut forged = genuine.clone();
    let other = rcgen::generate_simple_self_signed(vec!["attacker CA".into()]).unwrap();
    forged["metadata"]["annotations"]["provenant.dev/signer-ca"] = json!(other.cert.pem());
    let (_, v) = h.post(review_of(forged));
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("provenant.dev/signer-ca differs"));
    // A renewed CA reaches the next pod without a restart.
    let d2 = tempfile::tempdir().unwrap();
    let (new_file, new_der) = signer_ca(d2.path());
    std::fs::copy(&new_file, &ca_file).unwrap();
    let (res, v) = h.admit(&fixture("kpack-build-pod.json"));
    assert_eq!(res.code, 0, "{}", res.stderr);
    check_signer_token(&v["patched"], "provenant-record", &new_der);
    assert!(h.log().contains("signer CA reloaded"), "{}", h.log());
}

#[test]
fn pods_no_profile_matches_and_non_pods_are_allowed_unchanged() {
    let h = start(&config_yaml(""));
    for f in ["unmatched-pod.json", "configmap.json"] {
        let (r, v) = h.admit(&fixture(f));
        assert_eq!(r.code, 0, "{f}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(v["response"]["allowed"], true, "{f}");
        assert!(v["response"]["patch"].is_null(), "{f}");
        assert!(v["patched"].is_null());
    }
    // A profile switched off is no profile.
    let h = start(&config_yaml("profiles:\n  kpack: {enabled: false}\n"));
    let (r, v) = h.admit(&fixture("kpack-build-pod.json"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(v["response"]["patch"].is_null());
}

fn review_of(pod: Value) -> Vec<u8> {
    let mut r = read_json(&fixture("kpack-build-pod.json"));
    r["request"]["object"] = pod;
    serde_json::to_vec(&r).unwrap()
}

fn kpack_pod() -> Value {
    read_json(&fixture("kpack-build-pod.json"))["request"]["object"].clone()
}

#[test]
fn garbage_gets_a_clear_answer_never_a_crash() {
    let h = start(&config_yaml(""));
    // Not JSON, the wrong version, no request, not a review at all.
    let mut v1beta1 = read_json(&fixture("kpack-build-pod.json"));
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_request = read_json(&fixture("kpack-build-pod.json"));
    no_request.as_object_mut().unwrap().remove("request");
    for (body, needle) in [
        (b"{not json".to_vec(), "not an AdmissionReview"),
        (
            serde_json::to_vec(&v1beta1).unwrap(),
            "admission.k8s.io/v1beta1",
        ),
        (
            serde_json::to_vec(&no_request).unwrap(),
            "without a request",
        ),
        (b"[1,2,3]".to_vec(), "not an AdmissionReview"),
        (
            serde_json::to_vec(&json!({"kind": "Pod", "apiVersion": "v1"})).unwrap(),
            "kind 'Pod'",
        ),
        (vec![b'['; 100_000], "not an AdmissionReview"),
    ] {
        let (status, v) = h.post(body);
        assert_eq!(status, 400, "{needle}: {v}");
        assert_eq!(v["response"]["allowed"], false, "{v}");
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    // A body over the cap is refused without being read to the end.
    let (status, v) = h.post(vec![b' '; 5 << 20]);
    assert_eq!(status, 413);
    assert_eq!(v["response"]["allowed"], false);
    // A "pod" that is not one, under failurePolicy Fail: denied, saying why.
    let (status, v) = h.post(review_of(json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "labels": {"kpack.io/build": "b"}}, "spec": {"containers": "not a list"}})));
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], false);
    assert!(v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("not a v1 Pod"));
    assert_eq!(h.get("/healthz"), 200);
    assert_eq!(h.get("/readyz"), 200);
    assert_eq!(h.get("/mutate"), 405);
    assert_eq!(h.get("/nope"), 404);
    assert!(!h.log().contains("panicked"), "{}", h.log());
}

#[test]
fn unexpected_layouts_follow_the_failure_policy() {
    // kpack's injected-sidecar mode (steps as containers behind build-waiter).
    let mut pod = kpack_pod();
    let init = pod["spec"]["initContainers"].as_array().unwrap().clone();
    pod["spec"]["initContainers"] = json!([{"name": "pre-start", "image": "registry.example.com/kpack/build-waiter@sha256:0000000000000000000000000000000000000000000000000000000000000000", "args": ["-mode=copy", "-to=/buildWait/build-waiter"]}]);
    let mut containers = init;
    for c in containers.iter_mut() {
        c["command"] = json!(["/buildWait/build-waiter"]);
    }
    containers.extend(pod["spec"]["containers"].as_array().unwrap().clone());
    pod["spec"]["containers"] = json!(containers);
    let h = start(&config_yaml(""));
    let (status, v) = h.post(review_of(pod.clone()));
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let msg = v["response"]["status"]["message"].as_str().unwrap();
    assert!(msg.contains("injected-sidecar mode"), "{msg}");
    drop(h);
    let h = start(&config_yaml("failurePolicy: Ignore\n"));
    let (status, v) = h.post(review_of(pod));
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(v["response"]["patch"].is_null());
    assert!(v["response"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("runs without provenance"));
}

#[test]
fn builder_containers_never_get_the_key_and_imitations_are_denied() {
    let h = start(&config_yaml(""));
    // A step that mounts the signing key Secret itself.
    let mut pod = kpack_pod();
    pod["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "k", "secret": {"secretName": "provenant-signing-key"}}));
    pod["spec"]["initContainers"][4]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "k", "mountPath": "/k"}));
    let (_, v) = h.post(review_of(pod));
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("container build mounts volume k"));
    // ...or reads the key's password from it.
    let mut pod = kpack_pod();
    pod["spec"]["initContainers"][4]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "P", "valueFrom": {"secretKeyRef": {"name": "provenant-signing-key", "key": "COSIGN_PASSWORD"}}}));
    let (_, v) = h.post(review_of(pod));
    assert_eq!(v["response"]["allowed"], false, "{v}");

    // A pod that already carries "provenant" containers it made itself:
    // take a genuinely patched pod and change what the recorder signs.
    let (r, res) = h.admit(&fixture("kpack-build-pod.json"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let genuine = res["patched"].clone();
    let mut forged = genuine.clone();
    let rec = forged["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "provenant-record")
        .unwrap();
    rec["args"]
        .as_array_mut()
        .unwrap()
        .push(json!("--subjects=files"));
    let (_, v) = h.post(review_of(forged));
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("did not make"));
    // The state volume replaced by one the build can reach.
    let mut forged = genuine.clone();
    let vols = forged["spec"]["volumes"].as_array_mut().unwrap();
    let state = vols
        .iter_mut()
        .find(|v| v["name"] == "provenant-state")
        .unwrap();
    *state = json!({"name": "provenant-state", "hostPath": {"path": "/tmp/state"}});
    let (_, v) = h.post(review_of(forged));
    assert_eq!(v["response"]["allowed"], false, "{v}");
    // The genuine one is unchanged, as many times as asked.
    for _ in 0..3 {
        let (_, v) = h.post(review_of(genuine.clone()));
        assert_eq!(v["response"]["allowed"], true, "{v}");
        assert!(v["response"]["patch"].is_null());
    }
}

#[test]
fn opt_in_annotations_cannot_smuggle_flags() {
    let h = start(&config_yaml(""));
    let mut r = read_json(&fixture("opt-in-pod.json"));
    for bad in ["--key=/tmp/k", "/work/../etc", "/work/a b", "relative/path"] {
        r["request"]["object"]["metadata"]["annotations"]["provenant.dev/materials"] = json!(bad);
        let (status, v) = h.post(serde_json::to_vec(&r).unwrap());
        assert_eq!(status, 200);
        assert_eq!(v["response"]["allowed"], false, "{bad}: {v}");
    }
    r["request"]["object"]["metadata"]["annotations"]["provenant.dev/materials"] =
        json!("/etc/src");
    let (_, v) = h.post(serde_json::to_vec(&r).unwrap());
    assert!(v["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("mounts no volume at or above /etc/src"));
}

#[test]
fn certificate_is_reloaded_when_its_files_change() {
    let h = start(&config_yaml(""));
    assert_eq!(h.get("/healthz"), 200);
    // A new pair, trusted from now on: the old certificate no longer is.
    self_signed(h.dir.path(), "next");
    let d = h.dir.path();
    std::fs::copy(d.join("next.crt"), d.join("ca.pem")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = || {
        rt.block_on(async {
            h.client()
                .get(format!("{}/healthz", h.url))
                .send()
                .await
                .is_ok()
        })
    };
    assert!(
        !ok(),
        "the old certificate must not verify against the new CA"
    );
    // Key first, then certificate, as a non-atomic writer would: the
    // mismatched moment is skipped, the old pair stays in use.
    std::fs::copy(d.join("next.key"), d.join("tls.key")).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    std::fs::copy(d.join("next.crt"), d.join("tls.crt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "not reloaded: {}", h.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(h.log().contains("TLS certificate reloaded"), "{}", h.log());
}

#[test]
fn bad_configuration_stops_at_start_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    self_signed(t.path(), "tls");
    for (cfg, code, needle) in [
        (config_yaml("publsh: {}\n"), 3, "unknown field `publsh`"),
        (
            config_yaml("").replace(IMAGE, "registry.example.com/provenant:latest"),
            3,
            "image: must be pinned by digest",
        ),
        (
            config_yaml("profiles:\n  tekton:\n    allowImageRepos: [\"a,b\"]\n"),
            3,
            "allowImageRepos[0]",
        ),
    ] {
        std::fs::write(t.path().join("c.yaml"), cfg).unwrap();
        let mut c = provenant(t.path());
        c.args([
            "webhook",
            "--check",
            "--config",
            "c.yaml",
            "--tls-cert",
            "tls.crt",
            "--tls-key",
            "tls.key",
        ]);
        run(c).fails(code, needle);
    }
    // The signer's CA file is read at start: missing, or not certificates.
    let (ca_file, _) = signer_ca(t.path());
    for (ca, needle) in [
        (t.path().join("missing.crt"), "signing.signer.caFile"),
        (t.path().join("tls.key"), "no certificate in it"),
    ] {
        let cfg = signer_config(&ca, "");
        std::fs::write(t.path().join("c.yaml"), cfg).unwrap();
        let mut c = provenant(t.path());
        c.args([
            "webhook",
            "--check",
            "--config",
            "c.yaml",
            "--tls-cert",
            "tls.crt",
            "--tls-key",
            "tls.key",
        ]);
        let r = run(c).fails(3, needle);
        assert!(r.stderr.contains(&ca.display().to_string()), "{}", r.stderr);
    }
    std::fs::write(t.path().join("c.yaml"), signer_config(&ca_file, "")).unwrap();
    let mut c = provenant(t.path());
    c.args([
        "webhook",
        "--check",
        "--config",
        "c.yaml",
        "--tls-cert",
        "tls.crt",
        "--tls-key",
        "tls.key",
    ]);
    run(c).ok();
    std::fs::write(t.path().join("c.yaml"), config_yaml("")).unwrap();
    let mut c = provenant(t.path());
    c.args([
        "webhook",
        "--check",
        "--config",
        "c.yaml",
        "--tls-cert",
        "tls.key",
        "--tls-key",
        "tls.key",
    ]);
    run(c).fails(3, "tls.key: no certificate in it");
    let mut c = provenant(t.path());
    c.args([
        "webhook",
        "--check",
        "--config",
        "c.yaml",
        "--tls-cert",
        "tls.crt",
        "--tls-key",
        "tls.key",
    ]);
    run(c).ok();
}

#[test]
fn stage_gate_from_annotations() {
    let h = start(&config_yaml(
        "publish:\n  enabled: true\n  credentialsSecretName: registry-credentials\n",
    ));
    let mut pod = kpack_pod();
    let src = "registry.example.com/team/app-source@sha256:".to_string() + &"f".repeat(64);
    pod["metadata"]["annotations"]["provenant.dev/require"] = json!(format!("image:{src}"));
    pod["metadata"]["annotations"]["provenant.dev/policy"] = json!("provenant-policy");
    let (status, v) = h.post(review_of(pod.clone()));
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true, "{v}");
    // Apply with the same independent implementation as the other tests.
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("review.json");
    std::fs::write(&f, review_of(pod.clone())).unwrap();
    let (r, res) = h.admit(&f);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let init = &res["patched"]["spec"]["initContainers"];
    let snap = container(init, "provenant-snapshot");
    let a = args(snap);
    assert!(a.contains(&format!("--require=image:{src}")), "{a:?}");
    assert!(a.contains(&"--policy=/var/run/provenant/policy/policy.yaml".to_string()));
    assert!(a.contains(&"--registry-config=/var/run/provenant/registry/config.json".to_string()));
    assert!(mounts(snap).contains(&(
        "provenant-policy".into(),
        "/var/run/provenant/policy".into(),
        true
    )));
    let rec = container(init, "provenant-record");
    assert!(!mounts(rec).iter().any(|m| m.0 == "provenant-policy"));
    // A policy without inputs, or inputs without a policy: refused.
    let mut bad = pod.clone();
    bad["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("provenant.dev/require");
    let (_, v) = h.post(review_of(bad));
    assert_eq!(v["response"]["allowed"], false);
    let mut bad = pod;
    bad["metadata"]["annotations"]["provenant.dev/require"] = json!("--key=/x");
    let (_, v) = h.post(review_of(bad));
    assert_eq!(v["response"]["allowed"], false);
}

// ---------------------------------------------------------------------------
// The install kit's pieces together, for real: the signer run with the
// arguments of the kit's Deployment, the webhook with the kit's
// configuration, and the sidecar that webhook injects, signing through
// that signer with its pod's service-account token and the CA the webhook
// handed the pod. No cluster and no containers: each container runs as a
// process, with exactly these conversions (kit_* below):
// * each volume a container mounts is a directory of the test, at the
//   mount path under a root of its own (args and env are rewritten
//   accordingly): the key, cert-manager's TLS Secret, the signer's
//   projected API token and cluster CA, the webhook's copy of the signer
//   CA, the pod's `work` emptyDir, provenant's state, and the sidecar's
//   projected volume, whose `token` is a JWT of the test's issuer for this
//   pod and audience and whose `ca.crt` is the pod's annotation, as the
//   kubelet would write them;
// * the downward-API env (POD_NAME, POD_NAMESPACE, POD_UID,
//   SERVICE_ACCOUNT, NODE_NAME) gets the values the kubelet would give;
// * `--listen=0.0.0.0:8788` becomes a free loopback port, and the host of
//   the signer's Service in the sidecar's `--signer` URL becomes 127.0.0.1
//   (the test certificate carries the Certificate's dnsNames and
//   127.0.0.1; tests/install.rs checks that the Certificate covers the
//   Service name the webhook uses);
// * `--oidc-issuer` becomes a stand-in for the API server's issuer
//   endpoints over HTTPS (discovery and JWKS, only for the signer's own
//   token), with the test's cluster CA.

fn kustomize(dir: &str) -> String {
    let kubectl = std::env::var_os("PROVENANT_KUBECTL").unwrap_or_else(|| "kubectl".into());
    let mut c = Command::new(kubectl);
    c.arg("kustomize")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    let r = run(c);
    assert_eq!(r.code, 0, "kubectl kustomize {dir}: {}", r.stderr);
    r.stdout
}

fn yaml_docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| {
            let v: serde_yaml_ng::Value = serde::Deserialize::deserialize(d).unwrap();
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// A value naming a path under one of `mount_paths`, moved under `root`.
fn kit_path(value: &str, mount_paths: &[String], root: &Path) -> String {
    for m in mount_paths {
        if value == m || value.starts_with(&format!("{m}/")) {
            return format!("{}{value}", root.display());
        }
    }
    value.to_string()
}

/// `--flag=PATH` and bare paths under the container's mounts, moved.
fn kit_args(c: &Value, root: &Path) -> Vec<String> {
    let mounts: Vec<String> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    strs(&c["args"])
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some((flag, v)) if flag.starts_with("--") => {
                format!("{flag}={}", kit_path(v, &mounts, root))
            }
            _ => kit_path(&a, &mounts, root),
        })
        .collect()
}

/// The container's env as the kubelet would set it for `pod`.
fn kit_env(c: &Value, root: &Path, pod: &support::Pod) -> Vec<(String, String)> {
    let mounts: Vec<String> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            if let Some(v) = e["value"].as_str() {
                return Some((name, kit_path(v, &mounts, root)));
            }
            let field = e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?;
            let v = match field {
                "metadata.name" => pod.name.clone(),
                "metadata.namespace" => pod.namespace.clone(),
                "metadata.uid" => pod.uid.clone(),
                "spec.serviceAccountName" => pod.service_account.clone(),
                "spec.nodeName" => "node-1".into(),
                other => panic!("downward API field {other} not converted"),
            };
            Some((name, v))
        })
        .collect()
}

/// A process's output, gathered; the receiver hears once a line contains
/// `ready`.
fn gather(
    stream: impl std::io::Read + Send + 'static,
    ready: Option<&'static str>,
) -> (
    std::sync::Arc<std::sync::Mutex<String>>,
    std::sync::mpsc::Receiver<()>,
) {
    let all = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let a = all.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            if ready.is_some_and(|r| l.contains(r)) {
                let _ = tx.send(());
            }
            let mut g = a.lock().unwrap();
            g.push_str(&l);
            g.push('\n');
        }
    });
    (all, rx)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_kits_signer_signs_for_the_sidecar_its_webhook_injects() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let objs = yaml_docs(&kustomize("manifests/install"));
    let find = |kind: &str, name: &str| {
        objs.iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} not in the kit"))
    };

    // --- The signer, as its Deployment runs it.
    let dep = find("Deployment", "provenant-signer");
    let sc = &dep["spec"]["template"]["spec"]["containers"][0];
    let sroot = d.join("signer-pod");
    let key_dir = sroot.join("var/run/provenant/key");
    std::fs::create_dir_all(&key_dir).unwrap();
    let mut c = provenant(&key_dir);
    c.args(["keygen", "--unencrypted", "--output-prefix", "cosign"]);
    run(c).ok();
    std::fs::rename(key_dir.join("cosign.pub"), d.join("cosign.pub")).unwrap();
    // cert-manager's Secret: a leaf of the signer's CA for the
    // Certificate's names.
    let signer_ca = support::Ca::new("provenant-signer-ca");
    let mut names: Vec<String> = strs(&find("Certificate", "provenant-signer")["spec"]["dnsNames"]);
    names.push("127.0.0.1".into());
    let (crt, key) = signer_ca.leaf(
        "provenant-signer",
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
        false,
        false,
    );
    write(&sroot.join("var/run/provenant/tls/tls.crt"), crt.as_bytes());
    write(&sroot.join("var/run/provenant/tls/tls.key"), key.as_bytes());
    // The API server's issuer endpoints, and the signer's own token and
    // cluster CA as the projected volume holds them.
    let cluster_ca = support::Ca::new("cluster CA");
    let srv = support::issuer_server(&cluster_ca, "the-signers-own-token", None);
    let issuer = support::Issuer::new(&srv.url, "sa-key-1");
    *srv.jwks.lock().unwrap() = issuer.jwks();
    let sa_dir = sroot.join("var/run/secrets/kubernetes.io/serviceaccount");
    write(&sa_dir.join("ca.crt"), cluster_ca.pem().as_bytes());
    write(&sa_dir.join("token"), b"the-signers-own-token");
    let port = free_port();
    let args: Vec<String> = kit_args(sc, &sroot)
        .into_iter()
        .map(|a| {
            if a.starts_with("--listen=") {
                format!("--listen=127.0.0.1:{port}")
            } else if a.starts_with("--oidc-issuer=") {
                format!("--oidc-issuer={}", srv.url)
            } else {
                a
            }
        })
        .collect();
    let mut c = Command::new(bin());
    c.current_dir(d)
        .args(&args)
        .env_clear()
        .envs(kit_env(sc, &sroot, &support::Pod::new("", "", "", "")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut signer = Killed(c.spawn().unwrap());
    let (audit, _) = gather(signer.0.stdout.take().unwrap(), None);
    let (signer_log, ready) = gather(signer.0.stderr.take().unwrap(), Some("signer ready"));
    assert!(
        ready.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the kit's signer did not start: {args:?}\n{}",
        signer_log.lock().unwrap()
    );
    let audit_lines = || -> Vec<Value> {
        audit
            .lock()
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    // --- The webhook, with the kit's configuration and its copy of the
    // signer's CA.
    let hook_dep = find("Deployment", "provenant-webhook");
    let hc = &hook_dep["spec"]["template"]["spec"]["containers"][0];
    let cm = objs
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("provenant-webhook-config")
        })
        .unwrap();
    let config = cm["data"]["config.yaml"].as_str().unwrap();
    let wroot = d.join("webhook-pod");
    let hook_mounts: Vec<String> = hc["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    let ca_file = yaml_docs(config)[0]["signing"]["signer"]["caFile"]
        .as_str()
        .unwrap()
        .to_string();
    let ca_here = kit_path(&ca_file, &hook_mounts, &wroot);
    assert_ne!(ca_here, ca_file, "caFile is in a volume of the webhook");
    write(Path::new(&ca_here), signer_ca.pem().as_bytes());
    let h = start(&format!(
        "image: {IMAGE}\n{}",
        config.replace(&ca_file, &ca_here)
    ));
    let (r, v) = h.admit(&fixture("opt-in-pod.json"));
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, h.log());
    let patched = &v["patched"];
    let init = &patched["spec"]["initContainers"];
    let pod = support::Pod::new(
        patched["metadata"]["namespace"].as_str().unwrap(),
        patched["metadata"]["name"].as_str().unwrap(),
        "7d0c7a9e-5b1f-4c2e-9a33-0000000000b1",
        patched["spec"]["serviceAccountName"].as_str().unwrap(),
    );

    // --- The pod: the source the fetch step cloned, the snapshot.
    let proot = d.join("build-pod");
    write(
        &proot.join("work/src/main.c"),
        b"int main(void) { return 0; }\n",
    );
    std::fs::create_dir_all(proot.join("work/out")).unwrap();
    let snap = container(init, "provenant-snapshot");
    let mut c = Command::new(bin());
    c.current_dir(d)
        .args(kit_args(snap, &proot))
        .env_clear()
        .envs(kit_env(snap, &proot, &pod));
    run(c).ok();

    // The sidecar's projected volume, as the kubelet writes it: a token
    // for its audience and lifetime, bound to this pod; the CA from the
    // pod's annotation.
    let record = container(init, "provenant-record");
    let vol = patched["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "provenant-signer-token")
        .unwrap();
    let tok = &vol["projected"]["sources"][0]["serviceAccountToken"];
    let token_dir = mounts(record)
        .into_iter()
        .find(|m| m.0 == "provenant-signer-token")
        .unwrap()
        .1;
    let tdir = PathBuf::from(format!("{}{token_dir}", proot.display()));
    write(
        &tdir.join(tok["path"].as_str().unwrap()),
        issuer
            .token(&support::kube_claims(
                &srv.url,
                tok["audience"].as_str().unwrap(),
                &pod,
                tok["expirationSeconds"].as_i64().unwrap(),
            ))
            .as_bytes(),
    );
    write(
        &tdir.join("ca.crt"),
        patched["metadata"]["annotations"]["provenant.dev/signer-ca"]
            .as_str()
            .unwrap()
            .as_bytes(),
    );
    let service = "https://provenant-signer.provenant-system.svc:8788";
    let record_args: Vec<String> = kit_args(record, &proot)
        .into_iter()
        .map(|a| {
            a.replace(
                &format!("--signer={service}"),
                &format!("--signer=https://127.0.0.1:{port}"),
            )
        })
        .collect();
    assert!(
        record_args.contains(&format!("--signer=https://127.0.0.1:{port}")),
        "{record_args:?}"
    );
    let mut c = Command::new(bin());
    c.current_dir(d)
        .args(&record_args)
        .env_clear()
        .envs(kit_env(record, &proot, &pod))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut sidecar = Killed(c.spawn().unwrap());
    let (out, _) = gather(sidecar.0.stdout.take().unwrap(), None);
    let (log, ready) = gather(sidecar.0.stderr.take().unwrap(), Some("ready: watching"));
    assert!(
        ready.recv_timeout(Duration::from_secs(30)).is_ok(),
        "sidecar not ready:\n{}\nsigner:\n{}",
        log.lock().unwrap(),
        signer_log.lock().unwrap()
    );
    // Its start-up check reached the kit's signer as this pod, and agreed
    // on the builder id.
    let a = audit_lines();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["event"], "identity", "{a:?}");
    // The build, then the kubelet's SIGTERM once it has exited.
    write(&proot.join("work/out/app.bin"), b"\x7fELF built by make");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sidecar.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = sidecar.0.wait().unwrap();
    assert!(
        status.success(),
        "{}\nsigner:\n{}",
        log.lock().unwrap(),
        signer_log.lock().unwrap()
    );

    // The attestation on the sidecar's log verifies with the signer's key.
    let line = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let o = out.lock().unwrap().clone();
            if o.lines().count() >= 1 || Instant::now() > deadline {
                break o;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    write(&d.join("sidecar.log"), line.as_bytes());
    let mut c = provenant(d);
    c.args(["verify", "--key", "cosign.pub", "sidecar.log"]);
    run(c).ok();
    let logged: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    write(
        &d.join("envelope.json"),
        &serde_json::to_vec(&logged["envelope"]).unwrap(),
    );
    let st = statement_of(&d.join("envelope.json"));
    let builder_id = strs(&yaml_docs(config)[0]["signing"]["signer"]["builders"])[0]
        .strip_prefix("*=")
        .unwrap()
        .to_string();
    assert_eq!(st["predicate"]["runDetails"]["builder"]["id"], builder_id);
    let p = &st["predicate"]["buildDefinition"]["internalParameters"]["pod"];
    assert_eq!(
        (&p["name"], &p["namespace"], &p["uid"]),
        (&json!(pod.name), &json!(pod.namespace), &json!(pod.uid)),
        "{st}"
    );
    let subjects: Vec<&str> = st["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // /work/out/app.bin in the pod.
    assert_eq!(
        subjects,
        [format!("{}/work/out/app.bin", proot.display())],
        "{st}"
    );
    // The signer's audit line names the pod, from its token.
    let a = audit_lines();
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[1]["event"], "signed");
    assert_eq!(a[1]["caller"]["kind"], "serviceAccount");
    assert_eq!(a[1]["caller"]["namespace"], json!(pod.namespace));
    assert_eq!(a[1]["caller"]["pod"], json!(pod.name));
    assert_eq!(a[1]["caller"]["podUid"], json!(pod.uid));
    assert_eq!(a[1]["builderId"], builder_id);
    drop(signer);
}

// ---------------------------------------------------------------------------
// The kpack-shaped build pod, instrumented by the webhook, played for real.
//
// The fixture pod (kpack v0.17.2 layout) gets local stand-in images by digest
// (scripts/build-kpack-standins.sh: busybox FROM scratch scripts that fetch
// the source into /workspace, write layers, push a real image to a
// `docker-registry` on loopback and write report.toml with its digest) and
// tags in that registry; the webhook patches it; Python's jsonpatch applies
// the patch; the result runs under `podman kube play`. The sidecar's
// attestation must name the pushed image's digest (read back from the
// registry by skopeo) and the source files.
//
// What podman 4.3 cannot run as Kubernetes would, and is therefore
// converted in the pod that is played (podmanize_kpack below), exactly:
// * the native sidecar (`provenant-record`, an init container with
//   `restartPolicy: Always`) becomes the first regular container, without
//   `restartPolicy`: podman runs init containers one after the other to
//   completion and has no sidecar init containers;
// * the init containers after it (analyze, detect, restore, build, export)
//   become regular containers, in the same order, each started through
//   `/bin/sh -c` that waits for its predecessor's success file in an extra
//   `stepwait` volume and writes its own (a failure stops the chain), which
//   keeps their order and their "all or nothing" while the sidecar runs
//   beside them; `completion` waits for export the same way;
// * the kubelet's SIGTERM to the sidecar after the last main container
//   exited is sent by the test (`podman kill --signal TERM`) once
//   `completion` has exited;
// * emptyDir volumes become hostPath directories of the test (mode 0777),
//   the key Secret a hostPath directory holding cosign.key (podman 4.3
//   mishandles Secret volumes, see scripts/podman-setup.sh);
// * downward-API fields podman lacks (metadata.namespace, spec.nodeName,
//   spec.serviceAccountName) are dropped, and resource limits (no cgroup
//   delegation here);
// * `hostNetwork: true`, so the exporter reaches the registry on loopback.
// provenant's two containers are otherwise run exactly as patched.

fn podman(args: &[&str]) -> Run {
    let mut c = Command::new("podman");
    c.args(args);
    run(c)
}

fn podman_ready() -> bool {
    if std::env::var_os("PROVENANT_SKIP_PODMAN").is_some() {
        eprintln!("PROVENANT_SKIP_PODMAN set: skipping the kpack pod end-to-end test");
        return false;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for script in ["scripts/build-images.sh", "scripts/build-kpack-standins.sh"] {
        let mut c = Command::new(repo.join(script));
        c.current_dir(repo);
        let r = run(c);
        assert_eq!(
            r.code, 0,
            "{script} failed (run scripts/podman-setup.sh first, or set PROVENANT_SKIP_PODMAN=1):\n{}",
            r.stderr
        );
    }
    true
}

fn local_digest(image: &str) -> String {
    let r = podman(&["image", "inspect", "--format", "{{.Digest}}", image]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_string()
}

struct Registry {
    child: Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry(dir: &Path) -> Registry {
    let port = free_port();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
        .spawn()
        .expect("docker-registry not installed (scripts/install-deps.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry { child, port }
}

/// The fixture with the stand-in images and the local registry.
fn kpack_review_for(standin: &str, registry: &str, pod_name: &str) -> Value {
    let mut r = read_json(&fixture("kpack-build-pod.json"));
    let text = serde_json::to_string(&r)
        .unwrap()
        .replace(
            &format!(
                "registry.example.com/kpack/builder@sha256:{}",
                "b".repeat(64)
            ),
            standin,
        )
        .replace(
            &format!(
                "registry.example.com/kpack/build-init@sha256:{}",
                "d".repeat(64)
            ),
            standin,
        )
        .replace(
            &format!(
                "registry.example.com/kpack/completion@sha256:{}",
                "e".repeat(64)
            ),
            standin,
        )
        .replace(
            "registry.example.com/team/app",
            &format!("{registry}/team/app"),
        )
        .replace("app-build-1-build-pod", pod_name);
    r = serde_json::from_str(&text).unwrap();
    r
}

fn podmanize_kpack(pod: &Value, dirs: &Path, keys: &Path) -> Value {
    let mut p = pod.clone();
    let spec = p["spec"].as_object_mut().unwrap();
    spec.insert("hostNetwork".into(), json!(true));
    // Volumes: directories of the test.
    let mut vols = Vec::new();
    for v in spec["volumes"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let path = if name == "provenant-signing-key" {
            keys.to_path_buf()
        } else {
            assert!(v.get("emptyDir").is_some(), "unexpected volume {v}");
            let d = dirs.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
            d
        };
        vols.push(json!({"name": name, "hostPath": {"path": path, "type": "Directory"}}));
    }
    let stepwait = dirs.join("stepwait");
    std::fs::create_dir_all(&stepwait).unwrap();
    std::fs::set_permissions(
        &stepwait,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    vols.push(json!({"name": "stepwait", "hostPath": {"path": stepwait, "type": "Directory"}}));
    spec.insert("volumes".into(), json!(vols));
    let init = spec["initContainers"].as_array().unwrap().clone();
    let sidecar_at = init
        .iter()
        .position(|c| c["restartPolicy"] == "Always")
        .expect("a native sidecar");
    let mut new_init: Vec<Value> = init[..sidecar_at].to_vec();
    let mut sidecar = init[sidecar_at].clone();
    sidecar.as_object_mut().unwrap().remove("restartPolicy");
    let mut steps: Vec<Value> = init[sidecar_at + 1..].to_vec();
    steps.extend(spec["containers"].as_array().unwrap().iter().cloned());
    let mut prev: Option<String> = None;
    for s in steps.iter_mut() {
        let name = s["name"].as_str().unwrap().to_string();
        let wait = match &prev {
            Some(p) => format!(
                "until [ -e /stepwait/{p}.ok ]; do [ -e /stepwait/failed ] && exit 1; sleep 0.1; done; "
            ),
            None => String::new(),
        };
        let script = format!(
            "{wait}\"$0\" \"$@\"; rc=$?; if [ $rc = 0 ]; then touch /stepwait/{name}.ok; else touch /stepwait/failed; fi; exit $rc"
        );
        let mut argv = vec![json!("/bin/sh"), json!("-c"), json!(script)];
        argv.extend(s["command"].as_array().unwrap().iter().cloned());
        argv.extend(s["args"].as_array().cloned().unwrap_or_default());
        s["command"] = json!(argv);
        s.as_object_mut().unwrap().remove("args");
        s["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "stepwait", "mountPath": "/stepwait"}));
        prev = Some(name);
    }
    let mut containers = vec![sidecar];
    containers.extend(steps);
    for c in new_init.iter_mut().chain(containers.iter_mut()) {
        let o = c.as_object_mut().unwrap();
        o.remove("resources");
        if let Some(env) = o.get_mut("env").and_then(|e| e.as_array_mut()) {
            env.retain(|e| {
                let f = e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or("");
                ![
                    "metadata.namespace",
                    "spec.nodeName",
                    "spec.serviceAccountName",
                ]
                .contains(&f)
            });
        }
    }
    spec.insert("initContainers".into(), json!(new_init));
    spec.insert("containers".into(), json!(containers));
    p
}

fn container_state(name: &str) -> String {
    let r = podman(&[
        "inspect",
        name,
        "--format",
        "{{.State.Status}} {{.State.ExitCode}}",
    ]);
    r.stdout.trim().to_string()
}

struct PlayedPod(String);

impl Drop for PlayedPod {
    fn drop(&mut self) {
        let _ = podman(&["pod", "rm", "-f", &self.0]);
    }
}

#[test]
fn kpack_shaped_pod_runs_instrumented_under_podman() {
    if !podman_ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = registry(&d.join("registry"));
    let reg_host = format!("127.0.0.1:{}", reg.port);
    let provenant_image = format!(
        "localhost/provenant@{}",
        local_digest("localhost/provenant:dev")
    );
    let standin = format!(
        "localhost/kpack-standin@{}",
        local_digest("localhost/kpack-standin:dev")
    );
    let pod_name = format!("kpack-e2e-{}", std::process::id());

    // The webhook, configured with the key Secret and provenant's local image.
    let cfg = format!(
        "image: {provenant_image}\nbuilderId: https://ci.example.com/clusters/e2e\nsigning:\n  key:\n    secretName: provenant-signing-key\nresources:\n  expectedFiles: 1000\n"
    );
    let h = start(&cfg);
    let review = kpack_review_for(&standin, &reg_host, &pod_name);
    let rf = d.join("review.json");
    std::fs::write(&rf, serde_json::to_vec(&review).unwrap()).unwrap();
    let (r, res) = h.admit(&rf);
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, h.log());
    let patched = res["patched"].clone();
    assert!(patched.is_object(), "{res}");

    // The key, readable by provenant's uid only.
    let keys = d.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let mut c = provenant(d);
    c.args(["keygen", "--unencrypted", "--output-prefix", "keys/cosign"]);
    run(c).ok();
    std::os::unix::fs::chown(keys.join("cosign.key"), Some(65532), Some(65532)).unwrap();
    std::fs::set_permissions(
        keys.join("cosign.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .unwrap();
    std::fs::rename(keys.join("cosign.pub"), d.join("cosign.pub")).unwrap();

    let played = podmanize_kpack(&patched, &d.join("vols"), &keys);
    let file = d.join("pod.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&played).unwrap()).unwrap();
    let _ = podman(&["pod", "rm", "-f", &pod_name]);
    let guard = PlayedPod(pod_name.clone());
    let r = podman(&["kube", "play", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "podman kube play:\n{}\n{}", r.stdout, r.stderr);

    let sidecar = format!("{pod_name}-provenant-record");
    let completion = format!("{pod_name}-completion");
    let logs = |c: &str| {
        let r = podman(&["logs", c]);
        format!("{}{}", r.stdout, r.stderr)
    };
    let all_logs = || {
        [
            "provenant-record",
            "analyze",
            "detect",
            "restore",
            "build",
            "export",
            "completion",
        ]
        .iter()
        .map(|c| format!("--- {c}:\n{}", logs(&format!("{pod_name}-{c}"))))
        .collect::<Vec<_>>()
        .join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = container_state(&completion);
        if s.starts_with("exited") {
            assert_eq!(s, "exited 0", "{}", all_logs());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "completion did not finish: {s}\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // What the kubelet does once the last main container exited.
    let r = podman(&["kill", "--signal", "TERM", &sidecar]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !container_state(&sidecar).starts_with("exited") {
        assert!(
            Instant::now() < deadline,
            "sidecar did not finish\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ctx = all_logs();
    assert_eq!(container_state(&sidecar), "exited 0", "{ctx}");
    // The build steps never had the key or the state.
    let build_log = logs(&format!("{pod_name}-build"));
    assert!(
        build_log.contains("build: NOT-READABLE /var/run/provenant/key/cosign.key"),
        "{ctx}"
    );
    assert!(
        build_log.contains("build: NOT-READABLE /provenant/state/snapshot.json"),
        "{ctx}"
    );

    // The attestation: one line on the sidecar's stdout.
    let out = podman(&["logs", &sidecar]).stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{ctx}");
    std::fs::write(d.join("sidecar.log"), &out).unwrap();
    let mut c = provenant(d);
    c.args(["verify", "--key", "cosign.pub", "sidecar.log"]);
    run(c).ok();
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    std::fs::write(
        d.join("envelope.json"),
        serde_json::to_vec(&line["envelope"]).unwrap(),
    )
    .unwrap();
    let mut c = Command::new(interop_python());
    c.arg(interop_script("sslib_verify.py"))
        .arg(d.join("envelope.json"))
        .arg(d.join("cosign.pub"));
    let r = run(c);
    assert_eq!(r.code, 0, "securesystemslib: {}\n{}", r.stdout, r.stderr);
    let st = statement_of(&d.join("envelope.json"));

    // The subject is the pushed image, by the digest the registry serves.
    let mut c = Command::new("skopeo");
    c.args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reg_host}/team/app:b1.20250101.000000"),
    ]);
    let manifest = run(c);
    assert_eq!(manifest.code, 0, "{}", manifest.stderr);
    let pushed = sha256_hex(manifest.stdout.as_bytes());
    let subjects = st["subject"].as_array().unwrap();
    assert_eq!(subjects.len(), 1, "{st}");
    assert_eq!(subjects[0]["name"], format!("{reg_host}/team/app"));
    assert_eq!(subjects[0]["digest"]["sha256"], pushed.as_str());

    // The materials are the source files prepare fetched, by content.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/builder/source");
    let mut want = std::collections::BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
                want.insert(
                    format!("/workspace/{rel}"),
                    sha256_hex(&std::fs::read(&p).unwrap()),
                );
            }
        }
    }
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let got: std::collections::BTreeMap<String, String> = deps
        .iter()
        .filter_map(|m| {
            let n = m["name"].as_str()?;
            n.starts_with("/workspace/").then(|| {
                (
                    n.to_string(),
                    m["digest"]["sha256"].as_str().unwrap_or("").to_string(),
                )
            })
        })
        .collect();
    assert_eq!(got, want, "{ctx}");
    // The builder image, by digest, from the pod spec.
    let builder = deps
        .iter()
        .find(|m| m["name"] == "builder")
        .expect("builder reference");
    assert_eq!(
        builder["digest"]["sha256"].as_str().unwrap(),
        standin.rsplit(':').next().unwrap()
    );
    assert!(deps.iter().any(|m| m["name"] == "run-image"));
    let internal = &st["predicate"]["buildDefinition"]["internalParameters"];
    assert_eq!(internal["completion"], "sigterm");
    assert_eq!(internal["pod"]["name"], pod_name.as_str());
    assert_eq!(
        st["predicate"]["runDetails"]["builder"]["id"],
        "https://ci.example.com/clusters/e2e"
    );
    drop(guard);
}
