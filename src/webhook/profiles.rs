//! Which pods are instrumented and how: one profile per pod layout.
//!
//! * kpack (label `kpack.io/build`), as kpack v0.17
//!   (`pkg/apis/build/v1alpha2/build_pod.go`) makes build pods: init
//!   containers `prepare`, `analyze`, `detect`, `restore`, `build`,
//!   `export`, then the container `completion`.
//! * Tekton (label `tekton.dev/taskRun`), as Tekton Pipelines v1.x
//!   (`pkg/pod/pod.go`) makes TaskRun pods: steps are containers named
//!   `step-*`, workspaces are volumes named `ws-*`.
//! * opt-in (annotation or label `provenant.dev/inject: "true"`): any pod,
//!   with the paths given in annotations.
use k8s_openapi::api::core::v1::{Container, Pod, Volume, VolumeMount};

use super::config::Config;
use super::inject::{Plan, Sidecar};
use super::{clip, Unsupported, OPT_IN};

pub const KPACK_LABEL: &str = "kpack.io/build";
pub const TEKTON_LABEL: &str = "tekton.dev/taskRun";
/// Opt-in settings: comma-separated absolute paths.
pub const WORKSPACE_ANNOTATION: &str = "provenant.dev/workspace";
pub const MATERIALS_ANNOTATION: &str = "provenant.dev/materials";
/// The container whose volume mounts give those paths (default: the
/// first container).
pub const BUILDER_ANNOTATION: &str = "provenant.dev/builder-container";
/// The stage gate, for every profile: inputs that must carry a valid
/// attestation from the previous stage (`provenant snapshot --require`,
/// comma-separated: `image:REF` or a path), checked against the policy in
/// the named ConfigMap of the pod's namespace (item `policy.yaml`, beside
/// the public keys it names by relative path). A gate
/// only makes admission of the build's inputs stricter.
pub const REQUIRE_ANNOTATION: &str = "provenant.dev/require";
pub const POLICY_ANNOTATION: &str = "provenant.dev/policy";

/// At most this many paths in one opt-in annotation, each at most
/// `MAX_PATH` bytes: they become arguments.
const MAX_PATHS: usize = 32;
const MAX_PATH: usize = 1024;
/// At most this many `--image-id` / allowed repositories taken from a pod.
const MAX_IMAGES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Kpack,
    Tekton,
    OptIn,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Kpack => "kpack",
            Profile::Tekton => "tekton",
            Profile::OptIn => "opt-in",
        }
    }
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(|s| s.as_str())
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(|s| s.as_str())
}

/// The profile for this pod, if any is enabled and matches.
pub fn select(pod: &Pod, config: &Config) -> Option<Profile> {
    let p = &config.profiles;
    if p.kpack.enabled && label(pod, KPACK_LABEL).is_some() {
        return Some(Profile::Kpack);
    }
    if p.tekton.enabled && label(pod, TEKTON_LABEL).is_some() {
        return Some(Profile::Tekton);
    }
    // The label is what a MutatingWebhookConfiguration's objectSelector can
    // see; the annotation is accepted too, for clusters that send every pod.
    if p.opt_in.enabled
        && (annotation(pod, OPT_IN) == Some("true") || label(pod, OPT_IN) == Some("true"))
    {
        return Some(Profile::OptIn);
    }
    None
}

/// `namespace` is the admission request's (a pod being created may not
/// name its own).
pub fn plan(
    profile: Profile,
    pod: &Pod,
    namespace: Option<&str>,
    config: &Config,
) -> Result<Plan, Unsupported> {
    let mut p = match profile {
        Profile::Kpack => kpack(pod),
        Profile::Tekton => tekton(pod, config),
        Profile::OptIn => opt_in(pod),
    }?;
    gate(pod, &mut p)?;
    p.builder_id = builder_id(profile, pod, namespace, config)?;
    Ok(p)
}

/// The builder id the sidecar passes. With a signer it is the one the
/// signer demands of this pod (its `--builder` rules, the same code
/// resolving them): the sidecar's start-up check would fail otherwise,
/// and the signer refuse every statement.
fn builder_id(
    profile: Profile,
    pod: &Pod,
    namespace: Option<&str>,
    config: &Config,
) -> Result<String, Unsupported> {
    let Some(s) = &config.signing.signer else {
        return Ok(config.key_builder_id().to_string());
    };
    let ns = namespace
        .filter(|n| !n.is_empty())
        .or(pod.metadata.namespace.as_deref())
        .ok_or_else(|| Unsupported::new(profile.name(), "the pod's namespace is not known"))?;
    // The ServiceAccount admission plugin, which runs before webhooks,
    // sets `default` where the pod names none.
    let spec = pod.spec.as_ref();
    let sa = spec
        .and_then(|s| s.service_account_name.as_deref())
        .or(spec.and_then(|s| s.service_account.as_deref()))
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    s.builder_ids
        .for_service_account(ns, sa)
        .map(str::to_string)
        .ok_or_else(|| {
            Unsupported::new(
                profile.name(),
                format!(
                    "no builder id for namespace {} (service account {}) in signing.signer.builders: the signer would refuse its statements",
                    clip(ns),
                    clip(sa)
                ),
            )
        })
}

