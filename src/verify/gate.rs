//! The init-container gate: before a build starts, every required input
//! must come with an attestation from the previous stage that verifies
//! (keys), passes the policy, and names the input's actual digest as a
//! subject. What passed is recorded among this stage's resolved
//! dependencies, so provenance chains from stage to stage.
//!
//! `--require` forms:
//! * `PATH=ATTESTATION`: a file or directory and its attestation (envelope,
//!   bundle, or a `provenant record` log);
//! * `PATH`: the attestation is looked for at `PATH.intoto.jsonl`, then
//!   `PATH.sigstore.json`;
//! * `image:REF`: attestations attached to the image in its registry.
//!
//! A directory is vouched for when a subject carries its in-toto `dirHash`
//! (`--products-as dirhash` upstream), or when every file in it is a
//! subject (name ending in the file's path relative to the directory, same
//! sha256).
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use super::{exit, verify_bytes, Policy, VerifyError, Violation};
use crate::digest::{EntryKind, RelPath, WalkOptions};
use crate::provenance::{
    clean_prefix, HashedRoot, ResourceDescriptor, ALG_DIR_HASH, ALG_SHA256,
    ANN_LINK_TARGET_ENCODING, ANN_PATH_ENCODING, ANN_ROLE,
};
use crate::untrusted;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Path {
        input: PathBuf,
        attestation: Option<PathBuf>,
    },
    Image(String),
}

impl FromStr for Requirement {
    type Err = GateError;

