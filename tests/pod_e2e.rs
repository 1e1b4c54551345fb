//! Real pods: `podman kube play` of manifests/examples/pod-{process,marker,http}.yaml
//! with images built locally FROM scratch (scripts/build-images.sh): an init
//! container fetches the source, `provenant snapshot` hashes it, the
//! unmodified builder (images/builder/build.sh) builds, and the
//! `provenant record` sidecar signs. The attestation is taken from the
//! sidecar's log and checked by `provenant verify` and by securesystemslib;
//! its subjects must be the files the builder produced, its materials the
//! source tree.
//!
//! Needs rootful podman set up by scripts/podman-setup.sh (scripts/test.sh
//! runs it). PROVENANT_SKIP_PODMAN=1 skips these tests on a machine without
//! podman, saying so; otherwise a missing podman is a failure.
//!
//! What podman 4.3 cannot do and the tests therefore change in the pod they
//! play (podmanize below), besides the image tags (this checkout's own, see
//! `images`): Secret volumes (hostPath to a key directory
//! instead), some downward-API fields (namespace, node, service account),
//! and emptyDir volumes are global named volumes (renamed per test run),
//! owned by the first container that mounts them instead of mode 0777.
//! The native-sidecar and kube-API examples need a kubelet and are not
//! played here (tests/record.rs and tests/completion.rs cover their
//! triggers at process level).
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn podman(args: &[&str]) -> Run {
    let mut c = Command::new("podman");
    c.args(args);
    run(c)
}

/// The image tags this checkout builds and plays. Not the manifests'
/// `localhost/...:dev`: podman's image store is the machine's, and another
/// checkout running these tests at the same time would replace those tags
/// with images of its own sources between our build and our pod.
fn images() -> &'static (String, String) {
    static TAGS: OnceLock<(String, String)> = OnceLock::new();
    TAGS.get_or_init(|| {
        let id = &sha256_hex(repo().as_os_str().as_encoded_bytes())[..12];
        (
            format!("localhost/provenant:e2e-{id}"),
            format!("localhost/provenant-builder:e2e-{id}"),
        )
    })
}

