//! The policy loader (YAML, caps, globs) and the checks of a loaded
//! policy against a fixed statement; the input's first line is also a
//! glob matched against the rest. Any panic, or a slow input (libFuzzer's
//! -timeout), is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

use provenant::verify::{glob::Glob, Policy, Verified};

/// A directory holding `k.pub`, which seeds name as their key.
fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("provenant-fuzz-policy-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("k.pub"), include_bytes!("../seeds/k.pub")).unwrap();
        d
    })
}

fn verified() -> &'static Verified {
    static V: OnceLock<Verified> = OnceLock::new();
    V.get_or_init(|| {
        let st = provenant::provenance::Statement::parse(include_bytes!("../seeds/statement.json"))
            .unwrap();
        Verified {
            envelope: provenant::sign::Envelope {
                payload: String::new(),
                payload_type: String::new(),
                signatures: Vec::new(),
            },
            statement: st,
            signed_by: vec!["k".into()],
            certificate: None,
            tlog_entries: 0,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((pattern, rest)) = text.split_once('\n') {
            if let Ok(g) = Glob::new(pattern) {
                for line in rest.lines().take(8) {
                    let _ = g.is_match(line);
                }
            }
        }
    }
    if let Ok(p) = Policy::parse(&dir().join("p.yaml"), data.to_vec()) {
        let _ = p.check(verified(), time::OffsetDateTime::now_utc());
    }
});
