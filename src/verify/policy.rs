//! Verification policy: what a stage accepts from the stage before it.
//! A YAML file (see `examples/policy.yaml`, and docs/trust.md for the exact
//! language); unknown fields are errors, so a misspelt rule can never
//! silently accept everything. Everything a stranger's policy file can make
//! large is capped before or while it is read, and every computation on
//! its numbers is checked: loading never panics and never takes more than
//! a few milliseconds.
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;

use super::facts::{self, ExitOrigin, ExitStatus, SubjectOrigin};
use super::glob::{Glob, GlobError};
use super::Verified;
use crate::provenance::{parse_rfc3339, Provenance, ANN_PATH_ENCODING, SLSA_PROVENANCE_V1};
use crate::sign::{KeyError, VerifyingKey};

/// Largest policy file read, in bytes.
pub const MAX_POLICY_BYTES: u64 = 256 * 1024;
/// Deepest YAML nesting (flow brackets, or block indentation levels).
pub const MAX_DEPTH: usize = 16;
/// Most patterns in one list (`builderIds`, `subjects`, `predicateTypes`)
/// and most `materials` rules.
pub const MAX_ENTRIES: usize = 256;
/// Most trusted keys.
pub const MAX_KEYS: usize = 64;
/// Most certificate identities.
pub const MAX_IDENTITIES: usize = 64;
/// Longest identity subject pattern or issuer.
pub const MAX_PATTERN: usize = 1024;
/// Longest `maxAge`: 100 years.
pub const MAX_AGE_DAYS: i64 = 36_525;
/// Violations of one per-subject rule printed before they are summed up.
const SHOWN: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    version: u32,
    #[serde(default)]
    keys: Vec<PolicyKey>,
    #[serde(default = "one")]
    threshold: usize,
    #[serde(default)]
    identities: Vec<PolicyIdentity>,
    #[serde(default)]
    trusted_root: Option<PathBuf>,
    #[serde(default)]
    transparency_log: Option<TransparencyLogRule>,
    #[serde(default)]
    predicate_types: Vec<String>,
    #[serde(default)]
    builder_ids: Vec<String>,
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    materials: Vec<MaterialRule>,
    #[serde(default)]
    max_age: Option<String>,
    /// The old spelling of `exitCode` (`true` = `any`, `false` =
    /// `claimed-zero`).
    #[serde(default)]
    allow_failed: Option<bool>,
    #[serde(default)]
    exit_code: Option<ExitCodeRule>,
    #[serde(default)]
    input_changes: Option<InputChangesRule>,
    #[serde(default)]
    claimed_subjects: Option<ClaimedSubjectsRule>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyKey {
    path: PathBuf,
    #[serde(default)]
    id: Option<String>,
}

/// A certificate identity (keyless signing) to trust.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyIdentity {
    /// The OIDC issuer (Fulcio's issuer extension), exactly.
    issuer: String,
    /// The certificate's subject alternative name, a glob.
    subject: String,
}

/// Whether a transparency-log entry is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransparencyLogRule {
    Required,
    Optional,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

/// What exit status an attestation must record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitCodeRule {
    /// 0, learnt by provenant from the kernel or the Kubernetes API.
    ObservedZero,
    /// 0, observed or told by the builder (marker file, HTTP, or a statement
    /// that does not say where its exit code came from).
    ClaimedZero,
    /// Anything, unknown included (never a malformed one).
    Any,
}

impl ExitCodeRule {
    fn as_str(self) -> &'static str {
        match self {
            ExitCodeRule::ObservedZero => "observed-zero",
            ExitCodeRule::ClaimedZero => "claimed-zero",
            ExitCodeRule::Any => "any",
        }
    }
}

/// Whether inputs the build changed (`provenant.materialChange`
/// byproducts) are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputChangesRule {
    Reject,
    Allow,
}

