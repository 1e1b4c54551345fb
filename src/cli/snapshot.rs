//! `provenant snapshot`: the init container. Hashes the inputs before the
//! builder starts and leaves the result in the state volume.
use std::path::PathBuf;

use super::CliResult;
use clap::Args;

use super::opts::{DescribeOpts, HashOpts};
use super::UsageError;
use crate::pipeline::snapshot::{parse_reference, SnapshotOptions};
use crate::pod::PodIdentity;
use crate::verify::exit;
use crate::verify::gate::Requirement;

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
    /// Only product files matching this glob become subjects in the
    /// sidecar (relative to the workspace; as `record --subject`);
    /// repeatable or comma-separated. Fixed here for the whole pod.
    #[arg(
        long = "subject",
        value_name = "GLOB",
        env = "PROVENANT_SUBJECT",
        value_delimiter = ','
    )]
    pub subjects: Vec<String>,
    #[command(flatten)]
    pub registry: super::publish::RegistryOpts,
    #[command(flatten)]
    pub hash: HashOpts,
    #[command(flatten)]
    pub describe: DescribeOpts,
}

pub fn snapshot(a: SnapshotArgs) -> CliResult {
    let references = a
        .references
        .iter()
        .map(|r| parse_reference(r).map_err(UsageError))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pod = PodIdentity {
        name: a.pod_name.clone(),
        namespace: a.pod_namespace.clone(),
        uid: a.pod_uid.clone(),
        node: a.node_name.clone(),
        service_account: a.service_account.clone(),
        ..Default::default()
    };
    for i in &a.image_ids {
        let (c, img) = i
            .split_once('=')
            .filter(|(c, r)| !c.is_empty() && !r.is_empty())
            .ok_or_else(|| UsageError(format!("--image-id '{i}': expected CONTAINER=IMAGE")))?;
        pod.images.insert(c.into(), img.into());
    }
    let require = a
        .require
        .iter()
        .map(|r| r.parse::<Requirement>())
        .collect::<Result<Vec<_>, _>>()?;
    let registry = if require.iter().any(|r| matches!(r, Requirement::Image(_))) {
        Some(a.registry.registry()?)
    } else {
        None
    };
    let opts = SnapshotOptions {
        state: a.state.clone(),
        materials: a.materials.clone(),
        workspaces: a.workspaces.clone(),
        references,
        pod,
        require,
        policy: a.policy.clone(),
        walk: a.hash.walk_options(),
        materials_as: a.describe.materials_as,
        subjects: a.subjects.clone(),
    };
    crate::pipeline::snapshot::snapshot(&opts, registry.as_ref())?;
    Ok(exit::OK)
}
