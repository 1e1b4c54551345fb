//! Reaching the signer's port is not enough to stop it: 2,000 idle or
//! half-sent connections, running out of file descriptors, a body that
//! never comes. The signer keeps serving, closes what is idle, and never
//! exits.
mod common;
#[path = "signer_support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use support::*;

const LOCAL_BUILDER: &str = "https://provenant.dev/builders/local/v1";
const TOKEN: &str = "0123456789abcdef-secret";

/// The test opens thousands of sockets itself.
fn raise_own_open_files_limit(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < need {
        assert!(
            hard >= need,
            "this test needs {need} open files; the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, need, hard).unwrap();
    }
}

/// `n` connections to `to` from the loopback address `from`, each sending
/// `first` (maybe nothing) and then nothing more.
async fn idle_connections(
    from: IpAddr,
    to: SocketAddr,
    n: usize,
    first: &'static [u8],
) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut out = Vec::new();
    // In batches: a burst of thousands overflows the accept queue, and a
    // connection the kernel dropped there looks open from this side.
    for batch in 0..n.div_ceil(100) {
        let mut tasks = Vec::new();
        for _ in 0..(n - batch * 100).min(100) {
            tasks.push(tokio::spawn(async move {
                let sock = tokio::net::TcpSocket::new_v4().ok()?;
                sock.bind(SocketAddr::new(from, 0)).ok()?;
                let mut s = tokio::time::timeout(Duration::from_secs(3), sock.connect(to))
                    .await
                    .ok()?
                    .ok()?;
                if !first.is_empty() {
                    s.write_all(first).await.ok()?;
                }
                Some(s)
            }));
        }
        for t in tasks {
            if let Ok(Some(s)) = t.await {
                out.push(s);
            }
        }
    }
    out
}

