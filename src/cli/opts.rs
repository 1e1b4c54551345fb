//! Flag groups several commands share, each turned into the library's own
//! option type (no clap type crosses into the library).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CliResult;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;

use super::publish::RegistryOpts;
use super::UsageError;
use crate::choice::Choice;
use crate::digest::{ErrorPolicy, WalkOptions};
use crate::pipeline::claims::{SubjectOptions, SubjectSource};
use crate::pipeline::DescribeOptions;
use crate::provenance::{
    AllowedRepos, MaterialsAs, OtherOutputs, ProductsAs, ReportSources, DEFAULT_BUILDER_ID,
};
use crate::publish::{
    BundleFile, Deadline, EnvelopeFile, LinkFile, LinkFormat, Output, RegistryOutput, WitnessSpool,
};
use crate::sign::{KeylessConfig, RemoteConfig, Signer, SignerConfig, WitnessConfig, Witnesses};

/// A flag whose value is one of a library enum's names.
pub fn choice<T: Choice + Clone>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::names()).map(|s| T::from_name(&s).expect("a listed name"))
}

/// Options shared by every command that hashes trees.
#[derive(Args, Debug, Clone)]
pub struct HashOpts {
    /// Glob (relative to each root, `/`-separated) to leave out; repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// What to do with a file that cannot be read or vanishes mid-walk:
    /// `fail` stops with an error naming it; `record` records it as
    /// unreadable in the attestation and goes on.
    #[arg(long, value_name = "fail|record", default_value = "fail", value_parser = choice::<ErrorPolicy>())]
    pub on_error: ErrorPolicy,
}

impl HashOpts {
    pub fn walk_options(&self) -> WalkOptions {
        WalkOptions {
            excludes: self.excludes.clone(),
            on_error: self.on_error,
            progress: true,
            ..Default::default()
        }
    }
}

/// Options that shape the predicate.
#[derive(Args, Debug, Clone)]
pub struct DescribeOpts {
    /// `builder.id` to record: the identity of the platform running the build.
    #[arg(long, default_value = DEFAULT_BUILDER_ID, env = "PROVENANT_BUILDER_ID")]
    pub builder_id: String,
    /// Describe each material directory per file (`files`), or as one
    /// aggregate: its git tree id (`tree`) or its in-toto dirHash (`dirhash`).
    #[arg(long, value_name = "files|tree|dirhash", default_value = "files", value_parser = choice::<MaterialsAs>())]
    pub materials_as: MaterialsAs,
}

/// How products become subjects.
#[derive(Args, Debug, Clone)]
pub struct SubjectOpts {
    /// Subjects per product file (`files`), or one in-toto dirHash per
    /// product directory (`dirhash`): a 100k-file output in one line.
    #[arg(
        long,
        value_name = "files|dirhash",
        default_value = "files",
        env = "PROVENANT_PRODUCTS_AS",
        value_parser = choice::<ProductsAs>()
    )]
    pub products_as: ProductsAs,
    /// Where subjects come from: `auto` (images a report names, if any
    /// survive their checks, else the product files), `files`, `reported`
    /// (only reported images; nothing is attested without one, and one of
    /// --kpack-report, --tekton-results, --oci-layout is required).
    #[arg(long, value_name = "auto|files|reported", default_value = "auto", value_parser = choice::<SubjectSource>())]
    pub subjects: SubjectSource,
    /// kpack / buildpacks lifecycle `report.toml`.
    #[arg(long, value_name = "FILE")]
    pub kpack_report: Option<PathBuf>,
    /// Tekton results directory (IMAGE_URL/IMAGE_DIGEST, IMAGES, *ARTIFACT_OUTPUTS).
    #[arg(long, value_name = "DIR")]
    pub tekton_results: Option<PathBuf>,
    /// OCI image layout directory the build wrote; repeatable.
    #[arg(long = "oci-layout", value_name = "DIR")]
    pub oci_layouts: Vec<PathBuf>,
    /// The image the --oci-layout layouts hold (`REGISTRY/REPOSITORY`), as
    /// you name it: their manifests are claims of this image, whatever the
    /// layout's own `org.opencontainers.image.ref.name` says. kaniko's and
    /// crane's layouts carry no name; with --allow-image-repo a layout
    /// claim needs one.
    #[arg(
        long,
        value_name = "IMAGE",
        requires = "oci_layouts",
        env = "PROVENANT_OCI_LAYOUT_IMAGE"
    )]
    pub oci_layout_image: Option<String>,
    /// Repository the build may name as the image it built
    /// (`REGISTRY/REPOSITORY`, glob: `*` does not cross `/`, `**` does;
    /// Docker Hub short names as `docker pull` reads them; a tag or digest
    /// is dropped); repeatable or comma-separated. With it, every image claim from a
    /// report must lie in one of these repositories and resolve there by
    /// its digest, or it is not signed. Required by --publish.
    #[arg(
        long = "allow-image-repo",
        value_name = "PATTERN",
        env = "PROVENANT_ALLOW_IMAGE_REPO",
        value_delimiter = ','
    )]
    pub allow_image_repos: Vec<String>,
    /// Only product files matching this glob are subjects (relative to
    /// each product root, as --exclude: `*` does not cross `/`, `**` does,
    /// the whole path must match); repeatable or comma-separated. Nothing
    /// matching: nothing is attested. The other outputs are recorded as
    /// --other-outputs says.
    #[arg(
        long = "subject",
        value_name = "GLOB",
        env = "PROVENANT_SUBJECT",
        value_delimiter = ','
    )]
    pub subject_globs: Vec<String>,
    /// How outputs that are not subjects are recorded when --subject chose
    /// the subjects or they are images a report named: `dirhash` (one per
    /// product root, of the whole tree), `files` (one byproduct per file),
    /// `none`.
    #[arg(long, value_name = "dirhash|files|none", default_value = "dirhash", value_parser = choice::<OtherOutputs>())]
    pub other_outputs: OtherOutputs,
}

