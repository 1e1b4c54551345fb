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
    if !d.join("k.key").exists() {
        keygen(d, "k", "ecdsa-p256");
    }
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    let _ = std::fs::remove_dir_all(d.join("state"));
    snapshot(d, &[]);
    write(&d.join("ws/out/image.tar"), digest.as_bytes());
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
    ])
    .args(extra);
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
        "--registry-username",
        "builder",
    ])
    .env("PROVENANT_REGISTRY_PASSWORD", "wrong");
    run(c).fails(3, "authentication failed");
    let r = record_image(
        d,
        &image,
        &digest,
        &[
            "--registry-username",
            "builder",
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
    verify_image(d, &format!("{}/app:v1", reg.host()), &[])
        .fails(3, "not a cosign attestation manifest");

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
