use std::path::PathBuf;

use clap::Args;

use super::{CliResult, Context, Failure};
use crate::sign::VerifyingKey;

use crate::escape;
use crate::verify::input::{self, Found};
use crate::verify::sigstore::{Identity, Pattern, Requirements};
use crate::verify::{exit, verify_attestation, AttachedError, Policy, Verified, VerifyError};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("identity").args(["certificate_identity", "certificate_identity_regexp"])))]
pub struct VerifyArgs {
    /// Trusted public key (SPKI PEM); repeatable. Not with --policy: the
    /// policy's keys are authoritative (add one with --extra-key).
    #[arg(
        long = "key",
        value_name = "PUB",
        required_unless_present_any = ["policy", "certificate_identity", "certificate_identity_regexp"],
        conflicts_with = "policy"
    )]
    pub keys: Vec<PathBuf>,
    /// Sigstore trust material (`trusted_root.json`: Fulcio CAs, Rekor
    /// logs, CT logs, timestamp authorities) to check keyless attestations
    /// and transparency-log entries against, offline. Not with --policy
    /// (its trustedRoot is used).
    #[arg(long, value_name = "FILE", conflicts_with = "policy")]
    pub trusted_root: Option<PathBuf>,
    /// Accept keyless attestations whose certificate is for exactly this
    /// identity (subject alternative name: URI, e-mail or username).
    #[arg(
        long,
        value_name = "SAN",
        conflicts_with_all = ["policy", "certificate_identity_regexp"],
        requires_all = ["trusted_root", "oidc_issuer"]
    )]
    pub certificate_identity: Option<String>,
    /// As --certificate-identity, a regular expression the whole identity
    /// must match (anchored, unlike cosign's).
    #[arg(
        long,
        value_name = "REGEX",
        conflicts_with = "policy",
        requires_all = ["trusted_root", "oidc_issuer"]
    )]
    pub certificate_identity_regexp: Option<String>,
    /// The OIDC issuer the certificate names (Fulcio's issuer extension),
    /// exactly.
    #[arg(
        long,
        value_name = "URL",
        group = "oidc_issuer",
        conflicts_with = "certificate_oidc_issuer_regexp",
        requires = "identity"
    )]
    pub certificate_oidc_issuer: Option<String>,
    /// As --certificate-oidc-issuer, a regular expression the whole issuer
    /// must match.
    #[arg(
        long,
        value_name = "REGEX",
        group = "oidc_issuer",
        requires = "identity"
    )]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// Require a transparency-log entry that verifies against
    /// --trusted-root (every entry present is checked either way).
    #[arg(long, requires = "trusted_root", conflicts_with = "policy")]
    pub require_tlog: bool,
    /// With --policy: also trust this key, beside the policy's; repeatable.
    #[arg(long = "extra-key", value_name = "PUB", requires = "policy")]
    pub extra_keys: Vec<PathBuf>,
    /// Policy file (YAML): trusted keys or certificate identities (with
    /// their trusted root), transparency log, predicate types, builder
    /// ids, subjects, required materials, maximum age, exit status, input
    /// changes, claimed subjects (docs/trust.md).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// How many distinct trusted keys must have signed (with --policy, the
    /// larger of this and the policy's threshold).
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// Accept only attestations of the pod with this UID
    /// (internalParameters.pod.uid): a builder cannot pass off another
    /// pod's attestation printed into this pod's log.
    #[arg(long, value_name = "UID")]
    pub pod_uid: Option<String>,
    /// Accept only attestations with this runDetails.metadata.invocationId.
    #[arg(long, value_name = "ID")]
    pub invocation_id: Option<String>,
    /// Print the verified statement as JSON instead of the subject list
    /// (one JSON line per attestation when reading a log).
    #[arg(long)]
    pub json: bool,
    /// Attestation file: a DSSE envelope, a Sigstore bundle, a log line or a
    /// whole pod log (every attestation in it is verified); `-` for
    /// standard input.
    #[arg(required_unless_present = "image", conflicts_with = "image")]
    pub file: Option<PathBuf>,
    /// Verify the attestations attached to this image in its registry
    /// (cosign `.att` tag and OCI referrers), by tag or digest.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    #[command(flatten)]
    pub registry: super::publish::RegistryOpts,
}