impl SubjectOpts {
    pub fn subject_options(&self) -> Result<SubjectOptions, UsageError> {
        let reports = ReportSources {
            kpack_report: self.kpack_report.clone(),
            tekton_results: self.tekton_results.clone(),
            oci_layouts: self.oci_layouts.clone(),
            oci_layout_image: self
                .oci_layout_image
                .as_deref()
                .map(|i| {
                    crate::provenance::claimed_name(std::path::Path::new("--oci-layout-image"), i)
                        .map_err(|_| {
                            UsageError(
                                "--oci-layout-image: not an image reference (REGISTRY/REPOSITORY)"
                                    .into(),
                            )
                        })
                })
                .transpose()?,
        };
        // `reported` promises nothing is attested without an image a report
        // names; with no report to read it once quietly fell back to the
        // product files (found by the mutation check of
        // ReportSources::is_empty).
        if self.subjects == SubjectSource::Reported && reports.is_empty() {
            return Err(UsageError(
                "--subjects reported needs a report to read the images from: --kpack-report, --tekton-results or --oci-layout".into(),
            ));
        }
        Ok(SubjectOptions {
            source: self.subjects,
            reports,
            allowed: AllowedRepos::new(&self.allow_image_repos).map_err(UsageError)?,
            globs: self.subject_globs.clone(),
        })
    }

    pub fn describe_options(&self, d: &DescribeOpts, attest_failed: bool) -> DescribeOptions {
        DescribeOptions {
            builder_id: d.builder_id.clone(),
            materials_as: d.materials_as,
            products_as: self.products_as,
            attest_failed,
            other_outputs: self.other_outputs,
        }
    }
}

