//! OCI 1.1 referrers: a manifest with `subject` = the image and
//! `artifactType` = the Sigstore bundle media type, one layer holding the
//! bundle (cosign's newer "bundle" layout), empty config, pushed by digest.
//!
//! A registry with the referrers API says so in its answer to that push
//! (`OCI-Subject` header) and indexes it itself; for the others the client
//! keeps the referrers tag schema: tag `sha256-<hex>` holding an OCI index
//! of the referrers, appended to (see `Registry::converge`), as the
//! distribution spec asks of clients.
use std::time::Instant;

use oci_spec::image::{
    Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType,
};
use reqwest::{Method, StatusCode};

use super::client::Op;
use super::cosign::Write;
use super::{
    annotations, canonical_json, digest, sha256_digest, window_left, Deadline, Found, Registry,
    RegistryError, Repo, ResolvedImage, TagRead, APPEND_WINDOW, MAX_ATTESTATION, MAX_FOUND,
    MAX_MANIFEST, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
};
use crate::publish::bundle::{Bundle, BUNDLE_MEDIA_TYPE};

/// Pages of a paginated referrers answer followed at most.
const MAX_PAGES: usize = 20;

/// Our referrer manifest for one image.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub img: ResolvedImage,
    repo: Repo,
    /// Digest of the referrer manifest.
    pub digest: String,
    manifest: Vec<u8>,
    bundle: Vec<u8>,
    /// Pushed now (false: it was there already).
    pub pushed: bool,
    /// The registry has the referrers API.
    pub api: bool,
}

impl Referrer {
    /// The referrer manifest for `bundle`; no network.
    pub fn describe(img: &ResolvedImage, bundle: &Bundle<'_>, predicate_type: &str) -> Referrer {
        let layer = bundle.to_json().into_bytes();
        let config = Descriptor::new(MediaType::EmptyJSON, 2, digest(&sha256_digest(b"{}")));
        debug_assert_eq!(config.media_type().as_ref(), OCI_EMPTY);
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .artifact_type(MediaType::from(BUNDLE_MEDIA_TYPE))
            .config(config)
            .layers(vec![Descriptor::new(
                MediaType::from(BUNDLE_MEDIA_TYPE),
                layer.len() as u64,
                digest(&sha256_digest(&layer)),
            )])
            .subject(img.descriptor.clone())
            .annotations(annotations(&[
                ("dev.sigstore.bundle.content", "dsse-envelope"),
                ("dev.sigstore.bundle.predicateType", predicate_type),
            ]))
            .build()
            .expect("all required fields set");
        let manifest = canonical_json(&manifest);
        Referrer {
            img: img.clone(),
            repo: img.repo(),
            digest: sha256_digest(&manifest),
            manifest,
            bundle: layer,
            pushed: false,
            api: false,
        }
    }

    /// Uploads the bundle and the empty config, then the manifest by digest
    /// unless it is there; learns whether the registry has the referrers
    /// API.
    pub async fn push(
        reg: &Registry,
        img: &ResolvedImage,
        bundle: &Bundle<'_>,
        predicate_type: &str,
        deadline: &Deadline,
    ) -> Result<Referrer, RegistryError> {
        let mut r = Referrer::describe(img, bundle, predicate_type);
        reg.push_blob(&r.repo, &r.bundle, deadline).await?;
        reg.push_blob(&r.repo, b"{}", deadline).await?;
        let what = "checking for the referrer";
        let url = reg
            .client()
            .url(&r.repo, &format!("manifests/{}", r.digest));
        let head = reg
            .client()
            .send(
                &r.repo,
                what,
                Op::Pull,
                Method::HEAD,
                &url,
                &[OCI_MANIFEST],
                None,
                deadline,
                None,
            )
            .await?;
        if head.status.is_success() {
            r.api = api_index(reg, img, deadline).await?.is_some();
        } else if head.status == StatusCode::NOT_FOUND {
            r.repush(reg, deadline).await?;
            r.pushed = true;
        } else {
            return Err(reg
                .client()
                .unexpected(&r.repo, what, &url, head, deadline)
                .await);
        }
        Ok(r)
    }

    /// PUTs the manifest by digest; notes the registry's `OCI-Subject`.
    pub async fn repush(
        &mut self,
        reg: &Registry,
        deadline: &Deadline,
    ) -> Result<(), RegistryError> {
        let headers = reg
            .put_manifest(
                &self.repo,
                &self.digest,
                &self.manifest,
                OCI_MANIFEST,
                deadline,
                None,
            )
            .await?;
        // Distribution spec 1.1: a registry that processed `subject` MUST
        // answer with OCI-Subject; without it the client keeps the tag.
        if headers.contains_key("oci-subject") {
            self.api = true;
        }
        Ok(())
    }

