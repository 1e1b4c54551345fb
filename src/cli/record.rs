//! `provenant record`: the sidecar. Watches the workspace while the builder
//! runs, learns when it finished, then finalizes: take the watcher's index
//! as the tree (hashing only what was still due), describe, sign, write the
//! file atomically and print the one-line attestation on stdout.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};
use time::OffsetDateTime;

use super::attest::{describe, write_envelope};
use super::{OnError, UsageError};
use crate::completion::{self, Trigger};
use crate::digest::{ErrorPolicy, WalkOptions};
use crate::pod::{self, Snapshot};
use crate::provenance::{
    self, parse_rfc3339, AllowedRepos, Claim, ClaimCheck, DescriptorList, ExternalParameters,
    HashedRoot, InternalParameters, MaterialsAs, Observation, ProductsAs, ReportSources,
};
use crate::publish::{emit_log_line, push_with_retry, Bundle, LogLine, Spool, SpoolEntry};
use crate::verify::exit;
use crate::watch::{Watch, WatchOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubjectSource {
    /// Images the builder reported (kpack, Tekton, OCI layout) if any, else
    /// the product files.
    Auto,
    /// Always the product files.
    Files,
    /// Only reported images; fail if there are none.
    Reported,
}

/// What to trust at the end of the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Recheck {
    /// The watcher's index (roots where events may have been lost are
    /// hashed from scratch anyway).
    None,
    /// Hash every root again; report where the index differed.
    Full,
}

#[derive(Args, Debug)]
pub struct RecordArgs {
    /// State directory written by `provenant snapshot`.
    #[arg(long, env = "PROVENANT_STATE", default_value = "/provenant/state")]
    pub state: PathBuf,
    /// Workspace directories to watch for products (default: the ones the
    /// snapshot recorded). Repeatable.
    #[arg(long = "workspace", value_name = "DIR")]
    pub workspaces: Vec<PathBuf>,
    /// Private key, mounted only into this container (PKCS#8 PEM or cosign
    /// encrypted with COSIGN_PASSWORD).
    #[arg(long, env = "PROVENANT_KEY", required_unless_present = "url")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub remote: super::RemoteSignerOpts,
    /// Where to write the envelope (default: STATE/provenance.intoto.jsonl).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// How to learn that the build finished: `sigterm`, `process:PATTERN`,
    /// `kube:CONTAINER`, `marker:PATH`, `http:ADDR`. Repeatable (or
    /// comma-separated); the first to fire wins.
    #[arg(
        long = "completion",
        value_name = "TRIGGER",
        required = true,
        env = "PROVENANT_COMPLETION",
        value_delimiter = ','
    )]
    pub completion: Vec<String>,
    /// Subjects per product file, or one in-toto dirHash per workspace
    /// (of the whole tree at the end, so a consumer can recompute it from
    /// the directory): a 100k-file output in one line.
    #[arg(
        long,
        value_enum,
        default_value = "files",
        env = "PROVENANT_PRODUCTS_AS"
    )]
    pub products_as: ProductsAs,
    /// Also attest builds that exited non-zero.
    #[arg(long)]
    pub attest_failed: bool,
    /// What the subjects are.
    #[arg(long, value_enum, default_value = "auto")]
    pub subjects: SubjectSource,
    /// kpack / buildpacks lifecycle `report.toml`.
    #[arg(long, value_name = "FILE")]
    pub kpack_report: Option<PathBuf>,
    /// Tekton results directory (IMAGE_URL/IMAGE_DIGEST, IMAGES, *ARTIFACT_OUTPUTS).
    #[arg(long, value_name = "DIR")]
    pub tekton_results: Option<PathBuf>,
    /// OCI image layout directory the builder wrote; repeatable.
    #[arg(long = "oci-layout", value_name = "DIR")]
    pub oci_layouts: Vec<PathBuf>,
    /// Repository the builder may name as the image it built
    /// (`REGISTRY/REPOSITORY`, glob: `*` does not cross `/`, `**` does);
    /// repeatable or comma-separated. With it, every image claim from a
    /// report or result must lie in one of these repositories and resolve
    /// there by its digest, or it is not signed. Required by --publish.
    #[arg(
        long = "allow-image-repo",
        value_name = "PATTERN",
        env = "PROVENANT_ALLOW_IMAGE_REPO",
        value_delimiter = ','
    )]
    pub allow_image_repos: Vec<String>,
    /// What to do with a file that cannot be read or vanishes mid-walk.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_error: OnError,
    /// `builder.id` to record: the identity of the platform running the build.
    #[arg(long, default_value = provenance::DEFAULT_BUILDER_ID)]
    pub builder_id: String,
    /// Re-hash every root from scratch at the end and use that, reporting
    /// any file where the watcher's view differed (for file systems or
    /// hard-link layouts where inotify may miss writes). Costs a full hash.
    #[arg(long, value_enum, default_value = "none")]
    pub recheck: Recheck,
    /// Attach the attestation to the images it is about (the reported image
    /// subjects) in their registries: cosign `.att` and OCI referrer.
    #[arg(long)]
    pub publish: bool,
    /// Where attestations wait until pushed (default STATE/spool). Entries
    /// that could not be pushed stay here for `provenant publish`.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Deadline in seconds for the registry work after the build ends
    /// (confirming claimed images, then publishing, over all images,
    /// retries and requests): the sidecar is done by then whatever the
    /// registry does. The default leaves 10 s of a 30 s termination grace
    /// period.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub publish_timeout: u64,
    #[command(flatten)]
    pub registry: super::publish::RegistryOpts,
}