/// Whether subjects read from the builder's own files
/// (`provenant.origin: claimed`) are acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimedSubjectsRule {
    /// Any claim.
    Accept,
    /// Only claims provenant checked (`provenant.claimCheck` `registry` or
    /// `allowed-repository`; `oci-layout` is the builder agreeing with
    /// itself, not a check).
    Checked,
    /// No claim at all.
    Refuse,
}

impl ClaimedSubjectsRule {
    fn as_str(self) -> &'static str {
        match self {
            ClaimedSubjectsRule::Accept => "accept",
            ClaimedSubjectsRule::Checked => "checked",
            ClaimedSubjectsRule::Refuse => "refuse",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("policy {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("policy {path}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("policy {path}: keys: {source}")]
    Key { path: PathBuf, source: KeyError },
    #[error("policy {path}: trustedRoot: {source}")]
    TrustedRoot {
        path: PathBuf,
        source: super::sigstore::SigstoreError,
    },
}

/// One broken rule: where, what the policy wants, what the attestation has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, got {}",
            self.field, self.expected, self.actual
        )
    }
}

struct CompiledMaterial {
    rule: MaterialRule,
    name: Option<Glob>,
    uri: Option<Glob>,
    digest: Option<(String, String)>,
}

pub struct Policy {
    pub path: PathBuf,
    pub keys: Vec<VerifyingKey>,
    pub threshold: usize,
    /// Certificate identities trusted (keyless), checked against
    /// `trusted_root`.
    pub identities: Vec<super::sigstore::Identity>,
    pub trusted_root: Option<super::sigstore::TrustedRoot>,
    pub require_tlog: bool,
    predicate_types: Vec<String>,
    builder_ids: Vec<Glob>,
    subjects: Vec<Glob>,
    materials: Vec<CompiledMaterial>,
    max_age: Option<(String, time::Duration)>,
    pub exit_code: ExitCodeRule,
    pub input_changes: InputChangesRule,
    pub claimed_subjects: ClaimedSubjectsRule,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("path", &self.path)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// `90s`, `30m`, `24h`, `7d`: a decimal count (at most 18 digits) and a
/// unit; `None` for anything else or beyond [`MAX_AGE_DAYS`].
pub fn parse_duration(s: &str) -> Option<time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    if n.is_empty() || n.len() > 18 {
        return None;
    }
    let n: i64 = n.parse().ok()?;
    let secs = n.checked_mul(match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    })?;
    (secs <= MAX_AGE_DAYS * 86_400).then(|| time::Duration::seconds(secs))
}