    /// Our entry in the referrers index.
    fn entry(&self) -> Descriptor {
        let mut d = Descriptor::new(
            MediaType::ImageManifest,
            self.manifest.len() as u64,
            digest(&self.digest),
        );
        d.set_artifact_type(Some(MediaType::from(BUNDLE_MEDIA_TYPE)));
        let m: ImageManifest =
            serde_json::from_slice(&self.manifest).expect("our own manifest parses");
        d.set_annotations(m.annotations().clone());
        d
    }

    fn tag_label(&self) -> String {
        format!("{}:{}", self.img.repository(), self.img.referrers_tag())
    }

    pub async fn read_index(
        &self,
        reg: &Registry,
        deadline: &Deadline,
    ) -> Result<TagRead<ImageIndex>, RegistryError> {
        Ok(
            match read_tag(reg, &self.img, &self.repo, deadline).await? {
                TagRead::Present { digest, doc, .. } => {
                    let ours = doc
                        .manifests()
                        .iter()
                        .any(|m| m.digest().to_string() == self.digest);
                    TagRead::Present { digest, doc, ours }
                }
                TagRead::Absent => TagRead::Absent,
                TagRead::Foreign(reason) => TagRead::Foreign(foreign(&self.tag_label(), &reason)),
            },
        )
    }

    /// Writes `existing` (or a new index) with our entry appended, if the
    /// read it is based on is recent enough.
    pub async fn write_index(
        &self,
        reg: &Registry,
        existing: Option<&ImageIndex>,
        read_at: Instant,
        deadline: &Deadline,
    ) -> Result<Write, RegistryError> {
        let mut index = existing.cloned().unwrap_or_else(|| {
            ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::new())
                .build()
                .expect("all required fields set")
        });
        let mut entries = index.manifests().clone();
        entries.push(self.entry());
        index.set_manifests(entries);
        if read_at.elapsed() >= APPEND_WINDOW / 2 {
            return Ok(Write::Moved);
        }
        let Some(cap) = window_left(read_at) else {
            return Ok(Write::Moved);
        };
        reg.put_manifest(
            &self.repo,
            &self.img.referrers_tag(),
            &canonical_json(&index),
            OCI_INDEX,
            deadline,
            Some(cap),
        )
        .await?;
        Ok(Write::Wrote)
    }
}

fn foreign(tag: &str, reason: &str) -> String {
    format!("{tag}: holds something that is not an OCI index of referrers ({reason}); leaving it untouched")
}

/// The referrers tag of `img`: an OCI image index, or foreign.
async fn read_tag(
    reg: &Registry,
    img: &ResolvedImage,
    repo: &Repo,
    deadline: &Deadline,
) -> Result<TagRead<ImageIndex>, RegistryError> {
    let Some((bytes, content_type)) = reg
        .get_manifest(
            repo,
            &img.referrers_tag(),
            "reading the referrers tag",
            deadline,
        )
        .await?
    else {
        return Ok(TagRead::Absent);
    };
    Ok(match classify(&bytes, content_type.as_deref()) {
        Ok(doc) => TagRead::Present {
            digest: sha256_digest(&bytes),
            doc,
            ours: false,
        },
        Err(reason) => TagRead::Foreign(reason),
    })
}

/// An OCI image index (the referrers tag schema holds nothing else).
pub fn classify(bytes: &[u8], content_type: Option<&str>) -> Result<ImageIndex, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let mt = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .or(content_type.map(str::to_string));
    match mt.as_deref() {
        Some(OCI_INDEX) => {}
        None if v.get("manifests").is_some() => {}
        Some(other) => return Err(format!("a {other} document")),
        None => return Err("not an image index".into()),
    }
    let idx: ImageIndex =
        serde_json::from_value(v).map_err(|e| format!("not an image index: {e}"))?;
    if idx.schema_version() != 2 {
        return Err(format!("schema version {}", idx.schema_version()));
    }
    Ok(idx)
}

