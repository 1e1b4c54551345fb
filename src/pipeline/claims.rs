//! What the builder reports it built: claims from its report files, read
//! through the door for builder-written files and checked where they can
//! be before anything is signed (docs/trust.md). For every command: the
//! sidecar reads kpack and Tekton reports, `run` and `attest` an OCI layout
//! or report their own tools wrote.
use crate::provenance::{self, AllowedRepos, Claim, ClaimCheck, ReportSources};
use crate::publish::{Deadline, Registry, RegistryError};

use super::PipelineError;

/// Where subjects come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectSource {
    /// Images the builder reported, if any survive their checks, else the
    /// product files.
    #[default]
    Auto,
    /// Always the product files.
    Files,
    /// Only reported images; fail if none survives.
    Reported,
}
crate::choice!(SubjectSource {
    Auto = "auto",
    Files = "files",
    Reported = "reported",
});

#[derive(Debug, Clone, Default)]
pub struct SubjectOptions {
    pub source: SubjectSource,
    pub reports: ReportSources,
    /// `--allow-image-repo`: with it, claims must lie in these
    /// repositories and resolve there.
    pub allowed: AllowedRepos,
    /// `--subject`: only product files matching these globs (relative to
    /// each product root) are subjects.
    pub globs: Vec<String>,
}

impl SubjectOptions {
    /// The compiled `--subject` globs, if any were given.
    pub fn selector(&self) -> Result<Option<crate::digest::Excludes>, crate::digest::DigestError> {
        if self.globs.is_empty() {
            return Ok(None);
        }
        crate::digest::Excludes::new(&self.globs).map(Some)
    }
}

/// How long the registry may take to confirm the claimed images, in all
/// (and never past the deadline it shares with publishing).
pub const CLAIM_CHECK_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// The builder's image claims that survive their checks. A claim that
/// fails is logged with its reason and never signed. With an allow-list, a
/// claim must name an allowed repository and resolve there by its digest;
/// a registry that refutes it (no such manifest) fails it, one that cannot
/// be asked in time leaves it `allowed-repository` (an outage loses no
/// attestation; publishing resolves it again). Without one, claims are
/// signed marked unchecked (OCI-layout claims are always checked against
/// the layout's own blobs).
pub fn observe_claims(
    opts: &SubjectOptions,
    registry: Option<&Registry>,
    within: &Deadline,
) -> Result<Vec<Claim>, PipelineError> {
    if opts.source == SubjectSource::Files || opts.reports.is_empty() {
        return Ok(Vec::new());
    }
    let reported = provenance::reported_claims(&opts.reports);
    for r in &reported.rejected {
        tracing::warn!(file = %r.file, reason = %r.reason, "image claim refused; not signed");
    }
    let claims = match registry {
        Some(r) if !opts.allowed.is_empty() => confirm(reported.claims, &opts.allowed, r, within)?,
        _ => {
            if !reported.claims.is_empty() {
                tracing::warn!("image claims are signed unchecked (no --allow-image-repo): they say only what the builder wrote");
            }
            reported.claims
        }
    };
    if claims.is_empty() && opts.source == SubjectSource::Reported {
        return Err(PipelineError::Unavailable("--subjects reported: no image claim survived (checked --kpack-report, --tekton-results, --oci-layout; reasons above); nothing is attested".into()));
    }
    if !claims.is_empty() {
        tracing::info!(
            images = claims.len(),
            "subjects: images the builder claimed"
        );
    }
    Ok(claims)
}

fn confirm(
    claims: Vec<Claim>,
    allowed: &AllowedRepos,
    registry: &Registry,
    within: &Deadline,
) -> Result<Vec<Claim>, PipelineError> {
    let rt = super::runtime()?;
    let deadline = Deadline::at(
        within
            .instant()
            .min(std::time::Instant::now() + CLAIM_CHECK_BUDGET),
    );
    let mut out = Vec::new();
    for mut c in claims {
        let shown_name = crate::escape::field(&c.name).into_owned();
        if c.check == ClaimCheck::OciLayout {
            out.push(c);
            continue;
        }
        if !allowed.allows(&c.name) {
            tracing::warn!(image = %shown_name, file = %crate::escape::path(&c.file), allowed = ?allowed.patterns(), "image claim refused, not signed: repository not in --allow-image-repo");
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
        // that cannot be asked leaves it unconfirmed but allowed.
        match resolved {
            Ok(Ok(img)) if img.digest == format!("sha256:{}", c.sha256) => {
                c.check = ClaimCheck::Registry;
                out.push(c);
            }
            Ok(Ok(_)) => {
                tracing::warn!(image = %shown_name, "image claim refused, not signed: the registry returned another digest")
            }
            Ok(Err(
                e @ (RegistryError::UnknownImage { .. }
                | RegistryError::Garbage { .. }
                | RegistryError::Reference(..)),
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
