//! `provenant snapshot`, the init container: the gate first (every
//! required input must come with an attestation from the previous stage
//! that verifies and passes the policy), then the inputs hashed before the
//! builder starts, left in the state volume for the sidecar.
use std::path::PathBuf;

use time::OffsetDateTime;

use super::{oneshot::hash_roots, PipelineError};
use crate::choice::Choice as _;
use crate::digest::{normalized, EntryKind, Excludes, RelPath, SpecialKind, WalkOptions};
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
    // Tests of races change an input here (tests/chain.rs).
    crate::testhook::pause(crate::testhook::AFTER_GATE, "gate passed");
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
            agree(v, &root, &excludes)?;
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

/// Where a verified input `v` and a material root `m` overlap, both reads
/// must see the same entries there: none changed, none added, none removed
/// between the gate's check and the snapshot. Compared by path relative to
/// the material root, leaving out what the material walk leaves out (empty
/// directories, the excludes).
fn agree(v: &HashedRoot, m: &HashedRoot, excludes: &Excludes) -> Result<(), GateError> {
    use std::collections::BTreeMap;
    let (pv, pm) = (normalized(&v.given), normalized(&m.given));
    // `sub`: where the inner root lies in the outer one (empty: the same).
    let (v_inner, sub) = if let Ok(s) = pv.strip_prefix(&pm) {
        (true, s.as_os_str().as_encoded_bytes().to_vec())
    } else if let Ok(s) = pm.strip_prefix(&pv) {
        (false, s.as_os_str().as_encoded_bytes().to_vec())
    } else {
        return Ok(());
    };
    let outer = if v_inner { m } else { v };
    if !sub.is_empty() && !outer.is_dir {
        return Ok(());
    }
    let joined = |a: &[u8], b: &[u8]| -> Vec<u8> {
        if a.is_empty() {
            b.to_vec()
        } else {
            [a, b"/", b].concat()
        }
    };
    // An outer root's entry as a path in the region, or None outside it.
    let in_region = |p: &[u8]| -> bool {
        sub.is_empty() || p == sub.as_slice() || p.starts_with(&[sub.as_slice(), b"/"].concat())
    };
    // Each side's entries keyed by their path relative to the material root.
    let v_key = |p: &[u8]| -> Option<Vec<u8>> {
        if v_inner {
            Some(if v.is_dir || sub.is_empty() {
                joined(&sub, p)
            } else {
                sub.clone()
            })
        } else if !in_region(p) {
            None
        } else if m.is_dir {
            p.strip_prefix(sub.as_slice())
                .map(|r| r.strip_prefix(b"/").unwrap_or(r).to_vec())
        } else if p == sub.as_slice() {
            // The material is one file: its entry is named by the file name.
            m.tree.entries.first().map(|e| e.path.as_bytes().to_vec())
        } else {
            // Below what is now one file: kept under its own path (it has
            // a `/`, so it meets no file name) and reported as gone.
            Some(p.to_vec())
        }
    };
    let m_key = |p: &[u8]| -> Option<Vec<u8>> { (!v_inner || in_region(p)).then(|| p.to_vec()) };
    let keep = |k: &[u8], kind: &EntryKind| {
        let empty_dir = matches!(
            kind,
            EntryKind::Special {
                kind: SpecialKind::EmptyDir
            }
        );
        !empty_dir && !k.is_empty() && (!m.is_dir || !excludes.excludes_file(k))
    };
    fn side<'a>(
        root: &'a HashedRoot,
        key: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
        keep: &dyn Fn(&[u8], &EntryKind) -> bool,
    ) -> BTreeMap<Vec<u8>, &'a EntryKind> {
        root.tree
            .entries
            .iter()
            .filter_map(|e| {
                let k = key(e.path.as_bytes())?;
                keep(&k, &e.kind).then_some((k, &e.kind))
            })
            .collect()
    }
    let (vs, ms) = (side(v, &v_key, &keep), side(m, &m_key, &keep));
    let differs = |k: &Vec<u8>, what: &str| GateError::Mismatch {
        input: v.given.display().to_string(),
        detail: format!(
            "{} {what} between the gate's check and the snapshot; refusing to record it",
            RelPath::from_bytes(k.clone()).shown()
        ),
    };
    for (k, kind) in &vs {
        match ms.get(k) {
            None => return Err(differs(k, "disappeared")),
            Some(other) => {
                let same = match (other, kind) {
                    (EntryKind::File { sha256: x, .. }, EntryKind::File { sha256: y, .. }) => {
                        x == y
                    }
                    (x, y) => x == y,
                };
                if !same {
                    return Err(differs(k, "changed"));
                }
            }
        }
    }
    if let Some(k) = ms.keys().find(|k| !vs.contains_key(*k)) {
        return Err(differs(k, "appeared"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn hashed(p: &Path, excludes: &[&str]) -> HashedRoot {
        let walk = WalkOptions {
            excludes: excludes.iter().map(|s| s.to_string()).collect(),
            ..WalkOptions::default()
        };
        crate::provenance::hash_root(p, &walk).unwrap()
    }

    fn write(p: &Path, b: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }

    /// Security review: between the gate's check of an input and the
    /// material snapshot, a file added or removed inside the input must be
    /// caught as surely as one changed; what the excludes leave out is not
    /// compared.
    #[test]
    fn the_snapshot_agrees_with_the_gate_on_additions_and_removals() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let fresh = || {
            let _ = std::fs::remove_dir_all(d.join("ws"));
            write(&d.join("ws/in/a.c"), b"a");
            write(&d.join("ws/in/sub/b.c"), b"b");
            write(&d.join("ws/other.c"), b"o");
        };
        let ex = Excludes::new(&["**/*.log".to_string()]).unwrap();
        let check = |tamper: &dyn Fn()| {
            fresh();
            let v = hashed(&d.join("ws/in"), &[]);
            tamper();
            let outer = agree(&v, &hashed(&d.join("ws"), &["**/*.log"]), &ex);
            let same = agree(&v, &hashed(&d.join("ws/in"), &["**/*.log"]), &ex);
            // The material inside the input: the gate checked `ws/in`,
            // the snapshot reads `ws/in/sub`.
            let inner = agree(&v, &hashed(&d.join("ws/in/sub"), &["**/*.log"]), &ex);
            (outer.err(), same.err(), inner.err().map(|e| e.to_string()))
        };
        let (o, s, i) = check(&|| {});
        assert!(
            o.is_none() && s.is_none() && i.is_none(),
            "{o:?} {s:?} {i:?}"
        );
        let (o, s, i) = check(&|| write(&d.join("ws/in/sub/new.c"), b"n"));
        for e in [o.map(|e| e.to_string()), s.map(|e| e.to_string()), i] {
            let e = e.expect("an added file is caught");
            assert!(e.contains("new.c") && e.contains("appeared"), "{e}");
        }
        let (o, s, i) = check(&|| std::fs::remove_file(d.join("ws/in/sub/b.c")).unwrap());
        for e in [o.map(|e| e.to_string()), s.map(|e| e.to_string()), i] {
            let e = e.expect("a removed file is caught");
            assert!(e.contains("b.c") && e.contains("disappeared"), "{e}");
        }
        let (o, s, i) = check(&|| write(&d.join("ws/in/sub/b.c"), b"B"));
        for e in [o.map(|e| e.to_string()), s.map(|e| e.to_string()), i] {
            assert!(e.expect("a changed file is caught").contains("changed"));
        }
        // The directory under the input swapped for a file holding what
        // one of its files held: not the same entries.
        let (_, _, i) = check(&|| {
            std::fs::remove_dir_all(d.join("ws/in/sub")).unwrap();
            write(&d.join("ws/in/sub"), b"b");
        });
        assert!(i.is_some(), "a directory turned file is caught");
        // Outside the input, or left out by the excludes: not compared.
        let (o, s, i) = check(&|| {
            write(&d.join("ws/elsewhere.c"), b"e");
            write(&d.join("ws/in/build.log"), b"l");
            write(&d.join("ws/in/sub/x.log"), b"l");
        });
        assert!(
            o.is_none() && s.is_none() && i.is_none(),
            "{o:?} {s:?} {i:?}"
        );
    }
}