/// False (and a loud note) only when skipping was asked for.
fn podman_ready() -> bool {
    if std::env::var_os("PROVENANT_SKIP_PODMAN").is_some() {
        eprintln!("PROVENANT_SKIP_PODMAN set: skipping the podman end-to-end test");
        return false;
    }
    static IMAGES: OnceLock<Result<(), String>> = OnceLock::new();
    let r = IMAGES.get_or_init(|| {
        let mut c = Command::new(repo().join("scripts/build-images.sh"));
        c.current_dir(repo())
            .env("PROVENANT_IMAGE", &images().0)
            .env("BUILDER_IMAGE", &images().1);
        let r = run(c);
        if r.code == 0 {
            Ok(())
        } else {
            Err(format!(
                "scripts/build-images.sh failed (run scripts/podman-setup.sh first, or set PROVENANT_SKIP_PODMAN=1):\n{}",
                r.stderr
            ))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    true
}

/// Where the pod's provenant containers keep the key file and the state,
/// read from the manifest: the builder's isolation probe
/// (images/builder/build.sh) looks exactly there, so a manifest that moves
/// them moves the probe too.
struct Private {
    key_file: String,
    state_dir: String,
}

fn private_paths(yaml: &str) -> Private {
    use serde_yaml_ng::Value;
    let pod = serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "Pod")
        .expect("a Pod in the manifest");
    let spec = &pod["spec"];
    let containers = spec["containers"]
        .as_sequence()
        .into_iter()
        .chain(spec["initContainers"].as_sequence())
        .flatten();
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut key_file = None;
    let mut state_dir = None;
    for c in containers {
        let args: Vec<String> = c["args"]
            .as_sequence()
            .map(|a| a.iter().map(str_of).collect())
            .unwrap_or_default();
        if args.first().map(String::as_str) != Some("record") {
            continue;
        }
        key_file = args
            .iter()
            .find_map(|a| a.strip_prefix("--key=").map(str::to_string));
        for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
            if m["name"] == "state" {
                state_dir = Some(str_of(&m["mountPath"]));
            }
        }
        let env_state = c["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "PROVENANT_STATE")
            .map(|e| str_of(&e["value"]));
        assert_eq!(env_state, state_dir, "PROVENANT_STATE is the state mount");
    }
    Private {
        key_file: key_file.expect("record --key=FILE in the manifest"),
        state_dir: state_dir.expect("the state volume mounted by record"),
    }
}

/// Adds the probe's environment to the container named `builder`.
fn with_probe_env(yaml: &str, private: &Private) -> String {
    use serde_yaml_ng::Value;
    let mut docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .collect();
    let mut found = false;
    for doc in &mut docs {
        let Some(containers) = doc["spec"]["containers"].as_sequence_mut() else {
            continue;
        };
        for c in containers.iter_mut().filter(|c| c["name"] == "builder") {
            let env = c
                .as_mapping_mut()
                .unwrap()
                .entry("env".into())
                .or_insert_with(|| Value::Sequence(Vec::new()));
            for (k, v) in [
                ("PROBE_KEY_FILE", &private.key_file),
                ("PROBE_STATE_DIR", &private.state_dir),
            ] {
                let mut e = serde_yaml_ng::Mapping::new();
                e.insert("name".into(), k.into());
                e.insert("value".into(), v.as_str().into());
                env.as_sequence_mut().unwrap().push(Value::Mapping(e));
            }
            found = true;
        }
    }
    assert!(found, "no builder container");
    docs.iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The example pod as podman 4.3 can play it (see the module comment).
fn podmanize(
    yaml: &str,
    mode: &str,
    pod: &str,
    suffix: &str,
    keys: &Path,
    volumes: &[&str],
) -> String {
    let secret = "      secret:\n        secretName: provenant-signing-key\n        defaultMode: 0440\n        optional: false\n";
    assert!(
        yaml.contains(secret),
        "the example no longer has the expected key volume"
    );
    let mut out = yaml.replace(
        secret,
        &format!(
            "      hostPath:\n        path: {}\n        type: Directory\n",
            keys.display()
        ),
    );
    // A Kubernetes emptyDir is created with mode 0777; podman makes a named
    // volume owned by the first container that mounts it (fetch-source,
    // 65532), mode 0755, which the root builder without capabilities could
    // not write. The stand-in for a git clone opens it up as the kubelet
    // would have.
    let fetch = "\"cp -R /opt/example-source /workspace/source\"";
    assert!(out.contains(fetch), "the fetch-source command moved");
    out = out.replace(
        fetch,
        "\"chmod 0777 /workspace && cp -R /opt/example-source /workspace/source\"",
    );
    // A declared containerPort becomes a port mapping in podman 4.3, which
    // `--network none` refuses; the containers of a pod reach each other on
    // loopback without it (as the probes and the builder's wrapper do).
    let ports = "      ports:\n        - name: completion\n          containerPort: 8787\n";
    out = out.replace(ports, "");
    out = out
        .replace("localhost/provenant:dev", &images().0)
        .replace("localhost/provenant-builder:dev", &images().1);
    let original = format!("\n  name: example-build-{mode}\n");
    assert!(out.contains(&original));
    out = out.replacen(&original, &format!("\n  name: {pod}\n"), 1);
    for v in volumes {
        out = out.replace(&format!("name: {v}\n"), &format!("name: {v}-{suffix}\n"));
    }
    // Downward-API fields podman 4.3 does not know: drop those env entries.
    let lines: Vec<&str> = out.lines().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let next = lines.get(i + 1).copied().unwrap_or("");
        if lines[i].trim_start().starts_with("- name: ")
            && [
                "metadata.namespace",
                "spec.nodeName",
                "spec.serviceAccountName",
            ]
            .iter()
            .any(|f| next.contains(&format!("fieldPath: {f}}}")))
        {
            i += 2;
            continue;
        }
        kept.push(lines[i]);
        i += 1;
    }
    kept.join("\n") + "\n"
}

struct Pod {
    name: String,
    suffix: String,
    volumes: &'static [&'static str],
    dir: tempfile::TempDir,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = podman(&["pod", "rm", "-f", &self.name]);
        for v in self.volumes {
            let _ = podman(&["volume", "rm", "-f", &format!("{v}-{}", self.suffix)]);
        }
    }
}