fn gate(pod: &Pod, p: &mut Plan) -> Result<(), Unsupported> {
    let u = |r: String| Unsupported::new(p.profile.name(), r);
    let require: Vec<String> = annotation(pod, REQUIRE_ANNOTATION)
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let policy = annotation(pod, POLICY_ANNOTATION).map(str::trim);
    if require.is_empty() {
        return match policy {
            Some(_) => Err(u(format!(
                "{POLICY_ANNOTATION} without {REQUIRE_ANNOTATION}"
            ))),
            None => Ok(()),
        };
    }
    let policy = policy.ok_or_else(|| {
        u(format!(
            "{REQUIRE_ANNOTATION} needs {POLICY_ANNOTATION} (a ConfigMap with policy.yaml)"
        ))
    })?;
    if !super::config::is_object_name(policy) {
        return Err(u(format!(
            "{POLICY_ANNOTATION}: '{}' is not a ConfigMap name",
            clip(policy)
        )));
    }
    if require.len() > MAX_PATHS {
        return Err(u(format!(
            "{REQUIRE_ANNOTATION}: more than {MAX_PATHS} inputs"
        )));
    }
    for r in &require {
        if !safe_value(r) || r.starts_with('-') {
            return Err(u(format!(
                "{REQUIRE_ANNOTATION}: '{}' is not an input",
                clip(r)
            )));
        }
    }
    p.require = require;
    p.policy_configmap = Some(policy.to_string());
    Ok(())
}

fn base(profile: Profile, pod: &Pod) -> Plan {
    let sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    Plan {
        profile,
        mounts: Vec::new(),
        materials: Vec::new(),
        workspaces: Vec::new(),
        references: Vec::new(),
        image_ids: image_ids(pod),
        record_args: Vec::new(),
        allow_repos: Vec::new(),
        snapshot_at: 0,
        sidecar: Sidecar::Native,
        run_as_group: sc.and_then(|s| s.run_as_group.or(s.fs_group)),
        fs_group: sc.and_then(|s| s.fs_group).is_some(),
        require: Vec::new(),
        policy_configmap: None,
        builder_id: String::new(),
        signer_ca: None,
    }
}

/// Text from the pod that becomes part of an argument: printable, no
/// separators our own syntax uses, bounded.
fn safe_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PATH
        && !s
            .chars()
            .any(|c| c.is_control() || c == ',' || c.is_whitespace())
}

fn image_ids(pod: &Pod) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .filter_map(|c| {
            let image = c.image.as_deref()?;
            (safe_value(image) && safe_value(&c.name)).then(|| format!("{}={image}", c.name))
        })
        .take(MAX_IMAGES)
        .collect()
}

fn volume<'a>(pod: &'a Pod, name: &str) -> Option<&'a Volume> {
    pod.spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
}

fn ro(name: &str, path: &str, sub_path: Option<String>) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        sub_path,
        ..Default::default()
    }
}

fn env_of<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// `IMAGE@sha256:HEX` references become resolvedDependencies with their
/// digest; anything else is not recorded as one (a tag says nothing).
fn digest_reference(name: &str, image: &str) -> Option<String> {
    let (_, d) = image.split_once('@')?;
    crate::provenance::parse_sha256_digest(d)?;
    safe_value(image).then(|| format!("{name}={image}"))
}

