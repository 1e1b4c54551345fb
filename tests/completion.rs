//! Completion triggers against real counterparts: real processes in /proc,
//! a real HTTP client, and, for `kube:`, the in-cluster code path talking
//! HTTPS to a local server that replays Kubernetes API responses
//! (tests/fixtures/kube; no API server runs here).
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use provenant::completion::{self, Trigger};
use provenant::provenance::ExitOrigin;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out[9..12].parse().unwrap();
    let text = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, text)
}

#[test]
fn http_endpoint_probes_and_completion() {
    rt().block_on(async {
        let ready = Arc::new(AtomicBool::new(false));
        let waiter = completion::arm(
            vec![Trigger::Http("127.0.0.1:0".parse().unwrap())],
            ready.clone(),
        )
        .await
        .unwrap();
        let addr = waiter.http_addr().unwrap();
        assert_eq!(http(addr, "GET", "/healthz", "").await.0, 200);
        assert_eq!(http(addr, "GET", "/readyz", "").await.0, 503);
        ready.store(true, Ordering::SeqCst);
        assert_eq!(http(addr, "GET", "/readyz", "").await.0, 200);
        assert_eq!(http(addr, "GET", "/complete", "").await.0, 405);
        assert_eq!(http(addr, "GET", "/nope", "").await.0, 404);
        let (code, text) = http(addr, "POST", "/complete", "{\"exitCode\": \"zero\"}").await;
        assert_eq!(code, 400, "{text}");
        assert!(text.contains("exitCode"), "{text}");
        assert_eq!(
            http(addr, "POST", "/complete", "{\"exitCode\": 3}").await.0,
            202
        );
        // The outcome is fixed by the first caller.
        assert_eq!(
            http(addr, "POST", "/complete", "{\"exitCode\": 0}").await.0,
            409
        );
        let done = waiter.wait().await.unwrap();
        assert_eq!(done.by, "http");
        assert_eq!(done.exit.code(), Some(3));
        // The builder said so: a claim, not an observation.
        assert_eq!(done.exit.origin(), ExitOrigin::Claimed);
        // Probes keep answering while the sidecar finalizes.
        assert_eq!(http(addr, "GET", "/healthz", "").await.0, 200);
    });
}

#[test]
fn http_port_in_use_is_a_clear_error() {
    rt().block_on(async {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let e = completion::arm(vec![Trigger::Http(addr)], Arc::new(AtomicBool::new(true)))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("http:{addr}")) && e.contains("cannot listen"),
            "{e}"
        );
    });
}

/// A process with a name nothing else on the machine has.
fn unique_program(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy("/bin/sh", &p).unwrap();
    p
}

#[test]
fn process_appears_then_exits_with_its_code() {
    let t = tempfile::tempdir().unwrap();
    let name = format!("pvbuild{}", std::process::id());
    let prog = unique_program(t.path(), &name);
    rt().block_on(async {
        let waiter = completion::arm(
            vec![Trigger::Process(completion::ProcessPattern::new(&name))],
            Arc::new(AtomicBool::new(true)),
        )
        .await
        .unwrap();
        let wait = tokio::spawn(waiter.wait());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!wait.is_finished(), "fired before the builder existed");
        // The builder forks a matching child (a subshell) that outlives its
        // first phase; completion waits for both.
        let mut child = std::process::Command::new(&prog)
            .args(["-c", "(sleep 1) & sleep 0.5; wait; exit 3"])
            .spawn()
            .unwrap();
        let started = Instant::now();
        let done = tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(done.by, "process");
        // Not yet reaped by us (its parent), so the scan saw the zombie's status.
        assert_eq!(done.exit.code(), Some(3), "{}", done.detail);
        assert_eq!(done.exit.origin(), ExitOrigin::Observed);
        assert_eq!(child.wait().unwrap().code(), Some(3));
    });
}

// ---- kube: -------------------------------------------------------------

