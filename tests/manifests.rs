//! manifests/ checked by kubernetes-validate (strict, the Kubernetes versions
//! we support) plus the isolation rules of tests/interop/check_manifests.py.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const VERSIONS: &str = "1.29.0,1.31.0,1.33.0";

fn check(files: &[&Path]) -> Run {
    let mut c = Command::new(interop_python());
    c.arg(interop_script("check_manifests.py"))
        .arg(VERSIONS)
        .args(files);
    run(c)
}

#[test]
fn example_manifests_are_valid_and_keep_the_key_from_the_builder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // One example per completion mode.
    for mode in ["process", "marker", "http", "native-sidecar", "kube-api"] {
        assert!(names.contains(&format!("pod-{mode}.yaml")), "{names:?}");
    }
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let r = check(&refs);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        8,
        "{}",
        r.stdout
    );
}

#[test]
fn the_checker_catches_a_builder_that_mounts_the_key() {
    let t = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples/pod-process.yaml"),
    )
    .unwrap();
    let builder_mounts = "      volumeMounts:\n        - name: workspace\n          mountPath: /workspace\n    - name: provenant\n";
    let bad = src.replacen(
        builder_mounts,
        "      volumeMounts:\n        - name: signing-key\n          mountPath: /keys\n        - name: workspace\n          mountPath: /workspace\n    - name: provenant\n",
        1,
    );
    assert_ne!(bad, src);
    let f = t.path().join("bad.yaml");
    std::fs::write(&f, bad).unwrap();
    let r = check(&[&f]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("container builder mounts ['signing-key']"),
        "{}",
        r.stderr
    );

    let typo = src.replacen(
        "restartPolicy: Never",
        "restartPolicy: Never\n  shareProcesNamespace: true",
        1,
    );
    std::fs::write(&f, typo).unwrap();
    let r = check(&[&f]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("invalid for Kubernetes"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------
// Pod Security "restricted", resources, tokens and probes, on every pod spec
// in every YAML file under manifests/: Pods, pod templates (Deployments,
// Jobs, anything with `containers`, however deeply a Cartographer or other
// template embeds it) and Tekton steps and sidecars.
//
// The controls are those of the Pod Security Standards' "restricted"
// profile (which includes "baseline"):
// https://kubernetes.io/docs/concepts/security/pod-security-standards/
// plus readOnlyRootFilesystem. One exception, documented in
// docs/pod-mode.md ("Pod Security"): a container that is not provenant's
// (the builder you cannot modify) may run as root, provided it says so
// (`runAsNonRoot: false` and `runAsUser: 0` in its own securityContext) and
// meets every other control. provenant's own containers get no exception.

use serde_yaml_ng::Value;

/// Volume types the restricted profile allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn yaml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

fn load_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn is_provenant_image(c: &Value) -> bool {
    let image = c["image"].as_str().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    last.split([':', '@']).next() == Some("provenant")
}

fn name_of(c: &Value) -> &str {
    c["name"].as_str().unwrap_or("?")
}

/// Kubernetes quantity to bytes (the suffixes manifests use).
fn bytes(q: &Value) -> Option<f64> {
    let s = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let units = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ];
    for (u, m) in units {
        if let Some(n) = s.strip_suffix(u) {
            return n.parse::<f64>().ok().map(|n| n * m);
        }
    }
    s.parse().ok()
}

/// A set of containers with what they inherit: a pod spec, or a Tekton
/// Task spec (steps and sidecars, with stepTemplate as the default).
struct Workload<'a> {
    what: String,
    /// Pod-level securityContext (None for Tekton, where it lives in the
    /// TaskRun's podTemplate and cannot be relied on).
    pod_sc: Option<&'a Value>,
    spec: &'a Value,
    /// Each container with its kind: `container`, `init`, `step` or
    /// `sidecar` (Tekton).
    containers: Vec<(&'a Value, &'static str)>,
    step_template: Option<&'a Value>,
    tekton: bool,
}