/// kpack default mode. The sidecar starts right after the snapshot, which
/// runs right after `prepare` has put the source into the workspace: the
/// sidecar reads the snapshot when it starts (the baseline it compares the
/// end state with), so it cannot start before it, and nothing but
/// `prepare` has run by then.
fn kpack(pod: &Pod) -> Result<Plan, Unsupported> {
    let u = |r: &str| Unsupported::new("kpack", r);
    let spec = pod.spec.as_ref().ok_or_else(|| u("pod without spec"))?;
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    if names.contains(&"pre-start")
        || spec.containers.iter().any(|c| {
            c.command
                .as_ref()
                .is_some_and(|cmd| cmd.iter().any(|a| a.starts_with("/buildWait/")))
        })
    {
        // INJECTED_SIDECAR_SUPPORT: every step, prepare included, is a
        // regular container sequenced by kpack's build-waiter through done
        // files in the `build-wait-dir` volume. An init container can only
        // run before `pre-start`, before the source exists; a snapshot
        // between `prepare` and `analyze` would have to run
        // /buildWait/build-waiter, a binary in a volume every build step
        // can write, inside provenant's container that holds the state:
        // the build could forge its own inputs.
        return Err(u("kpack's injected-sidecar mode (INJECTED_SIDECAR_SUPPORT) is not supported: its steps are sequenced by a binary in a volume the build can write, which provenant's snapshot would have to run"));
    }
    if names.contains(&"rebase") && !names.contains(&"prepare") {
        return Err(u("rebase pods are not instrumented: nothing is built, the run image is swapped under existing layers"));
    }
    let prepare = names
        .iter()
        .position(|n| *n == "prepare")
        .ok_or_else(|| u("no init container 'prepare'"))?;
    let export = init
        .iter()
        .find(|c| c.name == "export")
        .ok_or_else(|| u("no init container 'export'"))?;
    let build = init
        .iter()
        .find(|c| c.name == "build")
        .ok_or_else(|| u("no init container 'build'"))?;
    for v in ["workspace-dir", "layers-dir", "report-dir"] {
        if volume(pod, v).is_none() {
            return Err(u(&format!("no volume '{v}'")));
        }
    }
    let export_args = export.args.as_deref().unwrap_or_default();
    let report = export_args
        .iter()
        .find_map(|a| a.strip_prefix("-report="))
        .unwrap_or("/var/report/report.toml");
    if report != "/var/report/report.toml" {
        return Err(u(&format!(
            "the exporter writes its report to '{}', not /var/report/report.toml",
            clip(report)
        )));
    }
    let mut p = base(Profile::Kpack, pod);
    p.snapshot_at = prepare + 1;
    // The whole workspace volume, as `prepare` sees it (build steps may
    // mount a subPath of it: the source is all of it).
    p.mounts = vec![
        ro("workspace-dir", "/workspace", None),
        ro("layers-dir", "/layers", None),
        ro("report-dir", "/var/report", None),
    ];
    p.materials = vec!["/workspace".into()];
    p.workspaces = vec!["/layers".into()];
    p.record_args = vec![
        "--kpack-report=/var/report/report.toml".into(),
        // An image is the product of a kpack build; no report, no
        // attestation (a failed build writes none).
        "--subjects=reported".into(),
    ];
    // Tags are the exporter's positional arguments; each one's repository,
    // exactly, is what the sidecar may accept from report.toml.
    for tag in export_args.iter().filter(|a| !a.starts_with('-')) {
        let repo = crate::provenance::image_repository(tag);
        if !safe_value(repo) || repo.contains(['*', '?', '[', ']', '{', '}', '\\']) {
            tracing::warn!(tag = %clip(tag), "exporter tag not usable as an allowed repository; left out");
            continue;
        }
        if !p.allow_repos.iter().any(|r| r == repo) && p.allow_repos.len() < MAX_IMAGES {
            p.allow_repos.push(repo.to_string());
        }
    }
    if let Some(img) = build.image.as_deref() {
        p.references.extend(digest_reference("builder", img));
    }
    if let Some(run) = env_of(export, "CNB_RUN_IMAGE").or_else(|| {
        init.iter().find(|c| c.name == "analyze").and_then(|a| {
            a.args
                .iter()
                .flatten()
                .find_map(|x| x.strip_prefix("-run-image="))
        })
    }) {
        p.references.extend(digest_reference("run-image", run));
    }
    Ok(p)
}

fn is_secret_like(v: &Volume) -> bool {
    v.secret.is_some()
        || v.config_map.is_some()
        || v.projected.is_some()
        || v.downward_api.is_some()
}

