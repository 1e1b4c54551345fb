//! Attestations in a real OCI registry: Debian's `docker-registry`
//! (distribution 2.8) on loopback, plain HTTP and with htpasswd basic auth,
//! images pushed with skopeo, read back with skopeo and by
//! `provenant verify --image`, checked by securesystemslib.
mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;

struct RegistryProc {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    config: PathBuf,
}

impl RegistryProc {
    fn start(dir: &Path, users: &[(&str, &str)]) -> RegistryProc {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: provenant-test\n",
            dir.join("data").display()
        );
        if !users.is_empty() {
            let lines: Vec<String> = users
                .iter()
                .map(|(u, p)| format!("{u}:{}", bcrypt::hash(p, 5).unwrap()))
                .collect();
            std::fs::write(dir.join("htpasswd"), lines.join("\n") + "\n").unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: provenant-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        let path = dir.join("config.yml");
        std::fs::write(&path, config).unwrap();
        let mut r = RegistryProc {
            child: None,
            port,
            dir: dir.to_path_buf(),
            config: path,
        };
        r.resume();
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts on the same port and storage.
    fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry not installed (scripts/install-deps.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn skopeo(args: &[&str]) -> Run {
    let mut c = Command::new("skopeo");
    c.args(args);
    run(c)
}

/// A small OCI image layout built here (nothing is pulled), pushed with
/// skopeo; returns the manifest digest the registry serves.
fn push_image(
    d: &Path,
    reg: &RegistryProc,
    repo_tag: &str,
    content: &str,
    creds: Option<&str>,
) -> String {
    let layout = d.join(format!("layout-{}", sha256_hex(content.as_bytes())));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let src = d.join("layer-src");
    write(&src.join("app"), content.as_bytes());
    let tar = d.join("layer.tar");
    let mut c = Command::new("tar");
    c.args(["--mtime=@0", "--owner=0", "--group=0", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("app");
    run(c).ok();
    let (layer, layer_size) = put(&std::fs::read(&tar).unwrap());
    let config = serde_json::json!({"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[layer]}});
    let (cfg, cfg_size) = put(serde_json::to_string(&config).unwrap().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}]
    });
    let (man, man_size) = put(serde_json::to_string(&manifest).unwrap().as_bytes());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":man,"size":man_size,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_string(&index).unwrap(),
    )
    .unwrap();
    let dest = format!("docker://{}/{repo_tag}", reg.host());
    let src = format!("oci:{}:v1", layout.display());
    let mut args = vec![
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
    ];
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    args.extend([src.as_str(), dest.as_str()]);
    let r = skopeo(&args);
    assert_eq!(r.code, 0, "skopeo copy: {}", r.stderr);
    man
}

/// The sidecar flow (snapshot, record) for a builder that reported `image`
/// with `digest` through Tekton results; returns the record run.
fn record_image(d: &Path, image: &str, digest: &str, extra: &[&str]) -> Run {
    let build = || {
        write(&d.join("ws/out/image.tar"), digest.as_bytes());
        write(
            &d.join("results/IMAGE_URL"),
            format!("{image}\n").as_bytes(),
        );
        write(
            &d.join("results/IMAGE_DIGEST"),
            format!("{digest}\n").as_bytes(),
        );
    };
    let mut args = vec!["--tekton-results", "results", "--publish"];
    // The operator allows exactly the repository the build pushes to.
    args.extend(["--allow-image-repo", image]);
    args.extend(extra);
    sidecar(d, build, &args)
}

/// Snapshot, then `build`, then `record` (marker completion, key `k.key`)
/// with `args`.
fn sidecar(d: &Path, build: impl FnOnce(), args: &[&str]) -> Run {
    if !d.join("k.key").exists() {
        keygen(d, "k", "ecdsa-p256");
    }
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    let _ = std::fs::remove_dir_all(d.join("state"));
    snapshot(d, &[]);
    build();
    write(&d.join("done"), b"0");
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        "k.key",
        "--completion",
        "marker:done",
    ])
    .args(args);
    run(c)
}

fn verify_image(d: &Path, image: &str, extra: &[&str]) -> Run {
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "--image", image])
        .args(extra);
    run(c)
}

