//! Registries misbehaving in ways the real `docker-registry` will not:
//! hanging, slow, sending a gigabyte, asking for credentials it should not
//! get, and a registry with the OCI 1.1 referrers API (distribution 2.8 has
//! none). Each is a small HTTP server in this file: an in-memory registry
//! that follows the distribution spec, wrapped with the fault under test.
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    /// Path and query.
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Accept the request, never answer.
    Hang,
    /// `prefix` then an endless body with no Content-Length, until the
    /// client hangs up (or 2 GiB).
    Endless { prefix: Vec<u8> },
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    Reply::Full {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.into(),
    }
}

type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

struct Fake {
    port: u16,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log2 = log.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { break };
                let handler = handler.clone();
                let log = log2.clone();
                std::thread::spawn(move || serve(s, &*handler, &log));
            }
        });
        Fake { port, log }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(mut s: TcpStream, handler: &Handler, log: &Mutex<Vec<Req>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let req = Req {
        method,
        path,
        headers,
        body,
    };
    log.lock().unwrap().push(req.clone());
    match handler(&req) {
        Reply::Hang => std::thread::sleep(Duration::from_secs(120)),
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
            let head_only = req.method == "HEAD";
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            {
                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let _ = s.write_all(out.as_bytes());
            if !head_only {
                let _ = s.write_all(&body);
            }
        }
        Reply::Endless { prefix } => {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
            );
            let _ = s.write_all(&prefix);
            let block = vec![b'a'; 64 << 10];
            let mut sent = 0u64;
            while sent < 2 << 30 {
                if s.write_all(&block).is_err() {
                    break;
                }
                sent += block.len() as u64;
            }
        }
    }
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(b))
}

/// An in-memory registry after the distribution spec: blobs, monolithic
/// uploads, manifests by tag and digest, and (when `referrers_api`) the
/// OCI 1.1 referrers API with `OCI-Subject` on pushes that carry a subject.
#[derive(Default)]
struct Mem {
    blobs: HashMap<String, Vec<u8>>,
    /// (repository, tag or digest) -> (media type, bytes)
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    referrers: HashMap<String, Vec<serde_json::Value>>,
    referrers_api: bool,
    uploads: u64,
}

impl Mem {
    fn put_manifest(&mut self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let d = sha256(bytes);
        self.manifests.insert(
            (repo.to_string(), reference.to_string()),
            (media_type.to_string(), bytes.to_vec()),
        );
        self.manifests.insert(
            (repo.to_string(), d),
            (media_type.to_string(), bytes.to_vec()),
        );
    }

    fn handle(&mut self, r: &Req) -> Reply {
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        if path == "/v2/" {
            return reply(
                200,
                &[("Docker-Distribution-Api-Version", "registry/2.0")],
                "{}",
            );
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return reply(404, &[], "");
        };
        let not_found = |code: &str| {
            reply(
                404,
                &[("Content-Type", "application/json")],
                format!(r#"{{"errors":[{{"code":"{code}","message":"unknown"}}]}}"#),
            )
        };
        if let Some((repo, upload)) = rest.split_once("/blobs/uploads/") {
            if r.method == "POST" {
                self.uploads += 1;
                let loc = format!("/v2/{repo}/blobs/uploads/u{}?_state=x", self.uploads);
                return reply(202, &[("Location", loc.as_str())], "");
            }
            if r.method == "PUT" && !upload.is_empty() {
                let digest = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .unwrap_or("")
                    .replace("%3A", ":");
                if sha256(&r.body) != digest {
                    return reply(400, &[], r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#);
                }
                self.blobs.insert(digest.clone(), r.body.clone());
                return reply(201, &[("Docker-Content-Digest", digest.as_str())], "");
            }
        }
        if let Some((_repo, digest)) = rest.split_once("/blobs/") {
            return match self.blobs.get(digest) {
                Some(b) => reply(200, &[], b.clone()),
                None => not_found("BLOB_UNKNOWN"),
            };
        }
        if let Some((repo, reference)) = rest.split_once("/manifests/") {
            if r.method == "PUT" {
                let mt = r.header("Content-Type").unwrap_or("").to_string();
                self.put_manifest(repo, reference, &mt, &r.body);
                let d = sha256(&r.body);
                let mut headers = vec![("Docker-Content-Digest".to_string(), d.clone())];
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                if let (true, Some(subject)) = (self.referrers_api, v["subject"]["digest"].as_str())
                {
                    let mut entry = serde_json::json!({
                        "mediaType": v["mediaType"], "digest": d, "size": r.body.len(),
                        "artifactType": v["artifactType"],
                    });
                    if v.get("annotations").is_some() {
                        entry["annotations"] = v["annotations"].clone();
                    }
                    let list = self.referrers.entry(subject.to_string()).or_default();
                    if !list.iter().any(|e| e["digest"] == d.as_str()) {
                        list.push(entry);
                    }
                    headers.push(("OCI-Subject".into(), subject.into()));
                }
                return Reply::Full {
                    status: 201,
                    headers,
                    body: Vec::new(),
                };
            }
            return match self
                .manifests
                .get(&(repo.to_string(), reference.to_string()))
            {
                Some((mt, b)) => reply(
                    200,
                    &[
                        ("Content-Type", mt.as_str()),
                        ("Docker-Content-Digest", &sha256(b)),
                    ],
                    b.clone(),
                ),
                None => not_found("MANIFEST_UNKNOWN"),
            };
        }
        if let Some((_repo, digest)) = rest.split_once("/referrers/") {
            if !self.referrers_api {
                return reply(404, &[("Content-Type", "text/plain")], "404 page not found");
            }
            let want = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("artifactType="))
                .map(|a| a.replace("%2B", "+").replace("%2F", "/"));
            let list: Vec<serde_json::Value> = self
                .referrers
                .get(digest)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| want.as_deref().is_none_or(|w| e["artifactType"] == w))
                .collect();
            let body = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": list,
            });
            let mut headers = vec![("Content-Type", "application/vnd.oci.image.index.v1+json")];
            if want.is_some() {
                headers.push(("OCI-Filters-Applied", "artifactType"));
            }
            return reply(200, &headers, serde_json::to_vec(&body).unwrap());
        }
        reply(404, &[], "")
    }
}