/// How to sign: a key file, or a remote signer.
#[derive(Args, Debug, Clone)]
pub struct SignerOpts {
    /// Private key: PKCS#8 PEM or cosign's encrypted format (password from
    /// COSIGN_PASSWORD); mounted only into provenant's container.
    #[arg(
        long,
        value_name = "FILE",
        env = "PROVENANT_KEY",
        conflicts_with = "url"
    )]
    pub key: Option<PathBuf>,
    /// URL of a `provenant signer` service holding the key (https://;
    /// http:// only to loopback or with --signer-insecure-plain-http).
    #[arg(long = "signer", value_name = "URL", env = "PROVENANT_SIGNER")]
    pub url: Option<String>,
    /// File with the bearer token for the signer, read for every request:
    /// the pod's projected service-account token, or the shared token.
    #[arg(
        long = "signer-token-file",
        value_name = "FILE",
        env = "PROVENANT_SIGNER_TOKEN_FILE"
    )]
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) the signer's certificate must chain to,
    /// instead of the system roots.
    #[arg(long = "signer-ca", value_name = "PEM", env = "PROVENANT_SIGNER_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for a signer that requires mTLS.
    #[arg(
        long = "signer-client-cert",
        value_name = "PEM",
        env = "PROVENANT_SIGNER_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long = "signer-client-key",
        value_name = "PEM",
        env = "PROVENANT_SIGNER_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Talk plain HTTP to a signer that is not on loopback: only where a
    /// mesh encrypts the traffic (the token would cross the network in
    /// clear text otherwise).
    #[arg(long = "signer-insecure-plain-http")]
    pub insecure_plain_http: bool,
    /// Keyless signing: the Sigstore Fulcio CA that certifies a fresh key
    /// pair, held only in memory, for each attestation (https://; http://
    /// only to loopback). Needs --identity-token, and --rekor-url or
    /// --tsa-url so verifiers can tell the certificate was valid.
    #[arg(
        long,
        value_name = "URL",
        env = "PROVENANT_FULCIO_URL",
        requires = "identity_token"
    )]
    pub fulcio_url: Option<String>,
    /// OIDC identity token Fulcio certifies the key for, read again for
    /// every certificate (in a pod: a projected service-account token with
    /// audience `sigstore`, which kubelet rotates).
    #[arg(
        long,
        value_name = "FILE",
        env = "PROVENANT_IDENTITY_TOKEN",
        requires = "fulcio_url"
    )]
    pub identity_token: Option<PathBuf>,
    /// Upload each signed envelope to this Rekor transparency log (an
    /// `intoto` entry); its inclusion proof, signed entry timestamp and
    /// checkpoint go into the bundle and the registry layers. With a key or
    /// keyless. Unreachable: the attestation is spooled for `provenant
    /// publish`.
    #[arg(long, value_name = "URL", env = "PROVENANT_REKOR_URL")]
    pub rekor_url: Option<String>,
    /// Also timestamp each signature at this RFC 3161 timestamp authority
    /// (Sigstore timestamp-authority API, `/api/v1/timestamp`).
    #[arg(long, value_name = "URL", env = "PROVENANT_TSA_URL")]
    pub tsa_url: Option<String>,
}

impl SignerOpts {
    /// `dev_key_dir`: where `run` keeps a development key when no other
    /// signer is given.
    pub fn config(&self, dev_key_dir: Option<&Path>) -> SignerConfig {
        SignerConfig {
            key: self.key.clone(),
            remote: self.url.as_ref().map(|url| RemoteConfig {
                url: url.clone(),
                token_file: self.token_file.clone(),
                ca: self.ca.clone(),
                client_cert: self.client_cert.clone(),
                client_key: self.client_key.clone(),
                allow_plain_http: self.insecure_plain_http,
                builder_id: None,
            }),
            keyless: self.fulcio_url.as_ref().map(|url| KeylessConfig {
                fulcio_url: url.clone(),
                identity_token: self.identity_token.clone().unwrap_or_default(),
            }),
            dev_key_dir: dev_key_dir.map(Path::to_path_buf),
        }
    }

    pub fn witness_config(&self) -> WitnessConfig {
        WitnessConfig {
            rekor_url: self.rekor_url.clone(),
            tsa_url: self.tsa_url.clone(),
        }
    }

    /// The signer (opened and checked) and the witnesses (checked), before
    /// anything is observed. `links`: whether in-toto links are asked for.
    pub fn open(
        &self,
        dev_key_dir: Option<&Path>,
        builder_id: &str,
        links: bool,
    ) -> CliResult<(Arc<dyn Signer>, Arc<Witnesses>)> {
        let witnesses = Witnesses::open(&self.witness_config())?;
        if self.fulcio_url.is_some() {
            if witnesses.is_empty() {
                return Err(UsageError(
                    "keyless signing needs --rekor-url (or --tsa-url): without a log entry or timestamp no verifier can tell the 10-minute certificate was valid when it signed".into(),
                )
                .into());
            }
            if links {
                return Err(UsageError(
                    "--in-toto-link needs a key (--key or --signer): in-toto layouts name functionaries by key, and a keyless key lives for one attestation".into(),
                )
                .into());
            }
        }
        let signer: Arc<dyn Signer> = Arc::from(crate::sign::open_signer(
            &self.config(dev_key_dir).expecting_builder_id(builder_id),
        )?);
        signer.check()?;
        witnesses.check()?;
        Ok((signer, Arc::new(witnesses)))
    }