/// The certificate identity the flags ask for (none without them).
fn identities(a: &VerifyArgs) -> CliResult<Vec<Identity>> {
    let subject = match (&a.certificate_identity, &a.certificate_identity_regexp) {
        (Some(s), _) => Pattern::Exact(s.clone()),
        (None, Some(re)) => Pattern::regex("--certificate-identity-regexp", re)?,
        (None, None) => return Ok(Vec::new()),
    };
    let issuer = match (
        &a.certificate_oidc_issuer,
        &a.certificate_oidc_issuer_regexp,
    ) {
        (Some(s), _) => Pattern::Exact(s.clone()),
        (None, Some(re)) => Pattern::regex("--certificate-oidc-issuer-regexp", re)?,
        (None, None) => return Ok(Vec::new()),
    };
    Ok(vec![Identity { subject, issuer }])
}

/// What the command line binds the attestation to.
struct Binding<'a> {
    pod_uid: Option<&'a str>,
    invocation_id: Option<&'a str>,
}

impl Binding<'_> {
    /// Why `v` is not the attestation asked for.
    fn mismatch(&self, v: &Verified) -> Option<String> {
        if self.pod_uid.is_none() && self.invocation_id.is_none() {
            return None;
        }
        let p = v.statement.provenance().ok();
        if let Some(want) = self.pod_uid {
            let uid = p
                .as_ref()
                .and_then(|p| p.build_definition.internal_parameters.get("pod"))
                .and_then(|pod| pod.get("uid"))
                .and_then(|u| u.as_str());
            if uid != Some(want) {
                return Some(format!(
                    "pod uid {} is not --pod-uid {}",
                    uid.map(|u| format!("{u:?}")).unwrap_or("(none)".into()),
                    escape::field(want)
                ));
            }
        }
        if let Some(want) = self.invocation_id {
            let id = p
                .as_ref()
                .and_then(|p| p.run_details.metadata.as_ref())
                .and_then(|m| m.invocation_id.as_deref());
            if id != Some(want) {
                return Some(format!(
                    "invocation id {} is not --invocation-id {}",
                    id.map(|u| format!("{u:?}")).unwrap_or("(none)".into()),
                    escape::field(want)
                ));
            }
        }
        None
    }
}

/// `; logged in N transparency log entr(y|ies)` for result lines.
fn tlog_note(v: &Verified) -> String {
    match v.tlog_entries {
        0 => String::new(),
        1 => "; 1 transparency-log entry verified".into(),
        n => format!("; {n} transparency-log entries verified"),
    }
}

/// `; pod NS/NAME (uid UID)` for result lines, escaped.
fn pod_note(v: &Verified) -> String {
    let Ok(p) = v.statement.provenance() else {
        return String::new();
    };
    let Some(pod) = p.build_definition.internal_parameters.get("pod") else {
        return String::new();
    };
    let s = |k: &str| pod.get(k).and_then(|x| x.as_str()).unwrap_or("?");
    format!(
        "; pod {}/{} (uid {})",
        escape::field(s("namespace")),
        escape::field(s("name")),
        escape::field(s("uid"))
    )
}