struct Scenario {
    /// Bodies for successive GETs of the pod (the last one repeats).
    gets: Vec<(u16, &'static str)>,
    /// Bodies for successive watch requests (the last one repeats).
    watches: Vec<&'static str>,
}

struct ApiServer {
    addr: SocketAddr,
    ca_pem: String,
    requests: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kube")
            .join(name),
    )
    .unwrap()
}

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-token";

fn api_server(s: Scenario) -> ApiServer {
    use hyper::body::{Bytes, Frame};
    use tokio_rustls::rustls;

    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let ca_pem = ck.cert.pem();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let rt = rt();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let scenario = Arc::new(Mutex::new((s, 0usize, 0usize)));
    rt.spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            let scenario = scenario.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    let scenario = scenario.clone();
                    async move {
                        let uri = req.uri().to_string();
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        seen.lock().unwrap().push(uri.clone());
                        let (status, lines): (u16, Vec<String>) = if auth != format!("Bearer {TOKEN}") {
                            (401, vec!["{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n".into()])
                        } else if uri.contains("watch=true") {
                            let mut g = scenario.lock().unwrap();
                            let i = g.2.min(g.0.watches.len() - 1);
                            g.2 += 1;
                            (200, fixture(g.0.watches[i]).lines().map(|l| format!("{l}\n")).collect())
                        } else {
                            let mut g = scenario.lock().unwrap();
                            let i = g.1.min(g.0.gets.len() - 1);
                            g.1 += 1;
                            let (code, name) = g.0.gets[i];
                            (code, vec![fixture(name)])
                        };
                        // Watch events trickle in, as from a real server.
                        let body = trickle(lines);
                        let mut resp = hyper::Response::new(body);
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });

    fn trickle(lines: Vec<String>) -> ChannelBody {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            for l in lines {
                if tx.send(Ok(Frame::data(Bytes::from(l)))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        ChannelBody(rx)
    }
    struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>);
    impl hyper::body::Body for ChannelBody {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx)
        }
    }

    ApiServer {
        addr,
        ca_pem,
        requests,
        _rt: rt,
    }
}

/// `provenant record --completion kube:CONTAINER` in a fake pod: the
/// service-account directory and env a kubelet would provide.
fn record_in_pod(api: &ApiServer, container: &str, token: &str, extra: &[&str]) -> Run {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    keygen(d, "k", "ecdsa-p256");
    let sa = d.join("serviceaccount");
    write(&sa.join("token"), token.as_bytes());
    write(&sa.join("ca.crt"), api.ca_pem.as_bytes());
    write(&sa.join("namespace"), b"builds");
    snapshot(d, &[]);
    write(&d.join("ws/out/app"), b"app");
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        "k.key",
        "--completion",
        &format!("kube:{container}"),
    ])
    .args(extra)
    .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    .env("KUBERNETES_SERVICE_PORT", api.addr.port().to_string())
    .env("PROVENANT_SERVICEACCOUNT_DIR", &sa)
    .env("POD_NAME", "build-7f9c2")
    .env_remove("POD_NAMESPACE");
    run(c)
}