    /// The secrets this command was given: never read through the door
    /// for builder-written files (`crate::untrusted::protect`).
    pub fn secrets(&self) -> Vec<&Path> {
        [
            self.key.as_deref(),
            self.token_file.as_deref(),
            self.client_key.as_deref(),
            self.identity_token.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// in-toto link output, for chains verified with `in-toto-verify`.
#[derive(Args, Debug, Clone)]
pub struct LinkOpts {
    /// Also write signed in-toto link metadata for this step into DIR
    /// (`STEP.KEYID8.link`).
    #[arg(long = "in-toto-link", value_name = "DIR", requires = "step_name")]
    pub link_dir: Option<PathBuf>,
    /// The step's name in the in-toto layout.
    #[arg(long, value_name = "NAME")]
    pub step_name: Option<String>,
    /// Link file format: `dsse` (a DSSE envelope, in-toto 2.0+), or
    /// `metablock` (a classic signed Metablock, which every in-toto tool
    /// reads).
    #[arg(long = "in-toto-link-format", value_name = "dsse|metablock", default_value = "dsse", value_parser = choice::<LinkFormat>())]
    pub link_format: LinkFormat,
}

impl LinkOpts {
    pub fn output(&self, signer: &Arc<dyn Signer>) -> Option<Box<dyn Output>> {
        let (Some(dir), Some(step)) = (&self.link_dir, &self.step_name) else {
            return None;
        };
        Some(Box::new(LinkFile {
            dir: dir.clone(),
            step: step.clone(),
            signer: signer.clone(),
            format: self.link_format,
        }))
    }
}

/// Attaching the attestation to the images it is about.
#[derive(Args, Debug, Clone)]
pub struct PublishOpts {
    /// Attach the attestation to the images it is about (images a report
    /// named, found in an --allow-image-repo repository) in their
    /// registries: cosign `.att` and OCI referrer.
    #[arg(long)]
    pub publish: bool,
    /// Where attestations wait until pushed; entries that could not be
    /// pushed stay here for `provenant publish`.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Deadline in seconds for the registry work after the build ends
    /// (confirming claimed images, then publishing, over all images,
    /// retries and requests): the command is done by then whatever the
    /// registry does. The default leaves 10 s of a 30 s termination grace
    /// period.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub publish_timeout: u64,
    #[command(flatten)]
    pub registry: RegistryOpts,
}

impl PublishOpts {
    /// `--publish` needs an allow-list: the repositories it may attach to.
    pub fn check(&self, subjects: &SubjectOptions) -> Result<(), UsageError> {
        if self.publish && subjects.allowed.is_empty() {
            return Err(UsageError(
                "--publish needs --allow-image-repo: the repositories the build may name as its image (the attestation is attached there)".into(),
            ));
        }
        Ok(())
    }

    /// The registry client, when anything will talk to a registry: checked
    /// now, although the registry itself may be unreachable until the
    /// build is over.
    pub fn registry(
        &self,
        subjects: &SubjectOptions,
    ) -> CliResult<Option<Arc<crate::publish::Registry>>> {
        if self.publish || !subjects.allowed.is_empty() {
            Ok(Some(Arc::new(self.registry.registry()?)))
        } else {
            Ok(None)
        }
    }

    pub fn budget(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.publish_timeout)
    }

    /// Where attestations wait for the transparency log when it is down.
    pub fn witness_output(
        &self,
        witnesses: &Witnesses,
        default_spool: &Path,
        bundle: Option<&Path>,
    ) -> Option<Box<dyn Output>> {
        if witnesses.is_empty() {
            return None;
        }
        Some(Box::new(WitnessSpool {
            spool_dir: self
                .spool
                .clone()
                .unwrap_or_else(|| default_spool.to_path_buf()),
            // `provenant publish` may run elsewhere: the bundle is named
            // from the root.
            bundle: bundle.map(|b| std::path::absolute(b).unwrap_or_else(|_| b.to_path_buf())),
            publish: self.publish,
        }))
    }

    pub fn output(
        &self,
        registry: Option<&Arc<crate::publish::Registry>>,
        default_spool: &Path,
        deadline: Deadline,
    ) -> Option<Box<dyn Output>> {
        let registry = registry.filter(|_| self.publish)?.clone();
        Some(Box::new(RegistryOutput {
            registry,
            spool_dir: self
                .spool
                .clone()
                .unwrap_or_else(|| default_spool.to_path_buf()),
            deadline,
        }))
    }
}

/// The envelope file and, when asked, the bundle beside it.
pub fn file_outputs(output: &Path, bundle: Option<&Path>) -> Vec<Box<dyn Output>> {
    let mut v: Vec<Box<dyn Output>> = vec![Box::new(EnvelopeFile {
        path: output.to_path_buf(),
    })];
    if let Some(b) = bundle {
        v.push(Box::new(BundleFile {
            path: b.to_path_buf(),
        }));
    }
    v
}

/// The flags `attest` and `run` share: what to hash, how to describe and
/// sign it, where it goes.
#[derive(Args, Debug)]
pub struct OneShotArgs {
    /// Input file or directory (recorded as resolvedDependencies; for `run`
    /// hashed before the command runs); repeatable.
    #[arg(long = "material", value_name = "PATH")]
    pub materials: Vec<PathBuf>,
    /// Output file or directory (recorded as subjects; for `run` hashed
    /// after the command exits); repeatable.
    #[arg(long = "product", value_name = "PATH", required = true)]
    pub products: Vec<PathBuf>,
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Where to write the DSSE envelope (one JSON line); `-` for stdout.
    #[arg(short = 'o', long, default_value = "provenance.intoto.jsonl")]
    pub output: PathBuf,
    /// Also write the envelope as a Sigstore bundle (v0.3).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    #[command(flatten)]
    pub hash: HashOpts,
    #[command(flatten)]
    pub describe: DescribeOpts,
    #[command(flatten)]
    pub subjects: SubjectOpts,
    #[command(flatten)]
    pub link: LinkOpts,
    #[command(flatten)]
    pub publish: PublishOpts,
}

/// Where `attest` and `run` spool attestations for a registry by default.
pub const LOCAL_SPOOL: &str = ".provenant/spool";

/// What `attest` and `run` need before they observe anything.
pub struct OneShot {
    pub opts: crate::pipeline::oneshot::OneShotOptions,
    pub registry: Option<Arc<crate::publish::Registry>>,
    pub signer: Arc<dyn Signer>,
    pub witnesses: Arc<Witnesses>,
}

impl OneShotArgs {
    /// Options checked, registry set up, signer opened (and checked): all
    /// before anything is hashed or run. `dev_key_dir`: `run`'s fallback.
    pub fn prepare(&self, dev_key_dir: Option<&Path>) -> super::CliResult<OneShot> {
        let subjects = self.subjects.subject_options()?;
        self.publish.check(&subjects)?;
        let registry = self.publish.registry(&subjects)?;
        let (signer, witnesses) = self.signer.open(
            dev_key_dir,
            &self.describe.builder_id,
            self.link.link_dir.is_some(),
        )?;
        Ok(OneShot {
            opts: crate::pipeline::oneshot::OneShotOptions {
                materials: self.materials.clone(),
                products: self.products.clone(),
                walk: self.hash.walk_options(),
                material_git_blobs: self.describe.materials_as == MaterialsAs::Tree,
                subjects,
            },
            registry,
            signer,
            witnesses,
        })
    }

    pub fn describe_options(&self, attest_failed: bool) -> DescribeOptions {
        self.subjects
            .describe_options(&self.describe, attest_failed)
    }

    /// Every output the flags ask for.
    pub fn outputs(&self, s: &OneShot, deadline: Deadline) -> Vec<Box<dyn Output>> {
        let mut outputs = file_outputs(&self.output, self.bundle.as_deref());
        outputs.extend(self.publish.witness_output(
            &s.witnesses,
            Path::new(LOCAL_SPOOL),
            self.bundle.as_deref(),
        ));
        outputs.extend(self.link.output(&s.signer));
        outputs.extend(
            self.publish
                .output(s.registry.as_ref(), Path::new(LOCAL_SPOOL), deadline),
        );
        outputs
    }
}
