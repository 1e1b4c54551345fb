//! Turning what was observed about a build into a SLSA v1 predicate.
//! The meaning of every parameter is documented in `docs/build-type.md`.
use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{
    BuildDefinition, BuildMetadata, Builder, DescriptorList, Provenance, ResourceDescriptor,
    RunDetails,
};

/// provenant's own buildType: "a build observed from outside the builder".
/// The URI names the documentation of the parameters below.
pub const BUILD_TYPE: &str = "https://provenant.dev/build-types/observed/v1";
/// Default `builder.id` for `provenant run`/`attest` on one machine. Platform
/// teams set their own with `--builder-id`, because the id names the trust
/// boundary (the cluster, the CI system), which only they know.
pub const DEFAULT_BUILDER_ID: &str = "https://provenant.dev/builders/local/v1";

/// Name of the byproduct carrying the observed build's exit code.
pub const EXIT_CODE_BYPRODUCT: &str = "exit-code";
/// Where the exit code came from: `observed`, `claimed` or `unknown`.
pub const ANN_EXIT_ORIGIN: &str = "provenant.exitCodeOrigin";
/// How it was learnt: `run`, `process`, `kube`, `marker`, `http`, `sigterm`.
pub const ANN_EXIT_SOURCE: &str = "provenant.exitCodeSource";
/// The `uri` of an exit-code byproduct whose value is not known.
pub const EXIT_UNKNOWN_URI: &str = "provenant:exit-code:unknown";

/// Who vouches for an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitOrigin {
    /// The kernel or the Kubernetes API said so (a process's wait status,
    /// a container's terminated state).
    Observed,
    /// The builder said so (marker file content, HTTP body): it could lie.
    Claimed,
    /// Nobody said.
    Unknown,
}

impl ExitOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitOrigin::Observed => "observed",
            ExitOrigin::Claimed => "claimed",
            ExitOrigin::Unknown => "unknown",
        }
    }
}

/// How a build ended, as far as provenant knows, and how it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    code: Option<i32>,
    origin: ExitOrigin,
    /// The completion trigger or command that learnt it.
    pub source: &'static str,
}

impl ExitStatus {
    pub fn observed(code: i32, source: &'static str) -> Self {
        ExitStatus {
            code: Some(code),
            origin: ExitOrigin::Observed,
            source,
        }
    }

    pub fn claimed(code: i32, source: &'static str) -> Self {
        ExitStatus {
            code: Some(code),
            origin: ExitOrigin::Claimed,
            source,
        }
    }

    pub fn unknown(source: &'static str) -> Self {
        ExitStatus {
            code: None,
            origin: ExitOrigin::Unknown,
            source,
        }
    }

    /// An observed code if there is one, else unknown.
    pub fn observed_opt(code: Option<i32>, source: &'static str) -> Self {
        code.map_or(Self::unknown(source), |c| Self::observed(c, source))
    }

    /// A claimed code if there is one, else unknown.
    pub fn claimed_opt(code: Option<i32>, source: &'static str) -> Self {
        code.map_or(Self::unknown(source), |c| Self::claimed(c, source))
    }

    pub fn code(&self) -> Option<i32> {
        self.code
    }

    pub fn origin(&self) -> ExitOrigin {
        self.origin
    }

    /// The `exit-code` byproduct: the decimal code as text content (so the
    /// descriptor is valid and a reader sees the number), or a `uri` saying
    /// it is unknown; annotated with where it came from.
    pub fn to_byproduct(&self) -> ResourceDescriptor {
        let mut rd = match self.code {
            Some(code) => exit_code_byproduct(code),
            None => ResourceDescriptor {
                name: Some(EXIT_CODE_BYPRODUCT.into()),
                uri: Some(EXIT_UNKNOWN_URI.into()),
                ..Default::default()
            },
        };
        rd.annotations
            .insert(ANN_EXIT_ORIGIN.into(), self.origin.as_str().into());
        rd.annotations
            .insert(ANN_EXIT_SOURCE.into(), self.source.into());
        rd
    }
}

