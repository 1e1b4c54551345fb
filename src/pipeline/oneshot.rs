//! Observing on one machine: `attest` hashes materials and products as
//! they are now; `run` hashes the materials, runs the command as its child
//! (so its exit status is observed by the kernel), then hashes the
//! products.
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::claims::{observe_claims, SubjectOptions};
use super::{Observation, PipelineError};
use crate::completion::{exit_code_of, run_child};
use crate::digest::WalkOptions;
use crate::provenance::{self, ExitStatus, HashedRoot, ResourceDescriptor};
use crate::publish::{Deadline, Registry};

/// What a one-shot observation looks at.
#[derive(Debug, Clone)]
pub struct OneShotOptions {
    pub materials: Vec<PathBuf>,
    pub products: Vec<PathBuf>,
    /// How every root is walked (excludes, unreadable files); git blob ids
    /// are computed for materials when they are described as git trees.
    pub walk: WalkOptions,
    pub material_git_blobs: bool,
    pub subjects: SubjectOptions,
}

/// Roots hashed now, with one log line saying how many entries and how
/// long.
pub fn hash_roots(
    paths: &[PathBuf],
    opts: &WalkOptions,
    what: &str,
) -> Result<Vec<HashedRoot>, PipelineError> {
    let started = std::time::Instant::now();
    let roots = provenance::hash_roots(paths, opts)?;
    let entries: usize = roots.iter().map(|r| r.tree.entries.len()).sum();
    tracing::info!(
        roots = paths.len(),
        entries,
        ms = started.elapsed().as_millis() as u64,
        "hashed {what}"
    );
    Ok(roots)
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.display().to_string()).collect()
}

impl OneShotOptions {
    fn material_walk(&self) -> WalkOptions {
        WalkOptions {
            git_blobs: self.material_git_blobs,
            ..self.walk.clone()
        }
    }

    /// Products are described whole, empty directories included, so the
    /// next stage's gate can check them as a whole.
    fn product_walk(&self) -> WalkOptions {
        WalkOptions {
            empty_dirs: true,
            git_blobs: false,
            ..self.walk.clone()
        }
    }

    pub fn hash_materials(&self) -> Result<Vec<HashedRoot>, PipelineError> {
        hash_roots(&self.materials, &self.material_walk(), "materials")
    }

    pub fn hash_products(&self) -> Result<Vec<HashedRoot>, PipelineError> {
        hash_roots(&self.products, &self.product_walk(), "products")
    }

    fn observation(
        &self,
        materials: Vec<HashedRoot>,
        products: Vec<HashedRoot>,
        registry: Option<&Registry>,
        deadline: &Deadline,
    ) -> Result<Observation, PipelineError> {
        let selected = self
            .subjects
            .selector()?
            .map(|globs| provenance::select(&products, &globs));
        Ok(Observation {
            claims: observe_claims(&self.subjects, registry, deadline)?,
            selected,
            subject_globs: self.subjects.globs.clone(),
            materials,
            products,
            references: Vec::new(),
            byproducts: Vec::new(),
            exit: None,
            command: None,
            pod: None,
            completion: None,
            started: OffsetDateTime::now_utc(),
            finished: OffsetDateTime::now_utc(),
            invocation_id: uuid::Uuid::new_v4().to_string(),
            material_names: names(&self.materials),
            product_names: names(&self.products),
            excludes: self.walk.excludes.clone(),
            on_error: self.walk.on_error,
        })
    }
}

/// `attest`: everything as it is now; no build was observed, so there is
/// no exit status.
pub fn observe_now(
    opts: &OneShotOptions,
    registry: Option<&Registry>,
    deadline: &Deadline,
) -> Result<Observation, PipelineError> {
    let started = OffsetDateTime::now_utc();
    let materials = opts.hash_materials()?;
    let products = opts.hash_products()?;
    let mut obs = opts.observation(materials, products, registry, deadline)?;
    obs.started = started;
    Ok(obs)
}

/// How `run` went.
pub enum Ran {
    /// The command finished; here is what was seen, and the deadline of
    /// the registry work that began with the build's end.
    Observed(Box<Observation>, Deadline),
    /// The command failed and failed builds are not attested.
    Failed(i32),
}

/// `run -- CMD`: materials hashed, the command run and waited for, the
/// products hashed. A failed command is observed only when `attest_failed`.
pub fn observe_command(
    opts: &OneShotOptions,
    argv: &[String],
    attest_failed: bool,
    registry: Option<&Registry>,
    deadline_budget: std::time::Duration,
) -> Result<Ran, PipelineError> {
    let materials = opts.hash_materials()?;
    let command = command_material(&argv[0]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PipelineError::Runtime)?;
    let started = OffsetDateTime::now_utc();
    let status = rt.block_on(run_child(argv)).map_err(PipelineError::Child)?;
    let finished = OffsetDateTime::now_utc();
    let code = exit_code_of(status);
    if code != 0 && !attest_failed {
        tracing::warn!(
            exit_code = code,
            "command failed; not attesting a failed build (pass --attest-failed to attest it anyway)"
        );
        return Ok(Ran::Failed(code));
    }
    let products = opts.hash_products()?;
    // The registry is asked only now: the deadline starts when the build
    // is over, as in the sidecar.
    let deadline = Deadline::after(deadline_budget);
    let mut obs = opts.observation(materials, products, registry, &deadline)?;
    obs.references.extend(command);
    obs.exit = Some(ExitStatus::observed(code, "run"));
    obs.command = Some(argv.to_vec());
    obs.started = started;
    obs.finished = finished;
    Ok(Ran::Observed(Box::new(obs), deadline))
}

/// Finds the executable `argv0` names, as the shell would, so its digest
/// can be recorded as a material: the tool that ran is an input of the
/// build.
fn resolve_executable(argv0: &str) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(argv0))
        .find(|p| p.is_file())
}

fn command_material(argv0: &str) -> Option<ResourceDescriptor> {
    let exe = resolve_executable(argv0)?;
    let real = std::fs::canonicalize(Path::new(&exe)).ok()?;
    let sha = crate::digest::hash_file(&real).ok()?;
    Some(
        ResourceDescriptor::sha256(real.display().to_string(), &sha)
            .annotate("provenant.role", "command"),
    )
}