pub fn record(a: RecordArgs) -> anyhow::Result<i32> {
    harden_process();
    // Our secrets are never read through the door for builder-written
    // files, whatever name (hard link, bind mount) the builder gives them.
    for p in [
        a.key.as_deref(),
        a.remote.token_file.as_deref(),
        a.registry.registry_config.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        crate::untrusted::protect(p);
    }
    let allowed = AllowedRepos::new(&a.allow_image_repos).map_err(UsageError)?;
    if a.publish && allowed.is_empty() {
        anyhow::bail!(UsageError(
            "--publish needs --allow-image-repo: the repositories the builder may name as its image (the attestation is attached there)".into()
        ));
    }
    let snap_path = Snapshot::path_in(&a.state);
    let snap = Snapshot::load(&a.state)?;
    // Registry settings are checked now too; the registry itself may well
    // be unreachable until the build is over.
    let registry = if a.publish || !allowed.is_empty() {
        Some(a.registry.registry()?)
    } else {
        None
    };
    // Problems with the key must surface now, not after a long build.
    let signer = a.remote.signer(a.key.as_deref())?;
    if a.remote.url.is_none() {
        // One signature now: a key that cannot sign fails before the
        // build, not after it (this also waits for the random generator's
        // seeding, see sign::warm_up_rng).
        signer
            .sign(b"provenant record: start-up check")
            .context("the signing key cannot sign")?;
    }
    let triggers = a
        .completion
        .iter()
        .map(|t| t.parse::<Trigger>())
        .collect::<Result<Vec<_>, _>>()?;
    let markers: Vec<PathBuf> = triggers
        .iter()
        .filter_map(|t| match t {
            Trigger::Marker(p) => Some(std::path::absolute(p).unwrap_or(p.clone())),
            _ => None,
        })
        .collect();
    let materials_before = Snapshot::roots(&snap.materials, &snap_path)?;
    let baseline = Snapshot::roots(&snap.workspace, &snap_path)?;
    let workspaces: Vec<PathBuf> = if a.workspaces.is_empty() {
        baseline.iter().map(|r| r.given.clone()).collect()
    } else {
        a.workspaces.clone()
    };
    if workspaces.is_empty() {
        anyhow::bail!("no workspace to record: give --workspace here or to `provenant snapshot`");
    }
    let materials_as = MaterialsAs::parse(&snap.materials_as).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: materialsAs '{}' is not one this provenant knows (files, tree, dirhash)",
            snap_path.display(),
            snap.materials_as
        )
    })?;
    let git_blobs = materials_as == MaterialsAs::Tree;
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
            git_blobs,
            ..Default::default()
        },
    ) {
        Ok(w) => Some(w),
        // No inotify here (fs.inotify.max_user_instances reached, a
        // sandbox without it): everything is hashed at the end instead.
        Err(e @ crate::watch::WatchError::Start(_)) => {
            tracing::warn!("{e}; every root is hashed from scratch when the build ends (slower, equally exact)");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    let completed = rt.block_on(async {
        let waiter = completion::arm(triggers, ready.clone()).await?;
        ready.store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!("ready: watching the workspace until the build finishes");
        waiter.wait().await
    })?;
    let t0 = Instant::now();
    // From here the pod's grace period runs: everything the registry is
    // asked shares one deadline.
    let registry_deadline =
        crate::publish::Deadline::after(std::time::Duration::from_secs(a.publish_timeout));
    // What watching the build cost, for the log (and the bench).
    let cpu_build_ms = crate::memory::cpu_ms();
    // Everything the builder did is in the kernel's event queue by now;
    // this reads it to the end and waits for the hashing threads.
    let watch_events = watch
        .as_ref()
        .map_or(0, |w| w.stats().events.load(Ordering::Relaxed));
    tracing::debug!(rss_mb = crate::memory::rss_mb(), "build over");
    let mut observed = watch.map(Watch::finish);
    let drain_ms = t0.elapsed().as_millis() as u64;
    let hwm_watch_mb = crate::memory::peak_rss_mb();
    tracing::info!(
        by = completed.by,
        exit_code = completed.exit.code(),
        exit_code_origin = completed.exit.origin().as_str(),
        detail = %completed.detail,
        "build finished; finalizing"
    );
    if let Some(code) = completed.exit.code().filter(|c| *c != 0) {
        if !a.attest_failed {
            tracing::warn!(
                exit_code = code,
                "build failed; not attesting a failed build (--attest-failed attests it anyway)"
            );
            return Ok(exit::OK);
        }
        tracing::warn!(
            exit_code = code,
            "build failed; attesting it because --attest-failed is set"
        );
    }

    // What the builder says it built: claims, read through the door for
    // builder-written files, checked where they can be, before anything
    // is signed.
    let sources = ReportSources {
        kpack_report: a.kpack_report.clone(),
        tekton_results: a.tekton_results.clone(),
        oci_layouts: a.oci_layouts.clone(),
    };
    let claims = if a.subjects == SubjectSource::Files || sources.is_empty() {
        Vec::new()
    } else {
        checked_claims(&sources, &allowed, registry.as_ref(), &registry_deadline)?
    };
    let images_subject = !claims.is_empty();
    if !images_subject && a.subjects == SubjectSource::Reported {
        anyhow::bail!("--subjects reported: no image claim survived (checked --kpack-report, --tekton-results, --oci-layout; reasons above); nothing is attested");
    }
    let opts = WalkOptions {
        excludes: snap.excludes.clone(),
        // An image build is never left unattested for a file the sidecar
        // may not read (a 0600 file of a root builder): such files are
        // recorded as unreadable beside the image.
        on_error: match a.on_error {
            _ if images_subject => ErrorPolicy::Record,
            OnError::Fail => ErrorPolicy::Fail,
            OnError::Record => ErrorPolicy::Record,
        },
        progress: false,
        git_blobs,
        ..Default::default()
    };
    // A statement with a subject per file can be 17 MB: its buffer is made
    // ready on the other core while this one turns the index into trees.
    let payload_buf = (a.products_as == ProductsAs::Files && !images_subject).then(|| {
        let size = observed.as_ref().map_or(0, |o| o.json_size_hint());
        crate::memory::prefault_in_background(size)
    });
    let t_resolve = Instant::now();
    let resolved = match observed.as_mut() {
        Some(o) => o.resolve(opts.on_error)?,
        None => 0,
    };
    let resolve_ms = t_resolve.elapsed().as_millis() as u64;
    let degraded = observed.as_ref().map_or(0, |o| o.degraded().len());
    // A root the watcher did not see (created during the build, or not a
    // directory) is hashed now; with --recheck full every root is, and
    // any difference from the watcher's view is reported.
    let mut root_now = |path: &std::path::Path, consume: bool| -> anyhow::Result<HashedRoot> {
        let watched = observed
            .as_mut()
            .and_then(|o| o.tree(path, &opts, consume))
            .transpose()?;
        let root = match watched {
            Some(tree) if a.recheck == Recheck::None => HashedRoot::from_tree(path, tree),
            Some(tree) => {
                let full = provenance::hash_root(path, &opts)?;
                recheck_report(path, &tree, &full.tree);
                full
            }
            None => provenance::hash_root(path, &opts)?,
        };
        Ok(root)
    };
    // Inputs the build changed are recorded, never silently accepted.
    let mut byproducts = Vec::new();
    for before in &materials_before {
        let now = root_now(&before.given, false)?;
        let changes = pod::material_changes(before, &now);
        if !changes.is_empty() {
            tracing::warn!(root = %before.given.display(), changed = changes.len(), "the build changed its inputs; recorded as byproducts");
        }
        byproducts.extend(changes);
    }
    let markers: Vec<PathBuf> = markers
        .iter()
        .filter_map(|m| std::fs::canonicalize(m).ok())
        .collect();
    let t_products = Instant::now();
    let mut products: Vec<HashedRoot> = Vec::new();
    for w in &workspaces {
        let mut now = root_now(w, true)?;
        // A completion marker inside the workspace is ours, not a product.
        // Resolved once per root, not per file: finalize touches 100k files.
        let root = std::fs::canonicalize(w).ok();
        let marker_rels: Vec<Vec<u8>> = markers
            .iter()
            .filter_map(|m| m.strip_prefix(root.as_ref()?).ok())
            .map(|r| r.as_os_str().as_encoded_bytes().to_vec())
            .collect();
        if !marker_rels.is_empty() {
            now.tree
                .entries
                .retain(|e| !marker_rels.iter().any(|m| m == e.path.as_bytes()));
        }
        // Per file, the products are what the build changed; as a dirHash
        // (and beside claimed images), the whole workspace as it is now,
        // which is what a consumer can recompute from the directory.
        products.push(match a.products_as {
            ProductsAs::Files if !images_subject => pod::changed(&baseline, now),
            _ => now,
        });
    }
    tracing::debug!(
        rss_mb = crate::memory::rss_mb(),
        products_us = t_products.elapsed().as_micros() as u64,
        "trees"
    );
    let unwatch = observed.as_mut().map(|o| o.unwatch());
    drop(observed);
    let walk_ms = t0.elapsed().as_millis() as u64;
    let hwm_walk_mb = crate::memory::peak_rss_mb();

    // Everything the build left that is not a regular file stays on the
    // record; beside claimed images, so does the whole workspace.
    byproducts.extend(provenance::product_byproducts(&products));
    let subjects: DescriptorList = if images_subject {
        tracing::info!(
            images = claims.len(),
            "subjects: images the builder claimed"
        );
        byproducts.extend(provenance::observed_outputs(&products));
        claims
            .iter()
            .map(Claim::to_subject)
            .collect::<Vec<_>>()
            .into()
    } else {
        provenance::subjects(&products, a.products_as)?
    };
    let mut materials = provenance::materials(&materials_before, materials_as)?;
    materials.extend(snap.references.iter().cloned());
    let display = |roots: &[HashedRoot]| {
        roots
            .iter()
            .map(|r| r.given.display().to_string())
            .collect()
    };
    let started = parse_rfc3339(&snap.taken_on).unwrap_or_else(OffsetDateTime::now_utc);
    let obs = Observation {
        builder_id: a.builder_id.clone(),
        external: ExternalParameters {
            command: None,
            materials: display(&materials_before),
            products: workspaces.iter().map(|w| w.display().to_string()).collect(),
            excludes: snap.excludes.clone(),
        },
        internal: InternalParameters {
            materials_as: materials_as.as_str().into(),
            products_as: a.products_as.as_str().into(),
            on_error: a.on_error.as_str().into(),
            attest_failed: a.attest_failed,
            pod: (!snap.pod.is_empty()).then(|| snap.pod.clone()),
            completion: Some(completed.by.to_string()),
        },
        materials,
        exit: Some(completed.exit),
        started,
        finished: completed.at,
        invocation_id: snap
            .pod
            .uid
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        byproducts,
    };
    // Attestations are attached only to images the sidecar found in an
    // allowed repository with that digest: a builder naming someone else's
    // image gets nothing attached to it.
    let image_subjects: Vec<String> = claims
        .iter()
        .filter(|c| {
            matches!(
                c.check,
                ClaimCheck::Registry | ClaimCheck::AllowedRepository
            )
        })
        .map(Claim::pinned)
        .collect();
    let t_describe = Instant::now();
    let described = describe(&subjects, obs, payload_buf.and_then(|b| b.join().ok()))?;
    let serialize_ms = t_describe.elapsed().as_millis() as u64;
    drop(subjects);
    let t_sign = Instant::now();
    tracing::debug!(rss_mb = crate::memory::rss_mb(), "serialized");
    // The trees are in the statement now. Under a big statement they are
    // freed (and the memory given back) on the other core while this one
    // signs, before the base64 needs as much memory again; under a small
    // one they can wait until the attestation is out.
    let mut trees = Some((products, materials_before));
    let att = if described.unsigned.payload().len() > 1 << 20 {
        let freed = trees.take();
        described.sign_while(&*signer, move || {
            drop(freed);
            crate::memory::release_free();
            tracing::debug!(rss_mb = crate::memory::rss_mb(), "trees freed");
        })?
    } else {
        described.sign(&*signer)?
    };
    tracing::debug!(rss_mb = crate::memory::rss_mb(), "signed");
    let sign_ms = t_sign.elapsed().as_millis() as u64;
    let describe_sign_ms = t_describe.elapsed().as_millis() as u64;
    let t_write = Instant::now();
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| a.state.join("provenance.intoto.jsonl"));
    // The bundle goes beside a file; beside `-`, a device or a FIFO (say
    // `-o /dev/stdout`) there is no such place, so it goes to the state
    // directory, which is ours.
    let bundle_path = match std::fs::symlink_metadata(&output) {
        Ok(m) if !m.is_file() => a.state.join("provenance.sigstore.json"),
        _ if output.as_os_str() == "-" => a.state.join("provenance.sigstore.json"),
        _ => output.with_file_name(bundle_name(&output)),
    };
    // The attestation goes out as the file and the pod log line, written
    // side by side (each can be 22 MB); the Sigstore bundle, the same
    // envelope packaged for sigstore tooling, right after.
    let (file, log) = rayon::join(
        || write_envelope(&output, &att.signed).context("attestation not written"),
        || {
            emit_log_line(&LogLine::new(
                &att.signed,
                att.subject_count,
                &att.first_subjects,
                Some(&output),
            ))
            .context("cannot write the attestation to stdout")
        },
    );
    file?;
    log?;
    let finalize_ms = t0.elapsed().as_millis() as u64;
    let write_ms = t_write.elapsed().as_millis() as u64;
    Bundle::for_signed(&att.signed, signer.key_id())
        .write_to(&bundle_path)
        .context("bundle not written")?;
    tracing::info!(
        output = %output.display(),
        subjects = att.subject_count,
        key_id = signer.key_id(),
        finalize_ms,
        walk_ms,
        drain_ms,
        resolve_ms,
        resolved,
        watch_events,
        degraded,
        describe_sign_ms,
        serialize_ms,
        sign_ms,
        write_ms,
        bundle_ms = t_write.elapsed().as_millis() as u64 - write_ms,
        statement_bytes = att.signed.payload_len(),
        cpu_build_ms,
        cpu_ms = crate::memory::cpu_ms(),
        peak_rss_watching_mb = hwm_watch_mb,
        peak_rss_walk_mb = hwm_walk_mb,
        peak_rss_mb = crate::memory::peak_rss_mb(),
        "attestation written"
    );
    drop(unwatch);
    drop(trees);
    if let Some(registry) = registry.as_ref().filter(|_| a.publish) {
        publish_images(
            &a,
            registry,
            &image_subjects,
            &att.signed.to_envelope(),
            signer.key_id(),
            provenance::SLSA_PROVENANCE_V1,
            &registry_deadline,
        )?;
    }
    Ok(exit::OK)
}