/// The volumes of the example pods.
const EXAMPLE_VOLUMES: &[&str] = &["workspace", "state", "signing-key"];

struct Played {
    pod: Pod,
    sidecar_stdout: String,
    sidecar_stderr: String,
    sidecar_exit: i32,
    builder_log: String,
    workspace: PathBuf,
    private: Private,
}

fn play(mode: &str) -> Played {
    let manifest = repo().join(format!("manifests/examples/pod-{mode}.yaml"));
    play_manifest(&manifest, mode, mode, EXAMPLE_VOLUMES)
}

/// Plays `manifest` (its pod named `example-build-{mode}`, with emptyDir
/// `volumes`) and waits for the builder and the sidecar to exit. `label`
/// names this run's pod and volumes apart from the other tests' running at
/// the same time.
fn play_manifest(
    manifest: &Path,
    mode: &str,
    label: &str,
    volumes: &'static [&'static str],
) -> Played {
    let suffix = format!("{label}-{}", std::process::id());
    let name = format!("provenant-e2e-{suffix}");
    let pod = Pod {
        name: name.clone(),
        suffix: suffix.clone(),
        volumes,
        dir: tempfile::tempdir().unwrap(),
    };
    let d = pod.dir.path();
    let keys = d.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let mut c = provenant(d);
    c.args(["keygen", "--unencrypted", "--output-prefix", "keys/cosign"]);
    run(c).ok();
    // The sidecar runs as 65532: the key is that user's alone, as the
    // Secret's fsGroup and defaultMode arrange in a cluster.
    std::os::unix::fs::chown(keys.join("cosign.key"), Some(65532), Some(65532)).unwrap();
    std::fs::set_permissions(
        keys.join("cosign.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o400),
    )
    .unwrap();

    let src = std::fs::read_to_string(manifest).unwrap();
    let private = private_paths(&src);
    let yaml = with_probe_env(
        &podmanize(&src, mode, &name, &suffix, &keys, volumes),
        &private,
    );
    let file = d.join("pod.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let _ = podman(&["pod", "rm", "-f", &name]);
    let r = podman(&["kube", "play", "--network", "none", file.to_str().unwrap()]);
    assert_eq!(
        r.code, 0,
        "podman kube play:\n{}\n{}\n{yaml}",
        r.stdout, r.stderr
    );

    let sidecar = format!("{name}-provenant");
    let builder = format!("{name}-builder");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("pod={name}"),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        let states: BTreeMap<String, String> = r
            .stdout
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect();
        let exited = |c: &str| {
            states
                .get(c)
                .is_some_and(|s| s.to_ascii_lowercase().starts_with("exited"))
        };
        if exited(&sidecar) && exited(&builder) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name} did not finish: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let logs = podman(&["logs", &sidecar]);
    let builder_log = podman(&["logs", &builder]).stdout;
    let exit = podman(&["inspect", &sidecar, "--format", "{{.State.ExitCode}}"])
        .stdout
        .trim()
        .parse()
        .unwrap();
    let ws = podman(&[
        "volume",
        "inspect",
        &format!("workspace-{suffix}"),
        "--format",
        "{{.Mountpoint}}",
    ]);
    Played {
        pod,
        sidecar_stdout: logs.stdout,
        sidecar_stderr: logs.stderr,
        sidecar_exit: exit,
        builder_log,
        workspace: PathBuf::from(ws.stdout.trim()),
        private,
    }
}

fn files_under(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, sha256_hex(&std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn check(mode: &str) {
    if !podman_ready() {
        return;
    }
    let p = play(mode);
    let d = p.pod.dir.path();
    let ctx = format!(
        "sidecar stdout:\n{}\nsidecar stderr:\n{}\nbuilder:\n{}",
        p.sidecar_stdout, p.sidecar_stderr, p.builder_log
    );
    assert_eq!(p.sidecar_exit, 0, "{ctx}");
    // The builder never saw the key or the state, even through /proc, where
    // the manifest puts them.
    assert!(
        p.builder_log.contains(&format!(
            "build.sh: KEY-NOT-READABLE at {}\n",
            p.private.key_file
        )),
        "{ctx}"
    );
    assert!(
        p.builder_log.contains(&format!(
            "build.sh: STATE-NOT-REACHABLE at {}\n",
            p.private.state_dir
        )),
        "{ctx}"
    );
    assert!(!p.builder_log.contains("KEY-READABLE"), "{ctx}");
    assert!(!p.builder_log.contains("STATE-REACHABLE"), "{ctx}");
    assert!(p.builder_log.contains("build.sh: done"), "{ctx}");

    // The attestation is the one JSON line on the sidecar's stdout.
    let lines: Vec<&str> = p.sidecar_stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{ctx}");
    std::fs::write(d.join("sidecar.log"), &p.sidecar_stdout).unwrap();
    let mut c = provenant(d);
    c.args(["verify", "--key", "keys/cosign.pub", "sidecar.log"]);
    run(c).ok();
    let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    std::fs::write(
        d.join("envelope.json"),
        serde_json::to_vec(&line["envelope"]).unwrap(),
    )
    .unwrap();
    let mut c = Command::new(interop_python());
    c.arg(interop_script("sslib_verify.py"))
        .arg(d.join("envelope.json"))
        .arg(d.join("keys/cosign.pub"));
    let r = run(c);
    assert_eq!(r.code, 0, "securesystemslib: {}\n{}", r.stdout, r.stderr);

    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(line["envelope"]["payload"].as_str().unwrap())
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&payload).unwrap();

    // Subjects: exactly the files the builder left in /workspace/out.
    let produced = files_under(&p.workspace.join("out"));
    assert_eq!(produced.len(), 4, "{produced:?}");
    let subjects: BTreeMap<String, String> = st["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap();
            let rel = name
                .strip_prefix("/workspace/out/")
                .unwrap_or_else(|| panic!("subject {name} is not a product"));
            (
                rel.to_string(),
                s["digest"]["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(subjects, produced, "{ctx}");

    // Materials: the source tree, as the image carries it, plus the builder reference.
    let source = files_under(&repo().join("images/builder/source"));
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let materials: BTreeMap<String, String> = deps
        .iter()
        .filter_map(|m| {
            let rel = m["name"].as_str()?.strip_prefix("/workspace/source/")?;
            Some((rel.to_string(), m["digest"]["sha256"].as_str()?.to_string()))
        })
        .collect();
    assert_eq!(materials, source, "{ctx}");
    assert!(deps.iter().any(|m| m["name"] == "builder"), "{deps:?}");

    let internal = &st["predicate"]["buildDefinition"]["internalParameters"];
    assert_eq!(internal["completion"], mode, "{ctx}");
    assert_eq!(internal["pod"]["name"], p.pod.name.as_str());
    let uid = internal["pod"]["uid"].as_str().unwrap_or_default();
    assert!(!uid.is_empty(), "{internal}");
    assert_eq!(
        st["predicate"]["runDetails"]["metadata"]["invocationId"],
        uid
    );
}

#[test]
fn pod_with_shared_process_namespace() {
    check("process");
}

#[test]
fn pod_with_marker_file() {
    check("marker");
}

#[test]
fn pod_with_http_completion() {
    check("http");
}

/// The probe can fail: the marker pod with the state volume mounted into the
/// builder at provenant's path makes build.sh report it reachable (and so
/// `check` would fail on such a manifest).
#[test]
fn the_isolation_probe_sees_a_state_volume_mounted_into_the_builder() {
    if !podman_ready() {
        return;
    }
    let src = std::fs::read_to_string(repo().join("manifests/examples/pod-marker.yaml")).unwrap();
    let state = private_paths(&src).state_dir;
    let builder_mounts = "      volumeMounts:\n        - name: workspace\n          mountPath: /workspace\n    - name: provenant\n";
    assert!(src.contains(builder_mounts), "the builder's mounts moved");
    let leaky = src.replacen(
        builder_mounts,
        &format!("      volumeMounts:\n        - name: workspace\n          mountPath: /workspace\n        - name: state\n          mountPath: {state}\n    - name: provenant\n"),
        1,
    );
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("pod-marker.yaml");
    std::fs::write(&f, leaky).unwrap();
    let p = play_manifest(&f, "marker", "leaky-state", EXAMPLE_VOLUMES);
    let ctx = format!(
        "builder:\n{}\nsidecar:\n{}",
        p.builder_log, p.sidecar_stderr
    );
    assert!(
        p.builder_log
            .contains(&format!("build.sh: STATE-REACHABLE at {state}\n")),
        "{ctx}"
    );
    assert!(!p.builder_log.contains("STATE-NOT-REACHABLE"), "{ctx}");
}

/// The builder is the adversary, in a real pod: images/builder/attack.sh
/// plants, in the results, report and workspace it shares with the sidecar,
/// links to the sidecar's key and environment, a FIFO, /dev/zero, a 1 GiB
/// list, a product named like a subject line, a file only root may read,
/// and a marker that is a link to the key. The pod must finish, the
/// sidecar's log must hold no fragment of the key, and what is signed must
/// hold no claim the attack made.
#[test]
fn pod_with_a_hostile_builder() {
    if !podman_ready() {
        return;
    }
    let p = play_manifest(
        &repo().join("tests/fixtures/pods/pod-hostile.yaml"),
        "hostile",
        "hostile",
        &["workspace", "results", "report", "state", "signing-key"],
    );
    let d = p.pod.dir.path();
    let ctx = format!(
        "sidecar stdout:\n{}\nsidecar stderr:\n{}\nbuilder:\n{}",
        p.sidecar_stdout, p.sidecar_stderr, p.builder_log
    );
    assert!(p.builder_log.contains("attack.sh: done"), "{ctx}");
    assert_eq!(p.sidecar_exit, 0, "{ctx}");
    // Not one fragment of the key in the sidecar's log.
    let key = std::fs::read_to_string(d.join("keys/cosign.key")).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let log = format!("{}{}", p.sidecar_stdout, p.sidecar_stderr);
    assert!(!log.contains("PRIVATE KEY"), "{ctx}");
    let chars: Vec<char> = body.chars().collect();
    for w in chars.windows(24) {
        let w: String = w.iter().collect();
        assert!(!log.contains(&w), "key fragment {w:?} in the log: {ctx}");
    }
    // Every attack refused, with a reason.
    for reason in [
        "symbolic link in the path",
        "a FIFO, not a regular file",
        "larger than the 65536-byte limit",
    ] {
        assert!(p.sidecar_stderr.contains(reason), "{reason}: {ctx}");
    }
    // The attestation holds only what the sidecar observed.
    let lines: Vec<&str> = p.sidecar_stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{ctx}");
    std::fs::write(d.join("sidecar.log"), &p.sidecar_stdout).unwrap();
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "keys/cosign.pub",
        "--json",
        "sidecar.log",
    ]);
    let r = run(c).ok();
    let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = st["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("/workspace/")),
        "{names:?}"
    );
    assert!(names.contains(&"/workspace/out/app.bin"), "{names:?}");
    assert!(
        names.iter().any(|n| n.contains('\n')),
        "the oddly named product is a subject, its name exact in JSON: {names:?}"
    );
    let by = st["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap();
    assert!(
        by.iter()
            .any(|b| b["name"] == "/workspace/out/root-only.bin" && b["uri"] == "error:unreadable"),
        "{by:?}"
    );
    let exit = by.iter().find(|b| b["name"] == "exit-code").unwrap();
    assert_eq!(
        exit["annotations"]["provenant.exitCodeOrigin"], "unknown",
        "{exit}"
    );
}
