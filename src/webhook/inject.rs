//! What the webhook adds to a pod, and the check that a pod which already
//! carries provenant's containers carries exactly those.
//!
//! The patch is `add` operations only, computed from the typed view of the
//! pod but applied to the pod as the API server has it: nothing of the
//! original is re-serialized, so fields newer than this build's
//! k8s-openapi survive.
use crate::choice::Choice as _;
use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, DownwardAPIProjection, DownwardAPIVolumeFile, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, KeyToPath, ObjectFieldSelector, Pod, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use super::config::Config;
use super::profiles::Profile;
use super::{INJECTED_ANNOTATION, SIGNER_CA_ANNOTATION};

pub const SNAPSHOT: &str = "provenant-snapshot";
pub const RECORD: &str = "provenant-record";
/// Tekton counts containers named `sidecar-*` as the Task's sidecars (and
/// stops them with its `nop` image swap after the last step).
pub const TEKTON_RECORD: &str = "sidecar-provenant-record";
pub const STATE_VOLUME: &str = "provenant-state";
pub const KEY_VOLUME: &str = "provenant-signing-key";
/// The sidecar's projected service-account token for the signer, and the
/// signer's CA beside it.
pub const TOKEN_VOLUME: &str = "provenant-signer-token";
pub const REGISTRY_VOLUME: &str = "provenant-registry";
pub const POLICY_VOLUME: &str = "provenant-policy";
pub const STATE_DIR: &str = "/provenant/state";
const KEY_DIR: &str = "/var/run/provenant/key";
const TOKEN_DIR: &str = "/var/run/provenant/signer";
const REGISTRY_DIR: &str = "/var/run/provenant/registry";
const POLICY_DIR: &str = "/var/run/provenant/policy";
const SIGNER_TOKEN_FILE: &str = "token";
const SIGNER_CA_FILE: &str = "ca.crt";

/// How the recording sidecar runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sidecar {
    /// Kubernetes 1.29+: an init container with `restartPolicy: Always`
    /// right after the snapshot; SIGTERM once the main containers exited.
    Native,
    /// A regular container named like a Tekton sidecar; Tekton stops it
    /// (SIGTERM) after the last step.
    TektonLegacy,
}

/// What a profile found in the pod, and where provenant goes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub profile: Profile,
    /// The builder's volumes provenant reads, mounted read-only into both
    /// provenant containers at the builder's paths.
    pub mounts: Vec<VolumeMount>,
    pub materials: Vec<String>,
    pub workspaces: Vec<String>,
    /// `NAME=IMAGE@sha256:HEX` inputs known by reference.
    pub references: Vec<String>,
    /// `CONTAINER=IMAGE` of the pod's own containers.
    pub image_ids: Vec<String>,
    /// Profile-specific `provenant record` arguments (`--kpack-report=...`).
    pub record_args: Vec<String>,
    /// PROVENANT_ALLOW_IMAGE_REPO: repositories the sidecar may accept as
    /// claimed image subjects.
    pub allow_repos: Vec<String>,
    /// Index in `initContainers` where the snapshot goes.
    pub snapshot_at: usize,
    pub sidecar: Sidecar,
    /// The build's group, so provenant can read what the build makes
    /// group-readable.
    pub run_as_group: Option<i64>,
    /// The pod has an fsGroup: Secret files can be group-readable only.
    pub fs_group: bool,
    /// The stage gate: `--require` inputs, and the ConfigMap holding the
    /// policy they must pass.
    pub require: Vec<String>,
    pub policy_configmap: Option<String>,
    /// `builder.id` of the attestation: the configuration's, or with a
    /// signer the one the signer's rules give this pod's namespace and
    /// service account.
    pub builder_id: String,
    /// With a signer: its CA certificates (PEM), for the pod's annotation.
    pub signer_ca: Option<std::sync::Arc<str>>,
}

impl Plan {
    pub fn record_name(&self) -> &'static str {
        match self.sidecar {
            Sidecar::Native => RECORD,
            Sidecar::TektonLegacy => TEKTON_RECORD,
        }
    }
}

fn is_ours(name: &str) -> bool {
    name == SNAPSHOT || name == RECORD || name == TEKTON_RECORD
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.into_iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    })
}