fn att_manifest(
    reg: &RegistryProc,
    repo: &str,
    digest: &str,
    creds: Option<&str>,
) -> serde_json::Value {
    let r#ref = format!(
        "docker://{}/{repo}:{}.att",
        reg.host(),
        digest.replace(':', "-")
    );
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(&r#ref);
    let r = skopeo(&args);
    assert_eq!(r.code, 0, "skopeo inspect {ref}: {}", r.stderr, ref = r#ref);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn attach_read_back_and_check_independently() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let digest = push_image(d, &reg, "team/app:v1", "hello", None);
    let image = format!("{}/team/app", reg.host());

    let r = record_image(d, &image, &digest, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("attestation attached"), "{}", r.stderr);
    // A Sigstore bundle beside the envelope.
    let bundle = read_json(&d.join("state/provenance.sigstore.json"));
    assert_eq!(
        bundle["mediaType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "state/provenance.sigstore.json"]);
    run(c).ok();

    // cosign's layout, as skopeo sees it.
    let att = att_manifest(&reg, "team/app", &digest, None);
    assert_eq!(
        att["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layers = att["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{att}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    assert_eq!(
        layers[0]["annotations"]["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    assert_eq!(
        layers[0]["annotations"]["dev.cosignproject.cosign/signature"],
        ""
    );
    assert_eq!(
        att["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );

    // The layer blob, fetched by skopeo, verified by securesystemslib.
    let out = d.join("att-layout");
    let src = format!(
        "docker://{}/team/app:{}.att",
        reg.host(),
        digest.replace(':', "-")
    );
    let dst = format!("oci:{}:att", out.display());
    let r = skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--preserve-digests",
        &src,
        &dst,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let layer_hex = layers[0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let layer_file = out.join("blobs/sha256").join(layer_hex);
    let mut c = Command::new(interop_python());
    c.arg(interop_script("sslib_verify.py"))
        .arg(&layer_file)
        .arg(d.join("k.pub"));
    let r = run(c);
    assert_eq!(r.code, 0, "securesystemslib: {}{}", r.stdout, r.stderr);

    // OCI 1.1 referrer through the tag schema (distribution 2.8 has no referrers API).
    let r = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!(
            "docker://{}/team/app:{}",
            reg.host(),
            digest.replace(':', "-")
        ),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let index: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let referrer = index["manifests"][0]["digest"].as_str().unwrap();
    let r = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/app@{referrer}", reg.host()),
    ]);
    let m: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(m["subject"]["digest"], digest.as_str());

    // verify --image, by tag and by digest: both layouts, both verified.
    for reference in [format!("{image}:v1"), format!("{image}@{digest}")] {
        let r = verify_image(d, &reference, &[]);
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
        let oks: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("OK")).collect();
        assert_eq!(oks.len(), 2, "{}", r.stdout);
        assert!(
            oks.iter().any(|l| l.contains("cosign .att layer"))
                && oks.iter().any(|l| l.contains("OCI referrer")),
            "{}",
            r.stdout
        );
    }

    // Pushing the same attestation again (spool entry replayed) adds nothing.
    let published: Vec<PathBuf> = std::fs::read_dir(d.join("state/spool/published"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(published.len(), 1);
    std::fs::copy(
        &published[0],
        d.join("state/spool")
            .join(published[0].file_name().unwrap()),
    )
    .unwrap();
    let mut c = provenant(d);
    c.args(["publish", "state/spool"]);
    let r = run(c).ok();
    assert!(r.stdout.contains("already there"), "{}", r.stdout);
    assert_eq!(
        att_manifest(&reg, "team/app", &digest, None)["layers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A second, different attestation is appended, not replacing the first.
    let r = record_image(
        d,
        &image,
        &digest,
        &["--builder-id", "https://ci.example.com/second"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        att_manifest(&reg, "team/app", &digest, None)["layers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = verify_image(d, &format!("{image}:v1"), &[]);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("OK")).count(),
        4,
        "{}",
        r.stdout
    );

    // Another image's attestation does not vouch for this one.
    let other = push_image(d, &reg, "team/other:v1", "other", None);
    let r = verify_image(d, &format!("{}/team/other@{other}", reg.host()), &[]);
    r.fails(4, "no attestation attached");
}

#[test]
fn basic_auth_from_docker_config() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[("builder", "s3cret")]);
    let digest = push_image(d, &reg, "app:v1", "auth", Some("builder:s3cret"));
    let image = format!("{}/app", reg.host());
    let auth = base64::engine::general_purpose::STANDARD.encode("builder:s3cret");
    write(
        &d.join("docker/config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()).as_bytes(),
    );
    let r = record_image(
        d,
        &image,
        &digest,
        &["--registry-config", "docker/config.json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("attestation attached"), "{}", r.stderr);
    assert_eq!(
        att_manifest(&reg, "app", &digest, Some("builder:s3cret"))["layers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = verify_image(
        d,
        &format!("{image}:v1"),
        &["--registry-config", "docker/config.json"],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // Wrong or missing credentials: a clear error, exit 3, nothing lost.
    verify_image(d, &format!("{image}:v1"), &[]).fails(3, "authentication failed");
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        &format!("{image}:v1"),
        "--registry-auth",
        &format!("{}=builder", reg.host()),
    ])
    .env("PROVENANT_REGISTRY_PASSWORD", "wrong");
    run(c).fails(3, "authentication failed");
    let scoped = format!("{}=builder", reg.host());
    let r = record_image(
        d,
        &image,
        &digest,
        &[
            "--registry-auth",
            &scoped,
            "--registry-password",
            "wrong",
            "--builder-id",
            "https://x.example/2",
        ],
    );
    // The sidecar still succeeds (the attestation is in the log and the
    // file); the push failed and the spooled copy waits for `publish`.
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("not attached to") && r.stderr.contains("is kept in"),
        "{}",
        r.stderr
    );
}

#[test]
fn registry_outage_loses_nothing_and_publish_is_idempotent() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut reg = RegistryProc::start(&d.join("reg"), &[]);
    let digest = push_image(d, &reg, "app:v1", "outage", None);
    let image = format!("{}/app", reg.host());
    reg.stop();
    let started = Instant::now();
    let r = record_image(d, &image, &digest, &["--publish-timeout", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        r.stderr.contains("retrying"),
        "backoff is logged: {}",
        r.stderr
    );
    let kept: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("is kept in"))
        .collect();
    assert_eq!(kept.len(), 1, "one clear line: {}", r.stderr);
    assert!(
        kept[0].contains("state/spool/") && kept[0].contains("provenant publish"),
        "{}",
        kept[0]
    );
    // The attestation itself was emitted regardless.
    assert!(r.stdout.contains("provenantAttestation"));

    // While it is down, `publish` fails and keeps the file.
    let mut c = provenant(d);
    c.args(["publish", "--timeout", "1", "state/spool"]);
    let r = run(c).fails(3, "not published; they stay in state/spool");
    assert!(
        r.stderr.contains("the file stays in the spool"),
        "{}",
        r.stderr
    );
    reg.resume();
    let mut c = provenant(d);
    c.args(["publish", "state/spool"]);
    let r = run(c).ok();
    assert!(
        r.stdout.contains("published") && r.stdout.contains("appended"),
        "{}",
        r.stdout
    );
    // Again: nothing pending, nothing pushed twice.
    let mut c = provenant(d);
    c.args(["publish", "state/spool"]);
    let r = run(c).ok();
    assert!(!r.stdout.contains("published"), "{}", r.stdout);
    assert_eq!(
        att_manifest(&reg, "app", &digest, None)["layers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = verify_image(d, &format!("{image}:v1"), &[]);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("OK")).count(),
        2,
        "{}",
        r.stdout
    );
}

#[test]
fn bad_registries_and_references_fail_clearly() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "k", "ecdsa-p256");
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let digest = push_image(d, &reg, "app:v1", "bad", None);

    verify_image(d, &format!("{}/nope:v1", reg.host()), &[]).fails(3, "no such image");
    verify_image(d, "UPPER/Case::bad", &[]).fails(3, "not an image reference");

    // An `.att` tag that holds an ordinary image: refused, left untouched.
    let src_layout = d.join(format!("layout-{}", sha256_hex(b"bad")));
    let att_tag = format!("{}.att", digest.replace(':', "-"));
    let r = skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &format!("oci:{}:v1", src_layout.display()),
        &format!("docker://{}/app:{att_tag}", reg.host()),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/app:{att_tag}", reg.host()),
    ])
    .stdout;
    let r = record_image(
        d,
        &format!("{}/app", reg.host()),
        &digest,
        &["--publish-timeout", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("not a cosign attestation manifest"),
        "{}",
        r.stderr
    );
    let after = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/app:{att_tag}", reg.host()),
    ])
    .stdout;
    assert_eq!(before, after);
    // The foreign tag is reported and the referrer, the other layout, is
    // still checked (it used to stop everything with exit 3).
    let r = verify_image(d, &format!("{}/app:v1", reg.host()), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("FAIL")
            && l.contains("cosign .att tag")
            && l.contains("not a cosign attestation manifest")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("OK") && l.contains("OCI referrer")),
        "{}",
        r.stdout
    );

    // A "registry" that answers 500, or garbage.
    for (status, body) in [
        ("500 Internal Server Error", "oops"),
        ("200 OK", "{not json"),
    ] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let body = body.to_string();
        let status = status.to_string();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for s in l.incoming() {
                let Ok(mut s) = s else { break };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let r = verify_image(d, &format!("127.0.0.1:{port}/app:v1"), &[]);
        assert!(r.code == 3 || r.code == 4, "{}\n{}", r.stdout, r.stderr);
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("provenant: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", r.stderr);
        assert!(
            errors[0].contains(&format!("127.0.0.1:{port}/app:v1")),
            "{}",
            errors[0]
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn registry_settings_are_checked_before_the_build() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "k", "ecdsa-p256");
    write(&d.join("ws/source/a"), b"a");
    snapshot(d, &[]);
    write(&d.join("bad-config.json"), b"{\"auths\": [");
    // No marker will ever appear: the sidecar must fail at start, not wait.
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        "k.key",
        "--completion",
        "marker:never",
        "--publish",
        "--allow-image-repo",
        "localhost:5000/app",
        "--registry-config",
        "bad-config.json",
    ]);
    run(c).fails(3, "bad-config.json: not a docker config.json");
}

#[test]
fn gate_and_policy_on_an_image() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let digest = push_image(d, &reg, "app:v1", "gate", None);
    let image = format!("{}/app", reg.host());
    // Not attested yet: the next stage's gate refuses it.
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: k.pub\nbuilderIds: [\"https://provenant.dev/**\"]\n",
    );
    keygen(d, "k", "ecdsa-p256");
    let gate = |d: &Path| {
        let mut c = provenant(d);
        c.args([
            "snapshot",
            "--state",
            "next",
            "--require",
            &format!("image:{image}:v1"),
            "--policy",
            "policy.yaml",
            "--workspace",
            "ws2",
        ]);
        std::fs::create_dir_all(d.join("ws2")).unwrap();
        run(c)
    };
    gate(d).fails(5, "no attestation is attached");
    let r = record_image(d, &image, &digest, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    gate(d).ok();
    let snap = read_json(&d.join("next/snapshot.json"));
    let refs = snap["references"].as_array().unwrap();
    assert!(
        refs.iter()
            .any(|x| x["name"] == format!("attestation:image:{image}:v1")
                && x["uri"] == format!("{image}@{digest}")),
        "{refs:?}"
    );
    // verify --image --policy: a policy the attestation breaks.
    write(
        &d.join("strict.yaml"),
        b"version: 1\nkeys:\n  - path: k.pub\nbuilderIds: [https://elsewhere.example.com/x]\n",
    );
    let mut c = provenant(d);
    c.args([
        "verify",
        "--policy",
        "strict.yaml",
        "--image",
        &format!("{image}:v1"),
    ]);
    let r = run(c);
    assert_eq!(r.code, 5, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("FAIL") && r.stdout.contains("predicate.runDetails.builder.id"),
        "{}",
        r.stdout
    );
}

/// The builder writes the image it "built" into its results: here an image
/// of another team that is already in the registry. With the operator's
/// allow-list the claim is refused and nothing is attached to that image;
/// a claim inside the allowed repository must also exist there.
#[test]
fn a_builder_cannot_choose_whose_image_gets_the_attestation() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let victim = push_image(d, &reg, "other-team/prod:v1", "someone else's", None);
    let ours = format!("{}/team/app", reg.host());
    let victim_image = format!("{}/other-team/prod", reg.host());
    keygen(d, "k", "ecdsa-p256");
    let claim = |image: &str, digest: &str, extra: &[&str]| {
        write(
            &d.join("ws/source/main.c"),
            b"int main(void) { return 0; }\n",
        );
        let _ = std::fs::remove_dir_all(d.join("state"));
        snapshot(d, &[]);
        // Different each time: products are what the build changed.
        write(
            &d.join("ws/out/image.tar"),
            format!("{image}{digest}{extra:?}").as_bytes(),
        );
        write(
            &d.join("results/IMAGE_URL"),
            format!("{image}\n").as_bytes(),
        );
        write(
            &d.join("results/IMAGE_DIGEST"),
            format!("{digest}\n").as_bytes(),
        );
        write(&d.join("done"), b"0");
        let mut c = provenant(d);
        c.args([
            "record",
            "--state",
            "state",
            "--key",
            "k.key",
            "--completion",
            "marker:done",
            "--tekton-results",
            "results",
            "--publish",
            "--allow-image-repo",
            &ours,
        ])
        .args(extra);
        run(c)
    };
    // Someone else's repository: refused, never attached there.
    let r = claim(&victim_image, &victim, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("repository not in --allow-image-repo"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("attestation attached"), "{}", r.stderr);
    let st = statement_of(&d.join("state/provenance.intoto.jsonl"));
    assert!(
        st["subject"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != victim_image.as_str()),
        "{st}"
    );
    verify_image(d, &format!("{victim_image}@{victim}"), &[]).fails(4, "no attestation attached");
    // Only the claimed image may be the subject: without a surviving claim
    // nothing is signed.
    let r = claim(&victim_image, &victim, &["--subjects", "reported"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no image claim survived"), "{}", r.stderr);
    assert!(!d.join("state/provenance.intoto.jsonl").exists());
    // The allowed repository, but a digest that is not there: refuted.
    let missing = format!("sha256:{}", "e".repeat(64));
    let r = claim(&ours, &missing, &["--subjects", "reported"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the registry does not confirm it by its digest"),
        "{}",
        r.stderr
    );
    // A name that is not an image reference at all, with a newline in it.
    let r = claim(
        &format!("{ours}\nsha256:{}  evil", "0".repeat(64)),
        &missing,
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("image claim refused"), "{}", r.stderr);
    // --publish without an allow-list is refused before any build.
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        "k.key",
        "--completion",
        "marker:never",
        "--publish",
    ]);
    run(c).fails(2, "--publish needs --allow-image-repo");
}

/// A signed statement about `repo@digest` from builder `builder`, as a
/// spool entry in `spool` (what `record --publish` leaves when the
/// registry is down); returns the envelope's layer digest.
fn spool_entry(d: &Path, spool: &Path, repo: &str, digest: &str, builder: &str) -> String {
    use provenant::sign::{Envelope, LocalSigner, Signer};
    if !d.join("k.key").exists() {
        keygen(d, "k", "ecdsa-p256");
    }
    let signer = LocalSigner::load(&d.join("k.key")).unwrap();
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repo, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {"buildType": "https://provenant.dev/test", "externalParameters": {}},
            "runDetails": {"builder": {"id": builder}}
        }
    });
    let env = Envelope::sign(
        "application/vnd.in-toto+json",
        &serde_json::to_vec(&statement).unwrap(),
        &signer,
    )
    .unwrap();
    let entry = serde_json::json!({
        "version": 1,
        "image": format!("{repo}@{digest}"),
        "predicateType": "https://slsa.dev/provenance/v1",
        "keyId": signer.key_id(),
        "envelope": env,
    });
    std::fs::create_dir_all(spool.join("published")).unwrap();
    let name = format!("{}.json", &sha256_hex(builder.as_bytes())[..16]);
    std::fs::write(spool.join(name), serde_json::to_vec(&entry).unwrap()).unwrap();
    format!("sha256:{}", sha256_hex(env.to_json().as_bytes()))
}

fn inspect_raw(reg: &RegistryProc, reference: &str) -> Option<String> {
    let r = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/{reference}", reg.host()),
    ]);
    (r.code == 0).then_some(r.stdout)
}

/// Issue 16: twelve publishers of distinct attestations for one image,
/// each a separate process, all at once; in every run all twelve end in the
/// `.att` manifest and in the referrers index (distribution has no
/// compare-and-swap on tags: this is the merge-and-verify loop at work).
#[test]
fn concurrent_publishers_lose_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let repo = format!("{}/app", reg.host());
    for run_no in 0..3 {
        let digest = push_image(d, &reg, "app:v1", &format!("concurrent {run_no}"), None);
        let mut layers = Vec::new();
        for i in 0..12 {
            layers.push(spool_entry(
                d,
                &d.join(format!("spool-{run_no}-{i}")),
                &repo,
                &digest,
                &format!("https://ci.example.com/{run_no}/{i}"),
            ));
        }
        let children: Vec<(usize, Child)> = (0..12)
            .map(|i| {
                let mut c = provenant(d);
                c.args(["publish", "--timeout", "60"])
                    .arg(format!("spool-{run_no}-{i}"))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                (i, c.spawn().unwrap())
            })
            .collect();
        let mut remerged = 0;
        for (i, c) in children {
            let out = c.wait_with_output().unwrap();
            remerged += String::from_utf8_lossy(&out.stderr)
                .matches("dropped our entry")
                .count();
            assert!(
                out.status.success(),
                "publisher {i}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let published = d.join(format!("spool-{run_no}-{i}/published"));
            assert_eq!(std::fs::read_dir(published).unwrap().count(), 1);
        }
        eprintln!(
            "run {run_no}: {remerged} entries lost to a concurrent writer were merged in again"
        );
        let hex = digest.replace(':', "-");
        let att: serde_json::Value =
            serde_json::from_str(&inspect_raw(&reg, &format!("app:{hex}.att")).unwrap()).unwrap();
        let mut got: Vec<String> = att["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        layers.sort();
        assert_eq!(got, layers, "run {run_no}: .att layers");
        let index: serde_json::Value =
            serde_json::from_str(&inspect_raw(&reg, &format!("app:{hex}")).unwrap()).unwrap();
        let entries = index["manifests"].as_array().unwrap();
        let mut referrers: Vec<&str> = entries
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        referrers.sort();
        referrers.dedup();
        assert_eq!(referrers.len(), 12, "run {run_no}: referrers index {index}");
        // Each one checks out on its own, in both layouts.
        if run_no == 0 {
            let r = verify_image(d, &format!("{repo}@{digest}"), &[]);
            assert_eq!(
                r.stdout.lines().filter(|l| l.starts_with("OK")).count(),
                24,
                "{}\n{}",
                r.stdout,
                r.stderr
            );
        }
    }
}

/// Issue 16: an index or an image on the `.att` tag or on the referrers
/// tag is left byte-identical; the other layout still gets the
/// attestation, and `verify --image` still checks it.
#[test]
fn foreign_content_on_either_tag_is_never_replaced() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let repo = format!("{}/app", reg.host());
    let foreign_image_layout = |content: &str| {
        let digest = push_image(d, &reg, "scratch:v1", content, None);
        (
            digest,
            d.join(format!("layout-{}", sha256_hex(content.as_bytes()))),
        )
    };
    let (_, image_layout) = foreign_image_layout("a foreign image");
    // An OCI index: skopeo copies a multi-manifest layout as is.
    let index_layout = d.join("index-layout");
    std::fs::create_dir_all(&index_layout).unwrap();
    let r = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", image_layout.display()))
        .arg(&index_layout)
        .status()
        .unwrap();
    assert!(r.success());
    let inner: serde_json::Value = read_json(&image_layout.join("index.json"));
    let man = inner["manifests"][0].clone();
    let nested = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":man["mediaType"],"digest":man["digest"],"size":man["size"],"platform":{"architecture":"amd64","os":"linux"}}]});
    let nested_bytes = serde_json::to_vec(&nested).unwrap();
    let nested_hex = sha256_hex(&nested_bytes);
    std::fs::write(
        index_layout.join("blobs/sha256").join(&nested_hex),
        &nested_bytes,
    )
    .unwrap();
    std::fs::write(
        index_layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":format!("sha256:{nested_hex}"),"size":nested_bytes.len(),"annotations":{"org.opencontainers.image.ref.name":"v1"}}]})).unwrap(),
    )
    .unwrap();

    let place = |layout: &Path, tag: &str| {
        let r = skopeo(&[
            "copy",
            "--quiet",
            "--all",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/app:{tag}", reg.host()),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    let cases = [
        ("index on .att", &index_layout, true),
        ("image on .att", &image_layout, true),
        ("index on referrers tag", &index_layout, false),
        ("image on referrers tag", &image_layout, false),
    ];
    for (n, (what, layout, on_att)) in cases.iter().enumerate() {
        let digest = push_image(d, &reg, "app:v1", &format!("subject {n}"), None);
        let hex = digest.replace(':', "-");
        let tag = if *on_att {
            format!("{hex}.att")
        } else {
            hex.clone()
        };
        place(layout, &tag);
        let before = inspect_raw(&reg, &format!("app:{tag}")).unwrap();
        // An index on the referrers tag is what the tag schema holds, so
        // only a non-index there is foreign; an index of unrelated
        // entries gets ours appended (covered below).
        let spool = d.join(format!("spool-foreign-{n}"));
        spool_entry(
            d,
            &spool,
            &repo,
            &digest,
            &format!("https://ci.example.com/foreign/{n}"),
        );
        let mut c = provenant(d);
        c.arg("publish").arg(&spool);
        let r = run(c);
        let after = inspect_raw(&reg, &format!("app:{tag}")).unwrap();
        if !*on_att && *layout == &index_layout {
            assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
            let idx: serde_json::Value = serde_json::from_str(&after).unwrap();
            let before_idx: serde_json::Value = serde_json::from_str(&before).unwrap();
            let entries = idx["manifests"].as_array().unwrap();
            assert_eq!(entries.len(), 2, "{what}: appended, not replaced: {idx}");
            assert_eq!(entries[0], before_idx["manifests"][0], "{what}");
            continue;
        }
        assert_eq!(before, after, "{what}: the foreign tag changed");
        assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("left untouched") && r.stdout.contains(&tag),
            "{what}: reported: {}",
            r.stdout
        );
        // The other layout got it, and verify finds it there.
        let v = verify_image(d, &format!("{repo}@{digest}"), &[]);
        assert_eq!(v.code, 0, "{what}: {}{}", v.stdout, v.stderr);
        let want = if *on_att {
            "OCI referrer"
        } else {
            "cosign .att layer"
        };
        assert!(
            v.stdout
                .lines()
                .any(|l| l.starts_with("OK") && l.contains(want)),
            "{what}: {}",
            v.stdout
        );
        assert!(
            v.stdout
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains("leaving it untouched")),
            "{what}: {}",
            v.stdout
        );
    }
}

/// Appending to a `.att` that cosign made keeps its manifest annotations
/// and its config (dates, other fields), adding our layer the way
/// go-containerregistry's mutate.Append does.
#[test]
fn appending_to_a_cosign_att_keeps_what_is_there() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let repo = format!("{}/app", reg.host());
    let digest = push_image(d, &reg, "app:v1", "cosign made", None);
    let hex = digest.replace(':', "-");
    // A cosign-style .att: one DSSE layer (an envelope from another
    // signer), a config with real dates, manifest annotations.
    let layout = d.join("cosign-att");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        std::fs::write(blobs.join(sha256_hex(b)), b).unwrap();
        (format!("sha256:{}", sha256_hex(b)), b.len())
    };
    let their = br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"MEUCIQ=="}]}"#;
    let (their_digest, their_size) = put(their);
    let config = serde_json::json!({"architecture":"","created":"2024-05-01T10:00:00Z","history":[{"created":"2024-05-01T10:00:00Z","created_by":"cosign attest"}],"os":"","rootfs":{"type":"layers","diff_ids":[their_digest]},"config":{}});
    let (cfg_digest, cfg_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": their_digest, "size": their_size,
                    "annotations": {"dev.cosignproject.cosign/signature": "", "predicateType": "https://cosign.sigstore.dev/attestation/v1"}}],
        "annotations": {"org.example.made-by": "cosign", "dev.sigstore.cosign/bundle": "x"}
    });
    let (m_digest, m_size) = put(&serde_json::to_vec(&manifest).unwrap());
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":m_digest,"size":m_size,"annotations":{"org.opencontainers.image.ref.name":"att"}}]})).unwrap(),
    )
    .unwrap();
    let r = skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &format!("oci:{}:att", layout.display()),
        &format!("docker://{}/app:{hex}.att", reg.host()),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let spool = d.join("spool");
    let ours = spool_entry(
        d,
        &spool,
        &repo,
        &digest,
        "https://ci.example.com/after-cosign",
    );
    let mut c = provenant(d);
    c.arg("publish").arg(&spool);
    run(c).ok();
    let after: serde_json::Value =
        serde_json::from_str(&inspect_raw(&reg, &format!("app:{hex}.att")).unwrap()).unwrap();
    assert_eq!(after["annotations"], manifest["annotations"], "{after}");
    let layers = after["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0], manifest["layers"][0]);
    assert_eq!(layers[1]["digest"], ours.as_str());
    // The config: same dates and fields, our diff_id and a history entry added.
    let cfg_ref = after["config"]["digest"].as_str().unwrap();
    let out = d.join("after-layout");
    let r = skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--preserve-digests",
        &format!("docker://{}/app:{hex}.att", reg.host()),
        &format!("oci:{}:att", out.display()),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cfg = read_json(
        &out.join("blobs/sha256")
            .join(cfg_ref.trim_start_matches("sha256:")),
    );
    assert_eq!(cfg["created"], "2024-05-01T10:00:00Z", "{cfg}");
    assert_eq!(cfg["history"][0], config["history"][0], "{cfg}");
    assert_eq!(cfg["history"].as_array().unwrap().len(), 2, "{cfg}");
    assert_eq!(
        cfg["rootfs"]["diff_ids"],
        serde_json::json!([their_digest, ours]),
        "{cfg}"
    );
}

