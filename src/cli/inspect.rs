use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use crate::escape::{self, field};
use crate::provenance::{
    parse_rfc3339, ResourceDescriptor, Statement, ALG_DIR_HASH, ALG_GIT_TREE, ALG_SHA256,
    SLSA_PROVENANCE_V1,
};
use crate::verify::facts::{self, SubjectOrigin};
use crate::verify::input::{self, Found};
use crate::verify::{exit, VerifyError};

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Attestation file: a DSSE envelope, a Sigstore bundle, a log line or
    /// a whole pod log (every attestation in it is shown); `-` for
    /// standard input.
    pub file: PathBuf,
    /// List every subject and material instead of the first few.
    #[arg(long)]
    pub all: bool,
}

const PREVIEW: usize = 10;

pub fn inspect(a: InspectArgs) -> super::CliResult {
    let (label, bytes) = crate::verify::read_input(&a.file)?;
    let read = input::read(&bytes).map_err(|source| VerifyError::Input {
        path: label.clone(),
        source,
    })?;
    drop(bytes);
    for (line, why) in &read.skipped {
        eprintln!("warning: {label}:{line}: {why}");
    }
    let mut out = String::new();
    for (i, f) in read.found.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let at = match f.line {
            Some(n) => format!("{}:{n}", field(&label)),
            None => field(&label).into_owned(),
        };
        out.push_str(&summary(&at, f, a.all)?);
    }
    print!("{out}");
    Ok(exit::OK)
}

fn digest_text(d: &ResourceDescriptor) -> String {
    d.digest
        .iter()
        .map(|(a, v)| format!("{a}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn summary(at: &str, f: &Found, all: bool) -> super::CliResult<String> {
    let env = &f.envelope;
    let mut o = String::new();
    writeln!(
        o,
        "{at}  ({}; NOT VERIFIED: signatures not checked, use `provenant verify`)",
        f.form.as_str()
    )?;
    writeln!(o, "payloadType:   {}", field(&env.payload_type))?;
    for s in &env.signatures {
        let keyid = if s.keyid.is_empty() {
            "(none)"
        } else {
            &s.keyid
        };
        writeln!(o, "signature:     keyid {} (not checked)", field(keyid))?;
    }
    let payload = env
        .payload_bytes()
        .map_err(|source| VerifyError::Envelope {
            path: at.to_string(),
            source,
        })?;
    let st = Statement::parse(&payload).map_err(|source| VerifyError::Statement {
        path: at.to_string(),
        source,
    })?;
    writeln!(o, "predicateType: {}", field(&st.predicate_type))?;
    let claimed = st
        .subject
        .iter()
        .filter(|s| facts::subject_origin(s) != SubjectOrigin::Observed)
        .count();
    writeln!(
        o,
        "subjects:      {}{}",
        st.subject.len(),
        if claimed > 0 {
            format!(" ({claimed} claimed by the builder)")
        } else {
            String::new()
        }
    )?;
    let limit = if all { usize::MAX } else { PREVIEW };
    for s in st.subject.iter().take(limit) {
        let line =
            escape::checksum_line(&digest_text(s), s.name.as_deref().unwrap_or("").as_bytes());
        writeln!(o, "  {line}")?;
        if let SubjectOrigin::Claimed {
            check,
            source,
            file,
        } = facts::subject_origin(s)
        {
            writeln!(
                o,
                "      claimed: read from {} ({}), check: {}",
                field(file.as_deref().unwrap_or("?")),
                field(source.as_deref().unwrap_or("?")),
                field(check.as_deref().unwrap_or("none"))
            )?;
        }
    }
    if st.subject.len() > limit {
        writeln!(o, "  ... {} more (--all)", st.subject.len() - limit)?;
    }
    if st.predicate_type != SLSA_PROVENANCE_V1 {
        writeln!(o, "predicate is not a SLSA v1 provenance; no build details")?;
        return Ok(o);
    }
    let p = match st.provenance() {
        Ok(p) => p,
        Err(e) => {
            writeln!(o, "predicate:     not readable as SLSA v1 provenance ({e})")?;
            return Ok(o);
        }
    };
    let b = &p.run_details.builder;
    let version = b
        .version
        .iter()
        .map(|(k, v)| format!("{} {}", field(k), field(v)))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        o,
        "builder:       {}{}",
        field(&b.id),
        if version.is_empty() {
            String::new()
        } else {
            format!(" ({version})")
        }
    )?;
    writeln!(
        o,
        "buildType:     {}",
        field(&p.build_definition.build_type)
    )?;
    if let Some(cmd) = p.build_definition.external_parameters.get("command") {
        writeln!(o, "command:       {}", field(&cmd.to_string()))?;
    }
    let internal = &p.build_definition.internal_parameters;
    if let Some(pod) = internal.get("pod") {
        let s = |k: &str| pod.get(k).and_then(|x| x.as_str()).map(field);
        writeln!(
            o,
            "pod:           {}/{} (uid {})",
            s("namespace").unwrap_or_default(),
            s("name").unwrap_or_default(),
            s("uid").unwrap_or_default()
        )?;
        if let Some(n) = s("node") {
            writeln!(o, "node:          {n}")?;
        }
        if let Some(sa) = s("serviceAccount") {
            writeln!(o, "serviceAccount: {sa}")?;
        }
        if let Some(images) = pod.get("images").and_then(|i| i.as_object()) {
            for (container, image) in images {
                let image = image.as_str().unwrap_or("?");
                let pinned = if image.contains("@sha256:") {
                    ""
                } else {
                    "  (not pinned by digest)"
                };
                writeln!(
                    o,
                    "image:         {} = {}{pinned}",
                    field(container),
                    field(image)
                )?;
            }
        }
    }
    if let Some(c) = internal.get("completion").and_then(|c| c.as_str()) {
        writeln!(o, "completion:    {}", field(c))?;
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
    if all {
        for d in deps {
            let what = if d.digest.is_empty() {
                d.uri.clone().unwrap_or_default()
            } else {
                digest_text(d)
            };
            writeln!(
                o,
                "  {}",
                escape::checksum_line(&what, d.name.as_deref().unwrap_or("").as_bytes())
            )?;
        }
    }
    let changes = facts::input_changes(&p);
    writeln!(o, "changed inputs: {}", changes.len())?;
    for c in changes.iter().take(limit) {
        writeln!(
            o,
            "  {} {}",
            field(&c.change),
            escape::escape_bytes(c.name.as_bytes()).0
        )?;
    }
    if changes.len() > limit {
        writeln!(o, "  ... {} more (--all)", changes.len() - limit)?;
    }
    for d in &p.run_details.byproducts {
        let role = d.annotations.get(facts::ANN_ROLE).and_then(|r| r.as_str());
        match role {
            Some("observed-outputs") => writeln!(
                o,
                "observed outputs: {}  {}",
                field(&digest_text(d)),
                field(d.name.as_deref().unwrap_or(""))
            )?,
            Some("product") => writeln!(
                o,
                "product not a subject: {}  {}",
                field(d.uri.as_deref().unwrap_or("")),
                field(d.name.as_deref().unwrap_or(""))
            )?,
            _ => {}
        }
    }
    if let Some(m) = &p.run_details.metadata {
        if let Some(id) = &m.invocation_id {
            writeln!(o, "invocation:    {}", field(id))?;
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
            "started:       {}\nfinished:      {}{took}",
            field(started),
            field(finished)
        )?;
    }
    writeln!(o, "exit code:     {}", facts::exit_status(&p))?;
    Ok(o)
}