/// How many of `conns` the server has closed: a peek at the socket itself
/// (not the runtime's idea of its readiness) gives end of file or an error.
async fn closed(conns: &[tokio::net::TcpStream]) -> usize {
    use std::os::fd::AsRawFd;
    let mut n = 0;
    for c in conns {
        let mut b = [0u8; 1];
        // SAFETY: a valid socket descriptor and a buffer of the given size.
        let r = unsafe {
            libc::recv(
                c.as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        let err = std::io::Error::last_os_error().raw_os_error();
        if r == 0 || (r < 0 && err != Some(libc::EAGAIN)) {
            n += 1;
        }
    }
    n
}

/// The first bytes of a TLS record that announces 512 bytes and never
/// sends them: a handshake that never ends.
const HALF_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00];

fn attest_through(d: &Path, url: &str, out: &str) -> Run {
    let mut c = provenant(d);
    c.args([
        "attest",
        "--material",
        "src",
        "--product",
        "out",
        "--signer",
        url,
        "--signer-ca",
        "ca.pem",
        "--signer-token-file",
        "token",
        "-o",
        out,
    ]);
    run(c)
}

fn tls_setup(d: &Path) {
    let ca = Ca::new("test signer CA");
    ca.server_files(d, "server", false);
    write(&d.join("ca.pem"), ca.pem().as_bytes());
    write(&d.join("token"), TOKEN.as_bytes());
}

/// 2,000 idle connections (half of them in the middle of a TLS
/// handshake) from one address, and more arriving from others while a
/// sidecar signs: it signs, promptly, and the flooding address keeps at
/// most its share of idle connections.
#[test]
fn two_thousand_idle_connections_and_it_keeps_serving() {
    raise_own_open_files_limit(6000);
    let (_t, d) = workdir();
    tls_setup(&d);
    // A header deadline longer than the test: what keeps it serving here
    // is the cap and the eviction, not the deadline.
    let mut s = SignerProc::start(
        &d,
        &[
            "--tls-cert",
            "server.crt",
            "--tls-key",
            "server.key",
            "--token-file",
            "token",
            "--builder-id",
            LOCAL_BUILDER,
            "--header-timeout",
            "120",
        ],
    );
    let to: SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = rt.block_on(idle_connections(one, to, 1000, b""));
    held.extend(rt.block_on(idle_connections(one, to, 1000, HALF_CLIENT_HELLO)));
    assert_eq!(held.len(), 2000, "could not open 2,000 connections");

    // More keep coming from eight other addresses while the sidecar works.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let flood = rt.spawn(async move {
        let mut all = Vec::new();
        let mut i = 0u8;
        while !st.load(std::sync::atomic::Ordering::Relaxed) && all.len() < 2000 {
            let from = IpAddr::from([127, 0, 0, 2 + i % 8]);
            all.extend(idle_connections(from, to, 50, b"").await);
            i = i.wrapping_add(1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        all.len()
    });

    let started = Instant::now();
    attest_through(&d, &s.https(), "att.jsonl").ok();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flooded = rt.block_on(flood).unwrap();
    assert!(flooded > 0);
    assert!(took < Duration::from_secs(20), "signing took {took:?}");
    let mut c = provenant(&d);
    c.args(["verify", "--key", "k.pub", "att.jsonl"]);
    run(c).ok();
    assert!(s.alive(), "{}", s.log());
    assert_eq!(s.audit().last().unwrap()["event"], "signed");

    // The flooding address keeps at most 64 idle connections.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let gone = rt.block_on(closed(&held));
        if gone >= 2000 - 64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {gone} of 2000 idle connections closed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And it still serves.
    attest_through(&d, &s.https(), "att2.jsonl").ok();
    assert!(s.alive());
}

/// Out of file descriptors (an open files limit of 256 and a connection
/// cap far above it, flooded from 40 addresses): accept fails with EMFILE,
/// the signer closes idle connections, stays up and signs.
#[test]
fn running_out_of_file_descriptors_is_waited_out() {
    raise_own_open_files_limit(6000);
    let (_t, d) = workdir();
    tls_setup(&d);
    let mut s = SignerProc::start_with(
        &d,
        &[
            "--tls-cert",
            "server.crt",
            "--tls-key",
            "server.key",
            "--token-file",
            "token",
            "--builder-id",
            LOCAL_BUILDER,
            "--max-connections",
            "5000",
        ],
        |c| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec here.
            unsafe {
                c.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: 256,
                        rlim_max: 256,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    assert!(
        s.log()
            .contains("the open files limit is below --max-connections"),
        "{}",
        s.log()
    );
    let to: SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut held = Vec::new();
    for i in 0..40u8 {
        let from = IpAddr::from([127, 0, 1, 1 + i]);
        held.extend(rt.block_on(idle_connections(from, to, 40, b"")));
    }
    assert!(held.len() > 1000, "opened only {}", held.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("out of file descriptors") {
        assert!(Instant::now() < deadline, "no EMFILE seen:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    attest_through(&d, &s.https(), "att.jsonl").ok();
    assert!(s.alive(), "{}", s.log());
    drop(held);
    attest_through(&d, &s.https(), "att2.jsonl").ok();
    assert!(s.alive(), "{}", s.log());
}

/// Deadlines: a connection that sends no request head, or half of one,
/// is closed after --header-timeout; a request whose body never comes is
/// answered 408 after --body-timeout and audited.
#[test]
fn idle_and_slow_requests_are_closed_by_their_deadlines() {
    let (_t, d) = workdir();
    write(&d.join("token"), TOKEN.as_bytes());
    let s = SignerProc::start(
        &d,
        &[
            "--token-file",
            "token",
            "--builder-id",
            LOCAL_BUILDER,
            "--header-timeout",
            "2",
            "--body-timeout",
            "2",
        ],
    );
    let to: SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let rt = rt();
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let mut held = rt.block_on(idle_connections(one, to, 20, b""));
    held.extend(rt.block_on(idle_connections(
        one,
        to,
        20,
        b"POST /v1/sign HTTP/1.1\r\nHost: signer\r\n",
    )));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rt.block_on(closed(&held)), 0, "closed before the deadline");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rt.block_on(closed(&held)), 40);

    // The head, then no body.
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(to).unwrap();
    write!(
        c,
        "POST /v1/sign HTTP/1.1\r\nHost: signer\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n{{\"pae\":"
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let line = s.audit_line(1);
    assert_eq!(line["event"], "refused");
    assert_eq!(line["caller"]["kind"], "sharedToken");
    assert_eq!(line["reason"], "request body not received within 2 s");

    // A body announced too large is refused before it is read.
    let mut c = std::net::TcpStream::connect(to).unwrap();
    write!(
        c,
        "POST /v1/sign HTTP/1.1\r\nHost: signer\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000000000\r\n\r\n"
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!(
        s.audit_line(2)["reason"],
        "request body larger than 67108864 bytes"
    );
    // Without credentials, not even that: 401 before anything else.
    let mut c = std::net::TcpStream::connect(to).unwrap();
    write!(
        c,
        "POST /v1/sign HTTP/1.1\r\nHost: signer\r\nContent-Length: 1000000000\r\n\r\n"
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
}