/// `publish --reconcile`: an entry already published but since dropped
/// from the `.att` tag by another writer is found missing and pushed again.
#[test]
fn reconcile_puts_back_what_another_writer_dropped() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let repo = format!("{}/app", reg.host());
    let digest = push_image(d, &reg, "app:v1", "reconcile", None);
    let hex = digest.replace(':', "-");
    let spool = d.join("spool");
    let ours = spool_entry(
        d,
        &spool,
        &repo,
        &digest,
        "https://ci.example.com/reconcile",
    );
    let mut c = provenant(d);
    c.arg("publish").arg(&spool);
    run(c).ok();
    // Another writer that read the tag before us overwrites it: here,
    // the tag put back to an empty cosign manifest of someone else's.
    let before = inspect_raw(&reg, &format!("app:{hex}.att")).unwrap();
    let other = d.join("spool-other");
    spool_entry(
        d,
        &other,
        &format!("{}/other", reg.host()),
        &push_image(d, &reg, "other:v1", "other", None),
        "https://ci.example.com/other",
    );
    let mut c = provenant(d);
    c.arg("publish").arg(&other);
    run(c).ok();
    let other_hex = std::fs::read_dir(d.join("spool-other/published"))
        .unwrap()
        .count();
    assert_eq!(other_hex, 1);
    let other_digest = {
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                std::fs::read_dir(other.join("published"))
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path(),
            )
            .unwrap(),
        )
        .unwrap();
        v["image"]
            .as_str()
            .unwrap()
            .rsplit_once('@')
            .unwrap()
            .1
            .replace(':', "-")
    };
    let r = skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/other:{other_digest}.att", reg.host()),
        &format!("docker://{}/app:{hex}.att", reg.host()),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_ne!(
        inspect_raw(&reg, &format!("app:{hex}.att")).unwrap(),
        before
    );
    let mut c = provenant(d);
    c.args(["publish", "--reconcile"]).arg(&spool);
    let r = run(c).ok();
    assert!(
        r.stdout.contains("missing") && r.stdout.contains("published"),
        "{}",
        r.stdout
    );
    let att: serde_json::Value =
        serde_json::from_str(&inspect_raw(&reg, &format!("app:{hex}.att")).unwrap()).unwrap();
    assert!(
        att["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["digest"] == ours.as_str()),
        "{att}"
    );
    // Nothing missing any more: reconcile only reports.
    let mut c = provenant(d);
    c.args(["publish", "--reconcile"]).arg(&spool);
    let r = run(c).ok();
    assert!(
        r.stdout.contains("present") && !r.stdout.contains("missing"),
        "{}",
        r.stdout
    );
}

