//! Images the builder reported itself: **claims**, not observations.
//!
//! * kpack / Cloud Native Buildpacks lifecycle: the exporter's `report.toml`
//!   (`[image] tags = [...]`, `digest = "sha256:..."`).
//! * Tekton: results `IMAGE_URL` and `IMAGE_DIGEST` (also `<PREFIX>_IMAGE_URL`
//!   and `<PREFIX>_IMAGE_DIGEST`), `IMAGES` (`url@sha256:...` separated by
//!   commas or newlines), and `*ARTIFACT_OUTPUTS` (`{"uri": ..., "digest":
//!   "sha256:..."}`), as Tekton Chains reads them.
//! * An OCI image layout directory (`oci-layout` + `index.json`): each
//!   manifest in the index whose blob is in the layout with that digest.
//!
//! Every file is read through [`crate::untrusted`] (no links, regular files
//! only, size caps), parsed in linear time with at most [`MAX_CLAIMS`]
//! images, and no error quotes what the file contains. A file that cannot
//! be read or parsed is a failed claim: it is logged and never signed.
//! What survives is marked as a claim in the statement (see
//! [`Claim::to_subject`] and docs/trust.md).
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::ResourceDescriptor;
use crate::untrusted::{self, UntrustedError, MANIFEST_CAP, REPORT_CAP};

/// Images one build may claim, across all its reports.
pub const MAX_CLAIMS: usize = 10_000;
/// Manifests read from one OCI layout: each costs reading and hashing a
/// blob of up to [`MANIFEST_CAP`], and a multi-platform build's index
/// lists a handful.
pub const MAX_LAYOUT_MANIFESTS: usize = 64;

pub const ANN_ORIGIN: &str = "provenant.origin";
pub const ANN_CLAIM_SOURCE: &str = "provenant.claimSource";
pub const ANN_CLAIM_FILE: &str = "provenant.claimFile";
pub const ANN_CLAIM_CHECK: &str = "provenant.claimCheck";

#[derive(Debug, thiserror::Error)]
pub enum ReportedError {
    #[error(transparent)]
    Untrusted(#[from] UntrustedError),
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct ReportSources {
    pub kpack_report: Option<PathBuf>,
    pub tekton_results: Option<PathBuf>,
    pub oci_layouts: Vec<PathBuf>,
    /// `--oci-layout-image`: the image the layouts hold, as the operator
    /// names it. Layouts written by kaniko or crane carry no
    /// `org.opencontainers.image.ref.name`, and one the builder wrote says
    /// what the builder chose; the operator's name replaces both.
    pub oci_layout_image: Option<String>,
}

impl ReportSources {
    pub fn is_empty(&self) -> bool {
        self.kpack_report.is_none() && self.tekton_results.is_none() && self.oci_layouts.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimSource {
    KpackReport,
    TektonResults,
    OciLayout,
}

impl ClaimSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimSource::KpackReport => "kpack-report",
            ClaimSource::TektonResults => "tekton-results",
            ClaimSource::OciLayout => "oci-layout",
        }
    }
}

/// What the sidecar checked of a claim before signing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimCheck {
    /// Resolved by digest in a repository the operator allowed.
    Registry,
    /// In a repository the operator allowed, but the registry could not be
    /// asked when the attestation was signed (down, slow, refusing us): the
    /// digest is unconfirmed. Publishing later resolves it again.
    AllowedRepository,
    /// The manifest is a blob of the layout that hashes to the digest.
    OciLayout,
    /// Recorded as claimed.
    None,
}

impl ClaimCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimCheck::Registry => "registry",
            ClaimCheck::AllowedRepository => "allowed-repository",
            ClaimCheck::OciLayout => "oci-layout",
            ClaimCheck::None => "none",
        }
    }
}

/// One image the builder says it built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The image reference as reported, without tag or digest: the subject
    /// name (`registry.example.com/team/app`).
    pub name: String,
    /// Lowercase hex of the manifest's sha256.
    pub sha256: String,
    pub source: ClaimSource,
    /// The file that said so.
    pub file: PathBuf,
    pub check: ClaimCheck,
}