pub fn verify(a: VerifyArgs) -> CliResult {
    let policy = a.policy.as_deref().map(Policy::load).transpose()?;
    let mut keys = match &policy {
        Some(p) => p.keys.clone(),
        None => a
            .keys
            .iter()
            .map(|k| VerifyingKey::load(k))
            .collect::<Result<Vec<_>, _>>()?,
    };
    for k in &a.extra_keys {
        keys.push(VerifyingKey::load(k)?);
    }
    let threshold = policy
        .as_ref()
        .map_or(a.threshold, |p| a.threshold.max(p.threshold));
    let root = a
        .trusted_root
        .as_deref()
        .map(crate::verify::sigstore::TrustedRoot::load)
        .transpose()?;
    let identities = identities(&a)?;
    let trust = match &policy {
        Some(p) => crate::verify::Trust {
            keys: &keys,
            threshold,
            ..p.trust()
        },
        None => crate::verify::Trust {
            keys: &keys,
            threshold,
            sigstore: root.as_ref().map(|root| Requirements {
                root,
                identities: &identities,
                require_tlog: a.require_tlog,
            }),
        },
    };
    let binding = Binding {
        pod_uid: a.pod_uid.as_deref(),
        invocation_id: a.invocation_id.as_deref(),
    };
    if let Some(image) = &a.image {
        return verify_image(image, &a, &trust, policy.as_ref(), &binding);
    }
    let file = a.file.clone().unwrap_or_default();
    let (label, bytes) = crate::verify::read_input(&file)?;
    let read = input::read(&bytes).map_err(|source| VerifyError::Input {
        path: label.clone(),
        source,
    })?;
    drop(bytes);
    for (line, why) in &read.skipped {
        eprintln!("warning: {label}:{line}: {why}");
    }
    if !read.log {
        // One document: the attestation, or a one-line error.
        let found = read
            .found
            .into_iter()
            .next()
            .ok_or_else(|| Failure::new(exit::INVALID, format!("{label}: no attestation")))?;
        let v = verify_attestation(&label, found.envelope, found.material.as_ref(), &trust)?;
        if let Some(why) = binding.mismatch(&v) {
            return Err(VerifyError::NotBound {
                path: label.clone(),
                why,
            }
            .into());
        }
        if let Some(p) = &policy {
            enforce(p, &v, &label)?;
        }
        print_verified(&v, a.json, false)?;
        notes(&v);
        eprintln!(
            "Verified OK: {} ({}) signed by {}{}{}",
            escape::field(&label),
            escape::field(&v.statement.predicate_type),
            v.signed_by.join(", "),
            tlog_note(&v),
            pod_note(&v)
        );
        return Ok(exit::OK);
    }
    verify_log(&label, read, &trust, policy.as_ref(), &binding, a.json)
}

/// Every attestation of a log, each on its own result line.
fn verify_log(
    label: &str,
    read: input::Input,
    trust: &crate::verify::Trust<'_>,
    policy: Option<&Policy>,
    binding: &Binding,
    json: bool,
) -> CliResult {
    let total = read.found.len();
    let (mut ok, mut invalid, mut policy_failed, mut other) = (0, 0, 0, 0);
    for Found {
        line,
        envelope,
        material,
        ..
    } in read.found
    {
        let at = format!("{}:{}", escape::field(label), line.unwrap_or(0));
        let v = match verify_attestation(&at, envelope, material.as_ref(), trust) {
            Ok(v) => v,
            Err(e) => {
                invalid += 1;
                eprintln!("FAILED: {}", crate::cli::one_line(&e.into()));
                continue;
            }
        };
        if let Some(why) = binding.mismatch(&v) {
            other += 1;
            eprintln!("skipped: {at}: {why}");
            continue;
        }
        if let Some(p) = policy {
            let violations = p.check(&v, time::OffsetDateTime::now_utc());
            if !violations.is_empty() {
                policy_failed += 1;
                for x in &violations {
                    eprintln!("policy violation: {at}: {x}");
                }
                eprintln!(
                    "FAILED: {at}: {} policy violation(s) of {}",
                    violations.len(),
                    p.path.display()
                );
                continue;
            }
        }
        ok += 1;
        print_verified(&v, json, true)?;
        notes(&v);
        eprintln!(
            "Verified OK: {at} ({}) signed by {}{}{}",
            escape::field(&v.statement.predicate_type),
            v.signed_by.join(", "),
            tlog_note(&v),
            pod_note(&v)
        );
    }
    let failed = invalid + policy_failed;
    if failed > 0 {
        eprintln!(
            "provenant: error: {}: {failed} of {total} attestation(s) failed",
            escape::field(label)
        );
        return Ok(if invalid > 0 {
            exit::INVALID
        } else {
            exit::POLICY
        });
    }
    if ok == 0 {
        eprintln!(
            "provenant: error: {}: no attestation found for the pod or invocation asked for ({other} of another pod or invocation skipped)",
            escape::field(label)
        );
        return Ok(exit::INVALID);
    }
    if ok > 1 && binding.pod_uid.is_none() && binding.invocation_id.is_none() {
        eprintln!(
            "warning: {}: {ok} attestations verified; pass --pod-uid or --invocation-id to accept only the one of this pod",
            escape::field(label)
        );
    }
    Ok(exit::OK)
}

