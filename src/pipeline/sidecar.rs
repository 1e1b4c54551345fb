//! `provenant record`, the sidecar: watch the workspace while the builder
//! runs, learn when it finished, then finalize: take the watcher's index
//! as the tree (hashing only what was still due), describe, sign, and hand
//! the attestation to the outputs. The memory of a 100k-file finalize is
//! managed here too (the statement's buffer prefaulted on the other core,
//! the trees freed while signing), so the command stays a call.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::claims::{observe_claims, SubjectOptions};
use super::{describe, DescribeOptions, Observation, Phases, PipelineError};
use crate::choice::Choice as _;
use crate::completion::{self, Completed, Trigger};
use crate::digest::{ErrorPolicy, WalkOptions};
use crate::pod::{self, Snapshot};
use crate::provenance::{self, parse_rfc3339, HashedRoot, MaterialsAs, ProductsAs};
use crate::publish::{emit_all, Deadline, Output, Registry, Stage};
use crate::sign::Signer;
use crate::watch::{Observed, Watch, WatchError, WatchOptions};

/// What to trust at the end of the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recheck {
    /// The watcher's index (roots where events may have been lost are
    /// hashed from scratch anyway).
    #[default]
    None,
    /// Hash every root again; report where the index differed.
    Full,
}
crate::choice!(Recheck {
    None = "none",
    Full = "full",
});

#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// The state directory `provenant snapshot` wrote.
    pub state: PathBuf,
    /// Workspaces to watch for products (empty: the snapshot's).
    pub workspaces: Vec<PathBuf>,
    pub triggers: Vec<Trigger>,
    pub describe: DescribeOptions,
    pub subjects: SubjectOptions,
    pub on_error: ErrorPolicy,
    pub recheck: Recheck,
    /// The registry work after the build ends (confirming claims, then
    /// publishing) is done within this.
    pub registry_budget: Duration,
    /// Transparency log and timestamp authority, after signing (within
    /// the same deadline as the registry work).
    pub witnesses: std::sync::Arc<crate::sign::Witnesses>,
}

/// A sidecar that watches; [`Sidecar::wait`] until the build is over, then
/// [`Sidecar::attest`].
pub struct Sidecar {
    opts: SidecarOptions,
    snap: Snapshot,
    materials_before: Vec<HashedRoot>,
    baseline: Vec<HashedRoot>,
    workspaces: Vec<PathBuf>,
    materials_as: MaterialsAs,
    watch: Option<Watch>,
    markers: Vec<PathBuf>,
}

