//! Attestations next to images in an OCI registry, in the layouts consumers
//! already read:
//!
//! * cosign ([`cosign`]): tag `sha256-<hex>.att` in the image's repository,
//!   an image manifest whose layers are DSSE envelopes.
//! * OCI 1.1 referrer ([`referrers`]): a manifest with `subject` = the image
//!   holding the Sigstore bundle, pushed by digest, indexed by the
//!   registry's referrers API where it has one and listed in the referrers
//!   tag schema (`sha256-<hex>`, an OCI index) where it has not.
//!
//! The transport is [`client`]. The two tags are shared with every other
//! writer and the distribution API has no compare-and-swap, so appending is
//! a merge-and-verify loop ([`Registry::converge`]); docs/publish.md states
//! exactly what it guarantees. Content on a tag that is not in the layout we
//! expect is never replaced: it is reported and the other layout proceeds.
pub mod client;
pub mod cosign;
pub mod referrers;

use std::str::FromStr;
use std::time::{Duration, Instant};

use oci_spec::distribution::Reference;
use oci_spec::image::{Descriptor, MediaType};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

pub use client::{is_loopback, Deadline, Repo, MAX_MANIFEST};
use client::{Client, Op};

use super::auth::Credentials;
use super::bundle::Bundle;
use crate::sign::{Envelope, VerificationMaterial};

pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest type a registry may hold on a tag. A tag is always read
/// with all of them in Accept: a registry answers MANIFEST_UNKNOWN for a
/// type the client did not list, which must never read as "no tag".
pub const ALL_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_LIST,
    "application/vnd.oci.artifact.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
];
/// An attestation (envelope, bundle) larger than this is not fetched.
pub const MAX_ATTESTATION: u64 = 16 << 20;
/// Attestations looked at per image when verifying; the rest are reported.
pub const MAX_FOUND: usize = 500;

/// How long a provenant writer may take from the read of a tag to the
/// registry's answer to the write based on it. A write is only sent while
/// less than half of it has passed and the write's own timeout is the rest.
pub const APPEND_WINDOW: Duration = Duration::from_secs(2);
/// Confirmation: the tag must show the entry in two reads at least this far
/// apart (plus up to a second at random, so writers that collided do not
/// collide again), with no change between them. More than the window.
pub const SETTLE: Duration = Duration::from_millis(2500);
const SETTLE_JITTER: Duration = Duration::from_secs(1);
/// Verification without a caller-given deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

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
    #[error("{image}: {what}: the {seconds} s deadline passed")]
    Deadline {
        image: String,
        what: &'static str,
        seconds: f32,
    },
    #[error("{image}: not confirmed present before the deadline ({detail})")]
    Unconfirmed { image: String, detail: String },
    #[error("registry client: {0}")]
    Setup(String),
    #[error("{image}: no layout left to write: {reasons}")]
    NoLayout { image: String, reasons: String },
}

impl RegistryError {
    /// Worth retrying (registry down, slow, 5xx) as opposed to a mistake in
    /// what we were asked to do, or no time left.
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Registry { .. })
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A digest we computed ourselves, as oci-spec's type.
pub(crate) fn digest(d: &str) -> oci_spec::image::Digest {
    oci_spec::image::Digest::from_str(d).expect("a sha256 digest we computed")
}

/// Manifests and indexes as JSON with a fixed key order: the OCI fields in
/// the order the spec lists them, everything else (annotation keys) sorted.
/// The same content always gives the same bytes, hence the same digest:
/// pushing an attestation twice yields one referrer, and the referrer
/// manifest is byte-identical to what earlier provenant versions pushed.
pub fn canonical_json<T: Serialize>(v: &T) -> Vec<u8> {
    const ORDER: &[&str] = &[
        "schemaVersion",
        "mediaType",
        "digest",
        "size",
        "urls",
        "artifactType",
        "config",
        "layers",
        "manifests",
        "subject",
        "annotations",
        "platform",
        "data",
    ];
    fn write(v: &serde_json::Value, out: &mut Vec<u8>) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by_key(|k| {
                    (
                        ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()),
                        k.as_str(),
                    )
                });
                out.push(b'{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend(serde_json::to_vec(k).expect("string serializes"));
                    out.push(b':');
                    write(&m[*k], out);
                }
                out.push(b'}');
            }
            serde_json::Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(x, out);
                }
                out.push(b']');
            }
            other => out.extend(serde_json::to_vec(other).expect("scalar serializes")),
        }
    }
    let value = serde_json::to_value(v).expect("OCI types serialize");
    let mut out = Vec::new();
    write(&value, &mut out);
    out
}

