//! Subjects the builder reported itself, preferred over product files:
//! when a build pushes an image, the image digest is what consumers verify.
//!
//! * kpack / Cloud Native Buildpacks lifecycle: the exporter's `report.toml`
//!   (`[image] tags = [...]`, `digest = "sha256:..."`).
//! * Tekton: results `IMAGE_URL` and `IMAGE_DIGEST` (also `<PREFIX>_IMAGE_URL`
//!   and `<PREFIX>_IMAGE_DIGEST`), `IMAGES` (`url@sha256:...` separated by
//!   commas or newlines), and `*ARTIFACT_OUTPUTS` (`{"uri": ..., "digest":
//!   "sha256:..."}`), as Tekton Chains reads them.
//! * An OCI image layout directory (`oci-layout` + `index.json`): each
//!   manifest in the index.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ResourceDescriptor;

#[derive(Debug, thiserror::Error)]
pub enum ReportedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct ReportSources {
    pub kpack_report: Option<PathBuf>,
    pub tekton_results: Option<PathBuf>,
    pub oci_layouts: Vec<PathBuf>,
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

fn image_subject(reference: &str, hex: String) -> ResourceDescriptor {
    let mut d = super::DigestSet::new();
    d.insert(super::ALG_SHA256, hex);
    ResourceDescriptor {
        name: Some(image_repository(reference).to_string()),
        digest: d,
        ..Default::default()
    }
}

fn read(path: &Path) -> Result<Option<String>, ReportedError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReportedError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> ReportedError {
    ReportedError::Invalid {
        path: path.display().to_string(),
        reason: reason.into(),
    }
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

pub fn from_kpack_report(path: &Path) -> Result<Vec<ResourceDescriptor>, ReportedError> {
    let Some(text) = read(path)? else {
        return Ok(Vec::new());
    };
    let report: KpackReport = toml::from_str(&text).map_err(|e| {
        invalid(
            path,
            format!("not a lifecycle report.toml: {}", e.message()),
        )
    })?;
    let Some(image) = report.image else {
        return Ok(Vec::new());
    };
    let Some(digest) = image.digest else {
        return Ok(Vec::new());
    };
    let hex = parse_sha256_digest(&digest).ok_or_else(|| {
        invalid(
            path,
            format!("image.digest '{digest}' is not sha256:<64 hex>"),
        )
    })?;
    let name = image
        .tags
        .first()
        .cloned()
        .ok_or_else(|| invalid(path, "image.tags is empty"))?;
    Ok(vec![image_subject(&name, hex)])
}

#[derive(Deserialize)]
struct ArtifactOutput {
    uri: String,
    digest: String,
}

pub fn from_tekton_results(dir: &Path) -> Result<Vec<ResourceDescriptor>, ReportedError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ReportedError::Read {
                path: dir.display().to_string(),
                source,
            })
        }
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in &names {
        let path = dir.join(name);
        if let Some(prefix) = name.strip_suffix("IMAGE_URL") {
            let digest_path = dir.join(format!("{prefix}IMAGE_DIGEST"));
            let (Some(url), Some(digest)) = (read(&path)?, read(&digest_path)?) else {
                continue;
            };
            let hex = parse_sha256_digest(&digest).ok_or_else(|| {
                invalid(
                    &digest_path,
                    format!("'{}' is not sha256:<64 hex>", digest.trim()),
                )
            })?;
            out.push(image_subject(&url, hex));
        } else if name == "IMAGES" {
            let Some(text) = read(&path)? else { continue };
            for item in text
                .split([',', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let (url, digest) = item
                    .split_once('@')
                    .ok_or_else(|| invalid(&path, format!("'{item}' is not url@sha256:...")))?;
                let hex = parse_sha256_digest(digest).ok_or_else(|| {
                    invalid(&path, format!("'{item}' is not url@sha256:<64 hex>"))
                })?;
                out.push(image_subject(url, hex));
            }
        } else if name.ends_with("ARTIFACT_OUTPUTS") {
            let Some(text) = read(&path)? else { continue };
            let a: ArtifactOutput = serde_json::from_str(&text)
                .map_err(|e| invalid(&path, format!("not {{\"uri\", \"digest\"}}: {e}")))?;
            let hex = parse_sha256_digest(&a.digest).ok_or_else(|| {
                invalid(
                    &path,
                    format!("digest '{}' is not sha256:<64 hex>", a.digest),
                )
            })?;
            out.push(image_subject(&a.uri, hex));
        }
    }
    Ok(out)
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

pub fn from_oci_layout(dir: &Path) -> Result<Vec<ResourceDescriptor>, ReportedError> {
    if read(&dir.join("oci-layout"))?.is_none() {
        return Ok(Vec::new());
    }
    let index_path = dir.join("index.json");
    let text = read(&index_path)?.ok_or_else(|| invalid(dir, "oci-layout without index.json"))?;
    let index: OciIndex =
        serde_json::from_str(&text).map_err(|e| invalid(&index_path, e.to_string()))?;
    let mut out = Vec::new();
    for m in index.manifests {
        let hex = parse_sha256_digest(&m.digest).ok_or_else(|| {
            invalid(
                &index_path,
                format!("manifest digest '{}' is not sha256:<64 hex>", m.digest),
            )
        })?;
        let name = m
            .annotations
            .get("org.opencontainers.image.ref.name")
            .cloned()
            .unwrap_or_else(|| dir.display().to_string());
        out.push(ResourceDescriptor {
            name: Some(name),
            digest: super::DigestSet::from([(super::ALG_SHA256.to_string(), hex)]),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Everything reported, in a fixed order (kpack, Tekton, OCI layouts),
/// without duplicates.
pub fn reported_subjects(src: &ReportSources) -> Result<Vec<ResourceDescriptor>, ReportedError> {
    let mut out: Vec<ResourceDescriptor> = Vec::new();
    let mut add = |v: Vec<ResourceDescriptor>| {
        for d in v {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    };
    if let Some(p) = &src.kpack_report {
        add(from_kpack_report(p)?);
    }
    if let Some(p) = &src.tekton_results {
        add(from_tekton_results(p)?);
    }
    for p in &src.oci_layouts {
        add(from_oci_layout(p)?);
    }
    Ok(out)
}

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
}
