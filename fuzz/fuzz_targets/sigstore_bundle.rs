//! Sigstore material from a stranger, verified offline: trusted roots,
//! bundles (certificates, transparency-log entries, checkpoints, inclusion
//! proofs, SETs, RFC 3161 timestamps), timestamp responses, DER. Bundles
//! are verified against a fixed trusted root (`seeds/trusted_root.json`,
//! written by @sigstore/mock; the corpus starts from a keyless bundle it
//! certified, logged and timestamped). Any panic, or a slow input, is a
//! bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

use provenant::sign::{der, tsa};
use provenant::verify::sigstore::{Identity, Pattern, Requirements, TrustedRoot};
use provenant::verify::{input, verify_attestation, Trust};

fn root() -> &'static TrustedRoot {
    static R: OnceLock<TrustedRoot> = OnceLock::new();
    R.get_or_init(|| TrustedRoot::parse("seed", include_bytes!("../seeds/trusted_root.json")).unwrap())
}

fn identities() -> &'static [Identity] {
    static I: OnceLock<Vec<Identity>> = OnceLock::new();
    I.get_or_init(|| {
        vec![Identity {
            subject: Pattern::regex("fuzz", "system:serviceaccount:.*").unwrap(),
            issuer: Pattern::Exact("https://kubernetes.default.svc.cluster.local".into()),
        }]
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = TrustedRoot::parse("fuzz", data);
    let _ = tsa::parse_response(data);
    if let Ok(t) = der::one(data) {
        let _ = t.children();
    }
    let Ok(read) = input::read(data) else {
        return;
    };
    let trust = Trust {
        keys: &[],
        threshold: 1,
        sigstore: Some(Requirements {
            root: root(),
            identities: identities(),
            require_tlog: true,
        }),
    };
    for f in read.found {
        let _ = verify_attestation("fuzz", f.envelope, f.material.as_ref(), &trust);
    }
});