/// Tekton: the snapshot is the last init container (after Tekton's own
/// `prepare`/`place-scripts`/`working-dir-initializer`), so it runs
/// before the first step; the sidecar reads the Task's results.
fn tekton(pod: &Pod, config: &Config) -> Result<Plan, Unsupported> {
    let u = |r: &str| Unsupported::new("tekton", r);
    let spec = pod.spec.as_ref().ok_or_else(|| u("pod without spec"))?;
    let steps: Vec<&Container> = spec
        .containers
        .iter()
        .filter(|c| c.name.starts_with("step-"))
        .collect();
    if steps.is_empty() {
        return Err(u("no step containers (step-*)"));
    }
    if volume(pod, "tekton-internal-results").is_none() {
        return Err(u("no volume 'tekton-internal-results'"));
    }
    let mut p = base(Profile::Tekton, pod);
    p.snapshot_at = spec.init_containers.as_ref().map_or(0, |i| i.len());
    p.sidecar = if config.profiles.tekton.native_sidecar {
        Sidecar::Native
    } else {
        Sidecar::TektonLegacy
    };
    // Workspaces: what the steps mount from `ws-*` volumes, at the steps'
    // paths. Secret-like volumes are inputs only.
    let mut seen: Vec<String> = Vec::new();
    for m in steps.iter().flat_map(|s| s.volume_mounts.iter().flatten()) {
        if !m.name.starts_with("ws-") || seen.contains(&m.mount_path) {
            continue;
        }
        let Some(v) = volume(pod, &m.name) else {
            continue;
        };
        if !safe_value(&m.mount_path) || !m.mount_path.starts_with('/') {
            return Err(u(&format!(
                "workspace mount path '{}' is not usable",
                clip(&m.mount_path)
            )));
        }
        if seen.len() >= MAX_PATHS {
            return Err(u(&format!("more than {MAX_PATHS} workspaces")));
        }
        seen.push(m.mount_path.clone());
        p.mounts.push(ro(
            &m.name,
            &m.mount_path,
            m.sub_path.clone().filter(|s| !s.is_empty()),
        ));
        p.materials.push(m.mount_path.clone());
        if !is_secret_like(v) {
            p.workspaces.push(m.mount_path.clone());
        }
    }
    if p.workspaces.is_empty() {
        // No writable workspace bound: Tekton's own /workspace is where
        // steps work by default.
        p.mounts
            .push(ro("tekton-internal-workspace", "/workspace", None));
        p.materials.push("/workspace".into());
        p.workspaces.push("/workspace".into());
    }
    p.mounts
        .push(ro("tekton-internal-results", "/tekton/results", None));
    if volume(pod, "tekton-internal-steps").is_some() {
        // Step results (/tekton/steps/<step>/results) for readers of the
        // record's state; the subject comes from /tekton/results.
        p.mounts
            .push(ro("tekton-internal-steps", "/tekton/steps", None));
    }
    p.record_args = vec!["--tekton-results=/tekton/results".into()];
    p.allow_repos = config.profiles.tekton.allow_image_repos.clone();
    Ok(p)
}

fn paths(pod: &Pod, key: &str) -> Result<Vec<String>, Unsupported> {
    let Some(v) = annotation(pod, key) else {
        return Ok(Vec::new());
    };
    let list: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if list.len() > MAX_PATHS {
        return Err(Unsupported::new(
            "opt-in",
            format!("{key}: more than {MAX_PATHS} paths"),
        ));
    }
    for p in &list {
        if !safe_value(p) || !p.starts_with('/') || p.split('/').any(|c| c == ".." || c == ".") {
            return Err(Unsupported::new(
                "opt-in",
                format!(
                    "{key}: '{}' is not an absolute path without '.' or '..'",
                    clip(p)
                ),
            ));
        }
    }
    Ok(list)
}

/// The volume mount of `c` that holds `path` (the longest mount path that
/// is `path` or one of its parents).
fn holder<'a>(c: &'a Container, path: &str) -> Option<&'a VolumeMount> {
    c.volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            let mp = m.mount_path.trim_end_matches('/');
            path == mp || path.starts_with(&format!("{mp}/")) || mp.is_empty()
        })
        .max_by_key(|m| m.mount_path.len())
}

fn opt_in(pod: &Pod) -> Result<Plan, Unsupported> {
    let u = |r: String| Unsupported::new("opt-in", r);
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| u("pod without spec".into()))?;
    let builder = match annotation(pod, BUILDER_ANNOTATION) {
        Some(n) => spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == n)
            .ok_or_else(|| u(format!("{BUILDER_ANNOTATION}: no container '{}'", clip(n))))?,
        None => spec
            .containers
            .first()
            .ok_or_else(|| u("no containers".into()))?,
    };
    let mut workspaces = paths(pod, WORKSPACE_ANNOTATION)?;
    if workspaces.is_empty() {
        workspaces.push("/workspace".into());
    }
    let materials = paths(pod, MATERIALS_ANNOTATION)?;
    let mut p = base(Profile::OptIn, pod);
    p.snapshot_at = spec.init_containers.as_ref().map_or(0, |i| i.len());
    for path in workspaces.iter().chain(materials.iter()) {
        let m = holder(builder, path).ok_or_else(|| {
            u(format!(
                "container {} mounts no volume at or above {}",
                clip(&builder.name),
                clip(path)
            ))
        })?;
        if !p.mounts.iter().any(|x| x.mount_path == m.mount_path) {
            p.mounts.push(ro(
                &m.name,
                &m.mount_path,
                m.sub_path.clone().filter(|s| !s.is_empty()),
            ));
        }
    }
    p.workspaces = workspaces;
    p.materials = materials;
    Ok(p)
}
