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
        rd.digest.insert(ALG_SHA256.into(), hex);
    }
    Ok(rd)
}

pub fn snapshot(a: SnapshotArgs) -> anyhow::Result<i32> {
    let taken = OffsetDateTime::now_utc();
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
        references,
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
