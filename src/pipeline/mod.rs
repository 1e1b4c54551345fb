//! The pipeline every command runs, as types:
//!
//! ```text
//!   observe                 describe              sign                 publish
//!   ───────                 ────────              ────                 ───────
//!   attest: hash now   ┐                          Signer provider      Output providers
//!   run:    hash, run, ├─>  Observation ─describe─> Described ─sign──>  Attestation ─emit_all─> files, log line,
//!           hash       │    (trees, claims,       (statement bytes,    (envelope +           bundle, in-toto link,
//!   record: watch,     ┘     exit status, pod)     framed for DSSE)     verification          registry (spool first)
//!           complete,                                                   material)
//!           finalize
//! ```
//!
//! * [`Observation`] is everything seen about one build: material and
//!   product trees, the images the builder claims (checked), the exit
//!   status and who vouches for it, the pod, the times.
//! * [`describe`] turns it into an in-toto Statement with a SLSA Provenance
//!   predicate (`crate::provenance`), serialized once, straight from the
//!   trees, into a buffer framed for signing.
//! * [`Described::sign`] signs it with a `crate::sign` provider and gives an
//!   [`Attestation`]: the envelope with its verification material.
//! * [`crate::publish::emit_all`] hands that to each output.
//!
//! The ways of observing live beside this file: [`oneshot`] (`attest`,
//! `run`), [`sidecar`] (`record`), [`snapshot`] (the init container and its
//! gate), [`claims`] (what the builder reports, for all of them).
pub mod claims;
pub mod oneshot;
mod phases;
pub mod sidecar;
pub mod snapshot;

pub use crate::sign::Attestation;
pub use phases::Phases;

use time::OffsetDateTime;