/// An image: its repository and the digest of its manifest.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub reference: Reference,
    pub digest: String,
    /// What a referrer's `subject` points at.
    pub descriptor: Descriptor,
}

impl ResolvedImage {
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

    pub(crate) fn repo(&self) -> Repo {
        Repo {
            registry: self.reference.registry().to_string(),
            name: self.reference.repository().to_string(),
            label: format!("{}@{}", self.repository(), self.digest),
        }
    }
}

/// What attaching one attestation did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    pub image: String,
    pub att_tag: String,
    /// False when the `.att` manifest already held this envelope (or was
    /// left alone, see `foreign`).
    pub att_appended: bool,
    pub referrer: String,
    pub referrer_pushed: bool,
    /// The registry indexed the referrer itself (OCI 1.1 referrers API):
    /// no referrers tag was written.
    pub referrers_api: bool,
    /// Tags left untouched because they hold something else, and why.
    pub foreign: Vec<String>,
}

/// An attestation found next to an image.
#[derive(Debug, Clone)]
pub struct Found {
    /// `cosign .att layer`, `OCI referrer`, or `cosign .att tag` for a tag
    /// that holds something else.
    pub source: &'static str,
    pub digest: String,
    pub envelope: Result<Envelope, String>,
    /// What a verifier needs beside it: the referrer's bundle material,
    /// or what the cosign layer's annotations carry (certificate, chain,
    /// Rekor bundle); `None` when there is nothing beyond the envelope.
    pub material: Option<VerificationMaterial>,
}

/// What reading a shared tag found.
#[derive(Debug)]
pub enum TagRead<T> {
    Absent,
    /// In the expected layout; `ours`: our entry is in it.
    Present {
        digest: String,
        doc: T,
        ours: bool,
    },
    /// Something else: never written over.
    Foreign(String),
}

pub struct Registry {
    client: Client,
    timeout: Duration,
}

