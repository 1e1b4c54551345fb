use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use time::OffsetDateTime;

use super::{DescribeOpts, HashOpts, ProductOpts};
use crate::provenance::{
    self, DescriptorList, ExternalParameters, HashedRoot, InternalParameters, Observation,
    ResourceDescriptor, StatementRef,
};
use crate::publish::LOGGED_SUBJECTS;
use crate::sign::{frame_statement, Signed, Signer, Unsigned};
use crate::verify::exit;

#[derive(Args, Debug)]
pub struct AttestArgs {
    /// Input file or directory (recorded as resolvedDependencies); repeatable.
    #[arg(long = "material", value_name = "PATH")]
    pub materials: Vec<PathBuf>,
    /// Output file or directory (recorded as subjects); repeatable.
    #[arg(long = "product", value_name = "PATH", required = true)]
    pub products: Vec<PathBuf>,
    /// Private key: PKCS#8 PEM or cosign encrypted key (password from COSIGN_PASSWORD).
    #[arg(long, required_unless_present = "url")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub remote: super::RemoteSignerOpts,
    /// Where to write the DSSE envelope (one JSON line).
    #[arg(short = 'o', long, default_value = "provenance.intoto.jsonl")]
    pub output: PathBuf,
    /// Also write the envelope as a Sigstore bundle (v0.3, public-key hint).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    #[command(flatten)]
    pub hash: HashOpts,
    #[command(flatten)]
    pub describe: DescribeOpts,
    #[command(flatten)]
    pub products_as: ProductOpts,
    #[command(flatten)]
    pub link: super::LinkOpts,
}

/// What the describe step needs beyond the hashed roots.
pub(super) struct BuildFacts {
    pub command: Option<Vec<String>>,
    pub exit: Option<crate::provenance::ExitStatus>,
    pub started: OffsetDateTime,
    pub finished: OffsetDateTime,
    pub attest_failed: bool,
    pub extra_materials: Vec<provenance::ResourceDescriptor>,
}

/// `git_blobs`: also compute git blob ids (for `--materials-as tree`).
pub(super) fn hash_all(
    paths: &[PathBuf],
    hash: &HashOpts,
    what: &str,
    git_blobs: bool,
) -> anyhow::Result<Vec<HashedRoot>> {
    let mut opts = hash.walk_options();
    opts.git_blobs = git_blobs;
    // Products are described whole, empty directories included.
    opts.empty_dirs = what == "products";
    let started = std::time::Instant::now();
    let roots = provenance::hash_roots(paths, &opts)?;
    let files: usize = roots.iter().map(|r| r.tree.entries.len()).sum();
    tracing::info!(
        roots = paths.len(),
        entries = files,
        ms = started.elapsed().as_millis() as u64,
        "hashed {what}"
    );
    Ok(roots)
}

/// A signed attestation and what the logs say about it.
pub(super) struct Attestation {
    pub signed: Signed,
    pub subject_count: usize,
    /// The first few subjects, for people reading logs.
    pub first_subjects: Vec<ResourceDescriptor>,
}

/// A statement serialized and ready to sign; it no longer borrows the
/// trees it was made from.
pub(super) struct Described {
    pub unsigned: Unsigned,
    pub subject_count: usize,
    pub first_subjects: Vec<ResourceDescriptor>,
}

impl Described {
    pub fn sign(self, signer: &dyn Signer) -> anyhow::Result<Attestation> {
        self.sign_while(signer, || ())
    }

    /// Signs while `meanwhile` runs on another core.
    pub fn sign_while(
        self,
        signer: &dyn Signer,
        meanwhile: impl FnOnce() + Send,
    ) -> anyhow::Result<Attestation> {
        Ok(Attestation {
            signed: self.unsigned.sign_while(signer, meanwhile)?,
            subject_count: self.subject_count,
            first_subjects: self.first_subjects,
        })
    }
}