/// The statement (JSON), or its subjects as escaped `DIGEST  NAME` lines.
fn print_verified(v: &Verified, json: bool, compact: bool) -> CliResult<()> {
    use std::io::Write;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if json {
        if compact {
            serde_json::to_writer(&mut out, &v.statement)?;
        } else {
            serde_json::to_writer_pretty(&mut out, &v.statement)?;
        }
        writeln!(out)?;
    } else {
        for s in &v.statement.subject {
            let digest = s
                .digest
                .iter()
                .map(|(alg, d)| format!("{alg}:{d}"))
                .collect::<Vec<_>>()
                .join(",");
            writeln!(
                out,
                "{}",
                escape::checksum_line(&digest, s.name.as_deref().unwrap_or("").as_bytes())
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// What a reader should know that the subject lines do not say: claimed
/// subjects and the exit status's origin.
fn notes(v: &Verified) {
    use crate::verify::facts;
    let claimed = v
        .statement
        .subject
        .iter()
        .filter(|s| facts::subject_origin(s) != facts::SubjectOrigin::Observed)
        .count();
    if claimed > 0 {
        eprintln!(
            "note: {claimed} subject(s) are claims read from the builder's files (see `provenant inspect`)"
        );
    }
    if let Ok(p) = v.statement.provenance() {
        if v.statement.predicate_type == crate::provenance::SLSA_PROVENANCE_V1 {
            eprintln!("note: exit status {}", facts::exit_status(&p));
        }
    }
}

/// Every attestation attached to the image, each verified on its own: the
/// signature against the keys, then the statement, then that one of its
/// subjects is this image's manifest digest (an attestation copied next to
/// another image must not vouch for it).
fn verify_image(
    image: &str,
    a: &VerifyArgs,
    trust: &crate::verify::Trust<'_>,
    policy: Option<&Policy>,
    binding: &Binding,
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
        let result = crate::verify::verify_attached(&label, f, &img.digest, trust)
            .map_err(|e| match e {
                AttachedError::Unreadable(e) => e,
                AttachedError::Invalid(e) => e.to_string(),
                AttachedError::NotThisImage => format!(
                    "{label}: signature valid but no subject has the image digest {}",
                    img.digest
                ),
            })
            .and_then(|v| match binding.mismatch(&v) {
                Some(why) => Err(why),
                None => Ok(v),
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
                        "OK    {label}  {}  signed by {}{}",
                        escape::field(&v.statement.predicate_type),
                        v.signed_by.join(", "),
                        pod_note(&v)
                    );
                }
            }
            Err(e) => {
                println!("FAIL  {label}  {}", escape::field(&e));
                // The error line names the image once.
                let prefix = format!("{}@{}: ", img.repository(), img.digest);
                first_failure.get_or_insert_with(|| {
                    escape::field(e.strip_prefix(&prefix).unwrap_or(&e)).into_owned()
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
        eprintln!("policy violation: {}: {x}", escape::field(label));
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
