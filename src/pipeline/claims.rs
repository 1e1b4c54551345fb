//! What the builder reports it built: claims from its report files, read
//! through the door for builder-written files and checked where they can
//! be before anything is signed (docs/trust.md). For every command: the
//! sidecar reads kpack and Tekton reports, `run` and `attest` an OCI layout
//! or report their own tools wrote.
use crate::provenance::{self, AllowedRepos, Claim, ClaimCheck, ClaimSource, ReportSources};
use crate::publish::{Deadline, Registry, RegistryError, ResolvedImage};

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
/// Claims checked against the registry (and so attached there) per build:
/// a multi-arch build names a few images, and a builder naming thousands
/// must not turn the sidecar into its registry scanner.
pub const MAX_CHECKED_CLAIMS: usize = 64;
/// Registry checks in flight at once: 64 claims take eight round trips.
const CONCURRENT_CHECKS: usize = 8;
/// Why a layout claim with no image name is refused, whichever way it
/// lacks one.
const UNNAMED_LAYOUT: &str = "the OCI layout does not name an image repository (org.opencontainers.image.ref.name, or --oci-layout-image)";

/// Refusals logged one by one; the rest are counted.
const LOGGED_REFUSALS: usize = 16;

/// The builder's image claims that survive their checks. A claim that
/// fails is logged with its reason and never signed. With an allow-list, a
/// claim must name an allowed repository and resolve there by its digest;
/// a registry that refutes it (no such manifest, not ours to read) fails
/// it; one that is down or too slow while asked leaves it
/// `allowed-repository` (an outage loses no attestation; publishing
/// resolves it again); a claim not yet asked when the budget ran out is
/// refused. Without an allow-list, claims are signed marked unchecked (an
/// OCI layout's claims checked only against its own blobs, which the
/// builder wrote too).
pub fn observe_claims(
    opts: &SubjectOptions,
    registry: Option<&Registry>,
    within: &Deadline,
) -> Result<Vec<Claim>, PipelineError> {
    // No shortcut for an empty ReportSources: with nothing to read,
    // `reported` must still refuse below rather than fall back to files.
    if opts.source == SubjectSource::Files {
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

/// Refusals, logged up to [`LOGGED_REFUSALS`] and then only counted: the
/// builder decides how many there are.
#[derive(Default)]
struct Refusals {
    count: usize,
}

impl Refusals {
    fn refuse(&mut self, c: &Claim, reason: &str) {
        self.count += 1;
        if self.count <= LOGGED_REFUSALS {
            tracing::warn!(
                image = %crate::escape::field(&c.name),
                file = %crate::escape::path(&c.file),
                "image claim refused, not signed: {reason}"
            );
        }
    }

    fn summary(&self) {
        if self.count > LOGGED_REFUSALS {
            tracing::warn!(
                refused = self.count,
                logged = LOGGED_REFUSALS,
                "more image claims refused than logged"
            );
        }
    }
}

/// What asking the registry about one claim gave. At most
/// MAX_CHECKED_CLAIMS live at once, so the unboxed error costs nothing.
#[allow(clippy::large_enum_variant)]
enum Asked {
    /// The budget was spent before this claim's turn.
    Skipped,
    TimedOut,
    Answered(Result<ResolvedImage, RegistryError>),
}

fn confirm(
    claims: Vec<Claim>,
    allowed: &AllowedRepos,
    registry: &Registry,
    within: &Deadline,
) -> Result<Vec<Claim>, PipelineError> {
    use futures_util::StreamExt as _;
    let rt = super::runtime()?;
    let deadline = Deadline::at(
        within
            .instant()
            .min(std::time::Instant::now() + CLAIM_CHECK_BUDGET),
    );
    let mut refused = Refusals::default();
    let mut candidates = Vec::new();
    for mut c in claims {
        // A layout names its image in an annotation the builder wrote (or
        // the operator with --oci-layout-image): with an allow-list it is
        // held to the same rules as any report.
        // A layout that names nothing is listed under its directory (for
        // the record); that path is the operator's, not an image name.
        let unnamed = c.source == ClaimSource::OciLayout
            && c.file
                .parent()
                .is_some_and(|dir| dir.display().to_string() == c.name);
        if unnamed {
            refused.refuse(&c, UNNAMED_LAYOUT);
            continue;
        }
        if c.source == ClaimSource::OciLayout {
            match provenance::claimed_name(&c.file, &c.name) {
                Ok(n) => c.name = n,
                Err(_) => {
                    refused.refuse(&c, UNNAMED_LAYOUT);
                    continue;
                }
            }
        }
        if !allowed.allows(&c.name) {
            refused.refuse(&c, "repository not in --allow-image-repo");
        } else if candidates.len() >= MAX_CHECKED_CLAIMS {
            refused.refuse(&c, "more images claimed than are checked per build (64)");
        } else {
            candidates.push(c);
        }
    }
    let asked: Vec<(Claim, Asked)> = rt.block_on(
        futures_util::stream::iter(candidates)
            .map(|c| {
                let deadline = &deadline;
                async move {
                    if std::time::Instant::now() >= deadline.instant() {
                        return (c, Asked::Skipped);
                    }
                    let pinned = c.pinned();
                    let r = tokio::time::timeout_at(
                        deadline.instant().into(),
                        registry.resolve_until(&pinned, deadline),
                    )
                    .await;
                    (c, r.map_or(Asked::TimedOut, Asked::Answered))
                }
            })
            .buffered(CONCURRENT_CHECKS)
            .collect(),
    );
    let mut out = Vec::new();
    for (mut c, asked) in asked {
        let shown_name = crate::escape::field(&c.name).into_owned();
        match asked {
            Asked::Answered(Ok(img)) if img.digest == format!("sha256:{}", c.sha256) => {
                c.check = ClaimCheck::Registry;
                out.push(c);
            }
            Asked::Answered(Ok(_)) => {
                refused.refuse(&c, "the registry returned another digest");
            }
            // Down, 5xx, or out of time while asking: an outage, which the
            // builder does not easily bring about. Not a 401/403 (GHCR and
            // Docker Hub answer so for a repository that does not exist or
            // is not ours to read, which the builder chooses by naming it)
            // and not a 429 (the builder shares the pod's address and can
            // spend its rate limit): those refute the claim below.
            Asked::Answered(Err(e))
                if !e.is_rate_limited()
                    && (e.is_transient() || matches!(e, RegistryError::Deadline { .. })) =>
            {
                tracing::warn!(image = %shown_name, error = %e, "the registry could not confirm the claimed image now; signed as in an allowed repository, digest unconfirmed");
                c.check = ClaimCheck::AllowedRepository;
                out.push(c);
            }
            Asked::TimedOut => {
                tracing::warn!(image = %shown_name, budget_s = CLAIM_CHECK_BUDGET.as_secs(), "the registry did not answer in time; signed as in an allowed repository, digest unconfirmed");
                c.check = ClaimCheck::AllowedRepository;
                out.push(c);
            }
            // No such manifest, no such repository, not ours to read, rate
            // limited, a reference the registry refuses: a builder can
            // cause each by what it names or does, so each refutes the
            // claim.
            Asked::Answered(Err(e @ RegistryError::Auth { .. })) => {
                tracing::debug!(image = %shown_name, error = %e, "registry refused the claim");
                // The operator needs the registry's own words to tell a
                // made-up repository from wrong credentials.
                refused.refuse(
                    &c,
                    &format!("the registry does not let our credentials read it (no such repository, or --registry-auth is wrong for it): {e}"),
                );
            }
            Asked::Answered(Err(e)) => {
                tracing::debug!(image = %shown_name, error = %e, "registry refused the claim");
                refused.refuse(&c, "the registry does not confirm it by its digest");
            }
            Asked::Skipped => {
                refused.refuse(
                    &c,
                    "the claim-check budget ran out before the registry was asked",
                );
            }
        }
    }
    refused.summary();
    Ok(out)
}