/// `verify --image` with attestations attached but none signed by a
/// trusted key: one error line, exit 4.
#[test]
fn verify_image_with_nothing_trusted_says_so() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let repo = format!("{}/app", reg.host());
    let digest = push_image(d, &reg, "app:v1", "untrusted", None);
    let spool = d.join("spool");
    spool_entry(
        d,
        &spool,
        &repo,
        &digest,
        "https://ci.example.com/untrusted",
    );
    let mut c = provenant(d);
    c.arg("publish").arg(&spool);
    run(c).ok();
    keygen(d, "other", "ecdsa-p256");
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "other.pub",
        "--image",
        &format!("{repo}:v1"),
    ]);
    let r = run(c).fails(4, "none of the 2 attached attestation(s) verified");
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("FAIL")).count(),
        2,
        "{}",
        r.stdout
    );
    // And a missing spool directory is "could not do it", not a bug.
    let mut c = provenant(d);
    c.args(["publish", "no-such-spool"]);
    run(c).fails(3, "no-such-spool");
}

/// Every output from every command: `attest` and `run` publish too, to the
/// images a report names in an allowed repository (here, Tekton-style
/// results a release script wrote beside its build).
#[test]
fn attest_and_run_publish_like_the_sidecar() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let digest = push_image(d, &reg, "team/tool:v1", "one machine", None);
    let image = format!("{}/team/tool", reg.host());
    keygen(d, "k", "ecdsa-p256");
    write(
        &d.join("results/IMAGE_URL"),
        format!("{image}:v1\n").as_bytes(),
    );
    write(
        &d.join("results/IMAGE_DIGEST"),
        format!("{digest}\n").as_bytes(),
    );
    write(&d.join("out/tool.tar"), b"the image's layers");
    let publish = [
        "--tekton-results",
        "results",
        "--allow-image-repo",
        image.as_str(),
        "--publish",
        "--spool",
        "spool",
    ];
    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "out",
        "--key",
        "k.key",
        "-o",
        "attest.jsonl",
    ])
    .args(publish);
    let r = run(c).ok();
    assert!(r.stderr.contains("attestation attached"), "{}", r.stderr);
    let mut c = provenant(d);
    c.args([
        "run",
        "--product",
        "out",
        "--key",
        "k.key",
        "-o",
        "run.jsonl",
    ])
    .args(publish)
    .args(["--", "true"]);
    let r = run(c).ok();
    assert!(r.stderr.contains("attestation attached"), "{}", r.stderr);
    // Both are there: the subject is the image, checked in the registry.
    let st = statement_of(&d.join("run.jsonl"));
    assert_eq!(st["subject"][0]["name"], image.as_str());
    assert_eq!(
        st["subject"][0]["annotations"]["provenant.claimCheck"],
        "registry"
    );
    let r = verify_image(d, &format!("{image}@{digest}"), &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("4 of 4 attestations verified"),
        "{}",
        r.stderr
    );
}