/// A small image manifest stored under `repo:v1`; returns its digest.
fn seed_image(mem: &mut Mem, repo: &str) -> String {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    mem.blobs.insert(sha256(config), config.to_vec());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": []
    }))
    .unwrap();
    mem.put_manifest(
        repo,
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    sha256(&manifest)
}

/// snapshot + record for a builder that reported `image@digest` through
/// Tekton results, with `--publish` and `extra`.
fn record_cmd(d: &Path, image: &str, digest: &str, extra: &[&str]) -> Command {
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
        "--allow-image-repo",
        image,
    ])
    .args(extra);
    c
}

/// Issue 16: `record --publish-timeout 5` returns within 6 s whatever the
/// registry does, keeps the spool entry and says where it is.
#[test]
fn publish_timeout_is_a_deadline() {
    let digest_of_nothing = sha256(b"an image nobody will ever see");
    // A registry that accepts connections and never answers.
    let hanging = Fake::start(|_| Reply::Hang);
    // One that answers everything correctly, 2 s late.
    let mem = Arc::new(Mutex::new(Mem::default()));
    let slow_digest = seed_image(&mut mem.lock().unwrap(), "app");
    let m = mem.clone();
    let slow = Fake::start(move |r| {
        std::thread::sleep(Duration::from_secs(2));
        m.lock().unwrap().handle(r)
    });
    for (what, port, digest) in [
        ("hanging", hanging.port, digest_of_nothing.as_str()),
        ("slow", slow.port, slow_digest.as_str()),
    ] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let image = format!("127.0.0.1:{port}/app");
        let mut c = record_cmd(d, &image, digest, &["--publish-timeout", "5"]);
        let started = Instant::now();
        c.stdin(Stdio::null());
        let r = run(c);
        let took = started.elapsed();
        let exited = time::OffsetDateTime::now_utc();
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        // The deadline runs from the end of finalizing (the attestation is
        // written and logged, then published): the sidecar must be gone 6 s
        // after that line. The whole run also counts process start and a
        // (tiny) finalize.
        let written = r
            .stderr
            .lines()
            .find(|l| l.contains("attestation written"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|ts| {
                time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()
            })
            .expect("the attestation-written line with its time");
        let publishing = exited - written;
        eprintln!("{what} registry: record returned {publishing} after the attestation was written, {took:?} after it started");
        assert!(
            publishing < time::Duration::seconds(6),
            "{what}: publishing took {publishing}\n{}",
            r.stderr
        );
        assert!(
            took < Duration::from_secs(7),
            "{what}: record took {took:?}\n{}",
            r.stderr
        );
        let kept: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.contains("is kept in"))
            .collect();
        assert_eq!(kept.len(), 1, "{what}: {}", r.stderr);
        eprintln!("{what}: {}", kept[0]);
        let spooled: Vec<_> = std::fs::read_dir(d.join("state/spool"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .collect();
        assert_eq!(spooled.len(), 1, "{what}");
        assert!(
            kept[0].contains(
                &spooled[0]
                    .path()
                    .strip_prefix(d)
                    .unwrap()
                    .display()
                    .to_string()
            ),
            "{what}: the line names the file: {}",
            kept[0]
        );
        assert!(r.stdout.contains("provenantAttestation"), "{what}");
    }
    // The slow registry was pinged once, not before every request.
    let pings = slow.requests().iter().filter(|r| r.path == "/v2/").count();
    assert!(pings <= 1, "{pings} pings");
}

/// Peak RSS of a finished child, from wait4(2), which also reaps it.
#[allow(clippy::zombie_processes)]
fn run_measured(mut c: Command) -> (Run, u64) {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, writing into the locals above.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (
        Run {
            code,
            stdout: t_out.join().unwrap(),
            stderr: t_err.join().unwrap(),
        },
        usage.ru_maxrss as u64 * 1024,
    )
}

/// Issue 16: a 1 GiB manifest and a blob declared as 1,556 bytes but
/// served endlessly are cut off at their caps, counted on the bytes read:
/// the verifier stays under 64 MB.
#[test]
fn huge_bodies_are_cut_off() {
    const LIMIT: u64 = 64 << 20;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "k", "ecdsa-p256");

    // The image manifest itself is endless.
    let huge_manifest = Fake::start(|r| match r.path.as_str() {
        "/v2/" => reply(200, &[], "{}"),
        _ => Reply::Endless {
            prefix: br#"{"schemaVersion":2,"x":""#.to_vec(),
        },
    });
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        &format!("127.0.0.1:{}/app:v1", huge_manifest.port),
    ]);
    let (r, rss) = run_measured(c);
    eprintln!("1 GiB manifest: peak RSS {} MB", rss >> 20);
    let r = r.fails(3, "larger than the 4194304-byte limit");
    assert!(rss > 1 << 20 && rss < LIMIT, "peak RSS {rss}: {}", r.stderr);

    // A valid image, an .att layer declared as 1556 bytes, served endlessly.
    let mut mem = Mem::default();
    let digest = seed_image(&mut mem, "app");
    let blob = sha256(b"the declared blob");
    let att = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": blob, "size": 1556}]
    }))
    .unwrap();
    mem.put_manifest(
        "app",
        &format!("{}.att", digest.replace(':', "-")),
        "application/vnd.oci.image.manifest.v1+json",
        &att,
    );
    let mem = Mutex::new(mem);
    let blob_path = format!("/v2/app/blobs/{blob}");
    let oversized = Fake::start(move |r| {
        if r.path == blob_path {
            Reply::Endless { prefix: Vec::new() }
        } else {
            mem.lock().unwrap().handle(r)
        }
    });
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        &format!("127.0.0.1:{}/app:v1", oversized.port),
    ]);
    let (r, rss) = run_measured(c);
    eprintln!("oversized blob: peak RSS {} MB", rss >> 20);
    let r = r.fails(4, "none of the 1 attached attestation(s) verified");
    assert!(
        r.stdout.contains("larger than the 1556-byte limit"),
        "{}",
        r.stdout
    );
    assert!(rss > 1 << 20 && rss < LIMIT, "peak RSS {rss}: {}", r.stderr);
}

