//! Verification policy: what a stage accepts from the stage before it.
//! A YAML file (see `examples/policy.yaml`); unknown fields are errors, so a
//! misspelt rule can never silently accept everything.
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use time::OffsetDateTime;

use super::Verified;
use crate::provenance::{exit_code_of, parse_rfc3339, SLSA_PROVENANCE_V1};
use crate::sign::{KeyError, VerifyingKey};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    version: u32,
    keys: Vec<PolicyKey>,
    #[serde(default = "one")]
    threshold: usize,
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
    #[serde(default)]
    allow_failed: bool,
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

#[derive(Debug)]
pub struct Policy {
    pub path: PathBuf,
    pub keys: Vec<VerifyingKey>,
    pub threshold: usize,
    predicate_types: Vec<String>,
    builder_ids: Vec<(String, GlobMatcher)>,
    subjects: Vec<(String, GlobMatcher)>,
    materials: Vec<(MaterialRule, Option<GlobMatcher>, Option<GlobMatcher>)>,
    max_age: Option<(String, time::Duration)>,
    allow_failed: bool,
}

fn glob(path: &Path, field: &str, pattern: &str) -> Result<GlobMatcher, PolicyError> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| PolicyError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason: format!("bad pattern {pattern:?}: {e}"),
        })
}

/// `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Option<time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    Some(match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => return None,
    })
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let f: PolicyFile = serde_yaml_ng::from_str(&text).map_err(|e| PolicyError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().replace('\n', " "),
        })?;
        let invalid = |field: &str, reason: String| PolicyError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        };
        if f.version != 1 {
            return Err(invalid(
                "version",
                format!("{} is not supported (expected 1)", f.version),
            ));
        }
        if f.keys.is_empty() {
            return Err(invalid(
                "keys",
                "at least one trusted key is required".into(),
            ));
        }
        if f.threshold == 0 || f.threshold > f.keys.len() {
            return Err(invalid(
                "threshold",
                format!(
                    "{} is not between 1 and the number of keys ({})",
                    f.threshold,
                    f.keys.len()
                ),
            ));
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
                        format!("{} has key id {}, not {id}", p.display(), key.id),
                    ));
                }
            }
            keys.push(key);
        }
        let predicate_types = if f.predicate_types.is_empty() {
            vec![SLSA_PROVENANCE_V1.to_string()]
        } else {
            f.predicate_types
        };
        let builder_ids = f
            .builder_ids
            .iter()
            .enumerate()
            .map(|(i, p)| Ok((p.clone(), glob(path, &format!("builderIds[{i}]"), p)?)))
            .collect::<Result<_, PolicyError>>()?;
        let subjects = f
            .subjects
            .iter()
            .enumerate()
            .map(|(i, p)| Ok((p.clone(), glob(path, &format!("subjects[{i}]"), p)?)))
            .collect::<Result<_, PolicyError>>()?;
        let mut materials = Vec::new();
        for (i, m) in f.materials.into_iter().enumerate() {
            if m.name.is_none() && m.uri.is_none() && m.digest.is_none() {
                return Err(invalid(
                    &format!("materials[{i}]"),
                    "give at least one of name, uri, digest".into(),
                ));
            }
            if let Some(d) = &m.digest {
                if !d.contains(':') {
                    return Err(invalid(
                        &format!("materials[{i}].digest"),
                        format!("{d:?} is not ALG:HEX"),
                    ));
                }
            }
            let name = m
                .name
                .as_deref()
                .map(|p| glob(path, &format!("materials[{i}].name"), p))
                .transpose()?;
            let uri = m
                .uri
                .as_deref()
                .map(|p| glob(path, &format!("materials[{i}].uri"), p))
                .transpose()?;
            materials.push((m, name, uri));
        }
        let max_age = match f.max_age {
            Some(s) => Some((
                s.clone(),
                parse_duration(&s).ok_or_else(|| {
                    invalid(
                        "maxAge",
                        format!("{s:?} is not a duration like 90s, 30m, 24h, 7d"),
                    )
                })?,
            )),
            None => None,
        };
        Ok(Policy {
            path: path.to_path_buf(),
            keys,
            threshold: f.threshold,
            predicate_types,
            builder_ids,
            subjects,
            materials,
            max_age,
            allow_failed: f.allow_failed,
        })
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
        if !self.builder_ids.is_empty()
            && !self
                .builder_ids
                .iter()
                .any(|(_, g)| g.is_match(&prov.run_details.builder.id))
        {
            out.push(Violation {
                field: "predicate.runDetails.builder.id".into(),
                expected: format!(
                    "one of {:?}",
                    self.builder_ids.iter().map(|(p, _)| p).collect::<Vec<_>>()
                ),
                actual: format!("{:?}", prov.run_details.builder.id),
            });
        }
        if !self.subjects.is_empty() {
            for (i, s) in st.subject.iter().enumerate() {
                let name = s.name.as_deref().unwrap_or("");
                if !self.subjects.iter().any(|(_, g)| g.is_match(name)) {
                    out.push(Violation {
                        field: format!("subject[{i}].name"),
                        expected: format!(
                            "a name matching one of {:?}",
                            self.subjects.iter().map(|(p, _)| p).collect::<Vec<_>>()
                        ),
                        actual: format!("{name:?}"),
                    });
                }
            }
        }
        let deps = &prov.build_definition.resolved_dependencies;
        for (i, (rule, name, uri)) in self.materials.iter().enumerate() {
            let hit = deps.iter().any(|d| {
                name.as_ref()
                    .is_none_or(|g| d.name.as_deref().is_some_and(|n| g.is_match(n)))
                    && uri
                        .as_ref()
                        .is_none_or(|g| d.uri.as_deref().is_some_and(|u| g.is_match(u)))
                    && rule.digest.as_deref().is_none_or(|want| {
                        want.split_once(':').is_some_and(|(alg, hex)| {
                            d.digest
                                .get(alg)
                                .is_some_and(|h| h.eq_ignore_ascii_case(hex))
                        })
                    })
            });
            if !hit {
                let mut want = Vec::new();
                if let Some(n) = &rule.name {
                    want.push(format!("name matching {n:?}"));
                }
                if let Some(u) = &rule.uri {
                    want.push(format!("uri matching {u:?}"));
                }
                if let Some(d) = &rule.digest {
                    want.push(format!("digest {d}"));
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
        if let Some((text, max)) = &self.max_age {
            let finished = prov
                .run_details
                .metadata
                .as_ref()
                .and_then(|m| m.finished_on.as_deref().or(m.started_on.as_deref()));
            match finished.and_then(parse_rfc3339) {
                Some(t) if now - t <= *max && t - now <= time::Duration::minutes(5) => {}
                Some(t) => out.push(Violation {
                    field: "predicate.runDetails.metadata.finishedOn".into(),
                    expected: format!("within {text} of now"),
                    actual: format!("{} ({} old)", finished.unwrap_or_default(), human(now - t)),
                }),
                None => out.push(Violation {
                    field: "predicate.runDetails.metadata.finishedOn".into(),
                    expected: format!("a time within {text} of now"),
                    actual: "none".into(),
                }),
            }
        }
        if !self.allow_failed {
            if let Some(code) = exit_code_of(&prov).filter(|c| *c != 0) {
                out.push(Violation {
                    field: "predicate.runDetails.byproducts[exit-code]".into(),
                    expected: "0 (policy allowFailed: false)".into(),
                    actual: code.to_string(),
                });
            }
        }
        out
    }
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
    }
}
