//! `provenant snapshot`, the init container: the gate first (every
//! required input must come with an attestation from the previous stage
//! that verifies and passes the policy), then the inputs hashed before the
//! builder starts, left in the state volume for the sidecar.
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::{oneshot::hash_roots, PipelineError};
use crate::choice::Choice as _;
use crate::digest::{EntryKind, Excludes, RelPath, SpecialKind, WalkOptions};
use crate::pod::{PodIdentity, SnapRoot, Snapshot, SNAPSHOT_VERSION};
use crate::provenance::{
    parse_sha256_digest, rfc3339, HashedRoot, MaterialsAs, ResourceDescriptor, ALG_SHA256,
};
use crate::publish::Registry;
use crate::verify::gate::{check_image, check_path, GateError, Requirement};

#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub state: PathBuf,
    pub materials: Vec<PathBuf>,
    pub workspaces: Vec<PathBuf>,
    /// Inputs known by reference (buildpacks, base and builder images).
    pub references: Vec<ResourceDescriptor>,
    pub pod: PodIdentity,
    pub require: Vec<Requirement>,
    pub policy: Option<PathBuf>,
    /// How roots are walked (excludes, unreadable files).
    pub walk: WalkOptions,
    pub materials_as: MaterialsAs,
    /// `--subject` globs for the sidecar.
    pub subjects: Vec<String>,
}

/// `NAME=IMAGE@sha256:HEX` -> a descriptor with the digest; `NAME=URI`
/// -> a uri-only descriptor.
pub fn parse_reference(s: &str) -> Result<ResourceDescriptor, String> {
    let (name, reference) = s
        .split_once('=')
        .filter(|(n, r)| !n.is_empty() && !r.is_empty())
        .ok_or_else(|| format!("--reference '{s}': expected NAME=REF"))?;
    let mut rd = ResourceDescriptor::uri(name, reference);
    if let Some((image, digest)) = reference.split_once('@') {
        let hex = parse_sha256_digest(digest)
            .ok_or_else(|| format!("--reference '{s}': digest after '@' is not sha256:<64 hex>"))?;
        rd.uri = Some(format!("oci://{image}"));
        rd.digest.insert(ALG_SHA256, hex);
    }
    Ok(rd)
}