/// Secrets only provenant's containers may see.
fn protected_secrets(config: &Config) -> Vec<&str> {
    let mut s = Vec::new();
    if let Some(k) = &config.signing.key {
        s.push(k.secret_name.as_str());
    }
    s
}

/// A projected service-account token for the signer's audience: whoever
/// mounts one can ask the signer to sign statements about this pod.
fn has_signer_token(v: &Volume, config: &Config) -> bool {
    let Some(s) = &config.signing.signer else {
        return false;
    };
    v.projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|src| src.service_account_token.as_ref())
        .any(|t| t.audience.as_deref() == Some(s.audience.as_str()))
}

fn volume_secrets(v: &Volume) -> Vec<&str> {
    let mut out = Vec::new();
    if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
        out.push(s);
    }
    for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        if let Some(s) = &src.secret {
            out.push(s.name.as_str());
        }
    }
    out
}

pub enum Existing {
    /// Nothing of provenant's: inject.
    None,
    /// provenant's names are present: must be exactly what this webhook makes.
    Ours,
    /// A container that is not provenant's would see the key, the token or
    /// provenant's state: never admitted.
    Forbidden(String),
}

/// Looks for provenant's containers and volumes, and for builder
/// containers that reach for what only provenant may see.
pub fn existing(pod: &Pod, config: &Config) -> Existing {
    let protected = protected_secrets(config);
    let Some(spec) = pod.spec.as_ref() else {
        return Existing::None;
    };
    let guarded: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| {
            v.name.starts_with("provenant-")
                || volume_secrets(v).iter().any(|s| protected.contains(s))
                || has_signer_token(v, config)
        })
        .map(|v| v.name.as_str())
        .collect();
    for c in all_containers(pod) {
        if is_ours(&c.name) {
            continue;
        }
        if let Some(m) = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| guarded.contains(&m.name.as_str()))
        {
            return Existing::Forbidden(format!(
                "container {} mounts volume {}, which only provenant's containers may mount (the signing key, a token for the signer or provenant's state)",
                super::clip(&c.name),
                super::clip(&m.name)
            ));
        }
        let env_secret = c.env.iter().flatten().find_map(|e| {
            e.value_from
                .as_ref()?
                .secret_key_ref
                .as_ref()
                .filter(|r| protected.contains(&r.name.as_str()))
                .map(|r| r.name.clone())
        });
        let env_from = c.env_from.iter().flatten().find_map(|e| {
            e.secret_ref
                .as_ref()
                .filter(|r| protected.contains(&r.name.as_str()))
                .map(|r| r.name.clone())
        });
        if let Some(s) = env_secret.or(env_from) {
            return Existing::Forbidden(format!(
                "container {} reads Secret {} in its environment, which only provenant's containers may read",
                super::clip(&c.name),
                super::clip(&s)
            ));
        }
    }
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(INJECTED_ANNOTATION));
    if annotated || !guarded.is_empty() || all_containers(pod).any(|c| is_ours(&c.name)) {
        return Existing::Ours;
    }
    Existing::None
}

/// The pod without anything provenant's, as it was before injection.
pub fn strip(pod: &Pod) -> Pod {
    let mut p = pod.clone();
    if let Some(a) = p.metadata.annotations.as_mut() {
        a.remove(INJECTED_ANNOTATION);
        a.remove(SIGNER_CA_ANNOTATION);
    }
    if let Some(s) = p.spec.as_mut() {
        s.containers.retain(|c| !is_ours(&c.name));
        if let Some(i) = s.init_containers.as_mut() {
            i.retain(|c| !is_ours(&c.name));
        }
        if let Some(v) = s.volumes.as_mut() {
            v.retain(|v| !v.name.starts_with("provenant-"));
        }
    }
    p
}