impl Claim {
    /// `name@sha256:HEX`, the reference a registry check resolves.
    pub fn pinned(&self) -> String {
        format!("{}@sha256:{}", self.name, self.sha256)
    }

    /// The statement subject, marked as a claim (docs/trust.md).
    pub fn to_subject(&self) -> ResourceDescriptor {
        let mut d = super::DigestSet::new();
        d.insert(super::ALG_SHA256, self.sha256.clone());
        ResourceDescriptor {
            name: Some(self.name.clone()),
            digest: d,
            ..Default::default()
        }
        .annotate(ANN_ORIGIN, "claimed")
        .annotate(ANN_CLAIM_SOURCE, self.source.as_str())
        .annotate(ANN_CLAIM_FILE, self.file.display().to_string())
        .annotate(ANN_CLAIM_CHECK, self.check.as_str())
    }
}

/// A claim that was not signed, and why (for the log).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub file: String,
    pub reason: String,
}

/// Everything the reports say: claims, and what was refused.
#[derive(Debug, Default)]
pub struct Reported {
    pub claims: Vec<Claim>,
    pub rejected: Vec<Rejected>,
    seen: HashSet<(String, String)>,
}

impl Reported {
    /// One report file's claims, all or none of them: a file that is
    /// malformed anywhere vouches for nothing.
    fn take(&mut self, r: Result<Vec<Claim>, ReportedError>) {
        let claims = match r {
            Ok(c) => c,
            Err(e) => return self.reject(e),
        };
        for c in claims {
            if self.seen.contains(&(c.name.clone(), c.sha256.clone())) {
                continue;
            }
            if self.claims.len() >= MAX_CLAIMS {
                return self.reject(invalid(
                    &c.file,
                    format!("more than {MAX_CLAIMS} images claimed; the rest is not read"),
                ));
            }
            self.seen.insert((c.name.clone(), c.sha256.clone()));
            self.claims.push(c);
        }
    }

    fn reject(&mut self, e: ReportedError) {
        let (file, reason) = match &e {
            ReportedError::Invalid { path, reason } => (path.clone(), reason.clone()),
            other => (String::new(), other.to_string()),
        };
        self.rejected.push(Rejected { file, reason });
    }
}

/// `sha256:<64 lowercase hex>` -> the hex.
pub fn parse_sha256_digest(s: &str) -> Option<String> {
    let hex = s.trim().strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| hex.to_string())
}

/// The repository part of an image reference: `reg/repo:tag` -> `reg/repo`,
/// `reg/repo@sha256:..` -> `reg/repo`, keeping a registry port.
pub fn image_repository(reference: &str) -> &str {
    let r = reference.trim();
    let r = r.split('@').next().unwrap_or(r);
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => &r[..i],
        _ => r,
    }
}

/// The longest image reference considered (docker's own limit on a
/// repository name is 255).
const MAX_REFERENCE: usize = 512;

/// A claimed reference, checked for shape: an image reference (no
/// whitespace, control characters or quotes) that parses as one. The
/// message never quotes the text.
pub(crate) fn claimed_name(file: &Path, reference: &str) -> Result<String, ReportedError> {
    let r = reference.trim();
    if r.is_empty() || r.len() > MAX_REFERENCE {
        return Err(invalid(
            file,
            format!("an image reference is empty or longer than {MAX_REFERENCE} bytes"),
        ));
    }
    if r.chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err(invalid(
            file,
            "an image reference holds whitespace, control or non-ASCII characters",
        ));
    }
    let name = image_repository(r);
    name.parse::<oci_spec::distribution::Reference>()
        .map_err(|_| invalid(file, "a claimed image is not a valid image reference"))?;
    Ok(name.to_string())
}

