//! The registry documents read back before an attestation is verified:
//! `.att` manifests, referrer indexes, and the media-type peek.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = provenant::publish::registry::cosign::classify(data, None);
    let _ = provenant::publish::registry::referrers::classify(data, None);
    let _ = provenant::publish::registry::media_type_of(data);
});