/// How long the registry may take to confirm the claimed images, in all
/// (and never past `--publish-timeout`, which it shares with publishing).
const CLAIM_CHECK_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// The builder's image claims that survive their checks. A claim that
/// fails is logged with its reason and never signed. With an allow-list,
/// a claim must name an allowed repository and resolve there by its
/// digest (a registry that cannot be reached within
/// [`CLAIM_CHECK_BUDGET`] fails the claim); without one, claims are
/// signed marked unchecked (OCI-layout claims are always checked against
/// the layout's own blobs).
fn checked_claims(
    sources: &ReportSources,
    allowed: &AllowedRepos,
    registry: Option<&crate::publish::Registry>,
    within: &crate::publish::Deadline,
) -> anyhow::Result<Vec<Claim>> {
    let reported = provenance::reported_claims(sources);
    for r in &reported.rejected {
        tracing::warn!(file = %r.file, reason = %r.reason, "image claim refused; not signed");
    }
    let registry = match registry {
        Some(r) if !allowed.is_empty() => r,
        _ => {
            if !reported.claims.is_empty() {
                tracing::warn!("image claims are signed unchecked (no --allow-image-repo): they say only what the builder wrote");
            }
            return Ok(reported.claims);
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    let deadline = crate::publish::Deadline::at(
        within
            .instant()
            .min(std::time::Instant::now() + CLAIM_CHECK_BUDGET),
    );
    let mut out = Vec::new();
    for mut c in reported.claims {
        let shown_name = crate::untrusted::shown(std::path::Path::new(&c.name));
        if c.check == ClaimCheck::OciLayout {
            out.push(c);
            continue;
        }
        if !allowed.allows(&c.name) {
            tracing::warn!(image = %shown_name, file = %crate::untrusted::shown(&c.file), allowed = ?allowed.patterns(), "image claim refused, not signed: repository not in --allow-image-repo");
            continue;
        }
        let pinned = c.pinned();
        let resolved = rt.block_on(async {
            tokio::time::timeout_at(
                deadline.instant().into(),
                registry.resolve_until(&pinned, &deadline),
            )
            .await
        });
        // A registry that says "no such manifest" refutes the claim; one
        // that cannot be asked leaves it unconfirmed but allowed, so that
        // an outage loses no attestation (publishing resolves it again).
        match resolved {
            Ok(Ok(img)) if img.digest == format!("sha256:{}", c.sha256) => {
                c.check = ClaimCheck::Registry;
                out.push(c);
            }
            Ok(Ok(_)) => {
                tracing::warn!(image = %shown_name, "image claim refused, not signed: the registry returned another digest")
            }
            Ok(Err(
                e @ (crate::publish::RegistryError::UnknownImage { .. }
                | crate::publish::RegistryError::Garbage { .. }
                | crate::publish::RegistryError::Reference(..)),
            )) => {
                tracing::warn!(image = %shown_name, error = %e, "image claim refused, not signed: not in the registry by its digest")
            }
            Ok(Err(e)) => {
                tracing::warn!(image = %shown_name, error = %e, "the registry could not confirm the claimed image now; signed as in an allowed repository, digest unconfirmed");
                c.check = ClaimCheck::AllowedRepository;
                out.push(c);
            }
            Err(_) => {
                tracing::warn!(image = %shown_name, budget_s = CLAIM_CHECK_BUDGET.as_secs(), "the registry did not answer in time; signed as in an allowed repository, digest unconfirmed");
                c.check = ClaimCheck::AllowedRepository;
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// Logs every file where the watcher's index and a fresh hash disagree:
/// with `--recheck full` the fresh hash is what gets attested; a mismatch
/// points at writes inotify could not see.
fn recheck_report(
    root: &std::path::Path,
    watched: &crate::digest::Tree,
    full: &crate::digest::Tree,
) {
    use std::collections::HashMap;
    let w: HashMap<_, _> = watched.entries.iter().map(|e| (&e.path, &e.kind)).collect();
    let f: HashMap<_, _> = full.entries.iter().map(|e| (&e.path, &e.kind)).collect();
    let mut differ = 0usize;
    for (p, k) in &f {
        if w.get(p) != Some(k) {
            differ += 1;
            if differ <= 20 {
                tracing::warn!(root = %root.display(), path = %p, "recheck: the watcher's view of this file differed from a fresh hash");
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

/// `provenance.intoto.jsonl` -> `provenance.sigstore.json`.
fn bundle_name(output: &std::path::Path) -> String {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".intoto.jsonl")
        .or_else(|| name.strip_suffix(".jsonl"))
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(&name);
    format!("{stem}.sigstore.json")
}

/// Spool first, then push with retries; a registry outage never loses the
/// attestation and never fails the sidecar (the pod log and the file have
/// it already), it leaves one clear line saying where the spooled file is.
fn publish_images(
    a: &RecordArgs,
    registry: &crate::publish::Registry,
    images: &[String],
    envelope: &crate::sign::Envelope,
    key_id: &str,
    predicate_type: &str,
    deadline: &crate::publish::Deadline,
) -> anyhow::Result<()> {
    if images.is_empty() {
        tracing::warn!(
            "--publish: no image subject was found in an allowed repository; nothing to attach"
        );
        return Ok(());
    }
    let dir = a.spool.clone().unwrap_or_else(|| a.state.join("spool"));
    let spool = Spool::open(&dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    for image in images {
        let entry = SpoolEntry {
            version: crate::publish::spool::SPOOL_VERSION,
            image: image.clone(),
            predicate_type: predicate_type.to_string(),
            key_id: key_id.to_string(),
            envelope: envelope.clone(),
        };
        let path = spool.add(&entry)?;
        match rt.block_on(push_with_retry(registry, &entry, *deadline)) {
            Ok(att) => {
                spool.mark_published(&path)?;
                tracing::info!(image = %att.image, att = %att.att_tag, referrer = %att.referrer, "attestation attached");
            }
            Err(e) => tracing::error!(
                "not attached to {image}: {e}; the attestation is kept in {} (push it with `provenant publish {}`)",
                path.display(),
                dir.display()
            ),
        }
    }
    Ok(())
}

/// With `shareProcessNamespace` the builder sees this process; /proc/PID/root
/// would otherwise let a build step running as the same uid walk into our
/// mount namespace and read the key. A non-dumpable process's /proc entries
/// belong to root and need CAP_SYS_PTRACE, which containers lack.
fn harden_process() {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot mark the process non-dumpable");
    }
}
