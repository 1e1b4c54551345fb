//! The builder is the adversary (process level; tests/pod_e2e.rs plays the
//! same attacks in a real pod). In pod mode it shares the workspace, the
//! results and report directories and the marker with the sidecar. Each
//! test plants one attack where the sidecar reads, runs `provenant record`
//! with a deadline and a memory measurement, and asserts that:
//!
//! * no byte sequence of the signing key (PEM lines, windows of its base64)
//!   reaches stdout or stderr;
//! * nothing hangs (the sidecar exits within its deadline);
//! * peak memory stays under the documented limit (docs/pod-mode.md:
//!   32 MiB + 0.6 KiB per file; these workspaces are tiny, so 64 MiB);
//! * whatever is signed holds no subject the attack chose.
mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const DEADLINE: Duration = Duration::from_secs(40);
const RSS_LIMIT_KB: i64 = 64 * 1024;

struct Measured {
    run: Run,
    /// Peak RSS as the sidecar measured itself (VmHWM, logged when it
    /// writes an attestation): wait4's figure would include the test
    /// harness's own memory, which a forked child inherits as its maximum.
    max_rss_kb: i64,
}

/// Runs `c` to its end, killing it at the deadline (which fails the test).
fn run_measured(mut c: Command) -> Measured {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so a kill at the deadline takes everything.
    c.process_group(0);
    let mut child = c.spawn().unwrap();
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            panic!("provenant record did not finish within {DEADLINE:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = String::from_utf8_lossy(&e.join().unwrap()).into_owned();
    let max_rss_kb = stderr
        .split("peak_rss_mb=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<i64>().ok())
        .map_or(-1, |mb| mb * 1024);
    Measured {
        run: Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.join().unwrap()).into_owned(),
            stderr,
        },
        max_rss_kb,
    }
}

/// Every piece of the key a log could carry: each PEM body line, and
/// every 24-character window of the base64 of its DER (a message could
/// re-wrap or cut it anywhere).
fn key_fragments(key_pem: &str) -> Vec<String> {
    let body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .collect();
    let joined: String = body.concat();
    let mut out: Vec<String> = body.iter().map(|l| l.to_string()).collect();
    let chars: Vec<char> = joined.chars().collect();
    for w in chars.windows(24) {
        out.push(w.iter().collect());
    }
    out
}

fn assert_no_key(m: &Measured, key: &str, what: &str) {
    let all = format!("{}\n{}", m.run.stdout, m.run.stderr);
    for f in key_fragments(key) {
        assert!(
            !all.contains(&f),
            "{what}: key material {f:?} leaked:\n{all}"
        );
    }
    assert!(
        !all.contains("PRIVATE KEY"),
        "{what}: a PEM header leaked:\n{all}"
    );
    assert!(!all.contains("panicked"), "{what}: panic:\n{all}");
    assert!(
        (0..RSS_LIMIT_KB).contains(&m.max_rss_kb),
        "{what}: peak RSS {} KiB is over the {RSS_LIMIT_KB} KiB limit (or was not logged)",
        m.max_rss_kb
    );
}

/// A workspace with a source, one product, a snapshot, a key; the build
/// is over (the marker is there) when the sidecar starts.
fn pod(d: &Path, encrypted: bool) -> String {
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    if encrypted {
        let mut c = provenant(d);
        c.args(["keygen", "-o", "k"])
            .env("COSIGN_PASSWORD", "hunter2");
        run(c).ok();
    } else {
        keygen(d, "k", "ecdsa-p256");
    }
    snapshot(d, &[]);
    write(&d.join("ws/out/app.bin"), b"what the build really wrote");
    write(&d.join("ws/.done"), b"0\n");
    std::fs::read_to_string(d.join("k.key")).unwrap()
}

fn record(d: &Path, extra: &[&str]) -> Measured {
    let mut c = record_cmd(d, "k.key", "marker:ws/.done");
    c.args(extra).env("COSIGN_PASSWORD", "hunter2");
    run_measured(c)
}