/// How deep `text` nests, conservatively: flow brackets outside quotes and
/// comments, and the number of distinct indentation levels open at once.
/// The YAML parser is run only on files below [`MAX_DEPTH`], because it
/// takes time quadratic in the depth (100k levels took 50 s).
fn yaml_depth(text: &str) -> usize {
    let mut max = 0usize;
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start_matches([' ', '-', '\t']);
        if flow == 0 && !trimmed.is_empty() && !trimmed.starts_with('#') {
            // Block nesting: `- ` items count as a level too.
            let indent = line.len() - trimmed.len();
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            max = max.max(indents.len());
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in line.chars() {
            match (quote, c) {
                (None, '#') if prev == ' ' || prev == '\t' => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q && prev != '\\' => quote = None,
                (None, '[' | '{') => {
                    flow += 1;
                    max = max.max(flow + indents.len());
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    max
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let read_err = |source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_POLICY_BYTES + 1),
            &mut bytes,
        )
        .map_err(read_err)?;
        Self::parse(path, bytes)
    }

    /// The policy in `bytes`, as if read from `path` (key paths are
    /// relative to its directory).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Policy, PolicyError> {
        let invalid = |field: &str, reason: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        };
        let syntax = |message: String| PolicyError::Syntax {
            path: path.to_path_buf(),
            message,
        };
        if bytes.len() as u64 > MAX_POLICY_BYTES {
            return Err(syntax(format!(
                "larger than {MAX_POLICY_BYTES} bytes (the policy size cap)"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            syntax(format!(
                "not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        if yaml_depth(&text) > MAX_DEPTH {
            return Err(syntax(format!(
                "nested deeper than {MAX_DEPTH} levels (the policy depth cap)"
            )));
        }
        let f: PolicyFile = serde_yaml_ng::from_str(&text)
            .map_err(|e| syntax(e.to_string().replace(['\n', '\r'], " ")))?;
        if f.version != 1 {
            return Err(invalid(
                "version",
                format!("{} is not supported (expected 1)", f.version),
            ));
        }
        if f.keys.is_empty() && f.identities.is_empty() {
            return Err(invalid(
                "keys",
                "at least one trusted key (keys) or certificate identity (identities) is required"
                    .into(),
            ));
        }
        if f.keys.len() > MAX_KEYS {
            return Err(invalid("keys", format!("more than {MAX_KEYS} keys")));
        }
        if f.identities.len() > MAX_IDENTITIES {
            return Err(invalid(
                "identities",
                format!("more than {MAX_IDENTITIES} identities"),
            ));
        }
        if f.threshold == 0 || f.threshold > f.keys.len().max(1) {
            return Err(invalid(
                "threshold",
                format!(
                    "{} is not between 1 and the number of keys ({})",
                    f.threshold,
                    f.keys.len()
                ),
            ));
        }
        for (field, n) in [
            ("predicateTypes", f.predicate_types.len()),
            ("builderIds", f.builder_ids.len()),
            ("subjects", f.subjects.len()),
            ("materials", f.materials.len()),
        ] {
            if n > MAX_ENTRIES {
                return Err(invalid(field, format!("more than {MAX_ENTRIES} entries")));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut keys = Vec::new();
        for (i, k) in f.keys.iter().enumerate() {
            let p = base.join(&k.path);
            let key = VerifyingKey::load(&p).map_err(|source| PolicyError::Key {
                path: path.to_path_buf(),
                source,
            })?;
            if let Some(id) = &k.id {
                if &key.id != id {
                    return Err(invalid(
                        &format!("keys[{i}].id"),
                        format!("{} has key id {}, not {id:?}", p.display(), key.id),
                    ));
                }
            }
            if keys.iter().any(|k: &VerifyingKey| k.id == key.id) {
                // A key listed twice would let one signer count twice
                // towards the threshold.
                return Err(invalid(
                    &format!("keys[{i}]"),
                    format!("{} is listed twice (key id {})", p.display(), key.id),
                ));
            }
            keys.push(key);
        }
        let require_tlog = f.transparency_log == Some(TransparencyLogRule::Required);
        let trusted_root = match &f.trusted_root {
            Some(p) => Some(super::sigstore::TrustedRoot::load(&base.join(p)).map_err(
                |source| PolicyError::TrustedRoot {
                    path: path.to_path_buf(),
                    source,
                },
            )?),
            None if !f.identities.is_empty() => {
                return Err(invalid(
                    "trustedRoot",
                    "identities need a trustedRoot (the Fulcio CAs and logs to check them against)"
                        .into(),
                ))
            }
            None if require_tlog => return Err(invalid(
                "trustedRoot",
                "transparencyLog: required needs a trustedRoot (the logs to check entries against)"
                    .into(),
            )),
            None => None,
        };
        let mut identities = Vec::new();
        for (i, id) in f.identities.iter().enumerate() {
            for (field, v) in [("issuer", &id.issuer), ("subject", &id.subject)] {
                if v.is_empty() || v.len() > MAX_PATTERN {
                    return Err(invalid(
                        &format!("identities[{i}].{field}"),
                        format!("empty or longer than {MAX_PATTERN} bytes"),
                    ));
                }
            }
            let g = Glob::new(&id.subject).map_err(|e: GlobError| {
                invalid(
                    &format!("identities[{i}].subject"),
                    format!("bad pattern {:?}: {e}", id.subject),
                )
            })?;
            identities.push(super::sigstore::Identity {
                subject: super::sigstore::Pattern::Glob(Box::new(g)),
                issuer: super::sigstore::Pattern::Exact(id.issuer.clone()),
            });
        }
        let predicate_types = if f.predicate_types.is_empty() {
            vec![SLSA_PROVENANCE_V1.to_string()]
        } else {
            f.predicate_types
        };
        let glob = |field: String, p: &str, uri: bool| -> Result<Glob, PolicyError> {
            let g = Glob::new(p)
                .map_err(|e: GlobError| invalid(&field, format!("bad pattern {p:?}: {e}")))?;
            if uri {
                uri_pattern_problem(p).map_or(Ok(()), |why| {
                    Err(invalid(
                        &field,
                        format!("pattern {p:?} can never match: {why}"),
                    ))
                })?;
            }
            Ok(g)
        };
        let builder_ids = f
            .builder_ids
            .iter()
            .enumerate()
            .map(|(i, p)| glob(format!("builderIds[{i}]"), p, true))
            .collect::<Result<_, _>>()?;
        let subjects = f
            .subjects
            .iter()
            .enumerate()
            .map(|(i, p)| glob(format!("subjects[{i}]"), p, false))
            .collect::<Result<_, _>>()?;
        let mut materials = Vec::new();
        for (i, m) in f.materials.into_iter().enumerate() {
            if m.name.is_none() && m.uri.is_none() && m.digest.is_none() {
                return Err(invalid(
                    &format!("materials[{i}]"),
                    "give at least one of name, uri, digest".into(),
                ));
            }
            let digest = match &m.digest {
                Some(d) => match d.split_once(':') {
                    Some((alg, hex)) if !alg.is_empty() && !hex.is_empty() => {
                        Some((alg.to_string(), hex.to_string()))
                    }
                    _ => {
                        return Err(invalid(
                            &format!("materials[{i}].digest"),
                            format!("{d:?} is not ALG:HEX"),
                        ))
                    }
                },
                None => None,
            };
            let name = m
                .name
                .as_deref()
                .map(|p| glob(format!("materials[{i}].name"), p, false))
                .transpose()?;
            let uri = m
                .uri
                .as_deref()
                .map(|p| glob(format!("materials[{i}].uri"), p, true))
                .transpose()?;
            materials.push(CompiledMaterial {
                rule: m,
                name,
                uri,
                digest,
            });
        }
        let max_age = match f.max_age {
            Some(s) => Some((
                s.clone(),
                parse_duration(&s).ok_or_else(|| {
                    invalid(
                        "maxAge",
                        format!(
                            "{s:?} is not a duration like 90s, 30m, 24h, 7d (at most {MAX_AGE_DAYS}d)"
                        ),
                    )
                })?,
            )),
            None => None,
        };
        let exit_code = match (f.allow_failed, f.exit_code) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "allowFailed",
                    "give exitCode or its old spelling allowFailed, not both".into(),
                ))
            }
            (Some(true), None) => ExitCodeRule::Any,
            (Some(false), None) | (None, None) => ExitCodeRule::ClaimedZero,
            (None, Some(r)) => r,
        };
        Ok(Policy {
            path: path.to_path_buf(),
            keys,
            threshold: f.threshold,
            identities,
            trusted_root,
            require_tlog,
            predicate_types,
            builder_ids,
            subjects,
            materials,
            max_age,
            exit_code,
            input_changes: f.input_changes.unwrap_or(InputChangesRule::Reject),
            claimed_subjects: f.claimed_subjects.unwrap_or(ClaimedSubjectsRule::Checked),
        })
    }

    /// What this policy trusts to sign.
    pub fn trust(&self) -> super::Trust<'_> {
        super::Trust {
            keys: &self.keys,
            threshold: self.threshold,
            sigstore: self
                .trusted_root
                .as_ref()
                .map(|root| super::sigstore::Requirements {
                    root,
                    identities: &self.identities,
                    require_tlog: self.require_tlog,
                }),
        }
    }

    /// Every rule the verified attestation breaks (empty: accepted).
    pub fn check(&self, v: &Verified, now: OffsetDateTime) -> Vec<Violation> {
        let mut out = Vec::new();
        let st = &v.statement;
        if !self.predicate_types.contains(&st.predicate_type) {
            out.push(Violation {
                field: "predicateType".into(),
                expected: format!("one of {:?}", self.predicate_types),
                actual: format!("{:?}", st.predicate_type),
            });
            return out;
        }
        self.check_subjects(v, &mut out);
        // The rules below read a SLSA v1 provenance predicate; a statement
        // of another accepted type is not subject to them.
        if st.predicate_type != SLSA_PROVENANCE_V1 {
            return out;
        }
        let prov = match st.provenance() {
            Ok(p) => p,
            Err(e) => {
                out.push(Violation {
                    field: "predicate".into(),
                    expected: "a SLSA v1 provenance".into(),
                    actual: e.to_string(),
                });
                return out;
            }
        };
        self.check_builder(&prov, &mut out);
        self.check_materials(&prov, &mut out);
        self.check_age(&prov, now, &mut out);
        self.check_exit(&prov, &mut out);
        self.check_input_changes(&prov, &mut out);
        out
    }

    fn check_subjects(&self, v: &Verified, out: &mut Vec<Violation>) {
        let mut bad = 0usize;
        let mut claims = Vec::new();
        for (i, s) in v.statement.subject.iter().enumerate() {
            let origin = facts::subject_origin(s);
            if let SubjectOrigin::Claimed { .. } = &origin {
                let ok = match self.claimed_subjects {
                    ClaimedSubjectsRule::Accept => true,
                    ClaimedSubjectsRule::Checked => origin.is_checked_claim(),
                    ClaimedSubjectsRule::Refuse => false,
                };
                if !ok {
                    claims.push((i, origin));
                }
            }
            if self.subjects.is_empty() {
                continue;
            }
            let name = s.name.as_deref().unwrap_or("");
            let encoded = s
                .annotations
                .get(ANN_PATH_ENCODING)
                .is_some_and(|v| v == "percent");
            let problem = facts::name_problem(name, encoded);
            if problem.is_none() && self.subjects.iter().any(|g| g.is_match(name)) {
                continue;
            }
            bad += 1;
            if bad <= SHOWN {
                out.push(Violation {
                    field: format!("subject[{i}].name"),
                    expected: format!(
                        "a name matching one of {:?}",
                        self.subjects.iter().map(Glob::as_str).collect::<Vec<_>>()
                    ),
                    actual: match problem {
                        Some(p) => format!("{name:?} ({p})"),
                        None => format!("{name:?}"),
                    },
                });
            }
        }
        if bad > SHOWN {
            out.push(Violation {
                field: "subject[*].name".into(),
                expected: "every subject name to match".into(),
                actual: format!("{} more subjects that do not", bad - SHOWN),
            });
        }
        for (i, origin) in claims.iter().take(SHOWN) {
            let SubjectOrigin::Claimed {
                check,
                source,
                file,
            } = origin
            else {
                continue;
            };
            out.push(Violation {
                field: format!("subject[{i}].annotations[provenant.origin]"),
                expected: match self.claimed_subjects {
                    ClaimedSubjectsRule::Refuse => {
                        "a subject provenant hashed itself (policy claimedSubjects: refuse)".into()
                    }
                    r => format!(
                        "a claimed subject checked by provenant, claimCheck registry or allowed-repository (policy claimedSubjects: {})",
                        r.as_str()
                    ),
                },
                actual: format!(
                    "a claim read from {:?} ({:?}), claimCheck {:?}",
                    file.as_deref().unwrap_or("?"),
                    source.as_deref().unwrap_or("?"),
                    check.as_deref().unwrap_or("none")
                ),
            });
        }
        if claims.len() > SHOWN {
            out.push(Violation {
                field: "subject[*].annotations[provenant.origin]".into(),
                expected: format!(
                    "claims accepted by claimedSubjects: {}",
                    self.claimed_subjects.as_str()
                ),
                actual: format!("{} more claimed subjects", claims.len() - SHOWN),
            });
        }
    }

    fn check_builder(&self, prov: &Provenance, out: &mut Vec<Violation>) {
        if self.builder_ids.is_empty() {
            return;
        }
        let id = &prov.run_details.builder.id;
        let (ok, why) = match facts::normalize_uri(id) {
            Ok(n) => (self.builder_ids.iter().any(|g| g.is_match(&n)), None),
            Err(why) => (false, Some(why)),
        };
        if !ok {
            out.push(Violation {
                field: "predicate.runDetails.builder.id".into(),
                expected: format!(
                    "one of {:?}",
                    self.builder_ids
                        .iter()
                        .map(Glob::as_str)
                        .collect::<Vec<_>>()
                ),
                actual: match why {
                    Some(w) => format!("{id:?} ({w})"),
                    None => format!("{id:?}"),
                },
            });
        }
    }

    fn check_materials(&self, prov: &Provenance, out: &mut Vec<Violation>) {
        let deps = &prov.build_definition.resolved_dependencies;
        for (i, m) in self.materials.iter().enumerate() {
            let hit = deps.iter().any(|d| {
                m.name.as_ref().is_none_or(|g| {
                    d.name.as_deref().is_some_and(|n| {
                        let enc = d
                            .annotations
                            .get(ANN_PATH_ENCODING)
                            .is_some_and(|v| v == "percent");
                        facts::name_problem(n, enc).is_none() && g.is_match(n)
                    })
                }) && m.uri.as_ref().is_none_or(|g| {
                    d.uri
                        .as_deref()
                        .and_then(|u| facts::normalize_uri(u).ok())
                        .is_some_and(|u| g.is_match(&u))
                }) && m.digest.as_ref().is_none_or(|(alg, hex)| {
                    d.digest
                        .get(alg)
                        .is_some_and(|h| h.eq_ignore_ascii_case(hex))
                })
            });
            if !hit {
                let mut want = Vec::new();
                if let Some(n) = &m.rule.name {
                    want.push(format!("name matching {n:?}"));
                }
                if let Some(u) = &m.rule.uri {
                    want.push(format!("uri matching {u:?}"));
                }
                if let Some(d) = &m.rule.digest {
                    want.push(format!("digest {d:?}"));
                }
                out.push(Violation {
                    field: format!(
                        "predicate.buildDefinition.resolvedDependencies (policy materials[{i}])"
                    ),
                    expected: format!("an entry with {}", want.join(" and ")),
                    actual: format!("no such entry among {}", deps.len()),
                });
            }
        }
    }

    fn check_age(&self, prov: &Provenance, now: OffsetDateTime, out: &mut Vec<Violation>) {
        let Some((text, max)) = &self.max_age else {
            return;
        };
        let finished = prov
            .run_details
            .metadata
            .as_ref()
            .and_then(|m| m.finished_on.as_deref().or(m.started_on.as_deref()));
        match finished.and_then(parse_rfc3339) {
            // Both dates lie within years 0..=9999, so the differences fit.
            Some(t) if now - t <= *max && t - now <= time::Duration::minutes(5) => {}
            Some(t) => out.push(Violation {
                field: "predicate.runDetails.metadata.finishedOn".into(),
                expected: format!("within {text} of now"),
                actual: format!(
                    "{:?} ({} old)",
                    finished.unwrap_or_default(),
                    human(now - t)
                ),
            }),
            None => out.push(Violation {
                field: "predicate.runDetails.metadata.finishedOn".into(),
                expected: format!("a time within {text} of now"),
                actual: "none".into(),
            }),
        }
    }

    fn check_exit(&self, prov: &Provenance, out: &mut Vec<Violation>) {
        let status = facts::exit_status(prov);
        let ok = match (&status, self.exit_code) {
            (ExitStatus::Malformed(_), _) => false,
            (_, ExitCodeRule::Any) => true,
            (
                ExitStatus::Known {
                    code: 0,
                    origin: ExitOrigin::Observed,
                    ..
                },
                _,
            ) => true,
            (ExitStatus::Known { code: 0, .. }, ExitCodeRule::ClaimedZero) => true,
            _ => false,
        };
        if !ok {
            out.push(Violation {
                field: "predicate.runDetails.byproducts[exit-code]".into(),
                expected: match self.exit_code {
                    ExitCodeRule::ObservedZero => {
                        "exit code 0 observed by provenant (policy exitCode: observed-zero)".into()
                    }
                    ExitCodeRule::ClaimedZero => {
                        "exit code 0, observed or claimed (policy exitCode: claimed-zero)".into()
                    }
                    ExitCodeRule::Any => format!(
                        "one well-formed exit status (policy exitCode: {})",
                        self.exit_code.as_str()
                    ),
                },
                actual: status.to_string(),
            });
        }
    }

    fn check_input_changes(&self, prov: &Provenance, out: &mut Vec<Violation>) {
        if self.input_changes == InputChangesRule::Allow {
            return;
        }
        let changes = facts::input_changes(prov);
        if changes.is_empty() {
            return;
        }
        let shown: Vec<String> = changes
            .iter()
            .take(3)
            .map(|c| format!("{:?} {:?}", c.name, c.change))
            .collect();
        out.push(Violation {
            field: "predicate.runDetails.byproducts[provenant.materialChange]".into(),
            expected: "no input changed during the build (policy inputChanges: reject)".into(),
            actual: format!(
                "{} changed: {}{}",
                changes.len(),
                shown.join(", "),
                if changes.len() > 3 { ", ..." } else { "" }
            ),
        });
    }
}

/// A URI pattern whose fixed scheme or host is not in the normalized form
/// URIs are matched in can never match.
fn uri_pattern_problem(p: &str) -> Option<&'static str> {
    let (scheme, rest) = p.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    (scheme.bytes().any(|b| b.is_ascii_uppercase()) || host.bytes().any(|b| b.is_ascii_uppercase()))
        .then_some("URIs are matched with a lowercase scheme and host")
}

fn human(d: time::Duration) -> String {
    let s = d.whole_seconds();
    if s.abs() >= 86400 {
        format!("{}d", s / 86400)
    } else if s.abs() >= 3600 {
        format!("{}h", s / 3600)
    } else if s.abs() >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

crate::exit_class!(PolicyError => crate::error::exit::CANNOT_CHECK);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(time::Duration::hours(24)));
        assert_eq!(parse_duration("7d"), Some(time::Duration::days(7)));
        assert_eq!(parse_duration("90s"), Some(time::Duration::seconds(90)));
        assert_eq!(parse_duration("1w"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("99999999999999999d"), None);
        assert_eq!(parse_duration("9223372036854775807s"), None);
        assert_eq!(parse_duration("36525d"), Some(time::Duration::days(36_525)));
        assert_eq!(parse_duration("36526d"), None);
    }

    #[test]
    fn depth() {
        assert_eq!(yaml_depth("a: 1\nb:\n  - x\n"), 2);
        assert!(yaml_depth(&"[".repeat(100)) > MAX_DEPTH);
        assert_eq!(yaml_depth("a: \"[[[[\" # [[[[\n"), 1);
        let deep: String = (0..40).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert!(yaml_depth(&deep) > MAX_DEPTH);
    }
}
