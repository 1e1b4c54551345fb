//! `process:PATTERN`: with `shareProcessNamespace: true` every container of
//! the pod sees every process, so the sidecar can wait for the builder's
//! process to appear and then for it, and everything matching the pattern
//! that it started, to be gone.
//!
//! Matching: a process matches when its name (`comm`, or the base name of
//! argv[0]) equals PATTERN or its command line contains PATTERN. This
//! process and its ancestors never match (our own command line contains
//! the pattern).
//!
//! Exit code: a process that is not our child is reaped by its own parent,
//! usually at once; when a scan catches it as a zombie and we may inspect it
//! (same uid, dumpable), its status is read from /proc/PID/stat (Linux
//! 3.5+); otherwise it is recorded as unknown, never as success.
//!
//! Limitation, said in docs/pod-mode.md: a builder that starts and exits
//! before the sidecar's first scan is never seen; arm a second trigger
//! (`kube:` or `marker:`) when builds can be that short.
use std::collections::BTreeMap;
use std::time::Duration;

use super::{Completed, Report};

const SCAN: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPattern(String);

impl ProcessPattern {
    pub fn new(p: &str) -> Self {
        ProcessPattern(p.trim().to_string())
    }

    fn matches(&self, comm: &str, argv: &[String]) -> bool {
        let p = self.0.as_str();
        if comm == p {
            return true;
        }
        if let Some(a0) = argv.first() {
            if a0.rsplit('/').next() == Some(p) {
                return true;
            }
        }
        !argv.is_empty() && argv.join(" ").contains(p)
    }
}

/// What /proc/PID/stat says about a process.
#[derive(Debug, Clone)]
pub(crate) struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub starttime: u64,
    pub exit_status: Option<i32>,
}

pub(crate) fn read_stat(pid: i32) -> Option<Stat> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&raw)
}

/// `pid (comm) state ppid ... starttime(22) ... exit_code(52)`; comm may
/// contain spaces and parentheses, so split at the last ')'.
pub(crate) fn parse_stat(raw: &str) -> Option<Stat> {
    let open = raw.find('(')?;
    let close = raw.rfind(')')?;
    let comm = raw.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = raw.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    Some(Stat {
        comm,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        starttime: field(22)?.parse().ok()?,
        exit_status: field(52).and_then(|s| s.parse().ok()),
    })
}

/// A wait(2) status as a shell would report it: the exit code, or 128+signal.
fn decode_wait_status(s: i32) -> i32 {
    if s & 0x7f == 0 {
        (s >> 8) & 0xff
    } else {
        128 + (s & 0x7f)
    }
}

fn argv(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// This process and its ancestors.
fn own_lineage() -> Vec<i32> {
    let mut out = vec![std::process::id() as i32];
    let mut pid = out[0];
    while let Some(st) = read_stat(pid) {
        if st.ppid <= 0 || out.contains(&st.ppid) {
            break;
        }
        out.push(st.ppid);
        pid = st.ppid;
    }
    out
}

pub(super) async fn wait(pattern: ProcessPattern) -> Report {
    let mine = own_lineage();
    // pid -> starttime of every matching process seen alive.
    let mut tracked: BTreeMap<i32, u64> = BTreeMap::new();
    // The first process seen (the builder itself) decides the exit code.
    let mut first: Option<(i32, u64)> = None;
    let mut exit_code = None;
    // The kernel shows a zombie's exit status only to those allowed to
    // ptrace it and prints 0 to everyone else, which would read as success.
    // Whether we are allowed is checked while the process is alive.
    let mut status_visible = false;
    loop {
        let mut new = 0;
        for pid in pids() {
            if mine.contains(&pid) || tracked.contains_key(&pid) {
                continue;
            }
            let Some(st) = read_stat(pid) else { continue };
            if st.state == 'Z' {
                continue;
            }
            if pattern.matches(&st.comm, &argv(pid)) {
                if first.is_none() {
                    tracing::info!(pid, comm = %crate::escape::field(&st.comm), pattern = %crate::escape::field(&pattern.0), "builder process found; waiting for it to exit");
                    first = Some((pid, st.starttime));
                    status_visible = std::fs::File::open(format!("/proc/{pid}/environ")).is_ok();
                    if !status_visible {
                        tracing::info!(pid, "not allowed to inspect the builder process; its exit code will be recorded as unknown");
                    }
                }
                tracked.insert(pid, st.starttime);
                new += 1;
            }
        }
        tracked.retain(|&pid, &mut start| match read_stat(pid) {
            Some(st) if st.starttime == start && st.state != 'Z' => true,
            Some(st) if st.starttime == start => {
                if first == Some((pid, start)) && status_visible {
                    exit_code = st.exit_status.map(decode_wait_status);
                }
                false
            }
            _ => false,
        });
        if first.is_some() && tracked.is_empty() && new == 0 {
            let (pid, _) = first.unwrap_or_default();
            return Ok(Completed::now(
                "process",
                crate::provenance::ExitStatus::observed_opt(exit_code, "process"),
                format!(
                    "process {pid} matching {:?} and all its matching children exited",
                    pattern.0
                ),
            ));
        }
        tokio::time::sleep(SCAN).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_comm() {
        // Fields 3..=52 after the comm: state, ppid, ..., starttime (22), ..., exit_code (52).
        let mut fields = vec!["0".to_string(); 50];
        fields[0] = "Z".into();
        fields[1] = "1".into();
        fields[22 - 3] = "98765".into();
        fields[52 - 3] = "256".into();
        let raw = format!("1234 (a) b (c)) {}\n", fields.join(" "));
        let st = parse_stat(&raw).unwrap();
        assert_eq!(st.comm, "a) b (c)");
        assert_eq!(st.state, 'Z');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.starttime, 98765);
        assert_eq!(st.exit_status.map(decode_wait_status), Some(1));
    }

    #[test]
    fn wait_status() {
        assert_eq!(decode_wait_status(0), 0);
        assert_eq!(decode_wait_status(3 << 8), 3);
        assert_eq!(decode_wait_status(9), 137);
    }

    #[test]
    fn matching() {
        let p = ProcessPattern::new("build.sh");
        assert!(p.matches("build.sh", &[]));
        assert!(p.matches("sh", &["/bin/sh".into(), "/usr/local/bin/build.sh".into()]));
        assert!(!p.matches("sh", &["/bin/sh".into(), "-c".into(), "make".into()]));
    }
}