/// An OCI layout's `org.opencontainers.image.ref.name`: by the image spec a
/// tag-like name within the layout (`v1.0`, sometimes a whole reference),
/// kept as written once it is known to be printable ASCII of sane length.
fn layout_ref_name(file: &Path, name: &str) -> Result<String, ReportedError> {
    if name.is_empty() || name.len() > MAX_REFERENCE || !name.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(invalid(
            file,
            "org.opencontainers.image.ref.name is empty, too long, or not printable ASCII",
        ));
    }
    Ok(name.to_string())
}

fn invalid(path: &Path, reason: impl Into<String>) -> ReportedError {
    ReportedError::Invalid {
        path: crate::escape::path(path).into_owned(),
        reason: reason.into(),
    }
}

/// serde's message can quote the input ("invalid type: string \"...\""):
/// only its category and position are kept.
fn json_error(path: &Path, what: &str, e: &serde_json::Error) -> ReportedError {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not valid JSON",
        Category::Data => "JSON of the wrong shape",
        Category::Eof => "truncated JSON",
    };
    invalid(
        path,
        format!("{what}: {kind} (line {}, column {})", e.line(), e.column()),
    )
}

#[derive(Deserialize)]
struct KpackReport {
    image: Option<KpackImage>,
}

#[derive(Deserialize)]
struct KpackImage {
    #[serde(default)]
    tags: Vec<String>,
    digest: Option<String>,
}

pub fn from_kpack_report(path: &Path) -> Result<Vec<Claim>, ReportedError> {
    let Some(bytes) = untrusted::read_file(path, REPORT_CAP)? else {
        return Ok(Vec::new());
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid(path, "not UTF-8 text"))?;
    // No depth check of our own: toml 0.9's parser stops at its recursion
    // limit on nested arrays, inline tables and dotted keys alike (the
    // tests below feed it each), and REPORT_CAP bounds the width.
    let report: KpackReport = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(" (at byte {})", s.start))
            .unwrap_or_default();
        invalid(path, format!("not a lifecycle report.toml{at}"))
    })?;
    let Some(image) = report.image else {
        return Ok(Vec::new());
    };
    let Some(digest) = image.digest else {
        return Ok(Vec::new());
    };
    let hex = parse_sha256_digest(&digest)
        .ok_or_else(|| invalid(path, "image.digest is not sha256:<64 lowercase hex>"))?;
    let tag = image
        .tags
        .first()
        .ok_or_else(|| invalid(path, "image.tags is empty"))?;
    Ok(vec![Claim {
        name: claimed_name(path, tag)?,
        sha256: hex,
        source: ClaimSource::KpackReport,
        file: path.to_path_buf(),
        check: ClaimCheck::None,
    }])
}

#[derive(Deserialize)]
struct ArtifactOutput {
    uri: String,
    digest: String,
}

/// Tekton's rule for result names; anything else in the directory is not
/// a result and is not read.
fn is_result_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 256
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String, ReportedError> {
    String::from_utf8(bytes).map_err(|_| invalid(path, "not UTF-8 text"))
}