impl Registry {
    /// Fails on a CA certificate the TLS stack cannot use.
    pub fn new(
        creds: Credentials,
        plain_http: Vec<String>,
        extra_ca: Vec<Vec<u8>>,
    ) -> Result<Registry, RegistryError> {
        Ok(Registry {
            client: Client::new(creds, plain_http, &extra_ca).map_err(RegistryError::Setup)?,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The deadline of operations that are not given one (`resolve`, `fetch`).
    pub fn with_timeout(mut self, timeout: Duration) -> Registry {
        self.timeout = timeout;
        self
    }

    pub fn parse_reference(image: &str) -> Result<Reference, RegistryError> {
        image
            .parse::<Reference>()
            .map_err(|e| RegistryError::Reference(image.to_string(), e.to_string()))
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The image's manifest digest and descriptor (tag or digest reference).
    pub async fn resolve(&self, image: &str) -> Result<ResolvedImage, RegistryError> {
        self.resolve_until(image, &Deadline::after(self.timeout))
            .await
    }

    pub async fn resolve_until(
        &self,
        image: &str,
        deadline: &Deadline,
    ) -> Result<ResolvedImage, RegistryError> {
        let r = Self::parse_reference(image)?;
        let repo = Repo {
            registry: r.registry().to_string(),
            name: r.repository().to_string(),
            label: image.to_string(),
        };
        let what = "fetching the image manifest";
        let at = r.digest().or(r.tag()).unwrap_or("latest").to_string();
        let (bytes, _) = self
            .get_manifest(&repo, &at, what, deadline)
            .await?
            .ok_or_else(|| RegistryError::UnknownImage {
                image: image.to_string(),
            })?;
        let computed = sha256_digest(&bytes);
        if let Some(want) = r.digest() {
            if want != computed {
                return Err(RegistryError::Garbage {
                    image: image.to_string(),
                    what: "the image manifest".into(),
                    message: format!("content has digest {computed}, not the requested {want}"),
                });
            }
        }
        let media_type = media_type_of(&bytes).map_err(|message| RegistryError::Garbage {
            image: image.to_string(),
            what: "the image manifest".into(),
            message,
        })?;
        Ok(ResolvedImage {
            reference: r,
            descriptor: Descriptor::new(
                MediaType::from(media_type.as_str()),
                bytes.len() as u64,
                digest(&computed),
            ),
            digest: computed,
        })
    }

    /// A manifest by tag or digest, with every manifest type accepted;
    /// `None` when the registry has none there. Capped at [`MAX_MANIFEST`];
    /// a manifest asked for by digest must have that digest.
    pub(crate) async fn get_manifest(
        &self,
        repo: &Repo,
        reference: &str,
        what: &'static str,
        deadline: &Deadline,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, RegistryError> {
        let url = self.client.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .client
            .send(
                repo,
                what,
                Op::Pull,
                Method::GET,
                &url,
                ALL_MANIFESTS,
                None,
                deadline,
                None,
            )
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status.is_success() {
            return Err(self
                .client
                .unexpected(repo, what, &url, resp, deadline)
                .await);
        }
        let content_type = resp
            .headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let bytes = self
            .client
            .body(repo, "a manifest", resp, MAX_MANIFEST, deadline)
            .await?;
        if reference.starts_with("sha256:") && sha256_digest(&bytes) != reference {
            return Err(RegistryError::Garbage {
                image: repo.label.clone(),
                what: format!("manifest {reference}"),
                message: "content does not match its digest".into(),
            });
        }
        Ok(Some((bytes, content_type)))
    }

    /// PUT a manifest; returns the response headers (OCI-Subject tells
    /// whether the registry indexed a referrer).
    pub(crate) async fn put_manifest(
        &self,
        repo: &Repo,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
        deadline: &Deadline,
        cap: Option<Duration>,
    ) -> Result<reqwest::header::HeaderMap, RegistryError> {
        let what = "pushing a manifest";
        let url = self.client.url(repo, &format!("manifests/{reference}"));
        let resp = self
            .client
            .send(
                repo,
                what,
                Op::Push,
                Method::PUT,
                &url,
                &[],
                Some((bytes, media_type)),
                deadline,
                cap,
            )
            .await?;
        if !resp.status.is_success() {
            return Err(self
                .client
                .unexpected(repo, what, &url, resp, deadline)
                .await);
        }
        Ok(resp.headers)
    }

    /// Uploads a blob unless the registry has it; returns its descriptor
    /// digest.
    pub(crate) async fn push_blob(
        &self,
        repo: &Repo,
        bytes: &[u8],
        deadline: &Deadline,
    ) -> Result<String, RegistryError> {
        let d = sha256_digest(bytes);
        let what = "uploading a blob";
        let head = self.client.url(repo, &format!("blobs/{d}"));
        let resp = self
            .client
            .send(
                repo,
                what,
                Op::Push,
                Method::HEAD,
                &head,
                &[],
                None,
                deadline,
                None,
            )
            .await?;
        if resp.status.is_success() {
            return Ok(d);
        }
        let start = self.client.url(repo, "blobs/uploads/");
        let resp = self
            .client
            .send(
                repo,
                what,
                Op::Push,
                Method::POST,
                &start,
                &[],
                None,
                deadline,
                None,
            )
            .await?;
        if resp.status != StatusCode::ACCEPTED && !resp.status.is_success() {
            return Err(self
                .client
                .unexpected(repo, what, &start, resp, deadline)
                .await);
        }
        let location = client::location(&resp.headers)
            .and_then(|l| client::upload_url(&start, &l, &d))
            .ok_or_else(|| RegistryError::Garbage {
                image: repo.label.clone(),
                what: "the blob upload".into(),
                message: "no usable Location header".into(),
            })?;
        let resp = self
            .client
            .send(
                repo,
                what,
                Op::Push,
                Method::PUT,
                &location,
                &[],
                Some((bytes, "application/octet-stream")),
                deadline,
                None,
            )
            .await?;
        if !resp.status.is_success() {
            return Err(self
                .client
                .unexpected(repo, what, &location, resp, deadline)
                .await);
        }
        Ok(d)
    }

    /// A blob of at most `max` bytes, exactly its descriptor's size and
    /// digest; the size is enforced on the bytes as they arrive.
    pub(crate) async fn get_blob(
        &self,
        repo: &Repo,
        d: &Descriptor,
        max: u64,
        deadline: &Deadline,
    ) -> Result<Vec<u8>, RegistryError> {
        let digest = d.digest().to_string();
        let what = "fetching a blob";
        if d.size() > max {
            return Err(RegistryError::Garbage {
                image: repo.label.clone(),
                what: format!("blob {digest}"),
                message: format!("{} bytes is more than the {max}-byte limit", d.size()),
            });
        }
        if !digest.starts_with("sha256:") {
            return Err(RegistryError::Garbage {
                image: repo.label.clone(),
                what: format!("blob {digest}"),
                message: "only sha256 digests are checked".into(),
            });
        }
        let url = self.client.url(repo, &format!("blobs/{digest}"));
        let resp = self
            .client
            .send(
                repo,
                what,
                Op::Pull,
                Method::GET,
                &url,
                &[],
                None,
                deadline,
                None,
            )
            .await?;
        if !resp.status.is_success() {
            return Err(self
                .client
                .unexpected(repo, what, &url, resp, deadline)
                .await);
        }
        client::read_blob(&self.client, repo, resp, &digest, d.size(), deadline).await
    }

    /// Attaches `envelope` to `image` in both layouts, within the
    /// registry's default timeout.
    pub async fn attach(
        &self,
        image: &str,
        envelope: &Envelope,
        material: &VerificationMaterial,
        predicate_type: &str,
    ) -> Result<Attached, RegistryError> {
        self.attach_until(
            image,
            envelope,
            material,
            predicate_type,
            &Deadline::after(self.timeout),
        )
        .await
    }

    /// Attaches `envelope` to `image` in both layouts; returns once each
    /// layout has been confirmed (see [`Registry::converge`]), or an error
    /// at the latest when `deadline` passes.
    pub async fn attach_until(
        &self,
        image: &str,
        envelope: &Envelope,
        material: &VerificationMaterial,
        predicate_type: &str,
        deadline: &Deadline,
    ) -> Result<Attached, RegistryError> {
        let img = self.resolve_until(image, deadline).await?;
        let repo = img.repo();
        let att =
            cosign::Att::prepare(self, &img, envelope, material, predicate_type, deadline).await?;
        let bundle = Bundle::for_envelope_with(envelope, material);
        let referrer =
            referrers::Referrer::push(self, &img, &bundle, predicate_type, deadline).await?;
        let mut layouts = vec![Layout::Att(Box::new(att))];
        layouts.push(if referrer.api {
            Layout::Api(referrer.clone())
        } else {
            Layout::Index(referrer.clone())
        });
        let outcomes = self.converge(&repo, &mut layouts, deadline).await?;
        let mut foreign = Vec::new();
        let mut att_appended = false;
        for (l, o) in layouts.iter().zip(&outcomes) {
            match o {
                Outcome::Foreign(reason) => {
                    foreign.push(format!("{}:{}: {reason}", img.repository(), l.tag(&img)))
                }
                Outcome::Appended if matches!(l, Layout::Att(_)) => att_appended = true,
                _ => {}
            }
        }
        if foreign.len() == layouts.len() {
            return Err(RegistryError::NoLayout {
                image: repo.label,
                reasons: foreign.join("; "),
            });
        }
        Ok(Attached {
            image: format!("{}@{}", img.repository(), img.digest),
            att_tag: format!("{}:{}", img.repository(), img.att_tag()),
            att_appended,
            referrer: format!("{}@{}", img.repository(), referrer.digest),
            referrer_pushed: referrer.pushed,
            referrers_api: referrer.api,
            foreign,
        })
    }

    /// Appends to shared tags until each is confirmed to hold our entry.
    ///
    /// Per layout: read the tag (every manifest type accepted). Foreign
    /// content ends that layout, untouched. Without our entry: merge it
    /// into what was read and write, but only while the read is younger
    /// than half of [`APPEND_WINDOW`] (else read again), the write timing
    /// out at the window's end; then read back at once. With our entry:
    /// confirmed when the previous read, at least [`SETTLE`] earlier, saw
    /// the same manifest digest. Writers that lost an entry to a
    /// concurrent writer see it missing at one of these reads and merge it
    /// in again.
    async fn converge(
        &self,
        repo: &Repo,
        layouts: &mut [Layout],
        deadline: &Deadline,
    ) -> Result<Vec<Outcome>, RegistryError> {
        struct State {
            /// Digest at the last read that showed our entry.
            seen: Option<String>,
            wrote: bool,
            done: Option<Outcome>,
        }
        let mut st: Vec<State> = layouts
            .iter()
            .map(|_| State {
                seen: None,
                wrote: false,
                done: None,
            })
            .collect();
        let mut rounds = 0u32;
        loop {
            rounds += 1;
            for (l, s) in layouts.iter_mut().zip(st.iter_mut()) {
                if s.done.is_some() {
                    continue;
                }
                let (t, read) = l.read(self, deadline).await?;
                match read {
                    TagRead::Foreign(reason) => {
                        tracing::warn!("{reason}; the attestation goes to the other layout only");
                        s.done = Some(Outcome::Foreign(reason));
                    }
                    TagRead::Present {
                        digest, ours: true, ..
                    } => {
                        if l.settled_by_registry() || s.seen.as_deref() == Some(digest.as_str()) {
                            s.done = Some(if s.wrote {
                                Outcome::Appended
                            } else {
                                Outcome::AlreadyThere
                            });
                        } else {
                            s.seen = Some(digest);
                        }
                    }
                    read => {
                        if s.seen.is_some() {
                            tracing::warn!(image = %repo.label, layout = l.name(), "a concurrent writer dropped our entry; merging it in again");
                        }
                        s.seen = None;
                        if t.elapsed() >= APPEND_WINDOW / 2 {
                            continue; // read again next round
                        }
                        match l.write(self, &read, t, deadline).await? {
                            cosign::Write::Foreign(reason) => {
                                tracing::warn!(
                                    "{reason}; the attestation goes to the other layout only"
                                );
                                s.done = Some(Outcome::Foreign(reason));
                                continue;
                            }
                            cosign::Write::Moved => continue,
                            cosign::Write::Wrote => s.wrote = true,
                        }
                        match l.read(self, deadline).await?.1 {
                            TagRead::Present {
                                digest, ours: true, ..
                            } => {
                                if l.settled_by_registry() {
                                    s.done = Some(Outcome::Appended);
                                } else {
                                    s.seen = Some(digest);
                                }
                            }
                            TagRead::Foreign(reason) => {
                                tracing::warn!(
                                    "{reason}; the attestation goes to the other layout only"
                                );
                                s.done = Some(Outcome::Foreign(reason));
                            }
                            _ => {}
                        }
                    }
                }
            }
            if st.iter().all(|s| s.done.is_some()) {
                break;
            }
            // Entries awaiting confirmation wait out the settle time; a
            // lost one is re-merged after a short random pause.
            let pause = if st.iter().any(|s| s.done.is_none() && s.seen.is_some()) {
                SETTLE + jitter(SETTLE_JITTER)
            } else {
                Duration::from_millis(100) + jitter(Duration::from_millis(400))
            };
            if deadline.remaining() <= pause {
                let pending: Vec<String> = layouts
                    .iter()
                    .zip(&st)
                    .filter(|(_, s)| s.done.is_none())
                    .map(|(l, s)| {
                        format!(
                            "{}: {}",
                            l.name(),
                            match (s.wrote, s.seen.is_some()) {
                                (_, true) => "present, waiting for it to settle",
                                (true, false) => "written, then dropped by a concurrent writer",
                                (false, false) => "not written: the tag kept changing, or the registry is slower than the append window",
                            }
                        )
                    })
                    .collect();
                return Err(RegistryError::Unconfirmed {
                    image: repo.label.clone(),
                    detail: format!("{} after {rounds} round(s)", pending.join("; ")),
                });
            }
            tokio::time::sleep(pause).await;
        }
        Ok(st.into_iter().map(|s| s.done.expect("all done")).collect())
    }

    /// Is `envelope` still attached (for `publish --reconcile`)? One read
    /// per layout; foreign layouts do not count as missing.
    pub async fn is_attached(
        &self,
        image: &str,
        envelope: &Envelope,
        material: &VerificationMaterial,
        predicate_type: &str,
        deadline: &Deadline,
    ) -> Result<Vec<String>, RegistryError> {
        let img = self.resolve_until(image, deadline).await?;
        let att = cosign::Att::describe(&img, envelope, material, predicate_type);
        let bundle = Bundle::for_envelope_with(envelope, material);
        let referrer = referrers::Referrer::describe(&img, &bundle, predicate_type);
        let mut missing = Vec::new();
        if let TagRead::Absent | TagRead::Present { ours: false, .. } =
            Layout::Att(Box::new(att)).read(self, deadline).await?.1
        {
            missing.push(format!("{}:{}", img.repository(), img.att_tag()));
        }
        let api = referrers::api_lists(self, &img, &referrer.digest, deadline).await?;
        if api != Some(true) {
            let r = Layout::Index(referrer.clone())
                .read(self, deadline)
                .await?
                .1;
            if matches!(r, TagRead::Absent | TagRead::Present { ours: false, .. }) {
                missing.push(format!(
                    "{}@{} (referrer)",
                    img.repository(),
                    referrer.digest
                ));
            }
        }
        Ok(missing)
    }

    /// Every attestation attached to `image` in either layout. A tag that
    /// holds something else is reported as a [`Found`] with an error and
    /// the other layout is still read.
    pub async fn fetch(&self, image: &str) -> Result<(ResolvedImage, Vec<Found>), RegistryError> {
        let deadline = Deadline::after(self.timeout);
        let img = self.resolve_until(image, &deadline).await?;
        let mut found = cosign::fetch(self, &img, &deadline).await?;
        found.extend(referrers::fetch(self, &img, &deadline).await?);
        if found.len() > MAX_FOUND {
            tracing::warn!(image = %image, found = found.len(), "only the first {MAX_FOUND} attestations are checked");
            found.truncate(MAX_FOUND);
        }
        Ok((img, found))
    }
}

/// What converging did for one layout.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Appended,
    AlreadyThere,
    Foreign(String),
}

/// The shared things an attestation is appended to.
pub(crate) enum Layout {
    /// The cosign `.att` tag.
    Att(Box<cosign::Att>),
    /// The referrers tag schema index.
    Index(referrers::Referrer),
    /// The registry's referrers API: indexed by the registry itself.
    Api(referrers::Referrer),
}

impl Layout {
    fn name(&self) -> &'static str {
        match self {
            Layout::Att(_) => "cosign .att tag",
            Layout::Index(_) => "referrers tag",
            Layout::Api(_) => "referrers API",
        }
    }

    fn tag(&self, img: &ResolvedImage) -> String {
        match self {
            Layout::Att(_) => img.att_tag(),
            Layout::Index(_) => img.referrers_tag(),
            Layout::Api(r) => format!("referrers/{}", r.digest),
        }
    }

    /// The registry keeps the referrers list itself: nothing to race on.
    fn settled_by_registry(&self) -> bool {
        matches!(self, Layout::Api(_))
    }

    async fn read(
        &self,
        reg: &Registry,
        deadline: &Deadline,
    ) -> Result<(Instant, TagRead<LayoutDoc>), RegistryError> {
        let t = Instant::now();
        let read = match self {
            Layout::Att(a) => match a.read(reg, deadline).await? {
                TagRead::Present { digest, doc, ours } => TagRead::Present {
                    digest,
                    doc: LayoutDoc::Att(Box::new(doc)),
                    ours,
                },
                TagRead::Absent => TagRead::Absent,
                TagRead::Foreign(r) => TagRead::Foreign(r),
            },
            Layout::Index(r) => match r.read_index(reg, deadline).await? {
                TagRead::Present { digest, doc, ours } => TagRead::Present {
                    digest,
                    doc: LayoutDoc::Index(Box::new(doc)),
                    ours,
                },
                TagRead::Absent => TagRead::Absent,
                TagRead::Foreign(r) => TagRead::Foreign(r),
            },
            Layout::Api(r) => match referrers::api_lists(reg, &r.img, &r.digest, deadline).await? {
                Some(true) => TagRead::Present {
                    digest: String::new(),
                    doc: LayoutDoc::None,
                    ours: true,
                },
                _ => TagRead::Absent,
            },
        };
        Ok((t, read))
    }

    /// Writes the merge of `read` and our entry, unless the tag moved in
    /// the meantime or turns out to be foreign.
    async fn write(
        &mut self,
        reg: &Registry,
        read: &TagRead<LayoutDoc>,
        read_at: Instant,
        deadline: &Deadline,
    ) -> Result<cosign::Write, RegistryError> {
        match self {
            Layout::Att(a) => {
                let existing = match read {
                    TagRead::Present {
                        doc: LayoutDoc::Att(d),
                        digest,
                        ..
                    } => Some((digest.as_str(), d.as_ref())),
                    _ => None,
                };
                a.write(reg, existing, deadline).await
            }
            Layout::Index(r) => {
                let existing = match read {
                    TagRead::Present {
                        doc: LayoutDoc::Index(d),
                        ..
                    } => Some(d.as_ref()),
                    _ => None,
                };
                r.write_index(reg, existing, read_at, deadline).await
            }
            Layout::Api(r) => {
                // The manifest is there (pushed before); pushing it again
                // asks the registry to index it again.
                r.repush(reg, deadline).await?;
                Ok(cosign::Write::Wrote)
            }
        }
    }
}

pub(crate) enum LayoutDoc {
    Att(Box<cosign::AttDoc>),
    Index(Box<oci_spec::image::ImageIndex>),
    None,
}

impl std::fmt::Debug for LayoutDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayoutDoc::Att(_) => "Att",
            LayoutDoc::Index(_) => "Index",
            LayoutDoc::None => "None",
        })
    }
}

