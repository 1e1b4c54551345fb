//! cosign's attestation layout: tag `sha256-<hex>.att` in the image's
//! repository holding an image manifest whose layers are DSSE envelopes
//! (`application/vnd.dsse.envelope.v1+json`, annotations
//! `dev.cosignproject.cosign/signature: ""` and `predicateType`), its config
//! a go-containerregistry style image config whose `rootfs.diff_ids` are the
//! layer digests.
//!
//! Appending keeps everything already there (manifest annotations, media
//! type, the config's other fields and dates), as go-containerregistry's
//! `mutate.Append` does when cosign itself appends: our layer goes last, its
//! digest is added to `rootfs.diff_ids` and one zero-dated entry to
//! `history`. Anything on the tag that is not such a manifest is foreign.
use std::time::Instant;

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};

use super::{
    annotations, canonical_json, digest, sha256_digest, window_left, Deadline, Found, Registry,
    RegistryError, Repo, ResolvedImage, TagRead, APPEND_WINDOW, DOCKER_LIST, DOCKER_MANIFEST,
    DSSE_MEDIA_TYPE, MAX_ATTESTATION, MAX_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use crate::sign::{Envelope, VerificationMaterial};

const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const COSIGN_CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const COSIGN_CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const COSIGN_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// go-containerregistry's zero time, which cosign's configs carry.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Our entry for one image's `.att` tag.
pub struct Att {
    img: ResolvedImage,
    repo: Repo,
    layer: Descriptor,
    layer_digest: String,
}

/// A `.att` manifest in the cosign layout, as read.
#[derive(Debug, Clone)]
pub struct AttDoc {
    pub manifest: ImageManifest,
    /// The media type to write it back with.
    pub media_type: String,
}

/// What a write did.
pub enum Write {
    Wrote,
    /// The tag changed between the read and the write: read again.
    Moved,
    Foreign(String),
}

impl Att {
    /// Our layer descriptor for `envelope`; no network.
    pub fn describe(
        img: &ResolvedImage,
        envelope: &Envelope,
        material: &VerificationMaterial,
        predicate_type: &str,
    ) -> Att {
        let bytes = envelope.to_json().into_bytes();
        let layer_digest = sha256_digest(&bytes);
        let mut layer = Descriptor::new(
            MediaType::from(DSSE_MEDIA_TYPE),
            bytes.len() as u64,
            digest(&layer_digest),
        );
        let extra = material_annotations(material);
        let mut pairs: Vec<(&str, &str)> = vec![
            (COSIGN_SIGNATURE_ANNOTATION, ""),
            ("predicateType", predicate_type),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        layer.set_annotations(Some(annotations(&pairs)));
        Att {
            img: img.clone(),
            repo: img.repo(),
            layer,
            layer_digest,
        }
    }

    /// [`Att::describe`], and the envelope uploaded as a blob.
    pub async fn prepare(
        reg: &Registry,
        img: &ResolvedImage,
        envelope: &Envelope,
        material: &VerificationMaterial,
        predicate_type: &str,
        deadline: &Deadline,
    ) -> Result<Att, RegistryError> {
        let att = Att::describe(img, envelope, material, predicate_type);
        reg.push_blob(&att.repo, envelope.to_json().as_bytes(), deadline)
            .await?;
        Ok(att)
    }

    fn tag_label(&self) -> String {
        format!("{}:{}", self.img.repository(), self.img.att_tag())
    }

    pub async fn read(
        &self,
        reg: &Registry,
        deadline: &Deadline,
    ) -> Result<TagRead<AttDoc>, RegistryError> {
        read_tag(reg, &self.img, &self.repo, deadline)
            .await
            .map(|r| match r {
                TagRead::Present { digest, doc, .. } => {
                    let ours = doc
                        .manifest
                        .layers()
                        .iter()
                        .any(|l| l.digest().to_string() == self.layer_digest);
                    TagRead::Present { digest, doc, ours }
                }
                TagRead::Absent => TagRead::Absent,
                TagRead::Foreign(reason) => TagRead::Foreign(
                    RegistryError::NotAnAttestation {
                        tag: self.tag_label(),
                        reason,
                    }
                    .to_string(),
                ),
            })
    }

    /// Appends our layer to `existing` (tag digest and manifest; `None`:
    /// no tag yet) and writes it, if the tag still is what was read.
    pub async fn write(
        &self,
        reg: &Registry,
        existing: Option<(&str, &AttDoc)>,
        deadline: &Deadline,
    ) -> Result<Write, RegistryError> {
        let (manifest, media_type, config) = match existing {
            None => {
                let config = fresh_config(&self.layer_digest);
                let config_desc = Descriptor::new(
                    MediaType::ImageConfig,
                    config.len() as u64,
                    digest(&sha256_digest(&config)),
                );
                let m = ImageManifestBuilder::default()
                    .schema_version(2u32)
                    .media_type(MediaType::ImageManifest)
                    .config(config_desc)
                    .layers(vec![self.layer.clone()])
                    .build()
                    .expect("all required fields set");
                (m, OCI_MANIFEST.to_string(), config)
            }
            Some((_, doc)) => {
                let old = match reg
                    .get_blob(&self.repo, doc.manifest.config(), MAX_MANIFEST, deadline)
                    .await
                {
                    Ok(b) => b,
                    Err(RegistryError::Garbage { what, message, .. }) => {
                        return Ok(Write::Foreign(
                            RegistryError::NotAnAttestation {
                                tag: self.tag_label(),
                                reason: format!("its config, {what}: {message}"),
                            }
                            .to_string(),
                        ))
                    }
                    Err(e) => return Err(e),
                };
                let config = match appended_config(&old, &self.layer_digest) {
                    Ok(c) => c,
                    Err(reason) => {
                        return Ok(Write::Foreign(
                            RegistryError::NotAnAttestation {
                                tag: self.tag_label(),
                                reason,
                            }
                            .to_string(),
                        ))
                    }
                };
                let mut m = doc.manifest.clone();
                let mut config_desc = m.config().clone();
                config_desc.set_digest(digest(&sha256_digest(&config)));
                config_desc.set_size(config.len() as u64);
                m.set_config(config_desc);
                m.layers_mut().push(self.layer.clone());
                (m, doc.media_type.clone(), config)
            }
        };
        reg.push_blob(&self.repo, &config, deadline).await?;
        // Only the read right before the write counts for the window: the
        // config upload above may have taken a while.
        let read_at = Instant::now();
        let now = read_tag(reg, &self.img, &self.repo, deadline).await?;
        let same = match (&now, existing) {
            (TagRead::Absent, None) => true,
            (TagRead::Present { digest, .. }, Some((was, _))) => digest == was,
            _ => false,
        };
        if !same || read_at.elapsed() >= APPEND_WINDOW / 2 {
            return Ok(Write::Moved);
        }
        let Some(cap) = window_left(read_at) else {
            return Ok(Write::Moved);
        };
        reg.put_manifest(
            &self.repo,
            &self.img.att_tag(),
            &canonical_json(&manifest),
            &media_type,
            deadline,
            Some(cap),
        )
        .await?;
        Ok(Write::Wrote)
    }
}

/// The layer annotations cosign writes beside a keyless or logged
/// signature: `dev.sigstore.cosign/certificate` (the signing certificate,
/// PEM), `.../chain` (the rest of the chain, PEM, concatenated) and
/// `.../bundle` (cosign's `RekorBundle` of the first log entry: its SET and
/// `{body, integratedTime, logIndex, logID}`, in cosign's field order).
///
/// No `dev.sigstore.cosign/rfc3161timestamp`: cosign's `attest` timestamps
/// the whole envelope, ours (the Sigstore bundle's) the signature, so cosign
/// would reject ours there; the referrer's bundle carries it.
pub fn material_annotations(m: &VerificationMaterial) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let crate::sign::KeyMaterial::Certificate { chain } = &m.key {
        if let Some((leaf, rest)) = chain.split_first() {
            out.push((
                COSIGN_CERTIFICATE_ANNOTATION,
                crate::sign::keyless::cert_pem(leaf),
            ));
            if !rest.is_empty() {
                let pems: String = rest
                    .iter()
                    .map(|c| crate::sign::keyless::cert_pem(c))
                    .collect();
                out.push((COSIGN_CHAIN_ANNOTATION, pems));
            }
        }
    }
    if let Some(b) = m.tlog_entries.iter().find_map(rekor_bundle) {
        out.push((COSIGN_BUNDLE_ANNOTATION, b));
    }
    out
}

/// The verification material a cosign layer's annotations carry, read back
/// ([`material_annotations`]'s inverse, for cosign's layers too): the
/// certificate and chain, and the Rekor bundle as a log entry (SET only: a
/// cosign bundle has no inclusion proof). `None` when the layer has
/// neither; an annotation that does not parse is left out (the
/// verification then says what is missing).
pub fn material_from_annotations(
    a: &std::collections::HashMap<String, String>,
    envelope: Option<&Envelope>,
) -> Option<VerificationMaterial> {
    use crate::sign::KeyMaterial;
    use base64::Engine;
    let cert = a.get(COSIGN_CERTIFICATE_ANNOTATION);
    let bundle = a.get(COSIGN_BUNDLE_ANNOTATION);
    if cert.is_none() && bundle.is_none() {
        return None;
    }
    let key = match cert {
        Some(pem_text) => {
            let mut chain: Vec<Vec<u8>> = pem::parse_many(pem_text.as_bytes())
                .ok()?
                .into_iter()
                .take(1)
                .map(|p| p.into_contents())
                .collect();
            if let Some(rest) = a.get(COSIGN_CHAIN_ANNOTATION) {
                chain.extend(
                    pem::parse_many(rest.as_bytes())
                        .unwrap_or_default()
                        .into_iter()
                        .take(9)
                        .map(|p| p.into_contents()),
                );
            }
            KeyMaterial::Certificate { chain }
        }
        None => KeyMaterial::PublicKey {
            hint: envelope
                .and_then(|e| e.signatures.first())
                .map(|s| s.keyid.clone())
                .unwrap_or_default(),
        },
    };
    let tlog_entries = bundle
        .and_then(|b| {
            let v: serde_json::Value = serde_json::from_str(b).ok()?;
            let p = &v["Payload"];
            let body = p["body"].as_str()?;
            let decoded = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
            let kind: serde_json::Value = serde_json::from_slice(&decoded).ok()?;
            Some(serde_json::json!({
                "logIndex": p["logIndex"].as_i64()?.to_string(),
                "logId": {"keyId": base64::engine::general_purpose::STANDARD.encode(hex::decode(p["logID"].as_str()?).ok()?)},
                "kindVersion": {"kind": kind["kind"], "version": kind["apiVersion"]},
                "integratedTime": p["integratedTime"].as_i64()?.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": v["SignedEntryTimestamp"].as_str()?},
                "canonicalizedBody": body,
            }))
        })
        .into_iter()
        .collect();
    Some(VerificationMaterial {
        key,
        tlog_entries,
        rfc3161_timestamps: Vec::new(),
    })
}

/// cosign's `RekorBundle` JSON for a bundle `TransparencyLogEntry`; `None`
/// without a SET or with fields of the wrong shape.
fn rekor_bundle(e: &serde_json::Value) -> Option<String> {
    use base64::Engine;
    let set = e["inclusionPromise"]["signedEntryTimestamp"].as_str()?;
    let body = e["canonicalizedBody"].as_str()?;
    let int = |v: &serde_json::Value| -> Option<i64> { v.as_str()?.parse().ok() };
    let log_id = base64::engine::general_purpose::STANDARD
        .decode(e["logId"]["keyId"].as_str()?)
        .ok()?;
    // Written out: cosign's field order, which serde_json::Value's sorted
    // maps would not keep.
    Some(format!(
        r#"{{"SignedEntryTimestamp":{},"Payload":{{"body":{},"integratedTime":{},"logIndex":{},"logID":{}}}}}"#,
        serde_json::to_string(set).ok()?,
        serde_json::to_string(body).ok()?,
        int(&e["integratedTime"])?,
        int(&e["logIndex"])?,
        serde_json::to_string(&hex::encode(log_id)).ok()?,
    ))
}

/// The `.att` tag of `img`, classified (ours = false: the caller decides).
async fn read_tag(
    reg: &Registry,
    img: &ResolvedImage,
    repo: &Repo,
    deadline: &Deadline,
) -> Result<TagRead<AttDoc>, RegistryError> {
    let Some((bytes, content_type)) = reg
        .get_manifest(repo, &img.att_tag(), "reading the .att tag", deadline)
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

/// An OCI or Docker image manifest whose layers are all DSSE envelopes.
pub fn classify(bytes: &[u8], content_type: Option<&str>) -> Result<AttDoc, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let declared = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string);
    let mt = declared.clone().or(content_type.map(str::to_string));
    if v.get("manifests").is_some() || matches!(mt.as_deref(), Some(OCI_INDEX | DOCKER_LIST)) {
        return Err(format!(
            "an image index ({})",
            mt.as_deref().unwrap_or(OCI_INDEX)
        ));
    }
    match declared.as_deref() {
        None | Some(OCI_MANIFEST | DOCKER_MANIFEST) => {}
        Some(other) => return Err(format!("a manifest of type {other}")),
    }
    let m: ImageManifest =
        serde_json::from_value(v).map_err(|e| format!("not an image manifest: {e}"))?;
    if m.schema_version() != 2 {
        return Err(format!("schema version {}", m.schema_version()));
    }
    if let Some(bad) = m
        .layers()
        .iter()
        .find(|l| l.media_type().as_ref() != DSSE_MEDIA_TYPE)
    {
        return Err(format!(
            "layer {} has media type {}",
            bad.digest(),
            bad.media_type()
        ));
    }
    let media_type = declared.unwrap_or_else(|| match content_type {
        Some(DOCKER_MANIFEST) => DOCKER_MANIFEST.to_string(),
        _ => OCI_MANIFEST.to_string(),
    });
    Ok(AttDoc {
        manifest: m,
        media_type,
    })
}

