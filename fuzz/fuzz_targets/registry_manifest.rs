//! The registry documents read back before an attestation is verified:
//! `.att` manifests, the media-type peek, referrer indexes and manifests.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = provenant::publish::registry::parse_att_manifest(data);
    let _ = provenant::publish::registry::media_type_of(data);
});