fn signed_subjects(d: &Path) -> Vec<String> {
    let p = d.join("state/provenance.intoto.jsonl");
    if !p.exists() {
        return Vec::new();
    }
    statement_of(&p)["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Only files the sidecar hashed in the workspace are subjects: no
/// subject the attack chose.
fn assert_observed_only(d: &Path, what: &str) {
    let subjects = signed_subjects(d);
    assert!(
        subjects.contains(&"ws/out/app.bin".to_string()),
        "{what}: {subjects:?}"
    );
    assert!(
        subjects.iter().all(|s| s.starts_with("ws/")),
        "{what}: {subjects:?}"
    );
}

fn symlink(target: &Path, link: &Path) {
    if let Some(p) = link.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// An input root swapped for a link to the key's directory after the
/// snapshot, before the sidecar starts (or while it runs): the sidecar
/// neither watches nor walks through it. Before, the root was canonicalized
/// and became a watched root of its own, and the key's digest (named
/// `ws/source/k.key`) went into the attestation as a changed input.
#[test]
fn an_input_swapped_for_a_link_to_the_key_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let key = pod(d, false);
    std::fs::rename(d.join("ws/source"), d.join("ws/source.orig")).unwrap();
    symlink(d, &d.join("ws/source"));
    let m = record(d, &[]);
    // It fails before it logs its peak RSS: assert_no_key's RSS check
    // does not apply; the rest of it does.
    let all = format!("{}\n{}", m.run.stdout, m.run.stderr);
    for f in key_fragments(&key) {
        assert!(!all.contains(&f), "key material {f:?} leaked:\n{all}");
    }
    assert!(
        !all.contains("PRIVATE KEY") && !all.contains("panicked"),
        "{all}"
    );
    assert_eq!(m.run.code, 3, "{}", m.run.stderr);
    assert!(
        m.run.stderr.contains("ws/source") && m.run.stderr.contains("a symbolic link in the path"),
        "the refusal names the root and why:\n{}",
        m.run.stderr
    );
    assert!(
        !d.join("state/provenance.intoto.jsonl").exists(),
        "an attestation was written"
    );
    // The key's digest is nowhere in what the sidecar wrote.
    let key_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
    assert!(!all.contains(&key_digest), "the key's digest:\n{all}");
}

const DIGEST_OK: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Links, a hard link, to the key from every file the sidecar reads:
/// refused, never quoted. With a plain and a cosign-encrypted key.
#[test]
fn the_key_never_leaks_through_report_files() {
    for encrypted in [false, true] {
        type Plant = fn(&Path);
        let attacks: [(&str, Plant, &[&str]); 6] = [
            (
                "Tekton IMAGE_DIGEST -> key",
                |d| {
                    write(&d.join("results/IMAGE_URL"), b"reg.example/app\n");
                    symlink(&d.join("k.key"), &d.join("results/IMAGE_DIGEST"));
                },
                &["--tekton-results", "results"],
            ),
            (
                "Tekton IMAGE_URL -> key",
                |d| {
                    write(&d.join("results/IMAGE_DIGEST"), DIGEST_OK.as_bytes());
                    symlink(&d.join("k.key"), &d.join("results/IMAGE_URL"));
                },
                &["--tekton-results", "results"],
            ),
            (
                "hard link to the key as a result",
                |d| {
                    write(&d.join("results/IMAGE_URL"), b"reg.example/app\n");
                    std::fs::create_dir_all(d.join("results")).unwrap();
                    std::fs::hard_link(d.join("k.key"), d.join("results/IMAGE_DIGEST")).unwrap();
                },
                &["--tekton-results", "results"],
            ),
            (
                "report.toml -> key",
                |d| symlink(&d.join("k.key"), &d.join("report/report.toml")),
                &["--kpack-report", "report/report.toml"],
            ),
            (
                "OCI index.json -> key",
                |d| {
                    write(
                        &d.join("ws/layout/oci-layout"),
                        br#"{"imageLayoutVersion":"1.0.0"}"#,
                    );
                    symlink(&d.join("k.key"), &d.join("ws/layout/index.json"));
                },
                &["--oci-layout", "ws/layout"],
            ),
            (
                "the layout directory itself -> the key's directory",
                |d| {
                    std::fs::create_dir_all(d.join("keys")).unwrap();
                    std::fs::copy(d.join("k.key"), d.join("keys/index.json")).unwrap();
                    write(
                        &d.join("keys/oci-layout"),
                        br#"{"imageLayoutVersion":"1.0.0"}"#,
                    );
                    symlink(&d.join("keys"), &d.join("ws/layout"));
                },
                &["--oci-layout", "ws/layout"],
            ),
        ];
        for (what, plant, flags) in attacks {
            let t = tempfile::tempdir().unwrap();
            let d = t.path();
            let key = pod(d, encrypted);
            plant(d);
            let m = record(d, flags);
            let what = format!("{what} (encrypted key: {encrypted})");
            assert_no_key(&m, &key, &what);
            assert_eq!(m.run.code, 0, "{what}: {}", m.run.stderr);
            assert!(
                m.run.stderr.contains("image claim refused"),
                "{what}: the refusal is logged: {}",
                m.run.stderr
            );
            // The claim was refused: what is signed is what was observed.
            assert_observed_only(d, &what);
        }
    }
}

/// The marker (its content is the exit code) as a link to the key: the
/// build is over, the exit code unknown, the key unread.
#[test]
fn the_key_never_leaks_through_the_marker() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let key = pod(d, false);
    std::fs::remove_file(d.join("ws/.done")).unwrap();
    symlink(&d.join("k.key"), &d.join("ws/.done"));
    let m = record(d, &[]);
    assert_no_key(&m, &key, "marker -> key");
    assert_eq!(m.run.code, 0, "{}", m.run.stderr);
    let st = statement_of(&d.join("state/provenance.intoto.jsonl"));
    let exit = st["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "exit-code")
        .cloned()
        .unwrap();
    assert_eq!(
        exit["annotations"]["provenant.exitCodeOrigin"], "unknown",
        "{exit}"
    );
}

/// Denial of service through what the sidecar reads: a FIFO (used to hang
/// forever), /dev/zero (grew to 18 GB), a 100 MB file, a 1M-entry list
/// (quadratic), more results than anyone writes. Each is refused quickly,
/// within the memory limit.
#[test]
fn report_files_cannot_hang_or_exhaust_the_sidecar() {
    type Plant = fn(&Path);
    let attacks: [(&str, Plant, &[&str], &str); 6] = [
        (
            "report.toml is a FIFO",
            |d| {
                std::fs::create_dir_all(d.join("report")).unwrap();
                nix::unistd::mkfifo(&d.join("report/report.toml"), nix::sys::stat::Mode::S_IRWXU)
                    .unwrap();
            },
            &["--kpack-report", "report/report.toml"],
            "a FIFO, not a regular file",
        ),
        (
            "report.toml -> /dev/zero",
            |d| symlink(Path::new("/dev/zero"), &d.join("report/report.toml")),
            &["--kpack-report", "report/report.toml"],
            "symbolic link",
        ),
        (
            "IMAGE_DIGEST is 100 MB",
            |d| {
                write(&d.join("results/IMAGE_URL"), b"reg.example/app\n");
                let f = std::fs::File::create(d.join("results/IMAGE_DIGEST")).unwrap();
                f.set_len(100 << 20).unwrap();
            },
            &["--tekton-results", "results"],
            "larger than the 65536-byte limit",
        ),
        (
            "IMAGES lists a million images",
            |d| {
                let mut s = String::with_capacity(90 << 20);
                for i in 0..1_000_000 {
                    s.push_str(&format!("reg.example/app{i}@{DIGEST_OK}\n"));
                }
                write(&d.join("results/IMAGES"), s.as_bytes());
            },
            &["--tekton-results", "results"],
            "larger than the 65536-byte limit",
        ),
        (
            "a results directory of 10k files",
            |d| {
                std::fs::create_dir_all(d.join("results")).unwrap();
                for i in 0..10_000 {
                    std::fs::write(d.join(format!("results/R{i}")), b"").unwrap();
                }
            },
            &["--tekton-results", "results"],
            "more than 4096 entries",
        ),
        (
            "report.toml nested 30k deep",
            |d| {
                let deep = format!("a = {}{}", "[".repeat(30_000), "]".repeat(30_000));
                write(&d.join("report/report.toml"), deep.as_bytes());
            },
            &["--kpack-report", "report/report.toml"],
            "not a lifecycle report.toml",
        ),
    ];
    for (what, plant, flags, reason) in attacks {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let key = pod(d, false);
        plant(d);
        let start = Instant::now();
        let m = record(d, flags);
        assert_no_key(&m, &key, what);
        assert_eq!(m.run.code, 0, "{what}: {}", m.run.stderr);
        assert!(m.run.stderr.contains(reason), "{what}: {}", m.run.stderr);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: took {:?}",
            start.elapsed()
        );
        assert_observed_only(d, what);
    }
}

/// A root builder writes a file only root may read; the sidecar runs as
/// 65532 (as in the example pods). With an image subject the build is
/// still attested and the statement says what could not be read; with
/// file subjects, --on-error decides, and the statement holds what the
/// log says.
#[test]
fn unreadable_products_are_on_the_record() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED (loudly): needs root to drop to uid 65532 with setpriv; CI runs as root"
        );
        return;
    }
    let t = tempfile::Builder::new()
        .prefix("prov-adversary")
        .tempdir_in("/tmp")
        .unwrap();
    let d = t.path();
    pod(d, false);
    use std::os::unix::fs::PermissionsExt;
    write(&d.join("ws/out/root-only.bin"), b"secret");
    std::fs::set_permissions(
        d.join("ws/out/root-only.bin"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // Everything else readable by the sidecar's uid; the state its own.
    for p in [
        d.to_path_buf(),
        d.join("ws"),
        d.join("ws/out"),
        d.join("ws/source"),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::chown(d.join("k.key"), Some(65532), Some(65532)).unwrap();
    let chown_state = |d: &Path| {
        let r = Command::new("chown")
            .args(["-R", "65532:65532"])
            .arg(d.join("state"))
            .status();
        assert!(r.unwrap().success());
    };
    let sidecar = |extra: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65532", "--regid=65532", "--clear-groups"])
            .arg(bin())
            .args([
                "record",
                "--state",
                "state",
                "--key",
                "k.key",
                "--completion",
                "marker:ws/.done",
            ])
            .args(extra)
            .current_dir(d)
            .env_remove("COSIGN_PASSWORD")
            .env("PROVENANT_LOG", "info");
        run(c)
    };
    chown_state(d);
    // File subjects, --on-error fail: no attestation, one line naming the file.
    let r = sidecar(&[]);
    r.fails(3, "root-only.bin");
    // --on-error record: the statement holds the unreadable file.
    let r = sidecar(&["--on-error", "record"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of(&d.join("state/provenance.intoto.jsonl"));
    let by = st["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap();
    let e = by
        .iter()
        .find(|b| b["name"] == "ws/out/root-only.bin")
        .unwrap_or_else(|| panic!("the unreadable product is not in the statement: {st}"));
    assert_eq!(e["uri"], "error:unreadable");
    assert_eq!(e["annotations"]["provenant.role"], "product");
    // An image subject: attested whatever --on-error says, the file on record.
    write(&d.join("results/IMAGE_URL"), b"reg.example/app\n");
    write(&d.join("results/IMAGE_DIGEST"), DIGEST_OK.as_bytes());
    std::fs::set_permissions(d.join("results"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = sidecar(&["--tekton-results", "results"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of(&d.join("state/provenance.intoto.jsonl"));
    assert_eq!(st["subject"][0]["name"], "reg.example/app");
    let by = st["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap();
    assert!(
        by.iter()
            .any(|b| b["name"] == "ws/out/root-only.bin" && b["uri"] == "error:unreadable"),
        "{st}"
    );
}

/// A file name that, logged raw, ends the record it is in and starts a
/// forged one, in red.
const FORGED: &str = "evil\n2099-01-01T00:00:00.000000Z  INFO forged: build verified\x1b[31m";

/// Every string in a JSON value, decoded.
fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// The builder's name reached the log (the test proves something), only
/// escaped: no ESC, no record beginning where its newline would have put
/// one; with JSON logs every line is one whole event whose decoded fields
/// hold no raw newline or ESC from the name either.
fn assert_name_escaped(stderr: &str, json: bool, what: &str) {
    assert!(
        !stderr.contains('\u{1b}'),
        "{what}: raw ESC in the log: {stderr:?}"
    );
    for line in stderr.lines() {
        assert!(
            !line.starts_with("2099-"),
            "{what}: forged record: {stderr:?}"
        );
    }
    let text = if json {
        let mut all = Vec::new();
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: not one JSON event per line ({e}): {line:?}"));
            json_strings(&v, &mut all);
        }
        for s in &all {
            assert!(
                !s.contains('\u{1b}') && !s.contains("\n2099"),
                "{what}: a JSON field holds the raw name: {s:?}"
            );
        }
        all.join("\n")
    } else {
        stderr.to_string()
    };
    assert!(
        text.contains(r"evil\n2099") && text.contains(r"\x1b[31m"),
        "{what}: the name was not logged (escaped): {stderr}"
    );
}

/// File names are the builder's to choose: a FIFO and a product named to
/// forge a log record, in `record` and `run`, text and JSON logs. The
/// statement keeps the name exact. (Tekton result files cannot carry such
/// a name: only names matching Tekton's rule are read.)
#[test]
fn file_names_cannot_forge_log_records() {
    use nix::sys::stat::Mode;
    for json in [false, true] {
        let what = format!("record, JSON logs: {json}");
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        pod(d, false);
        nix::unistd::mkfifo(&d.join("ws/out").join(FORGED), Mode::S_IRWXU).unwrap();
        let sidecar = |extra: &[&str]| {
            let mut c = record_cmd(d, "k.key", "marker:ws/.done");
            c.args(extra);
            if json {
                c.env("PROVENANT_LOG_FORMAT", "json");
            }
            run_measured(c).run
        };
        let r = sidecar(&[]);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert!(!r.stderr.contains('\u{1b}'), "{what}: {}", r.stderr);
        let st = statement_of(&d.join("state/provenance.intoto.jsonl"));
        let fifo = format!("ws/out/{FORGED}");
        assert!(
            st["predicate"]["runDetails"]["byproducts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["name"] == fifo.as_str()),
            "{what}: the statement names the FIFO exactly: {st}"
        );
        // A dirHash cannot hold a name with a newline: a fatal error
        // naming the file.
        write(&d.join("ws/out").join(format!("{FORGED}.bin")), b"x");
        let r = sidecar(&["--products-as", "dirhash"]);
        assert_ne!(r.code, 0, "{what}: {}", r.stderr);
        assert_name_escaped(&r.stderr, json, &format!("{what}, fatal error"));

        // `run`: the command is the builder. A FIFO is logged; a dirHash
        // of a name with a newline is a fatal error naming it.
        let what = format!("run, JSON logs: {json}");
        write(&d.join("build/app"), b"app");
        let runner = |extra: &[&str], script: &str| {
            let mut c = provenant(d);
            c.args([
                "run",
                "--product",
                "build",
                "--key",
                "k.key",
                "-o",
                "run.jsonl",
            ])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .env("EVIL", FORGED);
            if json {
                c.env("PROVENANT_LOG_FORMAT", "json");
            }
            run_measured(c).run
        };
        let r = runner(&[], r#"mkfifo "build/$EVIL""#);
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
        assert_name_escaped(&r.stderr, json, &what);
        std::fs::remove_file(d.join("build").join(FORGED)).unwrap();
        let r = runner(&["--products-as", "dirhash"], r#"echo x > "build/$EVIL""#);
        assert_eq!(r.code, exit::CANNOT_CHECK, "{what}: {}", r.stderr);
        assert!(r.stderr.contains("has no dirHash"), "{what}: {}", r.stderr);
        assert_name_escaped(&r.stderr, json, &format!("{what}, fatal error"));
    }
}
