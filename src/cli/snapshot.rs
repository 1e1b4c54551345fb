//! `provenant snapshot`: the init container. Hashes the inputs before the
//! builder starts and leaves the result in the state volume.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use time::OffsetDateTime;

use super::attest::hash_all;
use super::{DescribeOpts, HashOpts};
use crate::pod::{PodIdentity, SnapRoot, Snapshot, SNAPSHOT_VERSION};
use crate::provenance::{parse_sha256_digest, rfc3339, ResourceDescriptor, ALG_SHA256};
use crate::publish::write_atomic;
use crate::verify::exit;

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
    // The gate first: a build whose inputs are not vouched for never starts.
    let upstream = gate(&a)?;
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
    let materials = hash_all(
        &a.materials,
        &a.hash,
        "materials",
        a.describe.wants_git_blobs(),
    )?;
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

/// Verifies every `--require`d input; returns what to record upstream.
fn gate(a: &SnapshotArgs) -> anyhow::Result<Vec<crate::provenance::ResourceDescriptor>> {
    use crate::verify::gate::{check_image, check_path, Requirement};
    if a.require.is_empty() {
        return Ok(Vec::new());
    }
    let policy =
        crate::verify::Policy::load(a.policy.as_deref().context("--require needs --policy")?)?;
    let reqs = a
        .require
        .iter()
        .map(|r| r.parse::<Requirement>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    let mut rt = None;
    for r in reqs {
        let d = match r {
            Requirement::Path { input, attestation } => {
                check_path(&input, attestation.as_deref(), &policy)?
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
    Ok(out)
}
