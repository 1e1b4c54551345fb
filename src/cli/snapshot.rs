//! `provenant snapshot`: the init container. Hashes the inputs before the
//! builder starts and leaves the result in the state volume.
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use time::OffsetDateTime;

use super::attest::hash_all;
use super::{DescribeOpts, HashOpts};
use crate::digest::{EntryKind, Excludes, RelPath, SpecialKind, WalkOptions};
use crate::pod::{PodIdentity, SnapRoot, Snapshot, SNAPSHOT_VERSION};
use crate::provenance::HashedRoot;
use crate::provenance::{parse_sha256_digest, rfc3339, ResourceDescriptor, ALG_SHA256};
use crate::publish::write_atomic;
use crate::verify::exit;
use crate::verify::gate::GateError;

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// State directory, mounted only into provenant's containers.
    #[arg(long, env = "PROVENANT_STATE", default_value = "/provenant/state")]
    pub state: PathBuf,
    /// Input file or directory (source tree, config); repeatable.
    #[arg(long = "material", value_name = "PATH")]
    pub materials: Vec<PathBuf>,
    /// Workspace directory the builder writes to; products are what differs
    /// from its state now. Repeatable.
    #[arg(long = "workspace", value_name = "DIR")]
    pub workspaces: Vec<PathBuf>,
    /// An input known by reference, `NAME=IMAGE@sha256:HEX` or `NAME=URI`
    /// (buildpacks, base and builder images); repeatable.
    #[arg(long = "reference", value_name = "NAME=REF")]
    pub references: Vec<String>,
    /// Container image of this pod, `CONTAINER=IMAGE[@sha256:HEX]`
    /// (e.g. from the downward API); repeatable.
    #[arg(long = "image-id", value_name = "CONTAINER=IMAGE")]
    pub image_ids: Vec<String>,
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    #[arg(long, env = "POD_UID")]
    pub pod_uid: Option<String>,
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    #[arg(long, env = "SERVICE_ACCOUNT")]
    pub service_account: Option<String>,
    /// Gate: an input that must carry a valid attestation from the previous
    /// stage (`PATH=ATTESTATION`, `PATH`, or `image:REF`); repeatable. Any
    /// failure stops the init container, so the builder never starts.
    #[arg(long = "require", value_name = "INPUT", requires = "policy")]
    pub require: Vec<String>,
    /// Policy the required inputs' attestations must pass.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub registry: super::publish::RegistryOpts,
    #[command(flatten)]
    pub hash: HashOpts,
    #[command(flatten)]
    pub describe: DescribeOpts,
}

/// `NAME=IMAGE@sha256:HEX` -> a descriptor with the digest; `NAME=URI`
/// -> a uri-only descriptor.
pub fn parse_reference(s: &str) -> anyhow::Result<ResourceDescriptor> {
    let (name, reference) = s
        .split_once('=')
        .filter(|(n, r)| !n.is_empty() && !r.is_empty())
        .with_context(|| format!("--reference '{s}': expected NAME=REF"))?;
    let mut rd = ResourceDescriptor::uri(name, reference);
    if let Some((image, digest)) = reference.split_once('@') {
        let hex = parse_sha256_digest(digest).with_context(|| {
            format!("--reference '{s}': digest after '@' is not sha256:<64 hex>")
        })?;
        rd.uri = Some(format!("oci://{image}"));
        rd.digest.insert(ALG_SHA256, hex);
    }
    Ok(rd)
}

pub fn snapshot(a: SnapshotArgs) -> anyhow::Result<i32> {
    let taken = OffsetDateTime::now_utc();
    let mut walk = a.hash.walk_options();
    walk.git_blobs = a.describe.wants_git_blobs();
    // The gate first: a build whose inputs are not vouched for never starts.
    let (upstream, verified) = gate(&a, &walk)?;
    test_pause("PROVENANT_TEST_PAUSE_AFTER_GATE");
    let references = a
        .references
        .iter()
        .map(|r| parse_reference(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut pod = PodIdentity {
        name: a.pod_name,
        namespace: a.pod_namespace,
        uid: a.pod_uid,
        node: a.node_name,
        service_account: a.service_account,
        ..Default::default()
    };
    for i in &a.image_ids {
        let (c, img) = i
            .split_once('=')
            .filter(|(c, r)| !c.is_empty() && !r.is_empty())
            .with_context(|| format!("--image-id '{i}': expected CONTAINER=IMAGE"))?;
        pod.images.insert(c.into(), img.into());
    }
    if a.materials.is_empty() && a.workspaces.is_empty() {
        anyhow::bail!("nothing to snapshot: give --material and/or --workspace");
    }
    let materials = materials(&a.materials, &walk, &verified)?;
    let workspace = hash_all(&a.workspaces, &a.hash, "workspace", false)?;
    let snap = Snapshot {
        version: SNAPSHOT_VERSION,
        taken_on: rfc3339(taken),
        pod,
        excludes: a.hash.excludes.clone(),
        materials_as: a.describe.materials_as.as_str().into(),
        materials: materials.iter().map(SnapRoot::from_hashed).collect(),
        workspace: workspace.iter().map(SnapRoot::from_hashed).collect(),
        references: references.into_iter().chain(upstream).collect(),
    };
    std::fs::create_dir_all(&a.state)
        .with_context(|| format!("cannot create state directory {}", a.state.display()))?;
    let path = Snapshot::path_in(&a.state);
    let json = serde_json::to_vec(&snap).context("cannot serialize snapshot")?;
    write_atomic(&path, &json)?;
    let files: usize = snap.materials.iter().map(|r| r.entries.len()).sum();
    tracing::info!(snapshot = %path.display(), materials = files, "snapshot written");
    Ok(exit::OK)
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
) -> anyhow::Result<Vec<HashedRoot>> {
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
fn agree(a: &HashedRoot, b: &HashedRoot) -> anyhow::Result<()> {
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
            anyhow::bail!(GateError::Mismatch {
                input: inner.given.display().to_string(),
                detail: format!(
                    "{} changed between the gate's check and the snapshot; refusing to record it",
                    RelPath::from_bytes(rel).encoded().0.escape_debug()
                ),
            });
        }
    }
    Ok(())
}

/// Verifies every `--require`d input; returns what to record upstream and
/// the verified trees of the inputs that are paths.
fn gate(
    a: &SnapshotArgs,
    walk: &WalkOptions,
) -> anyhow::Result<(Vec<ResourceDescriptor>, Vec<HashedRoot>)> {
    use crate::verify::gate::{check_image, check_path, Requirement};
    if a.require.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let policy =
        crate::verify::Policy::load(a.policy.as_deref().context("--require needs --policy")?)?;
    let reqs = a
        .require
        .iter()
        .map(|r| r.parse::<Requirement>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    let mut roots = Vec::new();
    let mut rt = None;
    for r in reqs {
        let d = match r {
            Requirement::Path { input, attestation } => {
                let v = check_path(&input, attestation.as_deref(), &policy, walk)?;
                roots.push(v.root);
                v.descriptor
            }
            Requirement::Image(image) => {
                let registry = a.registry.registry()?;
                let rt = match &mut rt {
                    Some(rt) => rt,
                    None => rt.insert(
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .context("cannot start async runtime")?,
                    ),
                };
                rt.block_on(check_image(&image, &registry, &policy))?
            }
        };
        tracing::info!(input = %d.name.as_deref().unwrap_or(""), "input vouched for by the previous stage");
        out.push(d);
    }
    Ok((out, roots))
}