/// The config of a new `.att` manifest, byte for byte what
/// go-containerregistry writes for one appended layer.
fn fresh_config(layer_digest: &str) -> Vec<u8> {
    // Written out rather than through serde_json::Value, whose maps sort
    // their keys: this is go-containerregistry's field order.
    format!(
        r#"{{"architecture":"","created":"{ZERO_TIME}","history":[{{"created":"{ZERO_TIME}"}}],"os":"","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}}}}"#,
        serde_json::to_string(layer_digest).expect("string")
    )
    .into_bytes()
}

/// `old` with our layer appended: `rootfs.diff_ids` and `history` grow by
/// one, every other field stays as it was.
fn appended_config(old: &[u8], layer_digest: &str) -> Result<Vec<u8>, String> {
    let mut v: serde_json::Value =
        serde_json::from_slice(old).map_err(|e| format!("its config is not JSON: {e}"))?;
    let obj = v.as_object_mut().ok_or("its config is not a JSON object")?;
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| serde_json::json!({"type": "layers", "diff_ids": []}))
        .as_object_mut()
        .ok_or("its config's rootfs is not an object")?;
    rootfs
        .entry("diff_ids")
        .or_insert_with(|| serde_json::json!([]))
        .as_array_mut()
        .ok_or("its config's rootfs.diff_ids is not a list")?
        .push(serde_json::Value::String(layer_digest.to_string()));
    if let Some(h) = obj.get_mut("history") {
        h.as_array_mut()
            .ok_or("its config's history is not a list")?
            .push(serde_json::json!({"created": ZERO_TIME}));
    }
    Ok(serde_json::to_vec(&v).expect("JSON value serializes"))
}

