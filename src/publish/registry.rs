//! Attestations next to images in an OCI registry, in the layouts consumers
//! already read:
//!
//! * cosign: tag `sha256-<hex>.att` in the image's repository, an OCI image
//!   manifest whose layers are DSSE envelopes
//!   (`application/vnd.dsse.envelope.v1+json`, annotations
//!   `dev.cosignproject.cosign/signature: ""` and `predicateType`), config a
//!   go-containerregistry style config whose `rootfs.diff_ids` are the
//!   layer digests. We append to an existing `.att` manifest (never replace
//!   it) and refuse to touch one that holds anything but DSSE layers.
//! * OCI 1.1 referrer: a manifest with `subject` = the image and
//!   `artifactType` = the Sigstore bundle media type, one layer holding the
//!   bundle (cosign's newer "bundle" layout), pushed by digest. Registries
//!   with the referrers API index it from `subject`; for the others we keep
//!   the referrers tag schema (`sha256-<hex>`, an OCI index of referrers),
//!   appending to what is there.
//!
//! Pushing the same attestation twice changes nothing (layer digests and
//! referrer descriptors are compared before any write).
use std::collections::BTreeMap;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::auth::Credentials;
use super::bundle::{Bundle, BUNDLE_MEDIA_TYPE};
use crate::sign::Envelope;

pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const ALL_MANIFESTS: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}: not an image reference (expected REGISTRY/REPOSITORY[:TAG][@sha256:HEX]): {1}")]
    Reference(String, String),
    #[error("{image}: {what}: {message}")]
    Registry {
        image: String,
        what: &'static str,
        message: String,
    },
    #[error("{image}: {what}: the registry refused: {message}")]
    Rejected {
        image: String,
        what: &'static str,
        message: String,
    },
    #[error("{image}: no such image (manifest unknown)")]
    UnknownImage { image: String },
    #[error("{image}: authentication failed: {message}")]
    Auth { image: String, message: String },
    #[error("{tag}: holds something that is not a cosign attestation manifest ({reason}); leaving it untouched")]
    NotAnAttestation { tag: String, reason: String },
    #[error("{image}: the registry returned garbage for {what}: {message}")]
    Garbage {
        image: String,
        what: String,
        message: String,
    },
}

impl RegistryError {
    /// Worth retrying (registry down, slow, 5xx) as opposed to a mistake in
    /// what we were asked to do.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Registry { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// go-containerregistry's config for an image of opaque layers, as cosign
/// writes it for `.att`/`.sig` manifests.
#[derive(Debug, Serialize)]
struct CosignConfig<'a> {
    architecture: &'a str,
    created: &'a str,
    history: Vec<BTreeMap<&'a str, &'a str>>,
    os: &'a str,
    rootfs: RootFs,
    config: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An image: its repository and the digest of its manifest.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub reference: Reference,
    pub digest: String,
    pub descriptor: Descriptor,
}

impl ResolvedImage {
    fn at(&self, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(
                self.reference.registry().to_string(),
                self.reference.repository().to_string(),
                tag_or_digest.to_string(),
            )
        } else {
            Reference::with_tag(
                self.reference.registry().to_string(),
                self.reference.repository().to_string(),
                tag_or_digest.to_string(),
            )
        }
    }

    /// cosign's attestation tag for this image.
    pub fn att_tag(&self) -> String {
        format!("{}.att", self.digest.replace(':', "-"))
    }

    /// Referrers tag schema: `<alg>-<hex>`.
    pub fn referrers_tag(&self) -> String {
        self.digest.replace(':', "-")
    }

    /// `registry/repository` as it appears in attestation subjects.
    pub fn repository(&self) -> String {
        format!(
            "{}/{}",
            self.reference.registry(),
            self.reference.repository()
        )
    }
}

/// What attaching one attestation did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    pub image: String,
    pub att_tag: String,
    /// False when the `.att` manifest already held this envelope.
    pub att_appended: bool,
    pub referrer: String,
    pub referrer_pushed: bool,
}

/// An attestation found next to an image.
#[derive(Debug, Clone)]
pub struct Found {
    /// `cosign .att layer` or `OCI referrer`.
    pub source: &'static str,
    pub digest: String,
    pub envelope: Result<Envelope, String>,
}

pub struct Registry {
    creds: Credentials,
    plain_http: Vec<String>,
    extra_ca: Vec<Vec<u8>>,
}