use crate::choice::Choice as _;
use crate::digest::{DigestError, ErrorPolicy};
use crate::provenance::{
    self, BuildFacts, Claim, ClaimCheck, DescriptorList, ExitStatus, ExternalParameters,
    HashedRoot, InternalParameters, MaterialsAs, OtherOutputs, PodIdentity, ProductsAs,
    ResourceDescriptor, RootsError, StatementRef,
};
use crate::publish::LOGGED_SUBJECTS;
use crate::sign::{frame_statement, KeyError, Signer, Unsigned};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Roots(#[from] RootsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    State(#[from] crate::pod::StateError),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
    #[error(transparent)]
    Completion(#[from] crate::completion::CompletionError),
    #[error(transparent)]
    Registry(#[from] crate::publish::RegistryError),
    #[error(transparent)]
    Output(#[from] crate::publish::OutputError),
    #[error(transparent)]
    Gate(#[from] crate::verify::gate::GateError),
    #[error(transparent)]
    Policy(#[from] crate::verify::PolicyError),
    #[error(transparent)]
    Write(#[from] crate::sink::WriteError),
    /// Something the caller asked for that cannot be (a combination of
    /// options, a missing input): exit code 2 or 3 as its kind says.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Child(crate::completion::ChildError),
}

/// How the observation is described (`internalParameters`).
#[derive(Debug, Clone)]
pub struct DescribeOptions {
    /// `builder.id`: the trust boundary that ran provenant.
    pub builder_id: String,
    pub materials_as: MaterialsAs,
    pub products_as: ProductsAs,
    /// Whether a build that exited non-zero is attested at all.
    pub attest_failed: bool,
    /// How the outputs that are not subjects are recorded (beside claimed
    /// images, or when `--subject` chose the subjects).
    pub other_outputs: OtherOutputs,
}

/// Everything observed about one build.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Material roots as hashed before the build.
    pub materials: Vec<HashedRoot>,
    /// Product roots as they are to be described (in pod mode with a
    /// subject per file: only what the build changed).
    pub products: Vec<HashedRoot>,
    /// Images the builder claims, checked; when there are any, they are
    /// the subjects and the products are recorded as observed outputs.
    pub claims: Vec<Claim>,
    /// The product files `--subject` chose: then they (beside any claimed
    /// images) are the subjects, and `products` are recorded as other
    /// outputs. Empty roots when nothing matched.
    pub selected: Option<Vec<HashedRoot>>,
    /// Inputs known by reference: images, verified upstream attestations,
    /// the command's executable.
    pub references: Vec<ResourceDescriptor>,
    /// Further byproducts (materials the build changed).
    pub byproducts: Vec<ResourceDescriptor>,
    /// `None` when no build was observed (`attest`).
    pub exit: Option<ExitStatus>,
    /// The command provenant ran (`run`).
    pub command: Option<Vec<String>>,
    pub pod: Option<PodIdentity>,
    /// How the end of the build was learnt (pod mode).
    pub completion: Option<String>,
    pub started: OffsetDateTime,
    pub finished: OffsetDateTime,
    pub invocation_id: String,
    /// The roots as the user named them.
    pub material_names: Vec<String>,
    pub product_names: Vec<String>,
    pub excludes: Vec<String>,
    /// The `--subject` globs behind `selected`.
    pub subject_globs: Vec<String>,
    pub on_error: ErrorPolicy,
}

/// A statement serialized and framed for signing; it no longer borrows
/// the trees it was made from.
pub struct Described {
    pub unsigned: Unsigned,
    pub subject_count: usize,
    pub first_subjects: Vec<ResourceDescriptor>,
    pub images: Vec<String>,
}

impl Described {
    pub fn sign(self, signer: &dyn Signer) -> Result<Attestation, KeyError> {
        self.sign_while(signer, || ())
    }

    /// Signs while `meanwhile` runs on another core (the sidecar frees the
    /// trees the statement was made from).
    pub fn sign_while(
        self,
        signer: &dyn Signer,
        meanwhile: impl FnOnce() + Send,
    ) -> Result<Attestation, KeyError> {
        let signed = self.unsigned.sign_while(signer, meanwhile)?;
        Ok(Attestation {
            signed,
            material: signer.verification_material(),
            predicate_type: provenance::SLSA_PROVENANCE_V1.to_string(),
            subject_count: self.subject_count,
            first_subjects: self.first_subjects,
            images: self.images,
            pending: None,
        })
    }
}

/// The statement for an observation, serialized straight from the trees
/// into `buf` if one was prepared (the sidecar prefaults it while the
/// build's end is processed).
pub fn describe(
    obs: &Observation,
    opts: &DescribeOptions,
    buf: Option<Vec<u8>>,
) -> Result<Described, PipelineError> {
    // Everything the build left that is not a regular file stays on the
    // record; beside claimed images, so does the whole output tree.
    let mut byproducts = obs.byproducts.clone();
    byproducts.extend(provenance::product_byproducts(&obs.products));
    let claimed: Vec<ResourceDescriptor> = obs.claims.iter().map(Claim::to_subject).collect();
    let subjects: DescriptorList = match &obs.selected {
        // Chosen files (and any claimed images); the rest is accounted for
        // as other outputs.
        Some(selected) => {
            let files: usize = selected.iter().map(|r| r.tree.files().count()).sum();
            if files == 0 && claimed.is_empty() {
                return Err(PipelineError::Unavailable(
                    "no product matched --subject: the artefact the build should have made is not there; nothing is attested".into(),
                ));
            }
            byproducts.extend(provenance::other_outputs(
                &obs.products,
                selected,
                opts.other_outputs,
            ));
            let mut list: DescriptorList = claimed.into();
            for r in selected {
                list.push_entries(&r.prefix, &r.tree.entries, true);
            }
            list
        }
        None if claimed.is_empty() => provenance::subjects(&obs.products, opts.products_as)?,
        None => {
            byproducts.extend(provenance::other_outputs(
                &obs.products,
                &[],
                opts.other_outputs,
            ));
            claimed.into()
        }
    };
    let mut materials = provenance::materials(&obs.materials, opts.materials_as)?;
    materials.extend(obs.references.iter().cloned());
    let facts = BuildFacts {
        builder_id: opts.builder_id.clone(),
        external: ExternalParameters {
            command: obs.command.clone(),
            materials: obs.material_names.clone(),
            products: obs.product_names.clone(),
            excludes: obs.excludes.clone(),
            subjects: obs.subject_globs.clone(),
        },
        internal: InternalParameters {
            materials_as: opts.materials_as.as_str().into(),
            products_as: opts.products_as.as_str().into(),
            on_error: obs.on_error.as_str().into(),
            attest_failed: opts.attest_failed,
            pod: obs.pod.clone().filter(|p| !p.is_empty()),
            completion: obs.completion.clone(),
            other_outputs: (obs.selected.is_some() || !obs.claims.is_empty())
                .then(|| opts.other_outputs.as_str().to_string()),
        },
        materials,
        exit: obs.exit,
        started: obs.started,
        finished: obs.finished,
        invocation_id: obs.invocation_id.clone(),
        byproducts,
    };
    let provenance = facts.into_provenance();
    let size = subjects.json_size_hint()
        + provenance
            .build_definition
            .resolved_dependencies
            .json_size_hint()
        + 4096;
    let buf = buf.unwrap_or_else(|| Vec::with_capacity(size));
    Ok(Described {
        unsigned: frame_statement(&StatementRef::slsa(&subjects, &provenance), buf)?,
        subject_count: subjects.len(),
        first_subjects: subjects.iter().take(LOGGED_SUBJECTS).collect(),
        // Attached in registries only where the sidecar found the image in
        // an allowed repository: a builder naming someone else's image
        // gets nothing attached to it.
        images: obs
            .claims
            .iter()
            .filter(|c| {
                matches!(
                    c.check,
                    ClaimCheck::Registry | ClaimCheck::AllowedRepository
                )
            })
            .map(Claim::pinned)
            .collect(),
    })
}

/// A current-thread async runtime for the few network calls of a command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, PipelineError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PipelineError::Runtime)
}

impl crate::error::ExitClass for PipelineError {
    fn exit_code(&self) -> i32 {
        match self {
            PipelineError::Digest(e) => e.exit_code(),
            PipelineError::Roots(e) => e.exit_code(),
            PipelineError::Key(e) => e.exit_code(),
            PipelineError::State(e) => e.exit_code(),
            PipelineError::Watch(e) => e.exit_code(),
            PipelineError::Completion(e) => e.exit_code(),
            PipelineError::Registry(e) => e.exit_code(),
            PipelineError::Output(e) => e.exit_code(),
            PipelineError::Gate(e) => e.exit_code(),
            PipelineError::Policy(e) => e.exit_code(),
            PipelineError::Write(e) => e.exit_code(),
            PipelineError::Child(e) => e.exit_code(),
            PipelineError::Usage(_) => crate::error::exit::USAGE,
            PipelineError::Unavailable(_) | PipelineError::Runtime(_) => {
                crate::error::exit::CANNOT_CHECK
            }
        }
    }
}