/// A registry with the OCI 1.1 referrers API: the referrer is indexed by
/// the registry (it answers the push with OCI-Subject), so no referrers tag
/// is written, and `verify --image` reads the list from the API.
#[test]
fn referrers_api_is_used_where_the_registry_has_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut mem = Mem {
        referrers_api: true,
        ..Mem::default()
    };
    let digest = seed_image(&mut mem, "team/app");
    let mem = Arc::new(Mutex::new(mem));
    let m = mem.clone();
    let reg = Fake::start(move |r| m.lock().unwrap().handle(r));
    let image = format!("127.0.0.1:{}/team/app", reg.port);
    let r = run(record_cmd(d, &image, &digest, &[]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("attestation attached"), "{}", r.stderr);
    let reqs = reg.requests();
    let hex = digest.replace(':', "-");
    // Exchange: the referrer manifest PUT by digest and answered with
    // OCI-Subject; the API listed; the tag schema never written.
    let referrer_put = reqs
        .iter()
        .find(|r| {
            r.method == "PUT"
                && r.path.starts_with("/v2/team/app/manifests/sha256:")
                && String::from_utf8_lossy(&r.body).contains("\"subject\"")
        })
        .expect("referrer pushed by digest");
    let m: serde_json::Value = serde_json::from_slice(&referrer_put.body).unwrap();
    assert_eq!(m["subject"]["digest"], digest.as_str());
    assert_eq!(
        m["artifactType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    assert!(
        reqs.iter().any(|r| r.method == "GET"
            && r.path.starts_with(&format!("/v2/team/app/referrers/{digest}?artifactType=application/vnd.dev.sigstore.bundle.v0.3%2Bjson"))),
        "the API was read back"
    );
    assert!(
        !reqs
            .iter()
            .any(|r| r.path == format!("/v2/team/app/manifests/{hex}") && r.method == "PUT"),
        "no referrers tag with the API"
    );
    // The .att tag is still written (cosign's layout needs it).
    assert!(reqs
        .iter()
        .any(|r| r.method == "PUT" && r.path == format!("/v2/team/app/manifests/{hex}.att")));
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        &format!("{image}:v1"),
    ]);
    let r = run(c).ok();
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("OK") && l.contains("OCI referrer")),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("OK")).count(),
        2,
        "{}",
        r.stdout
    );
    // Publishing it again changes nothing: still one referrer listed.
    let published: Vec<_> = std::fs::read_dir(d.join("state/spool/published"))
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
    assert!(
        r.stdout.contains("already there") && r.stdout.contains("indexed by the registry"),
        "{}",
        r.stdout
    );
    assert_eq!(mem.lock().unwrap().referrers[&digest].len(), 1);
}