/// observe -> describe -> sign: the part `attest` and `run` share.
pub(super) fn describe_and_sign(
    materials: &[HashedRoot],
    products: &[HashedRoot],
    hash: &HashOpts,
    describe: &DescribeOpts,
    products_as: &ProductOpts,
    ctx: BuildFacts,
    signer: &dyn Signer,
) -> anyhow::Result<Attestation> {
    let subjects = provenance::subjects(products, products_as.products_as)?;
    let mut deps = provenance::materials(materials, describe.materials_as)?;
    deps.extend(ctx.extra_materials);
    let display = |roots: &[HashedRoot]| {
        roots
            .iter()
            .map(|r| r.given.display().to_string())
            .collect()
    };
    let obs = Observation {
        builder_id: describe.builder_id.clone(),
        external: ExternalParameters {
            command: ctx.command,
            materials: display(materials),
            products: display(products),
            excludes: hash.excludes.clone(),
        },
        internal: InternalParameters {
            materials_as: describe.materials_as.as_str().into(),
            products_as: products_as.products_as.as_str().into(),
            on_error: hash.on_error.as_str().into(),
            attest_failed: ctx.attest_failed,
            ..Default::default()
        },
        materials: deps,
        exit: ctx.exit,
        started: ctx.started,
        finished: ctx.finished,
        invocation_id: uuid::Uuid::new_v4().to_string(),
        // Links, FIFOs, empty directories among the products: on the
        // record, so a consumer (the stage gate) can check a directory as a
        // whole.
        byproducts: provenance::product_byproducts(products),
    };
    self::describe(&subjects, obs, None)?.sign(signer)
}

/// The statement for a finished observation, serialized straight from the
/// trees the subjects and materials borrow, into `buf` if one was
/// prepared.
pub(super) fn describe(
    subjects: &DescriptorList<'_>,
    obs: Observation<'_>,
    buf: Option<Vec<u8>>,
) -> anyhow::Result<Described> {
    let provenance = obs.into_provenance();
    let size = subjects.json_size_hint()
        + provenance
            .build_definition
            .resolved_dependencies
            .json_size_hint()
        + 4096;
    let buf = buf.unwrap_or_else(|| Vec::with_capacity(size));
    Ok(Described {
        unsigned: frame_statement(&StatementRef::slsa(subjects, &provenance), buf)?,
        subject_count: subjects.len(),
        first_subjects: subjects.iter().take(LOGGED_SUBJECTS).collect(),
    })
}

pub(super) fn write_envelope(path: &Path, signed: &Signed) -> anyhow::Result<()> {
    crate::publish::write_atomic_with(path, |w| {
        serde_json::to_writer(&mut *w, &signed.json()).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })?;
    Ok(())
}

pub(super) fn write_bundle(
    path: Option<&Path>,
    signed: &Signed,
    signer: &dyn Signer,
) -> anyhow::Result<()> {
    if let Some(p) = path {
        let b = crate::publish::Bundle::for_signed(signed, signer.key_id());
        b.write_to(p).context("bundle not written")?;
    }
    Ok(())
}

pub(super) fn report(path: &Path, att: &Attestation, signer: &dyn Signer) {
    tracing::info!(
        output = %path.display(),
        subjects = att.subject_count,
        key_id = signer.key_id(),
        "attestation written"
    );
}

pub fn attest(a: AttestArgs) -> anyhow::Result<i32> {
    let signer = a.remote.signer(a.key.as_deref())?;
    let signer = &*signer;
    let started = OffsetDateTime::now_utc();
    let materials = hash_all(
        &a.materials,
        &a.hash,
        "materials",
        a.describe.wants_git_blobs(),
    )?;
    let products = hash_all(&a.products, &a.hash, "products", false)?;
    let ctx = BuildFacts {
        command: None,
        exit: None,
        started,
        finished: OffsetDateTime::now_utc(),
        attest_failed: false,
        extra_materials: Vec::new(),
    };
    let t_describe = std::time::Instant::now();
    let att = describe_and_sign(
        &materials,
        &products,
        &a.hash,
        &a.describe,
        &a.products_as,
        ctx,
        signer,
    )?;
    let describe_sign_ms = t_describe.elapsed().as_millis() as u64;
    let t_write = std::time::Instant::now();
    write_envelope(&a.output, &att.signed).context("attestation not written")?;
    // The bench reads these: statement size and signing cost per material.
    tracing::info!(
        statement_bytes = att.signed.payload_len(),
        materials = materials
            .iter()
            .map(|r| r.tree.entries.len())
            .sum::<usize>(),
        describe_sign_ms,
        write_ms = t_write.elapsed().as_millis() as u64,
        "signed"
    );
    report(&a.output, &att, signer);
    write_bundle(a.bundle.as_deref(), &att.signed, signer)?;
    a.link.write(&att.signed, &[], None, signer)?;
    // The process ends now and the kernel takes the memory back at once;
    // freeing 100k paths one by one first took 5-10 ms.
    std::mem::forget((materials, products, att));
    Ok(exit::OK)
}