fn workloads<'a>(v: &'a Value, path: &str, out: &mut Vec<Workload<'a>>) {
    match v {
        Value::Mapping(m) => {
            if let Some(Value::Sequence(cs)) = m.get("containers") {
                if cs.iter().any(|c| c.get("image").is_some()) {
                    let mut containers: Vec<(&Value, &'static str)> =
                        cs.iter().map(|c| (c, "container")).collect();
                    for key in ["initContainers", "ephemeralContainers"] {
                        if let Some(Value::Sequence(more)) = m.get(key) {
                            containers.extend(more.iter().map(|c| (c, "init")));
                        }
                    }
                    out.push(Workload {
                        what: format!("pod spec at {path}"),
                        pod_sc: m.get("securityContext"),
                        spec: v,
                        containers,
                        step_template: None,
                        tekton: false,
                    });
                }
            }
            if let Some(Value::Sequence(steps)) = m.get("steps") {
                if steps.iter().any(|c| c.get("image").is_some()) {
                    let mut containers: Vec<(&Value, &'static str)> =
                        steps.iter().map(|c| (c, "step")).collect();
                    if let Some(Value::Sequence(sc)) = m.get("sidecars") {
                        containers.extend(sc.iter().map(|c| (c, "sidecar")));
                    }
                    out.push(Workload {
                        what: format!("Tekton task spec at {path}"),
                        pod_sc: None,
                        spec: v,
                        containers,
                        step_template: m.get("stepTemplate"),
                        tekton: true,
                    });
                }
            }
            for (k, child) in m {
                let k = k.as_str().unwrap_or("?");
                workloads(child, &format!("{path}.{k}"), out);
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                workloads(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The problems of one workload; empty when it passes.
fn check_workload(w: &Workload) -> Vec<String> {
    let mut p = Vec::new();
    let spec = w.spec;
    let mut say = |s: String| p.push(format!("{}: {s}", w.what));
    if !w.tekton {
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            if spec[host] == Value::Bool(true) {
                say(format!("{host}: true"));
            }
        }
        if spec["automountServiceAccountToken"] != Value::Bool(false) {
            say("automountServiceAccountToken must be false (mount a token into provenant's sidecar explicitly where the kube completion needs one)".into());
        }
        for v in spec["volumes"].as_sequence().into_iter().flatten() {
            let kind = v
                .as_mapping()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.as_str())
                .find(|k| *k != "name")
                .unwrap_or("?");
            if !RESTRICTED_VOLUMES.contains(&kind) {
                say(format!(
                    "volume {} is {kind}, not allowed by restricted",
                    name_of(v)
                ));
            }
        }
    }
    let pod_sc = w.pod_sc;
    if let Some(sc) = pod_sc {
        if sc["seccompProfile"]["type"] == "Unconfined" {
            say("pod seccompProfile Unconfined".into());
        }
        if sc["runAsUser"] == Value::Number(0.into()) {
            say("pod runAsUser 0".into());
        }
    }
    let token_volumes: Vec<&str> = spec["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|v| {
            v["projected"]["sources"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|s| s.get("serviceAccountToken").is_some())
        })
        .filter_map(|v| v["name"].as_str())
        .collect();
    for &(c, kind) in &w.containers {
        let name = name_of(c);
        let ours = is_provenant_image(c);
        // Tekton merges stepTemplate into every step; a step's own
        // securityContext wins field by field.
        let field = |key: &str| -> Option<&Value> {
            let own = c["securityContext"].get(key);
            let tmpl = w.step_template.and_then(|t| t["securityContext"].get(key));
            own.or(tmpl)
        };
        let inherited = |key: &str| -> Option<&Value> {
            field(key).or_else(|| pod_sc.and_then(|s| s.get(key)))
        };
        if field("privileged") == Some(&Value::Bool(true)) {
            say(format!("container {name}: privileged"));
        }
        if field("allowPrivilegeEscalation") != Some(&Value::Bool(false)) {
            say(format!(
                "container {name}: allowPrivilegeEscalation must be false"
            ));
        }
        let root_stated = c["securityContext"]["runAsNonRoot"] == Value::Bool(false)
            && c["securityContext"]["runAsUser"].as_i64() == Some(0);
        // A builder that states it runs as root (kaniko unpacking images
        // into its own root) cannot have a read-only root or run without
        // the default capabilities: it is held to "baseline" there, and the
        // namespace then enforces baseline (docs/pod-mode.md).
        let root_builder = !ours && root_stated;
        if !root_builder && field("readOnlyRootFilesystem") != Some(&Value::Bool(true)) {
            say(format!(
                "container {name}: readOnlyRootFilesystem must be true"
            ));
        }
        let caps = field("capabilities");
        let drop: Vec<&str> = caps
            .and_then(|c| c["drop"].as_sequence())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        if !root_builder && !drop.contains(&"ALL") {
            say(format!("container {name}: capabilities must drop ALL"));
        }
        // What each profile lets a container add.
        const BASELINE_CAPS: &[&str] = &[
            "AUDIT_WRITE",
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "FSETID",
            "KILL",
            "MKNOD",
            "NET_BIND_SERVICE",
            "SETFCAP",
            "SETGID",
            "SETPCAP",
            "SETUID",
            "SYS_CHROOT",
        ];
        for add in caps
            .and_then(|c| c["add"].as_sequence())
            .into_iter()
            .flatten()
        {
            let ok = match add.as_str() {
                Some("NET_BIND_SERVICE") => true,
                Some(cap) => root_builder && BASELINE_CAPS.contains(&cap),
                None => false,
            };
            if !ok {
                say(format!("container {name}: adds capability {add:?}"));
            }
        }
        match inherited("seccompProfile").and_then(|s| s["type"].as_str()) {
            Some("RuntimeDefault") | Some("Localhost") => {}
            other => say(format!(
                "container {name}: seccompProfile must be RuntimeDefault or Localhost (pod or container), is {other:?}"
            )),
        }
        let non_root = inherited("runAsNonRoot") == Some(&Value::Bool(true));
        let user = inherited("runAsUser").and_then(|u| u.as_i64());
        if ours || !root_stated {
            if !non_root {
                say(format!("container {name}: runAsNonRoot must be true"));
            }
            if user == Some(0) {
                say(format!("container {name}: runAsUser 0"));
            }
        }
        // Resources: every container; provenant's from the sizing formula.
        for (kind, res) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "cpu"),
            ("limits", "memory"),
        ] {
            if c["resources"][kind].get(res).is_none() {
                say(format!("container {name}: no resources.{kind}.{res}"));
            }
        }
        if ours {
            let limit = bytes(&c["resources"]["limits"]["memory"]);
            let request = bytes(&c["resources"]["requests"]["memory"]);
            // docs/pod-mode.md, Sizing: 32Mi plus 0.6Ki per file.
            if limit.is_none_or(|l| l < 32.0 * 1024.0 * 1024.0) {
                say(format!(
                    "container {name}: memory limit below the 32Mi floor of the sizing formula"
                ));
            }
            if limit != request {
                say(format!(
                    "container {name}: memory request must equal the limit"
                ));
            }
        }
        // Probes wherever a port is served; provenant's HTTP completion
        // serves one.
        let ports: Vec<&Value> = c["ports"].as_sequence().into_iter().flatten().collect();
        let http_completion = ours
            && c["args"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .any(|a| a.starts_with("--completion=http:") || a.contains(",http:"));
        if http_completion && ports.is_empty() {
            say(format!(
                "container {name}: serves the HTTP completion but declares no port"
            ));
        }
        // Tekton steps cannot have probes; plain init containers run to
        // completion before the pod serves (a native sidecar, restartPolicy
        // Always, can and must).
        let serves = !ports.is_empty()
            && match kind {
                "container" | "sidecar" => true,
                "init" => c["restartPolicy"] == "Always",
                _ => false,
            };
        if serves {
            for probe in ["readinessProbe", "livenessProbe"] {
                let Some(pr) = c.get(probe) else {
                    say(format!(
                        "container {name}: serves a port but has no {probe}"
                    ));
                    continue;
                };
                let port = pr["httpGet"]["port"].clone();
                let port = if port.is_null() {
                    pr["tcpSocket"]["port"].clone()
                } else {
                    port
                };
                if !port.is_null()
                    && !ports
                        .iter()
                        .any(|p| p["containerPort"] == port || p["name"] == port)
                {
                    say(format!(
                        "container {name}: {probe} port {port:?} is not a declared port"
                    ));
                }
            }
        }
        if !ours {
            for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
                if token_volumes.contains(&m["name"].as_str().unwrap_or_default()) {
                    say(format!("container {name}: mounts a service-account token"));
                }
            }
        }
    }
    p
}

/// Roles: on pods, read-only verbs, and limited by resourceNames to the
/// pods of the same file where those have fixed names.
fn check_roles(docs: &[Value]) -> Vec<String> {
    let mut p = Vec::new();
    let pod_names: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Pod")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        let role = d["metadata"]["name"].as_str().unwrap_or("?");
        for r in d["rules"].as_sequence().into_iter().flatten() {
            let on_pods = r["resources"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|x| x == "pods" || x == "*");
            if !on_pods {
                continue;
            }
            for v in r["verbs"].as_sequence().into_iter().flatten() {
                if !["get", "list", "watch"].contains(&v.as_str().unwrap_or("*")) {
                    p.push(format!(
                        "{} {role}: verb {v:?} on pods",
                        d["kind"].as_str().unwrap()
                    ));
                }
            }
            if !pod_names.is_empty() {
                let names: Vec<&str> = r["resourceNames"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .collect();
                if names.is_empty() || names.iter().any(|n| !pod_names.contains(n)) {
                    p.push(format!(
                        "Role {role}: must be limited by resourceNames to the pods {pod_names:?}, has {names:?}"
                    ));
                }
            }
        }
    }
    p
}

fn check_docs(docs: &[Value]) -> (usize, usize, Vec<String>) {
    let mut problems = check_roles(docs);
    let mut found = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let kind = d["kind"].as_str().unwrap_or("?");
        let name = d["metadata"]["name"].as_str().unwrap_or("?");
        workloads(d, &format!("{kind}/{name}#{i}"), &mut found);
    }
    let containers = found.iter().map(|w| w.containers.len()).sum();
    for w in &found {
        problems.extend(check_workload(w));
    }
    (found.len(), containers, problems)
}

