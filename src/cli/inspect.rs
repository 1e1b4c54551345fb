use std::fmt::Write as _;
use std::path::PathBuf;

use super::CliResult;
use clap::Args;

use crate::provenance::{
    exit_code_of, parse_rfc3339, Statement, ALG_DIR_HASH, ALG_GIT_TREE, ALG_SHA256,
};
use crate::sign::Envelope;
use crate::verify::{exit, VerifyError};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Attestation file (DSSE envelope JSON).
    pub file: PathBuf,
    /// List every subject and material instead of the first few.
    #[arg(long)]
    pub all: bool,
}

const PREVIEW: usize = 10;

pub fn inspect(a: InspectArgs) -> CliResult {
    let label = a.file.display().to_string();
    let bytes = std::fs::read(&a.file).map_err(|source| VerifyError::Read {
        path: label.clone(),
        source,
    })?;
    let env_err = |source| VerifyError::Envelope {
        path: label.clone(),
        source,
    };
    let envelope = Envelope::parse(bytes.trim_ascii()).map_err(env_err)?;
    let payload = envelope.payload_bytes().map_err(env_err)?;
    let statement = Statement::parse(&payload).map_err(|source| VerifyError::Statement {
        path: label.clone(),
        source,
    })?;
    print!("{}", summary(&label, &envelope, &statement, a.all)?);
    Ok(exit::OK)
}

fn summary(label: &str, env: &Envelope, st: &Statement, all: bool) -> CliResult<String> {
    let mut o = String::new();
    writeln!(
        o,
        "{label}  (NOT VERIFIED: use `provenant verify` to check signatures)"
    )?;
    writeln!(o, "payloadType:   {}", env.payload_type)?;
    for s in &env.signatures {
        let keyid = if s.keyid.is_empty() {
            "(none)"
        } else {
            &s.keyid
        };
        writeln!(o, "signature:     keyid {keyid}")?;
    }
    writeln!(o, "predicateType: {}", st.predicate_type)?;
    writeln!(o, "subjects:      {}", st.subject.len())?;
    let limit = if all { usize::MAX } else { PREVIEW };
    for s in st.subject.iter().take(limit) {
        let d = s
            .digest
            .iter()
            .next()
            .map(|(a, d)| format!("{a}:{d}"))
            .unwrap_or_default();
        writeln!(o, "  {d}  {}", s.name.as_deref().unwrap_or(""))?;
    }
    if st.subject.len() > limit {
        writeln!(o, "  ... {} more (--all)", st.subject.len() - limit)?;
    }
    let Ok(p) = st.provenance() else {
        writeln!(o, "predicate is not a SLSA v1 provenance; no build details")?;
        return Ok(o);
    };
    let b = &p.run_details.builder;
    let version = b
        .version
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        o,
        "builder:       {}{}",
        b.id,
        if version.is_empty() {
            String::new()
        } else {
            format!(" ({version})")
        }
    )?;
    writeln!(o, "buildType:     {}", p.build_definition.build_type)?;
    if let Some(cmd) = p.build_definition.external_parameters.get("command") {
        writeln!(o, "command:       {cmd}")?;
    }
    let deps = &p.build_definition.resolved_dependencies;
    // Each descriptor counted once, by the first of these it carries (a
    // statement from elsewhere may carry several).
    let (mut files, mut trees, mut dirs, mut other) = (0, 0, 0, 0);
    for d in deps {
        if d.digest.contains_key(ALG_SHA256) {
            files += 1;
        } else if d.digest.contains_key(ALG_GIT_TREE) {
            trees += 1;
        } else if d.digest.contains_key(ALG_DIR_HASH) {
            dirs += 1;
        } else {
            other += 1;
        }
    }
    writeln!(
        o,
        "materials:     {} ({files} sha256, {trees} gitTree, {dirs} dirHash, {other} other)",
        deps.len(),
    )?;
    if let Some(m) = &p.run_details.metadata {
        if let Some(id) = &m.invocation_id {
            writeln!(o, "invocation:    {id}")?;
        }
        let started = m.started_on.as_deref().unwrap_or("?");
        let finished = m.finished_on.as_deref().unwrap_or("?");
        let took = m
            .started_on
            .as_deref()
            .and_then(parse_rfc3339)
            .zip(m.finished_on.as_deref().and_then(parse_rfc3339))
            .map(|(s, f)| format!(" ({:.3}s)", (f - s).as_seconds_f64()))
            .unwrap_or_default();
        writeln!(
            o,
            "started:       {started}\nfinished:      {finished}{took}"
        )?;
    }
    if let Some(code) = exit_code_of(&p) {
        writeln!(o, "exit code:     {code}")?;
    }
    Ok(o)
}