/// The claims of each result file, file by file: one bad result does not
/// take the others down, and its reason is kept for the log.
pub fn from_tekton_results(
    dir_path: &Path,
) -> Result<Vec<Result<Vec<Claim>, ReportedError>>, ReportedError> {
    let Some(dir) = untrusted::open_dir(dir_path)? else {
        return Ok(Vec::new());
    };
    let names = dir.names(untrusted::DIR_ENTRIES_CAP)?;
    let claim = |name: String, sha256: String, file: &Path| Claim {
        name,
        sha256,
        source: ClaimSource::TektonResults,
        file: file.to_path_buf(),
        check: ClaimCheck::None,
    };
    let one = |name: &str| -> Result<Vec<Claim>, ReportedError> {
        let path = dir_path.join(name);
        if let Some(prefix) = name.strip_suffix("IMAGE_URL") {
            let digest_name = format!("{prefix}IMAGE_DIGEST");
            let digest_path = dir_path.join(&digest_name);
            let (Some(url), Some(digest)) = (
                dir.read_file(name, REPORT_CAP)?,
                dir.read_file(&digest_name, REPORT_CAP)?,
            ) else {
                return Ok(Vec::new());
            };
            let url = utf8_text(&path, url)?;
            let digest = utf8_text(&digest_path, digest)?;
            let hex = parse_sha256_digest(&digest)
                .ok_or_else(|| invalid(&digest_path, "not sha256:<64 lowercase hex>"))?;
            Ok(vec![claim(claimed_name(&path, &url)?, hex, &path)])
        } else if name == "IMAGES" {
            let Some(text) = dir.read_file(name, REPORT_CAP)? else {
                return Ok(Vec::new());
            };
            let text = utf8_text(&path, text)?;
            let mut out = Vec::new();
            // No count cap here: REPORT_CAP bounds the file to under 900
            // entries, and Reported::take caps the claims of all files.
            for (i, item) in text
                .split([',', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .enumerate()
            {
                let bad = || invalid(&path, format!("entry {} is not url@sha256:<64 hex>", i + 1));
                let (url, digest) = item.split_once('@').ok_or_else(bad)?;
                let hex = parse_sha256_digest(digest).ok_or_else(bad)?;
                out.push(claim(claimed_name(&path, url)?, hex, &path));
            }
            Ok(out)
        } else if name.ends_with("ARTIFACT_OUTPUTS") {
            let Some(bytes) = dir.read_file(name, REPORT_CAP)? else {
                return Ok(Vec::new());
            };
            let a: ArtifactOutput = serde_json::from_slice(&bytes)
                .map_err(|e| json_error(&path, "not {\"uri\", \"digest\"}", &e))?;
            let hex = parse_sha256_digest(&a.digest)
                .ok_or_else(|| invalid(&path, "digest is not sha256:<64 lowercase hex>"))?;
            Ok(vec![claim(claimed_name(&path, &a.uri)?, hex, &path)])
        } else {
            Ok(Vec::new())
        }
    };
    Ok(names
        .iter()
        .filter(|n| is_result_name(n))
        .map(|n| one(n))
        .collect())
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Each manifest of the layout's index whose blob is in the layout and
/// hashes to its digest: that the sidecar checks itself, here. One result
/// per manifest.
pub fn from_oci_layout(
    dir_path: &Path,
    image: Option<&str>,
) -> Result<Vec<Result<Vec<Claim>, ReportedError>>, ReportedError> {
    let Some(dir) = untrusted::open_dir(dir_path)? else {
        return Ok(Vec::new());
    };
    if !dir.has("oci-layout") {
        return Ok(Vec::new());
    }
    let index_path = dir_path.join("index.json");
    let bytes = dir
        .read_file("index.json", MANIFEST_CAP)?
        .ok_or_else(|| invalid(dir_path, "oci-layout without index.json"))?;
    let index: OciIndex = serde_json::from_slice(&bytes)
        .map_err(|e| json_error(&index_path, "not an OCI index", &e))?;
    if index.manifests.len() > MAX_LAYOUT_MANIFESTS {
        return Err(invalid(
            &index_path,
            format!("more than {MAX_LAYOUT_MANIFESTS} manifests"),
        ));
    }
    let one = |i: usize, m: &OciDescriptor| -> Result<Vec<Claim>, ReportedError> {
        let hex = parse_sha256_digest(&m.digest).ok_or_else(|| {
            invalid(
                &index_path,
                format!("manifests[{i}].digest is not sha256:<64 lowercase hex>"),
            )
        })?;
        let blob_rel = format!("blobs/sha256/{hex}");
        let blob = dir.read_file(&blob_rel, MANIFEST_CAP)?.ok_or_else(|| {
            invalid(
                &index_path,
                format!("manifests[{i}]: its blob is not in the layout"),
            )
        })?;
        if hex::encode(Sha256::digest(&blob)) != hex {
            return Err(invalid(
                &dir_path.join(&blob_rel),
                format!("manifests[{i}]: the blob does not hash to its digest"),
            ));
        }
        let name = match (
            image,
            m.annotations.get("org.opencontainers.image.ref.name"),
        ) {
            (Some(image), _) => image.to_string(),
            (None, Some(n)) => layout_ref_name(&index_path, n)?,
            (None, None) => dir_path.display().to_string(),
        };
        Ok(vec![Claim {
            name,
            sha256: hex,
            source: ClaimSource::OciLayout,
            file: index_path.clone(),
            check: ClaimCheck::OciLayout,
        }])
    };
    // The same blob under the same name is claimed once; under two names
    // (`reg/a:v1`, `reg/b:v1`) it is two claims. At most 64 either way.
    let mut seen = HashSet::new();
    Ok(index
        .manifests
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            let name = image.or(m
                .annotations
                .get("org.opencontainers.image.ref.name")
                .map(String::as_str));
            seen.insert((m.digest.as_str(), name))
        })
        .map(|(i, m)| one(i, m))
        .collect())
}

/// The repositories an operator allows the builder to name as what it
/// built (`--allow-image-repo`): globs on `REGISTRY/REPOSITORY`, where `*`
/// does not cross `/` and `**` does (`registry.example.com/team/*`).
#[derive(Debug, Clone, Default)]
pub struct AllowedRepos {
    set: Option<globset::GlobSet>,
}

impl AllowedRepos {
    pub fn new(patterns: &[String]) -> Result<AllowedRepos, String> {
        if patterns.is_empty() {
            return Ok(AllowedRepos::default());
        }
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim();
            if p.is_empty() || p.len() > MAX_REFERENCE {
                return Err(format!(
                    "--allow-image-repo: a pattern is empty or longer than {MAX_REFERENCE} bytes"
                ));
            }
            b.add(
                globset::GlobBuilder::new(&normalize_pattern(p))
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("--allow-image-repo {p:?}: {e}"))?,
            );
        }
        Ok(AllowedRepos {
            set: Some(b.build().map_err(|e| format!("--allow-image-repo: {e}"))?),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_none()
    }

    /// Whether the image `name` (as a claim names it) lies in an allowed
    /// repository. Only the name as registries resolve it is matched
    /// (`app` is `docker.io/library/app`, `index.docker.io/x` is
    /// `docker.io/x`): matching the builder's spelling as well would let
    /// `evil.example/team/app` pass a pattern written `team/*` for Docker
    /// Hub, or a spelling the registry reads differently pass at all.
    pub fn allows(&self, name: &str) -> bool {
        let Some(set) = &self.set else {
            return false;
        };
        let Ok(r) = name.parse::<oci_spec::distribution::Reference>() else {
            return false;
        };
        set.is_match(format!("{}/{}", r.registry(), r.repository()))
    }
}

/// An `--allow-image-repo` pattern in the form claims are matched in:
/// Docker Hub's short forms spelled out as `docker.io/...` the way
/// `docker pull` reads them. A first component with a glob character is
/// left alone: `*/team/*` means any registry.
fn normalize_pattern(p: &str) -> String {
    // A whole image reference allows its repository, so a Task can pass
    // its `image` param as written (`reg/app:v1`).
    let p = image_repository(p);
    if p == "**" {
        return p.to_string();
    }
    // `app` and `*` are official images, as `docker pull app` reads it.
    let Some((first, rest)) = p.split_once('/') else {
        return format!("docker.io/library/{p}");
    };
    let first = if first == "index.docker.io" {
        "docker.io"
    } else {
        first
    };
    if first == "docker.io" && !rest.contains('/') {
        return format!("docker.io/library/{rest}");
    }
    // A registry (a dot, a port, localhost), or any registry by a glob:
    // kept; otherwise a Docker Hub user's repository.
    if first.contains(['.', ':', '*', '?', '[', '{']) || first == "localhost" {
        return format!("{first}/{rest}");
    }
    format!("docker.io/{p}")
}

/// Everything reported, in a fixed order (kpack, Tekton, OCI layouts),
/// without duplicates; unreadable or malformed reports are rejected
/// claims, not errors.
pub fn reported_claims(src: &ReportSources) -> Reported {
    let mut out = Reported::default();
    if let Some(p) = &src.kpack_report {
        out.take(from_kpack_report(p));
    }
    let many = src
        .tekton_results
        .iter()
        .map(|p| from_tekton_results(p))
        .chain(
            src.oci_layouts
                .iter()
                .map(|p| from_oci_layout(p, src.oci_layout_image.as_deref())),
        );
    for files in many {
        match files {
            Ok(files) => files.into_iter().for_each(|r| out.take(r)),
            Err(e) => out.reject(e),
        }
    }
    out
}

crate::exit_class!(ReportedError => crate::error::exit::CANNOT_CHECK);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_of_references() {
        assert_eq!(image_repository("reg:5000/org/app:v1"), "reg:5000/org/app");
        assert_eq!(image_repository("reg:5000/org/app"), "reg:5000/org/app");
        assert_eq!(
            image_repository("index.docker.io/org/app@sha256:ab"),
            "index.docker.io/org/app"
        );
        assert_eq!(parse_sha256_digest("sha256:ABCD"), None);
        assert_eq!(
            parse_sha256_digest(&format!("sha256:{}\n", "a".repeat(64))),
            Some("a".repeat(64))
        );
    }

    #[test]
    fn deep_or_wide_toml_is_refused_without_exhausting_the_stack() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("report.toml");
        let n = 10_000;
        let deep = [
            format!("a = {}{}", "[".repeat(n), "]".repeat(n)),
            format!("a = {}1{}", "{b=".repeat(n), "}".repeat(n)),
            format!("[{}]\n", vec!["a"; n].join(".")),
            format!("{} = 1\n", vec!["a"; n].join(".")),
            format!("# \"\n[image]\ntags = [{}]", "[".repeat(n)),
        ];
        for text in deep {
            std::fs::write(&p, &text).unwrap();
            let e = from_kpack_report(&p).unwrap_err().to_string();
            assert!(e.contains("not a lifecycle report.toml"), "{e}");
        }
        // Past the cap, nothing is parsed at all.
        std::fs::write(&p, "x = [".to_string() + &"{},".repeat(40_000) + "]").unwrap();
        let e = from_kpack_report(&p).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn a_layout_claims_each_manifest_once_and_at_most_max_layout_manifests() {
        let d = tempfile::tempdir().unwrap();
        let blob = br#"{"schemaVersion":2}"#;
        let hex = hex::encode(Sha256::digest(blob));
        std::fs::create_dir_all(d.path().join("blobs/sha256")).unwrap();
        std::fs::write(d.path().join("blobs/sha256").join(&hex), blob).unwrap();
        std::fs::write(
            d.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let m = format!(
            r#"{{"digest":"sha256:{hex}","annotations":{{"org.opencontainers.image.ref.name":"reg.example/app:v1"}}}}"#
        );
        let index = |n: usize| format!(r#"{{"manifests":[{}]}}"#, vec![m.as_str(); n].join(","));
        std::fs::write(d.path().join("index.json"), index(MAX_LAYOUT_MANIFESTS)).unwrap();
        let got = from_oci_layout(d.path(), None).unwrap();
        assert_eq!(got.len(), 1, "one claim for one distinct digest");
        let c = &got[0].as_ref().unwrap()[0];
        assert_eq!(
            (c.name.as_str(), c.sha256.as_str()),
            ("reg.example/app:v1", hex.as_str())
        );
        let named = from_oci_layout(d.path(), Some("reg.example/team/app")).unwrap();
        assert_eq!(named[0].as_ref().unwrap()[0].name, "reg.example/team/app");
        std::fs::write(d.path().join("index.json"), index(MAX_LAYOUT_MANIFESTS + 1)).unwrap();
        let e = from_oci_layout(d.path(), None).unwrap_err().to_string();
        assert!(
            e.contains(&format!("more than {MAX_LAYOUT_MANIFESTS} manifests")),
            "{e}"
        );
    }

    #[test]
    fn allow_list_matches_the_name_registries_resolve_not_the_claims_spelling() {
        let a = |ps: &[&str]| {
            AllowedRepos::new(&ps.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        let hub = a(&["team/*"]);
        assert!(hub.allows("team/app"));
        assert!(hub.allows("docker.io/team/app"));
        assert!(hub.allows("index.docker.io/team/app"));
        // The builder's own spelling matched the raw pattern before.
        assert!(!hub.allows("evil.example/team/app"));
        let lib = a(&["busybox"]);
        assert!(lib.allows("busybox"));
        assert!(lib.allows("docker.io/library/busybox"));
        assert!(!lib.allows("evil.example/busybox"));
        let reg = a(&["registry.example.com/team/*", "localhost:5000/x"]);
        assert!(reg.allows("registry.example.com/team/app"));
        assert!(!reg.allows("registry.example.com/team/app/sub"));
        assert!(!reg.allows("registry.example.com.evil/team/app"));
        assert!(reg.allows("localhost:5000/x"));
        let any = a(&["*/team/*"]);
        assert!(any.allows("registry.example.com/team/app"));
        assert!(
            any.allows("team/app"),
            "docker.io/team/app is in any registry's team/"
        );
        assert!(
            !any.allows("busybox"),
            "docker.io/library/busybox is not in team/"
        );
        assert!(a(&["index.docker.io/team/*"]).allows("team/app"));
        for official in [
            "docker.io/busybox",
            "index.docker.io/busybox",
            "*",
            "docker.io/*",
        ] {
            assert!(a(&[official]).allows("busybox"), "{official}");
            assert!(!a(&[official]).allows("team/app"), "{official}");
        }
        assert!(a(&["**"]).allows("team/app") && a(&["**"]).allows("reg.example/a/b"));
        assert!(!hub.allows("not a reference"));
        let tagged = a(&[
            "registry.example.com/team/app:v1",
            "reg.example/x@sha256:00",
        ]);
        assert!(tagged.allows("registry.example.com/team/app"));
        assert!(tagged.allows("reg.example/x"));
        assert!(!tagged.allows("registry.example.com/team/other"));
    }

    #[test]
    fn parse_errors_do_not_quote_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("report.toml");
        std::fs::write(&p, "[image]\ndigest = \"SECRET-LOOKING-TEXT\"\ntags = 5\n").unwrap();
        let e = from_kpack_report(&p).unwrap_err().to_string();
        assert!(!e.contains("SECRET-LOOKING-TEXT"), "{e}");
        std::fs::write(
            &p,
            "[image]\ntags = [\"SECRET LOOKING\"]\ndigest = \"sha256:0\"\n",
        )
        .unwrap();
        let e = from_kpack_report(&p).unwrap_err().to_string();
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn claimed_digests_are_sha256_in_lowercase_hex_of_64_digits() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            parse_sha256_digest(&format!("sha256:{hex}")),
            Some(hex.clone())
        );
        assert_eq!(
            parse_sha256_digest(&format!(" sha256:{hex}\n")),
            Some(hex.clone())
        );
        for bad in [
            hex.clone(),
            format!("sha512:{hex}"),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{hex}0"),
            format!("sha256:{}", hex.to_uppercase()),
            format!("sha256:{}g", &hex[1..]),
            "sha256:".to_string(),
        ] {
            assert_eq!(parse_sha256_digest(&bad), None, "{bad}");
        }
    }

    #[test]
    fn claimed_names_are_capped_then_parsed() {
        let f = Path::new("report.toml");
        let err = |r: &str| claimed_name(f, r).unwrap_err().to_string();
        let size = "report.toml: an image reference is empty or longer than 512 bytes";
        let shape = "report.toml: a claimed image is not a valid image reference";
        assert_eq!(
            claimed_name(f, " reg.example/team/app:v1\n").unwrap(),
            "reg.example/team/app"
        );
        assert_eq!(err(""), size);
        assert_eq!(err(" \t "), size);
        // At the cap the reference reaches the parser (which refuses a
        // repository this long); one byte over it does not.
        let at_cap = format!("reg.example/{}", "a".repeat(500));
        assert_eq!(at_cap.len(), 512);
        assert_eq!(err(&at_cap), shape);
        assert_eq!(err(&format!("{at_cap}a")), size);
        assert_eq!(err("reg.example/UPPER"), shape);
        let chars =
            "report.toml: an image reference holds whitespace, control or non-ASCII characters";
        for r in [
            "reg.example/a b",
            "reg.example/a\x01b",
            "reg.example/a\x7fb",
            "reg.example/\u{e9}",
        ] {
            assert_eq!(err(r), chars, "{r:?}");
        }
    }

    #[test]
    fn layout_ref_names_are_printable_ascii_up_to_the_cap() {
        let f = Path::new("index.json");
        let refused = "index.json: org.opencontainers.image.ref.name is empty, too long, or not printable ASCII";
        let at_cap = "v".repeat(512);
        assert_eq!(layout_ref_name(f, "v1.0").unwrap(), "v1.0");
        assert_eq!(layout_ref_name(f, &at_cap).unwrap(), at_cap);
        for bad in [
            String::new(),
            format!("{at_cap}v"),
            "v 1".into(),
            "v\u{e9}".into(),
            "v\n".into(),
        ] {
            assert_eq!(
                layout_ref_name(f, &bad).unwrap_err().to_string(),
                refused,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tekton_result_names_follow_tekton_s_rule() {
        let longest = "a".repeat(256);
        for name in ["IMAGE_URL", "x.y-z_1", longest.as_str()] {
            assert!(is_result_name(name), "{name}");
        }
        let too_long = "a".repeat(257);
        for name in ["", too_long.as_str(), "a b", "a/b", "\u{e9}", "..\n"] {
            assert!(!is_result_name(name), "{name:?}");
        }
    }

    /// The three forms a Tekton task reports images in: IMAGE_URL with
    /// IMAGE_DIGEST (with any prefix), IMAGES (comma- or newline-separated
    /// `url@digest`), and `*ARTIFACT_OUTPUTS` (`{"uri", "digest"}`); other
    /// results are not claims.
    #[test]
    fn tekton_results_claim_in_each_of_their_forms() {
        let d = tempfile::tempdir().unwrap();
        let [a, b, c, e] = ["a", "b", "c", "e"].map(|x| x.repeat(64));
        let files = [
            ("IMAGE_URL", "reg.example/one:v1\n".to_string()),
            ("IMAGE_DIGEST", format!("sha256:{a}\n")),
            (
                "IMAGES",
                format!("reg.example/two@sha256:{b}, reg.example/three:v3@sha256:{c}\n\n"),
            ),
            (
                "app-ARTIFACT_OUTPUTS",
                format!(r#"{{"uri":"reg.example/four","digest":"sha256:{e}"}}"#),
            ),
            ("OTHER", format!("reg.example/five@sha256:{a}")),
        ];
        for (name, content) in &files {
            std::fs::write(d.path().join(name), content).unwrap();
        }
        let mut got: Vec<(String, String)> = from_tekton_results(d.path())
            .unwrap()
            .into_iter()
            .flat_map(|r| r.unwrap())
            .map(|c| (c.name, c.sha256))
            .collect();
        got.sort();
        let want = [
            ("reg.example/four", &e),
            ("reg.example/one", &a),
            ("reg.example/three", &c),
            ("reg.example/two", &b),
        ]
        .map(|(n, h)| (n.to_string(), h.clone()));
        assert_eq!(got, want);
        std::fs::write(
            d.path().join("IMAGES"),
            format!("reg.example/two@sha256:{b},nodigest"),
        )
        .unwrap();
        let refused: Vec<String> = from_tekton_results(d.path())
            .unwrap()
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        assert_eq!(
            refused,
            [format!(
                "{}: entry 2 is not url@sha256:<64 hex>",
                d.path().join("IMAGES").display()
            )]
        );
    }
}