/// Issue 12, item 7: credentials go to the registry they were given for
/// and no other. The builder names a registry (a fake on loopback under
/// another name) that asks for basic auth: it gets no Authorization
/// header. The old everywhere-flag is refused.
#[test]
fn credentials_only_go_to_their_registry() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut mem = Mem::default();
    let digest = seed_image(&mut mem, "app");
    let mem = Mutex::new(mem);
    // Wants credentials: 401 with a Basic challenge to anything unauthenticated.
    let named = Fake::start(move |r| {
        if r.header("Authorization").is_none() {
            reply(
                401,
                &[("WWW-Authenticate", r#"Basic realm="give me your password""#)],
                r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
            )
        } else {
            mem.lock().unwrap().handle(r)
        }
    });
    let trusted = Fake::start(|_| reply(401, &[("WWW-Authenticate", r#"Basic realm="ours""#)], ""));
    // Credentials for the operator's registry (127.0.0.1:PORT); the
    // builder names localhost:OTHER.
    let image = format!("localhost:{}/app", named.port);
    let scoped = format!("127.0.0.1:{}=ci", trusted.port);
    let mut c = record_cmd(
        d,
        &image,
        &digest,
        &["--registry-auth", &scoped, "--publish-timeout", "3"],
    );
    c.env("PROVENANT_REGISTRY_PASSWORD", "s3cret-password");
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // A 401 refutes the claim (a made-up repository answers so too), and
    // the line says why: no credentials for the registry the builder named.
    assert!(
        r.stderr
            .contains("the registry does not let our credentials read it"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("no credentials are configured for localhost"),
        "{}",
        r.stderr
    );
    let reqs = named.requests();
    assert!(!reqs.is_empty(), "the named registry was contacted");
    for q in &reqs {
        assert!(
            q.header("Authorization").is_none(),
            "credentials leaked: {q:?}"
        );
    }
    assert!(!r.stderr.contains("s3cret-password"));
    // The same credentials do reach the registry they name.
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        &format!("127.0.0.1:{}/app:v1", trusted.port),
        "--registry-auth",
        &scoped,
    ])
    .env("PROVENANT_REGISTRY_PASSWORD", "s3cret-password");
    run(c).fails(3, "authentication failed");
    let auth = trusted
        .requests()
        .iter()
        .filter_map(|q| q.header("Authorization").map(str::to_string))
        .next()
        .expect("credentials sent to their own registry");
    use base64::Engine;
    assert_eq!(
        auth,
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ci:s3cret-password")
        )
    );

    // The old flag sent the password everywhere: refused, usage error.
    for (flag, env) in [(true, false), (false, true)] {
        let mut c = provenant(d);
        c.args([
            "verify",
            "--key",
            "k.pub",
            "--image",
            &format!("{image}:v1"),
        ]);
        if flag {
            c.args(["--registry-username", "ci"]);
        }
        if env {
            c.env("PROVENANT_REGISTRY_USERNAME", "ci");
        }
        let r = run(c);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.contains("--registry-auth HOST=USER"),
            "{}",
            r.stderr
        );
    }
    // A password source is required with --registry-auth.
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        &format!("{image}:v1"),
        "--registry-auth",
        &scoped,
    ]);
    run(c).fails(3, "without a password");
    // Password from a file works the same.
    write(&d.join("pw"), b"s3cret-password\n");
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        &format!("127.0.0.1:{}/app:v1", trusted.port),
        "--registry-auth",
        &scoped,
        "--registry-password-file",
        "pw",
    ]);
    run(c).fails(3, "authentication failed");
    assert!(trusted
        .requests()
        .iter()
        .filter_map(|q| q.header("Authorization"))
        .all(|a| a == auth));
}