/// Gate, hash, write `STATE/snapshot.json`; returns its path.
pub fn snapshot(
    opts: &SnapshotOptions,
    registry: Option<&Registry>,
) -> Result<PathBuf, PipelineError> {
    let taken = OffsetDateTime::now_utc();
    let walk = WalkOptions {
        git_blobs: opts.materials_as == MaterialsAs::Tree,
        ..opts.walk.clone()
    };
    // The gate first: a build whose inputs are not vouched for never starts.
    let (upstream, verified) = gate(opts, &walk, registry)?;
    test_pause("PROVENANT_TEST_PAUSE_AFTER_GATE");
    if opts.materials.is_empty() && opts.workspaces.is_empty() {
        return Err(PipelineError::Usage(
            "nothing to snapshot: give --material and/or --workspace".into(),
        ));
    }
    let materials = materials(&opts.materials, &walk, &verified)?;
    let workspace = hash_roots(&opts.workspaces, &opts.walk, "workspace")?;
    let snap = Snapshot {
        version: SNAPSHOT_VERSION,
        taken_on: rfc3339(taken),
        pod: opts.pod.clone(),
        excludes: opts.walk.excludes.clone(),
        subjects: opts.subjects.clone(),
        materials_as: opts.materials_as.as_str().into(),
        materials: materials.iter().map(SnapRoot::from_hashed).collect(),
        workspace: workspace.iter().map(SnapRoot::from_hashed).collect(),
        references: opts.references.iter().cloned().chain(upstream).collect(),
    };
    std::fs::create_dir_all(&opts.state).map_err(|source| crate::sink::WriteError {
        path: opts.state.clone(),
        source,
    })?;
    let path = Snapshot::path_in(&opts.state);
    let json = serde_json::to_vec(&snap).map_err(|e| crate::sink::WriteError {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::sink::write_atomic(&path, &json)?;
    let files: usize = snap.materials.iter().map(|r| r.entries.len()).sum();
    tracing::info!(snapshot = %path.display(), materials = files, "snapshot written");
    Ok(path)
}

/// Tests of races (tests/chain.rs) change an input between the gate and the
/// snapshot: when `var` names a file, it is created, and this waits (30 s
/// at most) until the test removes it. Only the pod's operator sets the
/// environment of the init container; the builder cannot.
fn test_pause(var: &str) {
    let Some(flag) = std::env::var_os(var).map(PathBuf::from) else {
        return;
    };
    if std::fs::write(&flag, b"").is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while flag.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `p` absolute and without `.`/`..` or doubled slashes, for comparing
/// the paths of required inputs and materials.
fn normalized(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The materials, hashed; a material that is a required input is the tree
/// the gate verified (read once: the bytes recorded are the bytes
/// verified), and where a material and a required input overlap, the two
/// reads must agree, or the input changed while it was being verified.
fn materials(
    paths: &[PathBuf],
    walk: &WalkOptions,
    verified: &[HashedRoot],
) -> Result<Vec<HashedRoot>, PipelineError> {
    let excludes = Excludes::new(&walk.excludes)?;
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let same = verified
            .iter()
            .find(|v| normalized(&v.given) == normalized(p));
        let root = match same {
            Some(v) => {
                let mut r = v.clone();
                r.given = p.clone();
                // As a material walk records it: no empty directories, and
                // nothing the excludes leave out.
                r.tree.entries.retain(|e| {
                    !matches!(
                        e.kind,
                        EntryKind::Special {
                            kind: SpecialKind::EmptyDir
                        }
                    ) && !excludes.excludes_file(e.path.as_bytes())
                });
                r
            }
            None => crate::provenance::hash_root(p, walk)?,
        };
        for v in verified {
            agree(v, &root)?;
        }
        out.push(root);
    }
    let files: usize = out.iter().map(|r| r.tree.entries.len()).sum();
    tracing::info!(
        roots = paths.len(),
        entries = files,
        ms = started.elapsed().as_millis() as u64,
        "hashed materials"
    );
    Ok(out)
}

/// Where one of `a` and `b` lies inside the other, every entry of the
/// inner one must be the same in the outer one.
fn agree(a: &HashedRoot, b: &HashedRoot) -> Result<(), GateError> {
    let (pa, pb) = (normalized(&a.given), normalized(&b.given));
    let (outer, inner, sub) = if let Ok(s) = pb.strip_prefix(&pa) {
        (a, b, s.to_path_buf())
    } else if let Ok(s) = pa.strip_prefix(&pb) {
        (b, a, s.to_path_buf())
    } else {
        return Ok(());
    };
    if !outer.is_dir {
        return Ok(());
    }
    use std::collections::HashMap;
    let by_path: HashMap<&[u8], &EntryKind> = outer
        .tree
        .entries
        .iter()
        .map(|e| (e.path.as_bytes(), &e.kind))
        .collect();
    let sub = sub.as_os_str().as_encoded_bytes();
    for e in &inner.tree.entries {
        if matches!(
            e.kind,
            EntryKind::Special {
                kind: SpecialKind::EmptyDir
            }
        ) {
            continue;
        }
        let rel: Vec<u8> = if !inner.is_dir {
            sub.to_vec()
        } else if sub.is_empty() {
            e.path.as_bytes().to_vec()
        } else {
            [sub, b"/", e.path.as_bytes()].concat()
        };
        // Left out of the other read by an exclude: nothing to compare.
        let Some(kind) = by_path.get(rel.as_slice()) else {
            continue;
        };
        let same = match (kind, &e.kind) {
            (EntryKind::File { sha256: x, .. }, EntryKind::File { sha256: y, .. }) => x == y,
            (x, y) => *x == y,
        };
        if !same {
            return Err(GateError::Mismatch {
                input: inner.given.display().to_string(),
                detail: format!(
                    "{} changed between the gate's check and the snapshot; refusing to record it",
                    RelPath::from_bytes(rel).shown()
                ),
            });
        }
    }
    Ok(())
}

/// Verifies every required input; returns what to record upstream and the
/// verified trees of the inputs that are paths.
fn gate(
    opts: &SnapshotOptions,
    walk: &WalkOptions,
    registry: Option<&Registry>,
) -> Result<(Vec<ResourceDescriptor>, Vec<HashedRoot>), PipelineError> {
    if opts.require.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let policy_path = opts
        .policy
        .as_deref()
        .ok_or_else(|| PipelineError::Usage("--require needs --policy".into()))?;
    let policy = crate::verify::Policy::load(policy_path)?;
    let mut out = Vec::new();
    let mut roots = Vec::new();
    let mut rt = None;
    for r in &opts.require {
        let d = match r {
            Requirement::Path { input, attestation } => {
                let v = check_path(input, attestation.as_deref(), &policy, walk)?;
                roots.push(v.root);
                v.descriptor
            }
            Requirement::Image(image) => {
                let registry = registry.ok_or_else(|| {
                    PipelineError::Usage("an image: requirement needs registry settings".into())
                })?;
                let rt = match &mut rt {
                    Some(rt) => rt,
                    None => rt.insert(super::runtime()?),
                };
                rt.block_on(check_image(image, registry, &policy))?
            }
        };
        tracing::info!(input = %d.name.as_deref().unwrap_or(""), "input vouched for by the previous stage");
        out.push(d);
    }
    Ok((out, roots))
}