    fn from_str(s: &str) -> Result<Self, GateError> {
        if let Some(r) = s.strip_prefix("image:") {
            if r.is_empty() {
                return Err(GateError::Usage(format!(
                    "--require {s}: expected image:REF"
                )));
            }
            return Ok(Requirement::Image(r.to_string()));
        }
        match s.split_once('=') {
            Some((i, a)) if !i.is_empty() && !a.is_empty() => Ok(Requirement::Path {
                input: i.into(),
                attestation: Some(a.into()),
            }),
            Some(_) => Err(GateError::Usage(format!(
                "--require {s}: expected PATH=ATTESTATION"
            ))),
            None if !s.is_empty() => Ok(Requirement::Path {
                input: s.into(),
                attestation: None,
            }),
            None => Err(GateError::Usage("--require: empty value".into())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{0}")]
    Usage(String),
    #[error("{input}: no attestation found (looked for {tried})")]
    NoAttestation { input: String, tried: String },
    #[error("{input}: cannot read: {source}")]
    Read {
        input: String,
        source: std::io::Error,
    },
    #[error("{input}: {source}")]
    Verify { input: String, source: VerifyError },
    #[error("{input}: policy violated: {}", .violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Policy {
        input: String,
        violations: Vec<Violation>,
    },
    #[error("{input}: the attestation does not vouch for this input: {detail}")]
    Mismatch { input: String, detail: String },
    #[error("{input}: {message}")]
    Image { input: String, message: String },
}

impl GateError {
    pub fn exit_code(&self) -> i32 {
        match self {
            GateError::Usage(_) => exit::USAGE,
            GateError::NoAttestation { .. } | GateError::Read { .. } | GateError::Image { .. } => {
                exit::CANNOT_CHECK
            }
            GateError::Verify { source, .. } => source.exit_code(),
            GateError::Policy { .. } | GateError::Mismatch { .. } => exit::POLICY,
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The resolved dependency that records a verified upstream attestation.
fn upstream_descriptor(
    input: &str,
    attestation_digest: &str,
    signed_by: &[String],
) -> ResourceDescriptor {
    let mut d = ResourceDescriptor {
        name: Some(format!("attestation:{input}")),
        media_type: Some("application/vnd.dsse.envelope.v1+json".into()),
        ..Default::default()
    };
    d.digest.insert("sha256", attestation_digest.to_string());
    d.annotations
        .insert("provenant.verifiedBy".into(), serde_json::json!(signed_by));
    d
}

/// A required input as the gate verified it: exactly the bytes it hashed,
/// for the snapshot to record instead of reading the input again.
#[derive(Debug, Clone)]
pub struct VerifiedInput {
    pub descriptor: ResourceDescriptor,
    pub root: HashedRoot,
}

fn read_error(input: &str, e: impl std::fmt::Display) -> GateError {
    GateError::Read {
        input: input.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Checks a file or directory requirement. The attestation and the input
/// are read without following links (both can be written by the stage
/// before); the input is hashed once, and the verified tree is returned.
pub fn check_path(
    input: &Path,
    attestation: Option<&Path>,
    policy: &Policy,
    opts: &WalkOptions,
) -> Result<VerifiedInput, GateError> {
    let label = input.display().to_string();
    let candidates: Vec<PathBuf> = match attestation {
        Some(a) => vec![a.to_path_buf()],
        None => vec![
            PathBuf::from(format!("{label}.intoto.jsonl")),
            PathBuf::from(format!("{label}.sigstore.json")),
        ],
    };
    let mut found = None;
    for c in &candidates {
        if let Some(b) = untrusted::read_file(c, untrusted::ATTESTATION_CAP)
            .map_err(|e| read_error(&label, e))?
        {
            found = Some((c, b));
            break;
        }
    }
    let (att, bytes) = found.ok_or_else(|| GateError::NoAttestation {
        input: label.clone(),
        tried: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let v =
        verify_bytes(&att.display().to_string(), &bytes, &policy.trust()).map_err(|source| {
            GateError::Verify {
                input: label.clone(),
                source,
            }
        })?;
    let violations = policy.check(&v, time::OffsetDateTime::now_utc());
    if !violations.is_empty() {
        return Err(GateError::Policy {
            input: label,
            violations,
        });
    }
    // The whole input, every kind of entry, empty directories included,
    // the root itself not through a link; no excludes: what is not
    // verified must not be there.
    let walk = WalkOptions {
        excludes: Vec::new(),
        on_error: crate::digest::ErrorPolicy::Fail,
        empty_dirs: true,
        root_nofollow: true,
        ..opts.clone()
    };
    let root = crate::provenance::hash_root(input, &walk).map_err(|e| read_error(&label, e))?;
    let mismatch = |detail: String| GateError::Mismatch {
        input: label.clone(),
        detail,
    };
    if root.is_dir {
        vouches_for_dir(&v.statement, &root).map_err(mismatch)?;
    } else {
        let actual = match root.tree.entries.first().map(|e| &e.kind) {
            Some(EntryKind::File { sha256, .. }) => hex::encode(sha256),
            Some(EntryKind::Special { kind }) => {
                return Err(mismatch(format!("it is a {kind}, not a regular file")))
            }
            _ => return Err(mismatch("it is not a regular file".into())),
        };
        if !v
            .statement
            .subject
            .iter()
            .any(|s| s.digest.get(ALG_SHA256).map(String::as_str) == Some(actual.as_str()))
        {
            return Err(mismatch(format!(
                "its sha256 is {actual}, which no subject has"
            )));
        }
    }
    Ok(VerifiedInput {
        descriptor: upstream_descriptor(&label, &sha256_hex(&bytes), &v.signed_by),
        root,
    })
}

/// What a statement says about one path: a file with content, or another
/// kind of entry (from a product byproduct).
#[derive(Debug, PartialEq, Eq)]
enum Said {
    File(String),
    /// The `uri` and whether a link target in it is percent-encoded.
    Other((String, bool)),
}

/// The key under which a name is compared: the name as written and
/// whether it is percent-encoded, so a literal `%41` and an encoded byte
/// never meet.
fn key_of(d: &ResourceDescriptor) -> Option<(String, bool)> {
    let name = d.name.clone()?;
    let encoded = d
        .annotations
        .get(ANN_PATH_ENCODING)
        .and_then(|v| v.as_str())
        == Some("percent");
    Some((name, encoded))
}

/// How an entry that is not a regular file is described, on both sides:
/// the `uri`, and whether a link target in it is percent-encoded.
fn other_of_entry(kind: &EntryKind) -> Option<(String, bool)> {
    match kind {
        EntryKind::Symlink { target } => {
            let (t, encoded) = RelPath::from_bytes(target.clone()).encoded();
            Some((format!("symlink:{t}"), encoded))
        }
        EntryKind::Special { kind } => Some((format!("special:{kind}"), false)),
        EntryKind::Error { .. } => Some(("error:unreadable".into(), false)),
        EntryKind::File { .. } => None,
    }
}

/// A directory is vouched for when the statement accounts for every entry
/// in it and for nothing more below the same root: each regular file as a
/// subject with its sha256 (or all of them at once by one dirHash subject
/// of the root), each link (with its target), FIFO, device and empty
/// directory as a product byproduct. Missing and extra entries fail.
fn vouches_for_dir(st: &crate::provenance::Statement, root: &HashedRoot) -> Result<(), String> {
    use std::collections::{BTreeMap, BTreeSet};
    let local_files: Vec<(&RelPath, &[u8; 32])> = root.tree.files().collect();
    let local_other: BTreeMap<(String, bool), (String, bool)> = root
        .tree
        .entries
        .iter()
        .filter_map(|e| Some((e.path.encoded(), other_of_entry(&e.kind)?)))
        .collect();
    if let Some(e) = root
        .tree
        .entries
        .iter()
        .find(|e| matches!(e.kind, EntryKind::Error { .. }))
    {
        return Err(format!("{} could not be read", e.path.shown()));
    }
    if root.tree.entries.is_empty() {
        return Err("the directory is empty".into());
    }
    // Everything the statement says, by name.
    let mut said: BTreeMap<(String, bool), Said> = BTreeMap::new();
    for s in &st.subject {
        if let (Some(k), Some(d)) = (key_of(s), s.digest.get(ALG_SHA256)) {
            said.insert(k, Said::File(d.clone()));
        }
    }
    let provenance = st.provenance().ok();
    let roots = provenance.as_ref().and_then(recorded_product_roots);
    let byproducts = provenance
        .map(|p| p.run_details.byproducts)
        .unwrap_or_default();
    for b in &byproducts {
        let product = b.annotations.get(ANN_ROLE).and_then(|v| v.as_str()) == Some("product");
        if let (true, Some(k), Some(uri)) = (product, key_of(b), b.uri.as_ref()) {
            let target_encoded = b
                .annotations
                .get(ANN_LINK_TARGET_ENCODING)
                .and_then(|v| v.as_str())
                == Some("percent");
            said.entry(k)
                .or_insert(Said::Other((uri.clone(), target_encoded)));
        }
    }
    // The roots that could be this directory: the names of dirHash
    // subjects that match it, or the prefixes under which its files are
    // named.
    let local_dir_hash = root.tree.dir_hash().ok();
    let dir_hash_roots: Vec<String> = st
        .subject
        .iter()
        .filter(|s| {
            s.digest.get(ALG_DIR_HASH).is_some()
                && s.digest.get(ALG_DIR_HASH) == local_dir_hash.as_ref()
        })
        .filter_map(|s| s.name.clone())
        .map(|n| if n == "." { String::new() } else { n })
        .collect();
    let mut prefixes: BTreeSet<String> = dir_hash_roots.iter().cloned().collect();
    if let Some((rel, sha)) = local_files.first() {
        let (rel, enc) = rel.encoded();
        let want = Said::File(hex::encode(sha));
        for ((name, e), what) in &said {
            if *e != enc || *what != want {
                continue;
            }
            if *name == rel {
                prefixes.insert(String::new());
            } else if let Some(p) = name.strip_suffix(&format!("/{rel}")) {
                prefixes.insert(p.to_string());
            }
        }
    }
    let under = |prefix: &str, rel: &str| {
        if prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{prefix}/{rel}")
        }
    };
    // The directory must not be a slice of an attested output with
    // attested siblings dropped (a build's `bin/` without the `policy/`
    // beside it). provenant's statements name their product roots: inside
    // a root, everything attested under it must lie under the prefix (a
    // `--subject dist/**` statement still vouches for `dist`); another
    // tool's statement names no roots, and the directory must then account
    // for every subject there is.
    prefixes.retain(|p| match &roots {
        Some(roots) => whole_within_roots(p, roots, &said),
        None => said.keys().all(|(name, _)| is_under(p, name)),
    });
    let mut best: Option<String> = None;
    for prefix in &prefixes {
        let by_dir_hash = dir_hash_roots.contains(prefix);
        let mut problems = Vec::new();
        let mut expected: BTreeSet<(String, bool)> = BTreeSet::new();
        if !by_dir_hash {
            for (rel, sha) in &local_files {
                let (rel, enc) = rel.encoded();
                let k = (under(prefix, &rel), enc);
                if said.get(&k) != Some(&Said::File(hex::encode(sha))) {
                    problems.push(format!("{rel} is not a subject with that content"));
                }
                expected.insert(k);
            }
        }
        for ((rel, enc), what) in &local_other {
            let k = (under(prefix, rel), *enc);
            if said.get(&k) != Some(&Said::Other(what.clone())) {
                let (uri, enc) = what;
                let enc = if *enc { ", percent-encoded" } else { "" };
                problems.push(format!("{rel} ({uri}{enc}) is not in the attestation"));
            }
            expected.insert(k);
        }
        // What the statement lists under this root that is not here.
        let start = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        for ((name, enc), what) in &said {
            if !name.starts_with(&start) || expected.contains(&(name.clone(), *enc)) {
                continue;
            }
            let vouched_by_hash = by_dir_hash && matches!(what, Said::File(_));
            if !vouched_by_hash {
                problems.push(format!(
                    "{} is attested but missing here",
                    &name[start.len()..]
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let count = problems.len();
        problems.truncate(3);
        let shown: Vec<String> = problems
            .iter()
            .map(|p| crate::escape::field(p).into_owned())
            .collect();
        best.get_or_insert(format!(
            "{count} difference(s) from the attestation (e.g. {})",
            shown.join("; ")
        ));
    }
    Err(best.unwrap_or_else(|| match local_dir_hash {
        Some(h)
            if !st
                .subject
                .iter()
                .any(|s| s.digest.get(ALG_SHA256).is_some()) =>
        {
            format!("its dirHash is {h}, which no subject has")
        }
        _ => "no subject names its files with that content".into(),
    }))
}

/// Whether `prefix` stands for a whole part of what the statement attests:
/// it contains a recorded root, or lies inside roots under which nothing
/// attested falls outside it. A prefix related to no root is refused.
fn whole_within_roots<V>(
    prefix: &str,
    roots: &std::collections::BTreeSet<String>,
    said: &std::collections::BTreeMap<(String, bool), V>,
) -> bool {
    let mut related = false;
    for r in roots {
        if r == prefix || is_under(r, prefix) {
            related = true;
            let all_inside = said
                .keys()
                .filter(|(name, _)| is_under(r, name))
                .all(|(name, _)| is_under(prefix, name));
            if !all_inside {
                return false;
            }
        } else if is_under(prefix, r) {
            related = true;
        }
    }
    related
}

/// The product roots of a provenant statement, as recorded in
/// `externalParameters.products` (cleaned as subject names are). `None`
/// for another build type, whose parameters mean something else.
fn recorded_product_roots(
    p: &crate::provenance::Provenance,
) -> Option<std::collections::BTreeSet<String>> {
    if p.build_definition.build_type != crate::provenance::BUILD_TYPE {
        return None;
    }
    let roots = p
        .build_definition
        .external_parameters
        .get("products")?
        .as_array()?;
    let mut out = std::collections::BTreeSet::new();
    for r in roots.iter().filter_map(|r| r.as_str()) {
        out.insert(clean_prefix(Path::new(r)).encoded().0);
    }
    Some(out)
}

fn is_under(prefix: &str, name: &str) -> bool {
    prefix.is_empty()
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Checks an image requirement against the attestations attached to it.
pub async fn check_image(
    image: &str,
    registry: &crate::publish::Registry,
    policy: &Policy,
) -> Result<ResourceDescriptor, GateError> {
    let label = format!("image:{image}");
    let (img, found) = registry.fetch(image).await.map_err(|e| GateError::Image {
        input: label.clone(),
        message: e.to_string(),
    })?;
    let mut reasons = Vec::new();
    for f in &found {
        let v = match super::verify_attached(&f.digest, f, &img.digest, &policy.trust()) {
            Ok(v) => v,
            Err(e) => {
                reasons.push(match e {
                    super::AttachedError::Unreadable(e) => format!("{}: {e}", f.digest),
                    super::AttachedError::Invalid(e) => e.to_string(),
                    super::AttachedError::NotThisImage => {
                        format!("{}: no subject has the image digest", f.digest)
                    }
                });
                continue;
            }
        };
        let violations = policy.check(&v, time::OffsetDateTime::now_utc());
        if !violations.is_empty() {
            return Err(GateError::Policy {
                input: label,
                violations,
            });
        }
        let mut d =
            upstream_descriptor(&label, f.digest.trim_start_matches("sha256:"), &v.signed_by);
        d.uri = Some(format!("{}@{}", img.repository(), img.digest));
        return Ok(d);
    }
    Err(GateError::Mismatch {
        input: label,
        detail: if reasons.is_empty() {
            "no attestation is attached".into()
        } else {
            reasons.join("; ")
        },
    })
}

impl crate::error::ExitClass for GateError {
    fn exit_code(&self) -> i32 {
        GateError::exit_code(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded upstream attestation, field for field.
    #[test]
    fn the_upstream_descriptor_names_the_envelope() {
        let d = serde_json::to_value(upstream_descriptor("src", "ab", &["k1".into()])).unwrap();
        assert_eq!(
            d,
            serde_json::json!({
                "name": "attestation:src",
                "digest": {"sha256": "ab"},
                "mediaType": "application/vnd.dsse.envelope.v1+json",
                "annotations": {"provenant.verifiedBy": ["k1"]}
            })
        );
    }

    /// Every form of `--require`, and each way a value is not one: an
    /// empty side of `=` or an empty value is a usage error (exit 2), not
    /// a requirement on a file named "" that the gate then looks for.
    #[test]
    fn require_values_parse_or_are_usage_errors() {
        let path = |i: &str, a: Option<&str>| Requirement::Path {
            input: i.into(),
            attestation: a.map(PathBuf::from),
        };
        for (v, want) in [
            ("src", path("src", None)),
            ("src=src.att", path("src", Some("src.att"))),
            ("a=b=c", path("a", Some("b=c"))),
            (
                "image:reg.local/app",
                Requirement::Image("reg.local/app".into()),
            ),
        ] {
            assert_eq!(v.parse::<Requirement>().unwrap(), want, "{v}");
        }
        for (v, message) in [
            ("=src.att", "--require =src.att: expected PATH=ATTESTATION"),
            ("src=", "--require src=: expected PATH=ATTESTATION"),
            ("=", "--require =: expected PATH=ATTESTATION"),
            ("", "--require: empty value"),
            ("image:", "--require image:: expected image:REF"),
        ] {
            let e = v.parse::<Requirement>().unwrap_err();
            assert_eq!(e.exit_code(), exit::USAGE, "{v}");
            assert_eq!(e.to_string(), message, "{v}");
        }
    }
}