/// Issue 12, item 7: loopback is decided by parsing the address. A DNS
/// name that merely starts with `127.` is spoken to over TLS like any
/// other; only 127.0.0.0/8, ::1 and `localhost` get plain HTTP.
#[test]
fn names_that_look_like_loopback_get_tls() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "k", "ecdsa-p256");
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        "127.evil.example:5000/app:v1",
    ]);
    let r = run(c).fails(3, "127.evil.example:5000/app:v1");
    assert!(
        r.stderr.contains("https://127.evil.example:5000/v2/"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("http://127.evil"), "{}", r.stderr);
    // 127.0.0.2 is loopback (any 127/8 address): plain HTTP, which reaches
    // a fake listening on all of 127/8.
    let l = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "k.pub",
        "--image",
        &format!("127.0.0.2:{port}/app:v1"),
    ]);
    let r = run(c).fails(3, "Connection refused");
    assert!(
        r.stderr.contains(&format!("http://127.0.0.2:{port}/v2/")),
        "{}",
        r.stderr
    );
}

/// Token authentication as Docker Hub, GHCR and Harbor do it: `/v2/`
/// answers 401 with a Bearer challenge, the token service takes the basic
/// credentials. A whole publish pings once and asks for one token per
/// scope (issue 16 saw 23 pings in one attach).
#[test]
fn ping_and_tokens_are_cached_per_registry() {
    use std::sync::atomic::{AtomicU16, Ordering};
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut mem = Mem::default();
    let digest = seed_image(&mut mem, "app");
    let mem = Mutex::new(mem);
    let port = Arc::new(AtomicU16::new(0));
    let p = port.clone();
    let creds = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ci:pw")
        )
    };
    let reg = Fake::start(move |r| {
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{}/token",service="fake""#,
            p.load(Ordering::SeqCst)
        );
        if r.path.starts_with("/token?") {
            if r.header("Authorization") != Some(creds.as_str()) {
                return reply(401, &[], "");
            }
            let scope = r
                .path
                .split('&')
                .find_map(|kv| {
                    kv.strip_prefix("/token?scope=")
                        .or(kv.strip_prefix("scope="))
                })
                .unwrap_or("")
                .to_string();
            return reply(200, &[], format!(r#"{{"token":"t-{scope}"}}"#));
        }
        let push = matches!(r.method.as_str(), "PUT" | "POST");
        let ok = match r.header("Authorization") {
            Some(a) if push => a.contains("pull%2Cpush"),
            Some(a) => a.starts_with("Bearer t-"),
            None => false,
        };
        if !ok {
            return reply(401, &[("WWW-Authenticate", challenge.as_str())], "");
        }
        mem.lock().unwrap().handle(r)
    });
    port.store(reg.port, Ordering::SeqCst);
    let image = format!("127.0.0.1:{}/app", reg.port);
    let scoped = format!("127.0.0.1:{}=ci", reg.port);
    let mut c = record_cmd(d, &image, &digest, &["--registry-auth", &scoped]);
    c.env("PROVENANT_REGISTRY_PASSWORD", "pw");
    let r = run(c);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("attestation attached"), "{}", r.stderr);
    let reqs = reg.requests();
    let pings = reqs.iter().filter(|r| r.path == "/v2/").count();
    let tokens = reqs.iter().filter(|r| r.path.starts_with("/token")).count();
    assert_eq!(pings, 1, "one ping per registry");
    assert!(
        tokens <= 2,
        "{tokens} token requests (one per scope expected)"
    );
    assert!(reqs.len() < 40, "{} requests", reqs.len());
}