/// The registry's referrers API answer for `img` (all pages), or `None`
/// when it has no such API.
pub async fn api_index(
    reg: &Registry,
    img: &ResolvedImage,
    deadline: &Deadline,
) -> Result<Option<ImageIndex>, RegistryError> {
    let repo = img.repo();
    let what = "listing referrers";
    let mut url = format!(
        "{}?artifactType={}",
        reg.client()
            .url(&repo, &format!("referrers/{}", img.digest)),
        BUNDLE_MEDIA_TYPE.replace('+', "%2B")
    );
    let mut all: Option<ImageIndex> = None;
    for _ in 0..MAX_PAGES {
        let resp = reg
            .client()
            .send(
                &repo,
                what,
                Op::Pull,
                Method::GET,
                &url,
                &[OCI_INDEX],
                None,
                deadline,
                None,
            )
            .await?;
        if !resp.status.is_success() {
            // 404 is what the spec has registries without the API answer;
            // some answer 400 or 405. Either way: use the tag schema.
            tracing::debug!(status = resp.status.as_u16(), "no referrers API");
            return Ok(all);
        }
        let next = next_link(&resp.headers, &url);
        let body = reg
            .client()
            .body(&repo, "the referrers list", resp, MAX_MANIFEST, deadline)
            .await?;
        let page = classify(&body, Some(OCI_INDEX)).map_err(|message| RegistryError::Garbage {
            image: repo.label.clone(),
            what: "the referrers list".into(),
            message,
        })?;
        match &mut all {
            None => all = Some(page),
            Some(a) => {
                let mut entries = a.manifests().clone();
                entries.extend(page.manifests().iter().cloned());
                a.set_manifests(entries);
            }
        }
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    Ok(all)
}

/// `Some(true)` when the referrers API lists `digest`, `None` without API.
pub async fn api_lists(
    reg: &Registry,
    img: &ResolvedImage,
    referrer: &str,
    deadline: &Deadline,
) -> Result<Option<bool>, RegistryError> {
    Ok(api_index(reg, img, deadline).await?.map(|i| {
        i.manifests()
            .iter()
            .any(|m| m.digest().to_string() == referrer)
    }))
}

/// `Link: </v2/..?n=..&last=..>; rel="next"` resolved against `base`.
fn next_link(headers: &reqwest::header::HeaderMap, base: &str) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    let (target, params) = link.split_once(';')?;
    if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
        return None;
    }
    let target = target.trim().trim_start_matches('<').trim_end_matches('>');
    reqwest::Url::parse(base)
        .ok()?
        .join(target)
        .ok()
        .map(|u| u.to_string())
}

/// The bundles referring to `img`, from the referrers API or else the tag
/// schema; a foreign referrers tag is one entry with the reason.
pub async fn fetch(
    reg: &Registry,
    img: &ResolvedImage,
    deadline: &Deadline,
) -> Result<Vec<Found>, RegistryError> {
    let repo = img.repo();
    let mut found = Vec::new();
    let index = match api_index(reg, img, deadline).await? {
        Some(i) => i,
        None => match read_tag(reg, img, &repo, deadline).await? {
            TagRead::Present { doc, .. } => doc,
            TagRead::Absent => return Ok(found),
            TagRead::Foreign(reason) => {
                found.push(Found {
                    source: "OCI referrers tag",
                    digest: img.referrers_tag(),
                    envelope: Err(foreign(
                        &format!("{}:{}", img.repository(), img.referrers_tag()),
                        &reason,
                    )),
                    material: None,
                });
                return Ok(found);
            }
        },
    };
    for d in index
        .manifests()
        .iter()
        .filter(|d| d.artifact_type().as_ref().map(|a| a.as_ref()) == Some(BUNDLE_MEDIA_TYPE))
        .take(MAX_FOUND + 1)
    {
        let ref_digest = d.digest().to_string();
        let Some((bytes, _)) = reg
            .get_manifest(&repo, &ref_digest, "fetching a referrer", deadline)
            .await?
        else {
            continue;
        };
        let m: ImageManifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                found.push(Found {
                    source: "OCI referrer",
                    digest: ref_digest,
                    envelope: Err(format!("referrer manifest is not a manifest: {e}")),
                    material: None,
                });
                continue;
            }
        };
        if m.subject().as_ref().map(|s| s.digest().to_string()) != Some(img.digest.clone()) {
            continue;
        }
        for l in m
            .layers()
            .iter()
            .filter(|l| l.media_type().as_ref() == BUNDLE_MEDIA_TYPE)
        {
            let (envelope, material) = match reg.get_blob(&repo, l, MAX_ATTESTATION, deadline).await
            {
                Ok(blob) => {
                    match Bundle::parse(&blob).and_then(|b| Ok((b.envelope(), b.material()?))) {
                        Ok((e, m)) => (Ok(e), Some(m)),
                        Err(e) => (Err(e.to_string()), None),
                    }
                }
                Err(e @ RegistryError::Garbage { .. }) => (Err(e.to_string()), None),
                Err(e) => return Err(e),
            };
            found.push(Found {
                source: "OCI referrer",
                digest: ref_digest.clone(),
                envelope,
                material,
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrers_tag_must_be_an_index() {
        assert!(classify(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#, None).is_ok());
        assert!(classify(br#"{"schemaVersion":2,"manifests":[]}"#, None).is_ok());
        let e = classify(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#, None).unwrap_err();
        assert!(e.contains("manifest"), "{e}");
        let e = classify(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#, None).unwrap_err();
        assert!(e.contains("list"), "{e}");
    }

    #[test]
    fn pagination_links() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            "</v2/app/referrers/sha256:ab?n=2&last=x>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h, "http://r:5000/v2/app/referrers/sha256:ab").unwrap(),
            "http://r:5000/v2/app/referrers/sha256:ab?n=2&last=x"
        );
    }
}