#[test]
fn every_manifest_passes_the_restricted_profile_checks() {
    let mut files = Vec::new();
    yaml_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests"),
        &mut files,
    );
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut problems = Vec::new();
    let mut workloads_seen = 0;
    let mut containers_seen = 0;
    for f in &files {
        let docs = load_docs(&std::fs::read_to_string(f).unwrap());
        let (w, c, p) = check_docs(&docs);
        workloads_seen += w;
        containers_seen += c;
        problems.extend(p.into_iter().map(|p| format!("{}: {p}", f.display())));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The five example pods at least, four containers each.
    assert!(
        workloads_seen >= 5 && containers_seen >= 20,
        "{workloads_seen} {containers_seen}"
    );
}

/// Each check catches what it names: one change at a time to a passing
/// example, as parsed YAML.
#[test]
fn the_restricted_checks_catch_each_violation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let load = |f: &str| load_docs(&std::fs::read_to_string(root.join(f)).unwrap());
    let (_, _, ok) = check_docs(&load("pod-http.yaml"));
    assert!(ok.is_empty(), "{ok:?}");

    fn pod(docs: &mut [Value]) -> &mut Value {
        docs.iter_mut().find(|d| d["kind"] == "Pod").unwrap()
    }
    fn container<'a>(docs: &'a mut [Value], name: &str) -> &'a mut Value {
        let p = pod(docs);
        let key = ["containers", "initContainers"]
            .into_iter()
            .find(|k| {
                p["spec"][*k]
                    .as_sequence()
                    .is_some_and(|cs| cs.iter().any(|c| c["name"] == name))
            })
            .unwrap_or_else(|| panic!("no container {name}"));
        p["spec"][key]
            .as_sequence_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["name"] == name)
            .unwrap()
    }
    fn sc(c: &mut Value) -> &mut serde_yaml_ng::Mapping {
        c["securityContext"].as_mapping_mut().unwrap()
    }
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Box<dyn Fn(&mut [Value])>,
    );
    let cases: Vec<Case> = vec![
        (
            "pod-http.yaml",
            "allowPrivilegeEscalation",
            "provenant",
            Box::new(|d| {
                sc(container(d, "provenant")).remove("allowPrivilegeEscalation");
            }),
        ),
        (
            "pod-http.yaml",
            "readOnlyRootFilesystem",
            "fetch-source",
            Box::new(|d| {
                sc(container(d, "fetch-source"))
                    .insert("readOnlyRootFilesystem".into(), false.into());
            }),
        ),
        (
            "pod-http.yaml",
            "drop ALL",
            "snapshot",
            Box::new(|d| {
                sc(container(d, "snapshot")).remove("capabilities");
            }),
        ),
        (
            "pod-http.yaml",
            "adds capability",
            "builder",
            Box::new(|d| {
                let caps = sc(container(d, "builder")).get_mut("capabilities").unwrap();
                caps["add"] = serde_yaml_ng::from_str("[SYS_PTRACE]").unwrap();
            }),
        ),
        (
            "pod-http.yaml",
            "seccompProfile",
            "fetch-source",
            Box::new(|d| {
                pod(d)["spec"]["securityContext"]
                    .as_mapping_mut()
                    .unwrap()
                    .remove("seccompProfile");
            }),
        ),
        (
            "pod-http.yaml",
            "runAsNonRoot must be true",
            "provenant",
            Box::new(|d| {
                sc(container(d, "provenant")).insert("runAsNonRoot".into(), false.into());
                sc(container(d, "provenant")).insert("runAsUser".into(), 0.into());
            }),
        ),
        (
            "pod-http.yaml",
            "runAsNonRoot must be true",
            "fetch-source",
            Box::new(|d| {
                pod(d)["spec"]["securityContext"]
                    .as_mapping_mut()
                    .unwrap()
                    .remove("runAsNonRoot");
            }),
        ),
        // The builder's exception only when stated in full.
        (
            "pod-http.yaml",
            "runAsNonRoot must be true",
            "builder",
            Box::new(|d| {
                sc(container(d, "builder")).remove("runAsUser");
            }),
        ),
        (
            "pod-http.yaml",
            "privileged",
            "builder",
            Box::new(|d| {
                sc(container(d, "builder")).insert("privileged".into(), true.into());
            }),
        ),
        (
            "pod-http.yaml",
            "resources.limits.memory",
            "builder",
            Box::new(|d| {
                container(d, "builder")["resources"]["limits"]
                    .as_mapping_mut()
                    .unwrap()
                    .remove("memory");
            }),
        ),
        (
            "pod-http.yaml",
            "32Mi floor",
            "provenant",
            Box::new(|d| {
                container(d, "provenant")["resources"]["limits"]["memory"] = "16Mi".into();
            }),
        ),
        (
            "pod-http.yaml",
            "request must equal the limit",
            "snapshot",
            Box::new(|d| {
                container(d, "snapshot")["resources"]["requests"]["memory"] = "64Mi".into();
            }),
        ),
        (
            "pod-http.yaml",
            "has no readinessProbe",
            "provenant",
            Box::new(|d| {
                container(d, "provenant")
                    .as_mapping_mut()
                    .unwrap()
                    .remove("readinessProbe");
            }),
        ),
        (
            "pod-http.yaml",
            "declares no port",
            "provenant",
            Box::new(|d| {
                container(d, "provenant")
                    .as_mapping_mut()
                    .unwrap()
                    .remove("ports");
            }),
        ),
        (
            "pod-http.yaml",
            "is not a declared port",
            "provenant",
            Box::new(|d| {
                container(d, "provenant")["livenessProbe"]["httpGet"]["port"] = 9999.into();
            }),
        ),
        (
            "pod-http.yaml",
            "automountServiceAccountToken",
            "",
            Box::new(|d| {
                pod(d)["spec"]
                    .as_mapping_mut()
                    .unwrap()
                    .remove("automountServiceAccountToken");
            }),
        ),
        (
            "pod-http.yaml",
            "hostPID",
            "",
            Box::new(|d| {
                pod(d)["spec"]["hostPID"] = true.into();
            }),
        ),
        (
            "pod-http.yaml",
            "not allowed by restricted",
            "",
            Box::new(|d| {
                let v = pod(d)["spec"]["volumes"].as_sequence_mut().unwrap();
                v.push(serde_yaml_ng::from_str("{name: host, hostPath: {path: /}}").unwrap());
            }),
        ),
        (
            "pod-kube-api.yaml",
            "mounts a service-account token",
            "builder",
            Box::new(|d| {
                let m = container(d, "builder")["volumeMounts"]
                    .as_sequence_mut()
                    .unwrap();
                m.push(serde_yaml_ng::from_str("{name: api-token, mountPath: /t}").unwrap());
            }),
        ),
        (
            "pod-kube-api.yaml",
            "resourceNames",
            "",
            Box::new(|d| {
                let role = d.iter_mut().find(|x| x["kind"] == "Role").unwrap();
                role["rules"][0]
                    .as_mapping_mut()
                    .unwrap()
                    .remove("resourceNames");
            }),
        ),
        (
            "pod-kube-api.yaml",
            "verb",
            "",
            Box::new(|d| {
                let role = d.iter_mut().find(|x| x["kind"] == "Role").unwrap();
                role["rules"][0]["verbs"] =
                    serde_yaml_ng::from_str("[get, watch, delete]").unwrap();
            }),
        ),
    ];
    for (file, needle, who, mutate) in &cases {
        let mut docs = load(file);
        mutate(&mut docs);
        let (_, _, p) = check_docs(&docs);
        assert!(
            p.iter().any(|l| l.contains(needle) && l.contains(who)),
            "{file}: changing {needle} of {who:?} was not caught: {p:#?}"
        );
    }

    // A Deployment's pod template and a Tekton Task are found and checked
    // like a Pod (other manifests under manifests/ take these forms).
    let deployment = load_docs(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: signer}\nspec:\n  template:\n    spec:\n      containers:\n        - name: signer\n          image: registry.example.com/provenant:1\n          ports: [{containerPort: 8788}]\n",
    );
    let (w, _, p) = check_docs(&deployment);
    assert_eq!(w, 1);
    for needle in [
        "automountServiceAccountToken",
        "readinessProbe",
        "drop ALL",
        "resources.requests.cpu",
        "runAsNonRoot",
    ] {
        assert!(p.iter().any(|l| l.contains(needle)), "{needle}: {p:#?}");
    }
    let task = load_docs(
        "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: t}\nspec:\n  stepTemplate:\n    securityContext:\n      runAsNonRoot: true\n      runAsUser: 65532\n      allowPrivilegeEscalation: false\n      readOnlyRootFilesystem: true\n      capabilities: {drop: [ALL]}\n      seccompProfile: {type: RuntimeDefault}\n  steps:\n    - name: build\n      image: builder\n      resources: {}\n  sidecars:\n    - name: provenant\n      image: ghcr.io/x/provenant:1\n      securityContext: {allowPrivilegeEscalation: true}\n",
    );
    let (w, _, p) = check_docs(&task);
    assert_eq!(w, 1);
    // The step inherits the template; the sidecar's own field wins over it.
    assert!(
        p.iter()
            .any(|l| l.contains("container provenant: allowPrivilegeEscalation")),
        "{p:#?}"
    );
    assert!(
        !p.iter()
            .any(|l| l.contains("container build: allowPrivilegeEscalation")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("container build: no resources")),
        "{p:#?}"
    );
}