fn statement_of_stdout(r: &Run) -> serde_json::Value {
    use base64::Engine;
    let line: serde_json::Value = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    let payload = line["envelope"]["payload"].as_str().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn kube_watch_until_the_container_terminates() {
    let api = api_server(Scenario {
        gets: vec![(200, "pod-running.json")],
        watches: vec!["watch-completes.jsonl"],
    });
    let r = record_in_pod(&api, "builder", TOKEN, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of_stdout(&r);
    let pred = &st["predicate"];
    assert_eq!(
        pred["buildDefinition"]["internalParameters"]["completion"],
        "kube"
    );
    // finishedAt from the container status, not our clock.
    assert_eq!(
        pred["runDetails"]["metadata"]["finishedOn"],
        "2026-11-25T10:04:41.000Z"
    );
    let reqs = api.requests.lock().unwrap().clone();
    assert_eq!(reqs[0], "/api/v1/namespaces/builds/pods/build-7f9c2");
    // The watch resumes from the resourceVersion of the GET.
    assert!(
        reqs[1].contains("watch=true")
            && reqs[1].contains("resourceVersion=48211")
            && reqs[1].contains("fieldSelector=metadata.name%3Dbuild-7f9c2"),
        "{reqs:?}"
    );
}

#[test]
fn kube_relists_after_410_and_records_the_exit_code() {
    let api = api_server(Scenario {
        gets: vec![(200, "pod-running.json"), (200, "pod-failed.json")],
        watches: vec!["watch-gone.jsonl"],
    });
    let r = record_in_pod(&api, "builder", TOKEN, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "", "a failed build is not attested by default");
    assert!(
        r.stderr.contains("exit_code=2") && r.stderr.contains("not attesting a failed build"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("410"),
        "the re-list is logged: {}",
        r.stderr
    );
    let reqs = api.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 3, "GET, watch, GET: {reqs:?}");
}

#[test]
fn kube_init_container_of_a_kpack_style_pod() {
    let api = api_server(Scenario {
        gets: vec![(200, "pod-init-failed.json")],
        watches: vec!["watch-gone.jsonl"],
    });
    let r = record_in_pod(&api, "build", TOKEN, &["--attest-failed"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of_stdout(&r);
    let exit = st["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "exit-code")
        .cloned()
        .unwrap();
    assert_eq!(exit["content"], "MQ==", "exit code 1: {exit}");
}

#[test]
fn kube_errors_are_one_line_and_name_the_cause() {
    // Wrong token: the API server says 401.
    let api = api_server(Scenario {
        gets: vec![(200, "pod-running.json")],
        watches: vec!["watch-completes.jsonl"],
    });
    let r =
        record_in_pod(&api, "builder", "stale-token", &[]).fails(3, "--completion kube:builder");
    assert!(r.stderr.contains("token was rejected"), "{}", r.stderr);

    // No RBAC: 403 with the API server's message.
    let api = api_server(Scenario {
        gets: vec![(403, "status-forbidden.json")],
        watches: vec!["watch-completes.jsonl"],
    });
    let r = record_in_pod(&api, "builder", TOKEN, &[]);
    r.fails(3, "needs get and watch on pods");

    // A container the pod does not have.
    let api = api_server(Scenario {
        gets: vec![(200, "pod-running.json")],
        watches: vec!["watch-completes.jsonl"],
    });
    let r = record_in_pod(&api, "biulder", TOKEN, &[]);
    r.fails(
        3,
        "has no container \"biulder\" (it has builder, provenant)",
    );

    // Not in a cluster at all: fails at start, before any build.
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(&d.join("ws/source/a"), b"a");
    keygen(d, "k", "ecdsa-p256");
    snapshot(d, &[]);
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        "k.key",
        "--completion",
        "kube:builder",
    ])
    .env_remove("KUBERNETES_SERVICE_HOST");
    run(c).fails(3, "KUBERNETES_SERVICE_HOST is not set");
}

#[test]
fn http_complete_only_from_inside_the_pod() {
    // Another address of this machine stands in for a caller outside the pod.
    let outside = nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
        .find(|ip| !ip.is_loopback())
        .expect("this test needs a non-loopback IPv4 address on the machine");
    rt().block_on(async {
        let waiter = completion::arm(
            vec![Trigger::Http("0.0.0.0:0".parse().unwrap())],
            Arc::new(AtomicBool::new(true)),
        )
        .await
        .unwrap();
        let port = waiter.http_addr().unwrap().port();
        let from_outside = SocketAddr::new(outside.into(), port);
        // Probes work from anywhere (the kubelet calls the pod IP)...
        assert_eq!(http(from_outside, "GET", "/readyz", "").await.0, 200);
        // ...completion does not.
        let (code, text) = http(from_outside, "POST", "/complete", "").await;
        assert_eq!(code, 403, "{text}");
        let inside = SocketAddr::new([127, 0, 0, 1].into(), port);
        assert_eq!(http(inside, "POST", "/complete", "").await.0, 202);
        let done = waiter.wait().await.unwrap();
        assert_eq!(done.exit.code(), None);
        assert_eq!(done.exit.origin(), ExitOrigin::Unknown);
    });
}
