use std::path::PathBuf;

use super::CliResult;
use clap::Args;

use super::Context;
use crate::sign::VerifyingKey;

use crate::verify::{exit, verify_file, AttachedError, Policy};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Trusted public key (SPKI PEM); repeatable.
    #[arg(long = "key", value_name = "PUB", required_unless_present = "policy")]
    pub keys: Vec<PathBuf>,
    /// Policy file (YAML): trusted keys, predicate types, builder ids,
    /// subjects, required materials, maximum age, failed builds.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Print the verified statement as JSON instead of the subject list.
    #[arg(long)]
    pub json: bool,
    /// Attestation file: a DSSE envelope, a Sigstore bundle, a log line or a
    /// whole pod log from `provenant record`; `-` for standard input.
    #[arg(required_unless_present = "image", conflicts_with = "image")]
    pub file: Option<PathBuf>,
    /// Verify the attestations attached to this image in its registry
    /// (cosign `.att` tag and OCI referrers), by tag or digest.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    #[command(flatten)]
    pub registry: super::publish::RegistryOpts,
}

pub fn verify(a: VerifyArgs) -> CliResult {
    let mut keys = a
        .keys
        .iter()
        .map(|k| VerifyingKey::load(k))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = a.policy.as_deref().map(Policy::load).transpose()?;
    let mut threshold = a.threshold;
    if let Some(p) = &policy {
        keys.extend(p.keys.iter().cloned());
        threshold = threshold.max(p.threshold);
    }
    let a = VerifyArgs { threshold, ..a };
    if let Some(image) = &a.image {
        return verify_image(image, &a, &keys, policy.as_ref());
    }
    let file = a.file.clone().unwrap_or_default();
    let v = verify_file(&file, &keys, a.threshold)?;
    if let Some(p) = &policy {
        enforce(p, &v, &file.display().to_string())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v.statement)?);
    } else {
        for s in &v.statement.subject {
            let digest = s
                .digest
                .iter()
                .map(|(alg, d)| format!("{alg}:{d}"))
                .collect::<Vec<_>>()
                .join(",");
            println!("{digest}  {}", s.name.as_deref().unwrap_or(""));
        }
    }
    eprintln!(
        "Verified OK: {} ({}) signed by {}",
        file.display(),
        v.statement.predicate_type,
        v.signed_by.join(", ")
    );
    Ok(exit::OK)
}

/// Every attestation attached to the image, each verified on its own: the
/// signature against the keys, then the statement, then that one of its
/// subjects is this image's manifest digest (an attestation copied next to
/// another image must not vouch for it).
fn verify_image(
    image: &str,
    a: &VerifyArgs,
    keys: &[VerifyingKey],
    policy: Option<&Policy>,
) -> CliResult {
    let registry = a.registry.registry()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    let (img, found) = rt.block_on(registry.fetch(image))?;
    let mut ok = 0;
    let mut policy_failed = 0;
    let mut first_failure: Option<String> = None;
    for f in &found {
        let label = format!("{} {}", f.source, f.digest);
        let result =
            crate::verify::verify_attached(&label, &f.envelope, &img.digest, keys, a.threshold)
                .map_err(|e| match e {
                    AttachedError::Unreadable(e) => e,
                    AttachedError::Invalid(e) => e.to_string(),
                    AttachedError::NotThisImage => format!(
                        "{label}: signature valid but no subject has the image digest {}",
                        img.digest
                    ),
                })
                .and_then(|v| {
                    let violations = policy
                        .map(|p| p.check(&v, time::OffsetDateTime::now_utc()))
                        .unwrap_or_default();
                    if violations.is_empty() {
                        Ok(v)
                    } else {
                        policy_failed += 1;
                        Err(format!(
                            "policy: {}",
                            violations
                                .iter()
                                .map(|x| x.to_string())
                                .collect::<Vec<_>>()
                                .join("; ")
                        ))
                    }
                });
        match result {
            Ok(v) => {
                ok += 1;
                if a.json {
                    println!("{}", serde_json::to_string(&v.statement)?);
                } else {
                    println!(
                        "OK    {label}  {}  signed by {}",
                        v.statement.predicate_type,
                        v.signed_by.join(", ")
                    );
                }
            }
            Err(e) => {
                println!("FAIL  {label}  {e}");
                // The error line names the image once.
                let prefix = format!("{}@{}: ", img.repository(), img.digest);
                first_failure.get_or_insert_with(|| {
                    e.strip_prefix(&prefix).map(str::to_string).unwrap_or(e)
                });
            }
        }
    }
    if found.is_empty() {
        return Err(crate::verify::VerifyError::NotAttached {
            image: format!("{}@{}", img.repository(), img.digest),
        }
        .into());
    }
    eprintln!(
        "{}@{}: {ok} of {} attestations verified",
        img.repository(),
        img.digest,
        found.len()
    );
    let name = format!("{}@{}", img.repository(), img.digest);
    if ok > 0 {
        Ok(exit::OK)
    } else if let (Some(p), true) = (policy, policy_failed > 0) {
        Err(crate::verify::VerifyError::Policy {
            label: name,
            policy: p.path.display().to_string(),
            count: policy_failed,
        }
        .into())
    } else {
        Err(crate::verify::VerifyError::NoneVerified {
            image: name,
            count: found.len(),
            first: first_failure.unwrap_or_default(),
        }
        .into())
    }
}

/// Prints every violation on its own line, then fails with the count.
pub fn enforce(p: &Policy, v: &crate::verify::Verified, label: &str) -> CliResult<()> {
    let violations = p.check(v, time::OffsetDateTime::now_utc());
    for x in &violations {
        eprintln!("policy violation: {label}: {x}");
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(crate::verify::VerifyError::Policy {
            label: label.to_string(),
            policy: p.path.display().to_string(),
            count: violations.len(),
        }
        .into())
    }
}