/// Security review: an OCI layout's `ref.name` is the builder's writing, so
/// with an allow-list a layout claim is held to the rules of any report: it
/// needs a repository name (the operator's `--oci-layout-image`, else the
/// annotation) in an allowed repository, and must resolve there by its
/// digest before it is signed as checked.
#[test]
fn layout_claims_go_through_the_allow_list_and_the_registry() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let digest = push_image(d, &reg, "app:v1", "built into a layout", None);
    let layout = d.join(format!(
        "layout-{}",
        sha256_hex("built into a layout".as_bytes())
    ));
    let layout_arg = layout.display().to_string();
    let record = |extra: &[&str]| {
        let mut args = vec!["--subjects", "reported", "--oci-layout", &layout_arg];
        args.extend(extra);
        sidecar(d, || {}, &args)
    };
    let app = format!("{}/app", reg.host());
    // The layout names only a tag ("v1"): not the allowed repository.
    let r = record(&["--allow-image-repo", &app]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("repository not in --allow-image-repo")
            && r.stderr.contains("no image claim survived"),
        "{}",
        r.stderr
    );
    // The operator names the image: resolved by digest in the registry.
    let r = record(&[
        "--allow-image-repo",
        &app,
        "--oci-layout-image",
        &format!("{app}:v1"),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line: serde_json::Value = serde_json::from_str(
        r.stdout
            .lines()
            .find(|l| l.contains("payload"))
            .unwrap_or_else(|| panic!("no attestation line: {}", r.stdout)),
    )
    .unwrap();
    let st: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(line["envelope"]["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(st["subject"][0]["name"], app.as_str());
    assert_eq!(
        st["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    assert_eq!(
        st["subject"][0]["annotations"]["provenant.claimCheck"],
        "registry"
    );
    // An allowed repository the manifest was never pushed to: refuted.
    let r = record(&[
        "--allow-image-repo",
        &format!("{}/*", reg.host()),
        "--oci-layout-image",
        &format!("{}/other", reg.host()),
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the registry does not confirm it by its digest"),
        "{}",
        r.stderr
    );
}

/// A blob as the registry serves it (plain HTTP/1.0 on loopback).
fn get_blob(reg: &RegistryProc, repo: &str, digest: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(reg.host()).unwrap();
    write!(
        s,
        "GET /v2/{repo}/blobs/{digest} HTTP/1.0\r\nHost: {}\r\n\r\n",
        reg.host()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200") || out.starts_with(b"HTTP/1.0 200"));
    out[split + 4..].to_vec()
}

/// Keyless with Rekor, published, with Rekor down when the build ends:
/// nothing is attached until `provenant publish` has the entry logged;
/// then the `.att` layer carries the certificate and the Rekor bundle as
/// cosign writes them, the referrer's bundle verifies with sigstore-js
/// (identity and log entry required), and `provenant verify --image`
/// verifies both layouts against the trusted root.
#[test]
fn keyless_attestations_are_attached_once_rekor_has_them() {
    use common::sigstore_mock::{sigstore_js_verify, token, MockSigstore, ISSUER};
    let sa = "system:serviceaccount:ci:builder";
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let reg = RegistryProc::start(&d.join("reg"), &[]);
    let digest = push_image(d, &reg, "team/kl:v1", "keyless", None);
    let image = format!("{}/team/kl", reg.host());
    let m = MockSigstore::start(d);
    write(&d.join("token"), token(sa, ISSUER, 3600).as_bytes());
    write(
        &d.join("results/IMAGE_URL"),
        format!("{image}:v1\n").as_bytes(),
    );
    write(
        &d.join("results/IMAGE_DIGEST"),
        format!("{digest}\n").as_bytes(),
    );
    write(&d.join("out/kl.tar"), b"the image's layers");
    m.rekor_down(true);
    let mut c = provenant(d);
    c.args([
        "run",
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "token",
        "--rekor-url",
        &m.url,
        "--product",
        "out",
        "-o",
        "kl.intoto.jsonl",
        "--bundle",
        "kl.sigstore.json",
        "--tekton-results",
        "results",
        "--allow-image-repo",
        &image,
        "--publish",
        "--spool",
        "spool",
        "--publish-timeout",
        "3",
        "--",
        "true",
    ]);
    let r = run(c).ok();
    assert!(r.stderr.contains("not attached yet"), "{}", r.stderr);
    let att_tag = format!("team/kl:{}.att", digest.replace(':', "-"));
    assert!(
        inspect_raw(&reg, &att_tag).is_none(),
        "attached without its log entry"
    );

    m.rekor_down(false);
    let mut c = provenant(d);
    c.args(["publish", "spool"]);
    let r = run(c).ok();
    assert!(
        r.stdout.contains("witnessed") && r.stdout.contains("published"),
        "{}",
        r.stdout
    );

    // The cosign layer's annotations, as cosign writes them.
    let bundle = read_json(&d.join("kl.sigstore.json"));
    let entry = &bundle["verificationMaterial"]["tlogEntries"][0];
    let att = att_manifest(&reg, "team/kl", &digest, None);
    let ann = &att["layers"][0]["annotations"];
    let cert_der = base64::engine::general_purpose::STANDARD
        .decode(
            bundle["verificationMaterial"]["certificate"]["rawBytes"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let cert_pem = ann["dev.sigstore.cosign/certificate"].as_str().unwrap();
    assert!(
        cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"),
        "{cert_pem}"
    );
    let parsed = pem_der(cert_pem);
    assert_eq!(parsed, cert_der);
    let rb: serde_json::Value =
        serde_json::from_str(ann["dev.sigstore.cosign/bundle"].as_str().unwrap()).unwrap();
    assert_eq!(
        rb["SignedEntryTimestamp"],
        entry["inclusionPromise"]["signedEntryTimestamp"]
    );
    assert_eq!(rb["Payload"]["body"], entry["canonicalizedBody"]);
    assert_eq!(
        rb["Payload"]["logIndex"].as_i64().unwrap().to_string(),
        entry["logIndex"].as_str().unwrap()
    );
    assert_eq!(ann["dev.cosignproject.cosign/signature"], "");

    // The referrer's bundle, fetched from the registry, checked by sigstore-js.
    let index: serde_json::Value = serde_json::from_str(
        &inspect_raw(&reg, &format!("team/kl:{}", digest.replace(':', "-"))).unwrap(),
    )
    .unwrap();
    let referrer = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&inspect_raw(&reg, &format!("team/kl@{referrer}")).unwrap()).unwrap();
    let blob = get_blob(
        &reg,
        "team/kl",
        manifest["layers"][0]["digest"].as_str().unwrap(),
    );
    std::fs::write(d.join("referrer.sigstore.json"), &blob).unwrap();
    let js = sigstore_js_verify(
        &d.join("referrer.sigstore.json"),
        &m.trusted_root,
        &[
            "--certificate-identity",
            sa,
            "--certificate-oidc-issuer",
            ISSUER,
            "--tlog-threshold",
            "1",
        ],
    );
    assert_eq!(js.code, 0, "{}{}", js.stdout, js.stderr);

    // provenant verify --image, keyless: both layouts.
    let verify = |identity: &str| {
        let mut c = provenant(d);
        c.args([
            "verify",
            "--image",
            &format!("{image}@{digest}"),
            "--trusted-root",
            m.trusted_root.to_str().unwrap(),
            "--certificate-identity",
            identity,
            "--certificate-oidc-issuer",
            ISSUER,
            "--require-tlog",
        ]);
        run(c)
    };
    let r = verify(sa).ok();
    assert!(
        r.stderr.contains("2 of 2 attestations verified"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    verify("system:serviceaccount:ci:other").fails(exit::INVALID, "none of the 2 attached");
}

fn pem_der(text: &str) -> Vec<u8> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}