/// A random duration below `max`, from the system's random source.
fn jitter(max: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_nanos(r % (max.as_nanos() as u64).max(1))
}

/// The time left to a write based on a read made at `read_at`.
pub(crate) fn window_left(read_at: Instant) -> Option<Duration> {
    APPEND_WINDOW.checked_sub(read_at.elapsed())
}

/// The media type of a manifest we were given: its `mediaType`, else what
/// its shape says. Public for the fuzz target (fuzz/).
pub fn media_type_of(bytes: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        layers: Option<serde::de::IgnoredAny>,
    }
    let p: Peek = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match (p.media_type, p.manifests, p.layers) {
        (Some(mt), _, _) => Ok(mt),
        (None, Some(_), _) => Ok(OCI_INDEX.into()),
        (None, _, Some(_)) => Ok(OCI_MANIFEST.into()),
        _ => Err("neither a manifest nor an index".into()),
    }
}

/// Annotations as oci-spec wants them.
pub(crate) fn annotations(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

crate::exit_class!(RegistryError => crate::error::exit::CANNOT_CHECK);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::BUNDLE_MEDIA_TYPE;

    #[test]
    fn canonical_json_is_stable_and_ordered() {
        let mut d = Descriptor::new(MediaType::ImageManifest, 12, digest(&sha256_digest(b"x")));
        d.set_artifact_type(Some(MediaType::from(BUNDLE_MEDIA_TYPE)));
        d.set_annotations(Some(annotations(&[("z", "1"), ("a", "2"), ("m", "3")])));
        let a = canonical_json(&d);
        for _ in 0..20 {
            assert_eq!(canonical_json(&d.clone()), a);
        }
        let s = String::from_utf8(a).unwrap();
        assert!(
            s.starts_with(
                r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:"#
            ),
            "{s}"
        );
        assert!(
            s.ends_with(r#""size":12,"artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","annotations":{"a":"2","m":"3","z":"1"}}"#),
            "{s}"
        );
    }
}