/// Checks that `pod` carries exactly the containers and volumes `plan`
/// makes, where it makes them. The fields compared are the ones that
/// decide what is recorded and what is signed.
pub fn matches(pod: &Pod, plan: &Plan, config: &Config) -> Result<(), String> {
    let spec = pod.spec.as_ref().ok_or("no spec")?;
    let want = containers(plan, config);
    let init = spec.init_containers.clone().unwrap_or_default();
    let snap_at = init
        .iter()
        .position(|c| c.name == SNAPSHOT)
        .ok_or("no provenant-snapshot init container")?;
    if snap_at != plan.snapshot_at {
        return Err(format!(
            "provenant-snapshot is init container {snap_at}, expected {}",
            plan.snapshot_at
        ));
    }
    let have_record = match plan.sidecar {
        Sidecar::Native => init.get(snap_at + 1).filter(|c| c.name == RECORD),
        Sidecar::TektonLegacy => spec.containers.iter().find(|c| c.name == TEKTON_RECORD),
    }
    .ok_or_else(|| format!("{} not where this webhook puts it", plan.record_name()))?;
    for (have, want) in [(&init[snap_at], &want.0), (have_record, &want.1)] {
        let key = |c: &Container| {
            (
                c.image.clone(),
                c.command.clone(),
                c.args.clone(),
                c.env.clone(),
                c.env_from.clone(),
                c.volume_mounts.clone(),
                c.restart_policy.clone(),
                c.security_context.clone(),
                c.working_dir.clone(),
            )
        };
        if key(have) != key(want) {
            return Err(format!("{} differs", want.name));
        }
    }
    let ours = all_containers(pod).filter(|c| is_ours(&c.name)).count();
    if ours != 2 {
        return Err(format!("{ours} containers with provenant's names"));
    }
    let have_vols: BTreeMap<&str, &Volume> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.name.starts_with("provenant-"))
        .map(|v| (v.name.as_str(), v))
        .collect();
    let want_vols = volumes(plan, config);
    if have_vols.len() != want_vols.len()
        || want_vols
            .iter()
            .any(|w| have_vols.get(w.name.as_str()) != Some(&w))
    {
        return Err("provenant's volumes differ".into());
    }
    // The CA the sidecar trusts for the signer is part of what is signed
    // with: it must be the one this webhook hands out.
    let have_ca = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SIGNER_CA_ANNOTATION))
        .map(|s| s.as_str());
    if plan.signer_ca.is_some() && have_ca != plan.signer_ca.as_deref() {
        return Err(format!("annotation {SIGNER_CA_ANNOTATION} differs"));
    }
    Ok(())
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                // Set as the API server would default it, so a reinvocation
                // compares equal.
                api_version: Some("v1".into()),
                field_path: path.into(),
            }),
            ..Default::default()
        }),
    }
}