/// `buildDefinition.externalParameters` of [`BUILD_TYPE`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    /// argv of the observed command (`provenant run`), absent when the build
    /// was not started by provenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Material roots as the user named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materials: Vec<String>,
    /// Product roots as the user named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<String>,
    /// Exclude globs applied to every root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// `--subject` globs that chose the subjects among the products.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

/// `buildDefinition.internalParameters` of [`BUILD_TYPE`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    /// `files` (one descriptor per file), `tree` (one gitTree per root) or
    /// `dirhash` (one dirHash per root).
    pub materials_as: String,
    /// `files` (one subject per file) or `dirhash` (one dirHash subject
    /// per product root).
    pub products_as: String,
    /// `fail` or `record`: what happened to unreadable files.
    pub on_error: String,
    /// Whether a build with a non-zero exit code is attested at all.
    pub attest_failed: bool,
    /// Pod mode: the pod that ran the build (downward API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodIdentity>,
    /// Pod mode: how the end of the build was detected (`sigterm`,
    /// `process`, `kube-api`, `marker`, `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<String>,
    /// How outputs that are not subjects were recorded (`dirhash`,
    /// `files`, `none`), when subjects were claimed images or chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_outputs: Option<String>,
}

/// Who ran the build, from the downward API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Container name -> image (ideally `name@sha256:...`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
}

impl PodIdentity {
    pub fn is_empty(&self) -> bool {
        *self == PodIdentity::default()
    }
}

/// Everything observed about one build, ready to become a predicate.
/// Materials borrow the hashed trees they describe.
#[derive(Debug, Clone)]
pub struct BuildFacts<'a> {
    pub builder_id: String,
    pub external: ExternalParameters,
    pub internal: InternalParameters,
    pub materials: DescriptorList<'a>,
    /// None when no build was observed (`attest`): no exit-code byproduct.
    pub exit: Option<ExitStatus>,
    pub started: OffsetDateTime,
    pub finished: OffsetDateTime,
    pub invocation_id: String,
    /// Further byproducts (e.g. materials the build changed).
    pub byproducts: Vec<ResourceDescriptor>,
}

/// RFC 3339 in UTC with milliseconds, the form protobuf's Timestamp JSON
/// accepts and people can read.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn to_map<T: Serialize>(v: &T) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

/// The exit code as a byproduct: text content, so the descriptor is valid
/// (it needs one of uri/digest/content) and a reader sees the number.
pub fn exit_code_byproduct(code: i32) -> ResourceDescriptor {
    ResourceDescriptor {
        name: Some(EXIT_CODE_BYPRODUCT.into()),
        content: Some(base64::engine::general_purpose::STANDARD.encode(code.to_string())),
        media_type: Some("text/plain".into()),
        ..Default::default()
    }
}

/// Reads the exit code back out of a predicate's byproducts.
pub fn exit_code_of(p: &Provenance) -> Option<i32> {
    let rd = p
        .run_details
        .byproducts
        .iter()
        .find(|b| b.name.as_deref() == Some(EXIT_CODE_BYPRODUCT))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(rd.content.as_deref()?)
        .ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

impl<'a> BuildFacts<'a> {
    pub fn into_provenance(self) -> Provenance<DescriptorList<'a>> {
        let mut version = BTreeMap::new();
        version.insert(
            "provenant".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        );
        Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.to_string(),
                external_parameters: to_map(&self.external),
                internal_parameters: to_map(&self.internal),
                resolved_dependencies: self.materials,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: self.builder_id,
                    version,
                    builder_dependencies: Vec::new(),
                },
                metadata: Some(BuildMetadata {
                    invocation_id: Some(self.invocation_id),
                    started_on: Some(rfc3339(self.started)),
                    finished_on: Some(rfc3339(self.finished)),
                }),
                byproducts: self
                    .exit
                    .as_ref()
                    .map(ExitStatus::to_byproduct)
                    .into_iter()
                    .chain(self.byproducts)
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit code byproduct, field for field: a reader (and `verify`'s
    /// exitCode rule) sees the number as text/plain content.
    #[test]
    fn the_exit_code_byproduct_is_text_content() {
        let d = serde_json::to_value(exit_code_byproduct(3)).unwrap();
        assert_eq!(
            d,
            serde_json::json!({"name": "exit-code", "content": "Mw==", "mediaType": "text/plain"})
        );
    }
}
