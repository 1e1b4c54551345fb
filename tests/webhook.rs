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
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap();
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
        assert!(Instant::now() < deadline, "webhook did not start: {}", hook.log());
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
    let state = vols.iter().find(|v| v["name"] == "provenant-state").unwrap();
    assert_eq!(state["emptyDir"], json!({}));
    assert_eq!(
        pod["metadata"]["annotations"]["provenant.dev/injected"]
            .as_str()
            .is_some(),
        true
    );
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
        (true, "profiles:\n  tekton:\n    allowImageRepos: [\"registry.example.com/team/*\"]\n"),
        (false, "profiles:\n  tekton:\n    nativeSidecar: false\n"),
    ] {
        let h = start(&config_yaml(extra));
        let (r, v) = h.admit(&fixture("tekton-taskrun-pod.json"));
        assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, h.log());
        let spec = &v["patched"]["spec"];
        let record_name = if native {
            assert_eq!(
                names(&spec["initContainers"]),
                ["prepare", "place-scripts", "provenant-snapshot", "provenant-record"]
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
                ["step-build", "step-write-results", "sidecar-provenant-record"]
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
        let allow = env.iter().find(|e| e["name"] == "PROVENANT_ALLOW_IMAGE_REPO");
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

#[test]
fn opted_in_pod_and_remote_signer() {
    let cfg = format!(
        "image: {IMAGE}\nsigning:\n  signer:\n    url: https://provenant-signer.provenant-system.svc:8788\n    tokenSecretName: provenant-signer-token\npublish:\n  enabled: true\n  credentialsSecretName: registry-push\n"
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
        "--signer-token-file=/var/run/provenant/signer/token",
        "--publish",
        "--registry-config=/var/run/provenant/registry/config.json",
    ] {
        assert!(a.contains(&want.to_string()), "{a:?}");
    }
    assert!(!a.iter().any(|x| x.starts_with("--key")));
    assert!(mounts(record).contains(&("work".into(), "/work".into(), true)));
    check_isolation(&v["patched"]);
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
        (serde_json::to_vec(&v1beta1).unwrap(), "admission.k8s.io/v1beta1"),
        (serde_json::to_vec(&no_request).unwrap(), "without a request"),
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
    let state = vols.iter_mut().find(|v| v["name"] == "provenant-state").unwrap();
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
    r["request"]["object"]["metadata"]["annotations"]["provenant.dev/materials"] = json!("/etc/src");
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
    assert!(!ok(), "the old certificate must not verify against the new CA");
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
            "webhook", "--check", "--config", "c.yaml", "--tls-cert", "tls.crt", "--tls-key",
            "tls.key",
        ]);
        run(c).fails(code, needle);
    }
    std::fs::write(t.path().join("c.yaml"), config_yaml("")).unwrap();
    let mut c = provenant(t.path());
    c.args([
        "webhook", "--check", "--config", "c.yaml", "--tls-cert", "tls.key", "--tls-key",
        "tls.key",
    ]);
    run(c).fails(3, "tls.key: no certificate in it");
    let mut c = provenant(t.path());
    c.args([
        "webhook", "--check", "--config", "c.yaml", "--tls-cert", "tls.crt", "--tls-key",
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