fn security_context(plan: &Plan, config: &Config) -> SecurityContext {
    SecurityContext {
        run_as_user: Some(config.run_as_user),
        run_as_group: Some(
            plan.run_as_group
                .filter(|g| *g > 0)
                .unwrap_or(config.run_as_user),
        ),
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

fn resources(config: &Config) -> ResourceRequirements {
    let mem = Quantity(config.resources.memory());
    let mut requests = BTreeMap::new();
    requests.insert(
        "cpu".to_string(),
        Quantity(config.resources.cpu_request.clone()),
    );
    requests.insert("memory".to_string(), mem.clone());
    let mut limits = BTreeMap::new();
    limits.insert("memory".to_string(), mem);
    if let Some(c) = &config.resources.cpu_limit {
        limits.insert("cpu".to_string(), Quantity(c.clone()));
    }
    ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..Default::default()
    }
}

/// The snapshot init container and the recording sidecar.
pub fn containers(plan: &Plan, config: &Config) -> (Container, Container) {
    let mut mounts = plan.mounts.clone();
    mounts.push(mount(STATE_VOLUME, STATE_DIR, false));

    // `--flag=VALUE` throughout: a value taken from the pod can never be
    // read as another flag.
    let mut args = vec!["snapshot".to_string()];
    args.extend(plan.materials.iter().map(|m| format!("--material={m}")));
    args.extend(plan.workspaces.iter().map(|w| format!("--workspace={w}")));
    args.extend(plan.references.iter().map(|r| format!("--reference={r}")));
    args.extend(plan.image_ids.iter().map(|i| format!("--image-id={i}")));
    let mut snap_mounts = mounts.clone();
    if plan.policy_configmap.is_some() {
        args.extend(plan.require.iter().map(|r| format!("--require={r}")));
        args.push(format!("--policy={POLICY_DIR}/policy.yaml"));
        snap_mounts.push(mount(POLICY_VOLUME, POLICY_DIR, true));
        // Checking `image:` inputs reads their attestations from the
        // registry, with the same credentials the sidecar publishes with.
        if config.publish.credentials_secret_name.is_some() {
            snap_mounts.push(mount(REGISTRY_VOLUME, REGISTRY_DIR, true));
            args.push(format!("--registry-config={REGISTRY_DIR}/config.json"));
        }
        args.extend(
            config
                .publish
                .plain_http
                .iter()
                .map(|r| format!("--plain-http={r}")),
        );
    }
    let snapshot = Container {
        name: SNAPSHOT.into(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        args: Some(args),
        env: Some(vec![
            env("PROVENANT_STATE", STATE_DIR),
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_UID", "metadata.uid"),
            field_env("NODE_NAME", "spec.nodeName"),
            field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ]),
        volume_mounts: Some(snap_mounts),
        security_context: Some(security_context(plan, config)),
        resources: Some(resources(config)),
        ..Default::default()
    };

    let mut args = vec![
        "record".to_string(),
        "--completion=sigterm".into(),
        format!("--builder-id={}", plan.builder_id),
        format!("--products-as={}", config.products_as.get().as_str()),
    ];
    args.extend(plan.record_args.iter().cloned());
    let mut envs = vec![env("PROVENANT_STATE", STATE_DIR)];
    if !plan.allow_repos.is_empty() {
        envs.push(env(
            "PROVENANT_ALLOW_IMAGE_REPO",
            &plan.allow_repos.join(","),
        ));
    }
    if let Some(k) = &config.signing.key {
        mounts.push(mount(KEY_VOLUME, KEY_DIR, true));
        args.push(format!("--key={KEY_DIR}/cosign.key"));
        if let Some(item) = &k.password_item {
            envs.push(EnvVar {
                name: "COSIGN_PASSWORD".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: k.secret_name.clone(),
                        key: item.clone(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            });
        }
    }
    if let Some(s) = &config.signing.signer {
        // The token and the CA: in this container only.
        mounts.push(mount(TOKEN_VOLUME, TOKEN_DIR, true));
        args.push(format!("--signer={}", s.url));
        args.push(format!("--signer-ca={TOKEN_DIR}/{SIGNER_CA_FILE}"));
        args.push(format!(
            "--signer-token-file={TOKEN_DIR}/{SIGNER_TOKEN_FILE}"
        ));
    }
    if config.publish.enabled {
        args.push("--publish".into());
        if config.publish.credentials_secret_name.is_some() {
            mounts.push(mount(REGISTRY_VOLUME, REGISTRY_DIR, true));
            args.push(format!("--registry-config={REGISTRY_DIR}/config.json"));
        }
        args.extend(
            config
                .publish
                .plain_http
                .iter()
                .map(|r| format!("--plain-http={r}")),
        );
    }
    let record = Container {
        name: plan.record_name().into(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        args: Some(args),
        env: Some(envs),
        volume_mounts: Some(mounts),
        security_context: Some(security_context(plan, config)),
        resources: Some(resources(config)),
        restart_policy: (plan.sidecar == Sidecar::Native).then(|| "Always".to_string()),
        ..Default::default()
    };
    (snapshot, record)
}

fn secret_volume(name: &str, secret: &str, items: Vec<(String, String)>, mode: i32) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            items: Some(
                items
                    .into_iter()
                    .map(|(key, path)| KeyToPath {
                        key,
                        path,
                        mode: None,
                    })
                    .collect(),
            ),
            default_mode: Some(mode),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

/// The sidecar's token for the signer (bound to this pod, for the
/// signer's audience only, short-lived; the kubelet renews it) and the
/// signer's CA from the pod's annotation. Every field is set as the API
/// server would default it, so a reinvocation compares equal.
fn signer_volume(s: &super::config::RemoteSigner, mode: i32) -> Volume {
    Volume {
        name: TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(mode),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(s.audience.clone()),
                        expiration_seconds: Some(s.token_expiration_seconds),
                        path: SIGNER_TOKEN_FILE.into(),
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: SIGNER_CA_FILE.into(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".into()),
                                field_path: format!(
                                    "metadata.annotations['{SIGNER_CA_ANNOTATION}']"
                                ),
                            }),
                            mode: None,
                            resource_field_ref: None,
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
        }),
        ..Default::default()
    }
}

/// provenant's volumes: its state, and the key or token (and registry
/// credentials) that only its sidecar mounts.
pub fn volumes(plan: &Plan, config: &Config) -> Vec<Volume> {
    // With an fsGroup the kubelet gives Secret files that group, which
    // provenant's containers get too: 0440 suffices. Without one they are
    // root's, and 65532 can read them only if they are world-readable;
    // that reaches no further than the containers that mount the volume,
    // and only provenant's do (checked on every pod).
    let mode = if plan.fs_group { 0o440 } else { 0o444 };
    let mut v = vec![Volume {
        name: STATE_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    if let Some(k) = &config.signing.key {
        v.push(secret_volume(
            KEY_VOLUME,
            &k.secret_name,
            vec![(k.key_item.clone(), "cosign.key".into())],
            mode,
        ));
    }
    if let Some(s) = &config.signing.signer {
        v.push(signer_volume(s, mode));
    }
    if let Some(cm) = &plan.policy_configmap {
        v.push(Volume {
            name: POLICY_VOLUME.into(),
            config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
                name: cm.clone(),
                // All items: the policy names its trusted public keys by
                // paths relative to itself (e.g. `path: cosign.pub`).
                items: None,
                default_mode: Some(0o444),
                optional: Some(false),
            }),
            ..Default::default()
        });
    }
    let gate_reads_registry = plan.policy_configmap.is_some();
    if config.publish.enabled || gate_reads_registry {
        if let Some(n) = &config.publish.credentials_secret_name {
            v.push(secret_volume(
                REGISTRY_VOLUME,
                n,
                vec![(
                    config.publish.credentials_item.clone(),
                    "config.json".into(),
                )],
                mode,
            ));
        }
    }
    v
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn ptr(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // k8s-openapi types serialize infallibly (no maps with non-string keys).
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The JSONPatch that instruments `pod` according to `plan`.
pub fn patch(pod: &Pod, plan: &Plan, config: &Config) -> Patch {
    let mut ops = Vec::new();
    let mut notes = vec![(
        INJECTED_ANNOTATION,
        Value::String(plan.profile.name().into()),
    )];
    if let Some(ca) = &plan.signer_ca {
        notes.push((SIGNER_CA_ANNOTATION, Value::String(ca.to_string())));
    }
    if pod.metadata.annotations.is_some() {
        // `add` replaces a member that exists (RFC 6902, 4.1): a CA the
        // pod's creator put there is not the one the sidecar gets.
        for (k, v) in notes {
            ops.push(add(ptr(&["metadata", "annotations", k]), v));
        }
    } else {
        ops.push(add(
            ptr(&["metadata", "annotations"]),
            Value::Object(notes.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
        ));
    }
    let no_spec = k8s_openapi::api::core::v1::PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&no_spec);
    let vols = volumes(plan, config);
    if spec.volumes.is_some() {
        for v in &vols {
            ops.push(add(ptr(&["spec", "volumes", "-"]), to_value(v)));
        }
    } else {
        ops.push(add(ptr(&["spec", "volumes"]), to_value(&vols)));
    }
    let (snapshot, record) = containers(plan, config);
    let native = plan.sidecar == Sidecar::Native;
    if spec.init_containers.is_some() {
        let at = plan.snapshot_at.to_string();
        ops.push(add(
            ptr(&["spec", "initContainers", &at]),
            to_value(&snapshot),
        ));
        if native {
            let at = (plan.snapshot_at + 1).to_string();
            ops.push(add(
                ptr(&["spec", "initContainers", &at]),
                to_value(&record),
            ));
        }
    } else {
        let mut list = vec![to_value(&snapshot)];
        if native {
            list.push(to_value(&record));
        }
        ops.push(add(ptr(&["spec", "initContainers"]), Value::Array(list)));
    }
    if !native {
        ops.push(add(ptr(&["spec", "containers", "-"]), to_value(&record)));
    }
    let min = config.min_termination_grace_period_seconds;
    if spec
        .termination_grace_period_seconds
        .is_none_or(|g| g < min)
    {
        // `add` on an object member replaces it (RFC 6902, 4.1).
        ops.push(add(
            ptr(&["spec", "terminationGracePeriodSeconds"]),
            Value::from(min),
        ));
    }
    Patch(ops)
}