impl Sidecar {
    /// Loads the snapshot and starts watching; fails now for anything that
    /// can be checked now, so a misconfigured sidecar exits at pod start.
    pub fn start(mut opts: SidecarOptions) -> Result<Sidecar, PipelineError> {
        let snap_path = Snapshot::path_in(&opts.state);
        let snap = Snapshot::load(&opts.state)?;
        // The init container may fix the subjects for the whole pod.
        if opts.subjects.globs.is_empty() {
            opts.subjects.globs = snap.subjects.clone();
        }
        // A bad glob fails now, not after the build.
        opts.subjects.selector()?;
        let materials_before = Snapshot::roots(&snap.materials, &snap_path)?;
        let baseline = Snapshot::roots(&snap.workspace, &snap_path)?;
        let workspaces: Vec<PathBuf> = if opts.workspaces.is_empty() {
            baseline.iter().map(|r| r.given.clone()).collect()
        } else {
            opts.workspaces.clone()
        };
        if workspaces.is_empty() {
            return Err(PipelineError::Usage(
                "no workspace to record: give --workspace here or to `provenant snapshot`".into(),
            ));
        }
        let materials_as = MaterialsAs::from_name(&snap.materials_as).ok_or_else(|| {
            PipelineError::State(pod::StateError::Corrupt {
                path: snap_path.display().to_string(),
                reason: format!(
                    "materialsAs '{}' is not one this provenant knows (files, tree, dirhash)",
                    snap.materials_as
                ),
            })
        })?;
        let markers = opts
            .triggers
            .iter()
            .filter_map(|t| match t {
                Trigger::Marker(p) => Some(std::path::absolute(p).unwrap_or(p.clone())),
                _ => None,
            })
            .collect();
        let mut watched: Vec<PathBuf> = workspaces.iter().filter(|w| w.is_dir()).cloned().collect();
        watched.extend(
            materials_before
                .iter()
                .filter(|m| m.is_dir)
                .map(|m| m.given.clone()),
        );
        let watch = match Watch::start(
            &watched,
            &WatchOptions {
                excludes: snap.excludes.clone(),
                git_blobs: materials_as == MaterialsAs::Tree,
                ..Default::default()
            },
        ) {
            Ok(w) => Some(w),
            // No inotify here (fs.inotify.max_user_instances reached, a
            // sandbox without it): everything is hashed at the end instead.
            Err(e @ WatchError::Start(_)) => {
                tracing::warn!("{e}; every root is hashed from scratch when the build ends (slower, equally exact)");
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Sidecar {
            opts,
            snap,
            materials_before,
            baseline,
            workspaces,
            materials_as,
            watch,
            markers,
        })
    }

    /// Arms the completion triggers and waits for the first to fire.
    pub fn wait(&self) -> Result<Completed, PipelineError> {
        let ready = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(PipelineError::Runtime)?;
        let triggers = self.opts.triggers.clone();
        let completed = rt.block_on(async {
            let waiter = completion::arm(triggers, ready.clone()).await?;
            ready.store(true, Ordering::SeqCst);
            tracing::info!("ready: watching the workspace until the build finishes");
            waiter.wait().await
        })?;
        Ok(completed)
    }

    /// Finalizes: the observation, described, signed, handed to the
    /// outputs `make_outputs` builds (given the registry deadline, which
    /// runs from the build's end). `Ok(false)`: a failed build, not
    /// attested.
    pub fn attest(
        mut self,
        completed: Completed,
        signer: &dyn Signer,
        registry: Option<&Registry>,
        make_outputs: impl FnOnce(Deadline) -> Vec<Box<dyn Output>>,
    ) -> Result<bool, PipelineError> {
        let mut phases = Phases::new();
        let t0 = Instant::now();
        // From here the pod's grace period runs: everything the registry
        // is asked shares one deadline.
        let deadline = Deadline::after(self.opts.registry_budget);
        // What watching the build cost, for the log (and the bench).
        let cpu_build_ms = crate::memory::cpu_ms();
        let watch_events = self
            .watch
            .as_ref()
            .map_or(0, |w| w.stats().events.load(Ordering::Relaxed));
        tracing::debug!(rss_mb = crate::memory::rss_mb(), "build over");
        // Everything the builder did is in the kernel's event queue by
        // now; this reads it to the end and waits for the hashing threads.
        let mut observed = phases.run("drain", || self.watch.take().map(Watch::finish));
        let hwm_watch_mb = crate::memory::peak_rss_mb();
        tracing::info!(
            by = completed.by,
            exit_code = completed.exit.code(),
            exit_code_origin = completed.exit.origin().as_str(),
            detail = %completed.detail,
            "build finished; finalizing"
        );
        if let Some(code) = completed.exit.code().filter(|c| *c != 0) {
            if !self.opts.describe.attest_failed {
                tracing::warn!(
                    exit_code = code,
                    "build failed; not attesting a failed build (--attest-failed attests it anyway)"
                );
                return Ok(false);
            }
            tracing::warn!(
                exit_code = code,
                "build failed; attesting it because --attest-failed is set"
            );
        }
        let claims = observe_claims(&self.opts.subjects, registry, &deadline)?;
        let images_subject = !claims.is_empty();
        let products_as = self.opts.describe.products_as;
        let chosen = !self.opts.subjects.globs.is_empty();
        let walk = WalkOptions {
            excludes: self.snap.excludes.clone(),
            // An image build is never left unattested for a file the
            // sidecar may not read (a 0600 file of a root builder): such
            // files are recorded as unreadable beside the image.
            on_error: if images_subject || chosen {
                ErrorPolicy::Record
            } else {
                self.opts.on_error
            },
            progress: false,
            git_blobs: self.materials_as == MaterialsAs::Tree,
            // Roots are volume mounts: a link anywhere in a root's path at
            // the end of the build was put there by the builder (an input
            // swapped for a link to the key's directory), and is refused.
            root_nofollow: true,
            ..Default::default()
        };
        // A statement with a subject per file can be 17 MB: its buffer is
        // made ready on the other core while this one turns the index into
        // trees.
        let payload_buf =
            (products_as == ProductsAs::Files && !images_subject && !chosen).then(|| {
                let size = observed.as_ref().map_or(0, Observed::json_size_hint);
                crate::memory::prefault_in_background(size)
            });
        let resolved = phases.run("resolve", || match observed.as_mut() {
            Some(o) => o.resolve(walk.on_error),
            None => Ok(0),
        })?;
        let degraded = observed.as_ref().map_or(0, |o| o.degraded().len());
        let (byproducts, products, selected) =
            phases.run("trees", || self.trees(&mut observed, &walk, images_subject))?;
        let unwatch = observed.as_mut().map(|o| o.unwatch());
        drop(observed);
        let walk_ms = t0.elapsed().as_millis() as u64;
        let hwm_walk_mb = crate::memory::peak_rss_mb();
        let started = parse_rfc3339(&self.snap.taken_on).unwrap_or_else(OffsetDateTime::now_utc);
        let obs = Observation {
            material_names: self
                .materials_before
                .iter()
                .map(|r| r.given.display().to_string())
                .collect(),
            product_names: self
                .workspaces
                .iter()
                .map(|w| w.display().to_string())
                .collect(),
            materials: std::mem::take(&mut self.materials_before),
            products,
            claims,
            selected,
            subject_globs: self.opts.subjects.globs.clone(),
            references: self.snap.references.clone(),
            byproducts,
            exit: Some(completed.exit),
            command: None,
            pod: Some(self.snap.pod.clone()),
            completion: Some(completed.by.to_string()),
            started,
            finished: completed.at,
            invocation_id: self
                .snap
                .pod
                .uid
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            excludes: self.snap.excludes.clone(),
            on_error: walk.on_error,
        };
        let t_describe = Instant::now();
        let described = phases.run("serialize", || {
            describe(
                &obs,
                &self.opts.describe,
                payload_buf.and_then(|b| b.join().ok()),
            )
        })?;
        tracing::debug!(rss_mb = crate::memory::rss_mb(), "serialized");
        // The trees are in the statement now. Under a big statement they
        // are freed (and the memory given back) on the other core while
        // this one signs, before the base64 needs as much memory again;
        // under a small one they can wait until the attestation is out.
        let mut keep = Some(obs);
        let mut att = phases.run("sign", || {
            if described.unsigned.payload().len() > 1 << 20 {
                let freed = keep.take();
                described.sign_while(signer, move || {
                    drop(freed);
                    crate::memory::release_free();
                    tracing::debug!(rss_mb = crate::memory::rss_mb(), "trees freed");
                })
            } else {
                described.sign(signer)
            }
        })?;
        phases.record("describe_sign", t_describe);
        phases.run("witness", || {
            self.opts
                .witnesses
                .witness(&mut att, signer, deadline.instant())
        });
        tracing::debug!(rss_mb = crate::memory::rss_mb(), "signed");
        let outputs = make_outputs(deadline);
        let mut finalize_ms = 0;
        let emitted = emit_all(&outputs, &att, |stage, ms| {
            if stage != Stage::First {
                return;
            }
            finalize_ms = t0.elapsed().as_millis() as u64;
            tracing::info!(
                subjects = att.subject_count,
                key_id = att
                    .signed
                    .signatures
                    .first()
                    .map_or("", |s| s.keyid.as_str()),
                finalize_ms,
                walk_ms,
                drain_ms = phases.ms("drain"),
                resolve_ms = phases.ms("resolve"),
                resolved,
                watch_events,
                degraded,
                describe_sign_ms = phases.ms("describe_sign"),
                serialize_ms = phases.ms("serialize"),
                sign_ms = phases.ms("sign"),
                witness_ms = phases.ms("witness"),
                write_ms = ms,
                statement_bytes = att.signed.payload_len(),
                cpu_build_ms,
                cpu_ms = crate::memory::cpu_ms(),
                peak_rss_watching_mb = hwm_watch_mb,
                peak_rss_walk_mb = hwm_walk_mb,
                peak_rss_mb = crate::memory::peak_rss_mb(),
                "attestation written"
            );
        })?;
        tracing::debug!(
            bundle_ms = emitted.then_ms,
            publish_ms = emitted.remote_ms,
            "outputs done"
        );
        drop(unwatch);
        drop(keep);
        Ok(true)
    }

    /// The material changes (as byproducts) and the product trees, from
    /// the watcher's index where it has them.
    fn trees(
        &self,
        observed: &mut Option<Observed>,
        walk: &WalkOptions,
        images_subject: bool,
    ) -> Result<Trees, PipelineError> {
        let recheck = self.opts.recheck;
        // A root the watcher did not see (created during the build, or not
        // a directory) is hashed now; with --recheck full every root is,
        // and any difference from the watcher's view is reported.
        let mut root_now = |path: &Path, consume: bool| -> Result<HashedRoot, PipelineError> {
            let watched = observed
                .as_mut()
                .and_then(|o| o.tree(path, walk, consume))
                .transpose()?;
            Ok(match watched {
                Some(tree) if recheck == Recheck::None => HashedRoot::from_tree(path, tree),
                Some(tree) => {
                    let full = provenance::hash_root(path, walk)?;
                    recheck_report(path, &tree, &full.tree);
                    full
                }
                None => provenance::hash_root(path, walk)?,
            })
        };
        // Inputs the build changed are recorded, never silently accepted.
        let mut byproducts = Vec::new();
        for before in &self.materials_before {
            let now = root_now(&before.given, false)?;
            let changes = pod::material_changes(before, &now);
            if !changes.is_empty() {
                tracing::warn!(root = %before.given.display(), changed = changes.len(), "the build changed its inputs; recorded as byproducts");
            }
            byproducts.extend(changes);
        }
        // Lexically, as the operator named them: resolving links would let
        // a builder point the marker at one of its outputs (`.done ->
        // out/app`) and have that output dropped from the record.
        let markers: Vec<PathBuf> = self
            .markers
            .iter()
            .map(|m| crate::digest::normalized(m))
            .collect();
        let selector = self.opts.subjects.selector()?;
        let mut products = Vec::new();
        let mut selected = selector.as_ref().map(|_| Vec::new());
        for w in &self.workspaces {
            let mut now = root_now(w, true)?;
            // A completion marker inside the workspace is ours, not a
            // product. Resolved once per root, not per file: finalize
            // touches 100k files.
            let root = crate::digest::normalized(w);
            let marker_rels: Vec<Vec<u8>> = markers
                .iter()
                .filter_map(|m| m.strip_prefix(&root).ok())
                .map(|r| r.as_os_str().as_encoded_bytes().to_vec())
                .collect();
            if !marker_rels.is_empty() {
                now.tree
                    .entries
                    .retain(|e| !marker_rels.iter().any(|m| m == e.path.as_bytes()));
            }
            // Chosen subjects are among what the build changed; the rest is
            // recorded from the whole workspace.
            if let (Some(globs), Some(sel)) = (&selector, selected.as_mut()) {
                let chosen = provenance::select(std::slice::from_ref(&now), globs);
                sel.extend(chosen.into_iter().map(|r| pod::changed(&self.baseline, r)));
                products.push(now);
                continue;
            }
            // Per file, the products are what the build changed; as a
            // dirHash (and beside claimed images), the whole workspace as
            // it is now, which is what a consumer can recompute from the
            // directory.
            products.push(match self.opts.describe.products_as {
                ProductsAs::Files if !images_subject => pod::changed(&self.baseline, now),
                _ => now,
            });
        }
        Ok((byproducts, products, selected))
    }
}

/// Material changes (as byproducts), product trees, and the products
/// `--subject` chose.
type Trees = (
    Vec<provenance::ResourceDescriptor>,
    Vec<HashedRoot>,
    Option<Vec<HashedRoot>>,
);

/// Logs every file where the watcher's index and a fresh hash disagree:
/// with `--recheck full` the fresh hash is what gets attested; a mismatch
/// points at writes inotify could not see.
fn recheck_report(root: &Path, watched: &crate::digest::Tree, full: &crate::digest::Tree) {
    use std::collections::HashMap;
    let w: HashMap<_, _> = watched.entries.iter().map(|e| (&e.path, &e.kind)).collect();
    let f: HashMap<_, _> = full.entries.iter().map(|e| (&e.path, &e.kind)).collect();
    let mut differ = 0usize;
    for (p, k) in &f {
        if w.get(p) != Some(k) {
            differ += 1;
            if differ <= 20 {
                tracing::warn!(root = %crate::escape::path(root), path = %p.shown(), "recheck: the watcher's view of this file differed from a fresh hash");
            }
        }
    }
    differ += w.keys().filter(|p| !f.contains_key(*p)).count();
    if differ > 0 {
        tracing::warn!(root = %root.display(), differ, "recheck: attesting the fresh hash");
    } else {
        tracing::info!(root = %root.display(), files = f.len(), "recheck: the watcher's view matched a fresh hash");
    }
}

/// With `shareProcessNamespace` the builder sees this process; /proc/PID/root
/// would otherwise let a build step running as the same uid walk into our
/// mount namespace and read the key. A non-dumpable process's /proc entries
/// belong to root and need CAP_SYS_PTRACE, which containers lack.
pub fn harden_process() {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot mark the process non-dumpable");
    }
}