/// The envelopes in the `.att` tag of `img`. A foreign tag is one entry
/// with the reason; so is a layer blob that is not what its descriptor says.
pub async fn fetch(
    reg: &Registry,
    img: &ResolvedImage,
    deadline: &Deadline,
) -> Result<Vec<Found>, RegistryError> {
    let repo = img.repo();
    let mut found = Vec::new();
    match read_tag(reg, img, &repo, deadline).await? {
        TagRead::Absent => {}
        TagRead::Foreign(reason) => found.push(Found {
            source: "cosign .att tag",
            digest: img.att_tag(),
            envelope: Err(RegistryError::NotAnAttestation {
                tag: format!("{}:{}", img.repository(), img.att_tag()),
                reason,
            }
            .to_string()),
            material: None,
        }),
        TagRead::Present { doc, .. } => {
            for l in doc.manifest.layers().iter().take(super::MAX_FOUND + 1) {
                let envelope = match reg.get_blob(&repo, l, MAX_ATTESTATION, deadline).await {
                    Ok(blob) => Envelope::parse(&blob).map_err(|e| e.to_string()),
                    Err(e @ RegistryError::Garbage { .. }) => Err(e.to_string()),
                    Err(e) => return Err(e),
                };
                let material = l
                    .annotations()
                    .as_ref()
                    .and_then(|a| material_from_annotations(a, envelope.as_ref().ok()));
                found.push(Found {
                    source: "cosign .att layer",
                    digest: l.digest().to_string(),
                    envelope,
                    material,
                });
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_annotations_as_cosign_writes_them() {
        use crate::sign::{KeyMaterial, VerificationMaterial};
        let m = VerificationMaterial {
            key: KeyMaterial::Certificate {
                chain: vec![vec![1, 2], vec![3], vec![4]],
            },
            tlog_entries: vec![serde_json::json!({
                "logIndex": "42", "logId": {"keyId": "AP8="}, "integratedTime": "1700000000",
                "inclusionPromise": {"signedEntryTimestamp": "c2V0"}, "canonicalizedBody": "eyJhcGlWZXJzaW9uIjoiMC4wLjIiLCJraW5kIjoiaW50b3RvIn0=",
                "kindVersion": {"kind": "intoto", "version": "0.0.2"}
            })],
            rfc3161_timestamps: vec![serde_json::json!({"signedTimestamp": "AA=="})],
        };
        let a: std::collections::HashMap<_, _> = material_annotations(&m).into_iter().collect();
        assert_eq!(
            a[COSIGN_CERTIFICATE_ANNOTATION],
            "-----BEGIN CERTIFICATE-----\nAQI=\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            a[COSIGN_CHAIN_ANNOTATION]
                .matches("BEGIN CERTIFICATE")
                .count(),
            2
        );
        assert_eq!(
            a[COSIGN_BUNDLE_ANNOTATION],
            r#"{"SignedEntryTimestamp":"c2V0","Payload":{"body":"eyJhcGlWZXJzaW9uIjoiMC4wLjIiLCJraW5kIjoiaW50b3RvIn0=","integratedTime":1700000000,"logIndex":42,"logID":"00ff"}}"#
        );
        assert_eq!(a.len(), 3);
        assert!(material_annotations(&VerificationMaterial::public_key("ab")).is_empty());
        // Read back: the same certificate chain and log entry.
        let owned: std::collections::HashMap<String, String> =
            a.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let back = material_from_annotations(&owned, None).unwrap();
        assert_eq!(back.key, m.key);
        assert_eq!(back.tlog_entries, m.tlog_entries);
    }

    #[test]
    fn fresh_config_matches_cosign() {
        let c = fresh_config("sha256:ab");
        assert_eq!(
            String::from_utf8(c).unwrap(),
            r#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:ab"]},"config":{}}"#
        );
    }

    #[test]
    fn appending_keeps_what_is_there() {
        let old = br#"{"architecture":"amd64","created":"2024-05-01T10:00:00Z","history":[{"created":"2024-05-01T10:00:00Z","created_by":"cosign"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"config":{"Labels":{"x":"y"}},"extra":1}"#;
        let new: serde_json::Value =
            serde_json::from_slice(&appended_config(old, "sha256:bb").unwrap()).unwrap();
        assert_eq!(new["created"], "2024-05-01T10:00:00Z");
        assert_eq!(new["history"][0]["created_by"], "cosign");
        assert_eq!(new["history"][1]["created"], ZERO_TIME);
        assert_eq!(
            new["rootfs"]["diff_ids"],
            serde_json::json!(["sha256:aa", "sha256:bb"])
        );
        assert_eq!(new["config"]["Labels"]["x"], "y");
        assert_eq!(new["extra"], 1);
        assert!(appended_config(b"[1]", "sha256:bb").is_err());
        assert!(appended_config(br#"{"rootfs":{"diff_ids":"x"}}"#, "sha256:bb").is_err());
    }

    #[test]
    fn foreign_documents_are_recognised() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(classify(index, None).unwrap_err().contains("image index"));
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}"#;
        assert!(classify(image, None).unwrap_err().contains("media type"));
        let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(classify(schema1, None).is_err());
        let att = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.dsse.envelope.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}],"annotations":{"a":"b"}}"#;
        let doc = classify(att, None).unwrap();
        assert_eq!(doc.media_type, OCI_MANIFEST);
        assert_eq!(doc.manifest.annotations().as_ref().unwrap()["a"], "b");
    }
}