/// Loopback registries are reached over plain HTTP, as docker and cosign
/// treat them; everything else needs TLS unless listed in `plain_http`.
fn is_local(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

impl Registry {
    pub fn new(creds: Credentials, plain_http: Vec<String>, extra_ca: Vec<Vec<u8>>) -> Registry {
        Registry {
            creds,
            plain_http,
            extra_ca,
        }
    }

    pub fn parse_reference(image: &str) -> Result<Reference, RegistryError> {
        image
            .parse::<Reference>()
            .map_err(|e| RegistryError::Reference(image.to_string(), e.to_string()))
    }

    fn auth(&self, r: &Reference) -> RegistryAuth {
        self.creds.for_registry(r.resolve_registry())
    }

    /// One client per operation on one registry: oci-client keeps its
    /// token cache per client, and the protocol decision is per registry.
    fn client_for(&self, r: &Reference) -> Client {
        let mut plain = self.plain_http.clone();
        if is_local(r.registry()) {
            plain.push(r.registry().to_string());
        }
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            extra_root_certificates: self
                .extra_ca
                .iter()
                .map(|pem| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(30)),
            ..Default::default()
        })
    }

    fn err(
        image: &Reference,
        what: &'static str,
        e: oci_client::errors::OciDistributionError,
    ) -> RegistryError {
        use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
        let image = image.whole();
        match e {
            E::AuthenticationFailure(m) => RegistryError::Auth { image, message: m },
            E::UnauthorizedError { url } => RegistryError::Auth {
                image,
                message: format!("401 Unauthorized at {url} (check the credentials)"),
            },
            E::ImageManifestNotFoundError(_) => RegistryError::UnknownImage { image },
            E::RegistryError { envelope, url } => {
                let codes: Vec<&C> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, C::ManifestUnknown | C::NameUnknown | C::NotFound))
                {
                    RegistryError::UnknownImage { image }
                } else if codes
                    .iter()
                    .any(|c| matches!(c, C::Unauthorized | C::Denied))
                {
                    RegistryError::Auth {
                        image,
                        message: format!("{envelope} at {url}"),
                    }
                } else {
                    RegistryError::Rejected {
                        image,
                        what,
                        message: format!("{envelope} at {url}"),
                    }
                }
            }
            E::ServerError { code, url, message } => match code {
                404 => RegistryError::UnknownImage { image },
                401 | 403 => RegistryError::Auth {
                    image,
                    message: format!("HTTP {code} at {url}"),
                },
                429 | 500..=599 => RegistryError::Registry {
                    image,
                    what,
                    message: format!(
                        "HTTP {code} at {url}: {}",
                        message.chars().take(200).collect::<String>()
                    ),
                },
                _ => RegistryError::Rejected {
                    image,
                    what,
                    message: format!(
                        "HTTP {code} at {url}: {}",
                        message.chars().take(200).collect::<String>()
                    ),
                },
            },
            E::RequestError(e) => RegistryError::Registry {
                image,
                what,
                message: e.to_string(),
            },
            other => RegistryError::Garbage {
                image,
                what: what.to_string(),
                message: other.to_string(),
            },
        }
    }

    async fn login(
        &self,
        client: &Client,
        r: &Reference,
        op: RegistryOperation,
    ) -> Result<(), RegistryError> {
        client
            .auth(r, &self.auth(r), op)
            .await
            .map(|_| ())
            .map_err(|e| Self::err(r, "authenticating", e))
    }

    /// The image's manifest digest and descriptor (tag or digest reference).
    pub async fn resolve(&self, image: &str) -> Result<ResolvedImage, RegistryError> {
        let r = Self::parse_reference(image)?;
        let client = self.client_for(&r);
        let (bytes, digest) = client
            .pull_manifest_raw(&r, &self.auth(&r), ALL_MANIFESTS)
            .await
            .map_err(|e| Self::err(&r, "fetching the image manifest", e))?;
        let computed = sha256_digest(&bytes);
        if let Some(want) = r.digest() {
            if want != computed {
                return Err(RegistryError::Garbage {
                    image: r.whole(),
                    what: "the image manifest".into(),
                    message: format!("content has digest {computed}, not the requested {want}"),
                });
            }
        }
        let _ = digest;
        let media_type = media_type_of(&bytes).map_err(|message| RegistryError::Garbage {
            image: r.whole(),
            what: "the image manifest".into(),
            message,
        })?;
        Ok(ResolvedImage {
            reference: r,
            digest: computed.clone(),
            descriptor: Descriptor {
                media_type,
                digest: computed,
                size: bytes.len() as u64,
                artifact_type: None,
                annotations: BTreeMap::new(),
            },
        })
    }

    async fn get_manifest(
        &self,
        client: &Client,
        r: &Reference,
        accepted: &[&str],
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        match client.pull_manifest_raw(r, &self.auth(r), accepted).await {
            Ok((bytes, _)) => Ok(Some(bytes.to_vec())),
            Err(e) => match Self::err(r, "fetching a manifest", e) {
                RegistryError::UnknownImage { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn push_blob(
        &self,
        client: &Client,
        r: &Reference,
        bytes: Vec<u8>,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(&bytes);
        if client.blob_exists(r, &digest).await.unwrap_or(false) {
            return Ok(digest);
        }
        client
            .push_blob(r, bytes, &digest)
            .await
            .map_err(|e| Self::err(r, "uploading a blob", e))?;
        Ok(digest)
    }

    async fn push_manifest(
        &self,
        client: &Client,
        r: &Reference,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        client
            .push_manifest_raw(r, bytes, media_type.parse().expect("static media type"))
            .await
            .map_err(|e| Self::err(r, "pushing a manifest", e))?;
        Ok(())
    }

    /// Attaches `envelope` to `image` in both layouts.
    pub async fn attach(
        &self,
        image: &str,
        envelope: &Envelope,
        key_id: &str,
        predicate_type: &str,
    ) -> Result<Attached, RegistryError> {
        let img = self.resolve(image).await?;
        let client = self.client_for(&img.reference);
        self.login(&client, &img.reference, RegistryOperation::Push)
            .await?;
        let (att_tag, att_appended) = self
            .attach_cosign(&client, &img, envelope, predicate_type)
            .await?;
        let bundle = Bundle::for_envelope(envelope, key_id);
        let (referrer, referrer_pushed) = self
            .attach_referrer(&client, &img, &bundle, predicate_type)
            .await?;
        Ok(Attached {
            image: format!("{}@{}", img.repository(), img.digest),
            att_tag: format!("{}:{}", img.repository(), att_tag),
            att_appended,
            referrer: format!("{}@{}", img.repository(), referrer),
            referrer_pushed,
        })
    }

    async fn attach_cosign(
        &self,
        client: &Client,
        img: &ResolvedImage,
        envelope: &Envelope,
        predicate_type: &str,
    ) -> Result<(String, bool), RegistryError> {
        let tag = img.att_tag();
        let at = img.at(&tag);
        let layer_bytes = envelope.to_json().into_bytes();
        let layer_digest = sha256_digest(&layer_bytes);
        // Appending races with other writers of the same tag (as in cosign);
        // re-read after writing and try again if our layer was lost.
        for _attempt in 0..3 {
            let existing = match self
                .get_manifest(client, &at, &[OCI_MANIFEST, DOCKER_MANIFEST])
                .await?
            {
                Some(bytes) => Some(parse_att_manifest(&bytes).map_err(|reason| {
                    RegistryError::NotAnAttestation {
                        tag: format!("{}:{tag}", img.repository()),
                        reason,
                    }
                })?),
                None => None,
            };
            let mut layers = existing.map(|m| m.layers).unwrap_or_default();
            if layers.iter().any(|l| l.digest == layer_digest) {
                return Ok((tag, false));
            }
            self.push_blob(client, &at, layer_bytes.clone()).await?;
            layers.push(Descriptor {
                media_type: DSSE_MEDIA_TYPE.into(),
                digest: layer_digest.clone(),
                size: layer_bytes.len() as u64,
                artifact_type: None,
                annotations: BTreeMap::from([
                    (COSIGN_SIGNATURE_ANNOTATION.to_string(), String::new()),
                    ("predicateType".to_string(), predicate_type.to_string()),
                ]),
            });
            let config = serde_json::to_vec(&CosignConfig {
                architecture: "",
                created: "0001-01-01T00:00:00Z",
                history: layers
                    .iter()
                    .map(|_| BTreeMap::from([("created", "0001-01-01T00:00:00Z")]))
                    .collect(),
                os: "",
                rootfs: RootFs {
                    kind: "layers",
                    diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
                },
                config: BTreeMap::new(),
            })
            .expect("config serializes");
            let config_desc = Descriptor {
                media_type: OCI_CONFIG.into(),
                digest: sha256_digest(&config),
                size: config.len() as u64,
                artifact_type: None,
                annotations: BTreeMap::new(),
            };
            self.push_blob(client, &at, config).await?;
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.into()),
                artifact_type: None,
                config: config_desc,
                layers,
                subject: None,
                annotations: BTreeMap::new(),
            };
            self.push_manifest(
                client,
                &at,
                serde_json::to_vec(&manifest).expect("manifest serializes"),
                OCI_MANIFEST,
            )
            .await?;
            if let Some(bytes) = self
                .get_manifest(client, &at, &[OCI_MANIFEST, DOCKER_MANIFEST])
                .await?
            {
                if parse_att_manifest(&bytes)
                    .is_ok_and(|m| m.layers.iter().any(|l| l.digest == layer_digest))
                {
                    return Ok((tag, true));
                }
            }
            tracing::warn!(tag = %tag, "another writer replaced the .att manifest concurrently; appending again");
        }
        Err(RegistryError::Registry {
            image: img.reference.whole(),
            what: "appending to the .att manifest",
            message: "lost the race with concurrent writers three times".into(),
        })
    }

    async fn attach_referrer(
        &self,
        client: &Client,
        img: &ResolvedImage,
        bundle: &Bundle<'_>,
        predicate_type: &str,
    ) -> Result<(String, bool), RegistryError> {
        let layer = bundle.to_json().into_bytes();
        let at = img.at(&img.digest);
        let layer_digest = self.push_blob(client, &at, layer.clone()).await?;
        let empty = b"{}".to_vec();
        let empty_digest = self.push_blob(client, &at, empty.clone()).await?;
        let annotations = BTreeMap::from([
            (
                "dev.sigstore.bundle.content".to_string(),
                "dsse-envelope".to_string(),
            ),
            (
                "dev.sigstore.bundle.predicateType".to_string(),
                predicate_type.to_string(),
            ),
        ]);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some(BUNDLE_MEDIA_TYPE.into()),
            config: Descriptor {
                media_type: OCI_EMPTY.into(),
                digest: empty_digest,
                size: 2,
                artifact_type: None,
                annotations: BTreeMap::new(),
            },
            layers: vec![Descriptor {
                media_type: BUNDLE_MEDIA_TYPE.into(),
                digest: layer_digest,
                size: layer.len() as u64,
                artifact_type: None,
                annotations: BTreeMap::new(),
            }],
            subject: Some(img.descriptor.clone()),
            annotations: annotations.clone(),
        };
        let bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let digest = sha256_digest(&bytes);
        let size = bytes.len() as u64;
        let by_digest = img.at(&digest);
        let pushed = self
            .get_manifest(client, &by_digest, &[OCI_MANIFEST])
            .await?
            .is_none();
        if pushed {
            self.push_manifest(client, &by_digest, bytes, OCI_MANIFEST)
                .await?;
        }
        // Referrers tag schema, for registries without the referrers API.
        let tag = img.referrers_tag();
        let tag_ref = img.at(&tag);
        let mut index = match self.get_manifest(client, &tag_ref, &[OCI_INDEX]).await? {
            Some(b) => serde_json::from_slice::<Index>(&b).map_err(|e| {
                RegistryError::NotAnAttestation {
                    tag: format!("{}:{tag}", img.repository()),
                    reason: format!("not an OCI index of referrers: {e}"),
                }
            })?,
            None => Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: Vec::new(),
            },
        };
        if !index.manifests.iter().any(|m| m.digest == digest) {
            index.manifests.push(Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: digest.clone(),
                size,
                artifact_type: Some(BUNDLE_MEDIA_TYPE.into()),
                annotations,
            });
            self.push_manifest(
                client,
                &tag_ref,
                serde_json::to_vec(&index).expect("index serializes"),
                OCI_INDEX,
            )
            .await?;
        }
        Ok((digest, pushed))
    }

    /// Every attestation attached to `image` in either layout.
    pub async fn fetch(&self, image: &str) -> Result<(ResolvedImage, Vec<Found>), RegistryError> {
        let img = self.resolve(image).await?;
        let client = self.client_for(&img.reference);
        self.login(&client, &img.reference, RegistryOperation::Pull)
            .await?;
        let mut found = Vec::new();
        let att = img.at(&img.att_tag());
        if let Some(bytes) = self
            .get_manifest(&client, &att, &[OCI_MANIFEST, DOCKER_MANIFEST])
            .await?
        {
            let m =
                parse_att_manifest(&bytes).map_err(|reason| RegistryError::NotAnAttestation {
                    tag: format!("{}:{}", img.repository(), img.att_tag()),
                    reason,
                })?;
            for l in m.layers {
                let blob = self.get_blob(&client, &att, &l).await?;
                found.push(Found {
                    source: "cosign .att layer",
                    digest: l.digest.clone(),
                    envelope: Envelope::parse(&blob).map_err(|e| e.to_string()),
                });
            }
        }
        let index = self.referrers(&client, &img).await?;
        for d in index.manifests {
            if d.artifact_type.as_deref() != Some(BUNDLE_MEDIA_TYPE) {
                continue;
            }
            let at = img.at(&d.digest);
            let Some(bytes) = self.get_manifest(&client, &at, &[OCI_MANIFEST]).await? else {
                continue;
            };
            let m: Manifest = match serde_json::from_slice(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    found.push(Found {
                        source: "OCI referrer",
                        digest: d.digest.clone(),
                        envelope: Err(format!("referrer manifest is not a manifest: {e}")),
                    });
                    continue;
                }
            };
            if m.subject.as_ref().map(|s| s.digest.as_str()) != Some(img.digest.as_str()) {
                continue;
            }
            for l in m
                .layers
                .iter()
                .filter(|l| l.media_type == BUNDLE_MEDIA_TYPE)
            {
                let blob = self.get_blob(&client, &at, l).await?;
                found.push(Found {
                    source: "OCI referrer",
                    digest: d.digest.clone(),
                    envelope: Bundle::parse(&blob)
                        .map(|b| b.envelope())
                        .map_err(|e| e.to_string()),
                });
            }
        }
        Ok((img, found))
    }

    async fn referrers(
        &self,
        client: &Client,
        img: &ResolvedImage,
    ) -> Result<Index, RegistryError> {
        // The referrers API first; oci-client falls back to the tag schema
        // and to an empty index itself.
        match client
            .pull_referrers(&img.at(&img.digest), Some(BUNDLE_MEDIA_TYPE))
            .await
        {
            Ok(idx) => {
                let v = serde_json::to_value(&idx).unwrap_or_default();
                Ok(serde_json::from_value(v).unwrap_or(Index {
                    schema_version: 2,
                    media_type: None,
                    manifests: Vec::new(),
                }))
            }
            Err(_) => match self
                .get_manifest(client, &img.at(&img.referrers_tag()), &[OCI_INDEX])
                .await?
            {
                Some(b) => Ok(serde_json::from_slice(&b).unwrap_or(Index {
                    schema_version: 2,
                    media_type: None,
                    manifests: Vec::new(),
                })),
                None => Ok(Index {
                    schema_version: 2,
                    media_type: None,
                    manifests: Vec::new(),
                }),
            },
        }
    }

    async fn get_blob(
        &self,
        client: &Client,
        r: &Reference,
        d: &Descriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        const MAX: u64 = 16 << 20;
        if d.size > MAX {
            return Err(RegistryError::Garbage {
                image: r.whole(),
                what: format!("blob {}", d.digest),
                message: format!("{} bytes is too large for an attestation", d.size),
            });
        }
        let mut out = Vec::new();
        client
            .pull_blob(r, d.digest.as_str(), &mut out)
            .await
            .map_err(|e| Self::err(r, "fetching a blob", e))?;
        if sha256_digest(&out) != d.digest {
            return Err(RegistryError::Garbage {
                image: r.whole(),
                what: format!("blob {}", d.digest),
                message: "content does not match its digest".into(),
            });
        }
        Ok(out)
    }
}

/// An `.att` manifest: OCI or Docker image manifest whose layers are all
/// DSSE envelopes. Public for the fuzz target (fuzz/).
pub fn parse_att_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not an image manifest: {e}"))?;
    if let Some(bad) = m.layers.iter().find(|l| l.media_type != DSSE_MEDIA_TYPE) {
        return Err(format!(
            "layer {} has media type {}",
            bad.digest, bad.media_type
        ));
    }
    Ok(m)
}

/// The media type a manifest or index says it is (or its shape implies).
/// Public for the fuzz target (fuzz/).
pub fn media_type_of(bytes: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let p: Peek = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match (p.media_type, p.manifests, p.layers) {
        (Some(mt), _, _) => Ok(mt),
        (None, Some(_), _) => Ok(OCI_INDEX.into()),
        (None, _, Some(_)) => Ok(OCI_MANIFEST.into()),
        _ => Err("neither a manifest nor an index".into()),
    }
}
