use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Descriptors, ResourceDescriptor};

pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// DSSE payloadType for in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// in-toto Statement v1 with an arbitrary predicate. The predicate stays a
/// JSON value so `verify` can read statements whose predicate type we do not
/// model. Unknown fields are ignored on parse, as the in-toto spec requires of
/// consumers; what we emit is fixed by the types. `provenance()` gives the
/// typed SLSA view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// Kept as JSON text: ours is serialized once from the typed
    /// [`Provenance`] (going through `serde_json::Value` cost a map per
    /// material and tripled describe time for 100k materials), and a parsed
    /// one is only ever read through [`Statement::provenance`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<Box<serde_json::value::RawValue>>,
}

/// How a statement is written: the JSON of [`Statement`], field for
/// field, with the subjects and the predicate serialized from borrowed
/// values (a [`super::DescriptorList`] and a [`Provenance`] whose
/// dependencies are one), so 100k subjects are never built as values.
#[derive(Debug, Serialize)]
pub struct StatementRef<'a, S: Serialize, P: Serialize> {
    #[serde(rename = "_type")]
    pub type_: &'a str,
    pub subject: &'a S,
    #[serde(rename = "predicateType")]
    pub predicate_type: &'a str,
    pub predicate: &'a P,
}

impl<'a, S: Serialize, P: Serialize> StatementRef<'a, S, P> {
    pub fn slsa(subject: &'a S, predicate: &'a P) -> Self {
        StatementRef {
            type_: STATEMENT_TYPE_V1,
            subject,
            predicate_type: SLSA_PROVENANCE_V1,
            predicate,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("statement is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("statement _type is '{0}', expected {STATEMENT_TYPE_V1}")]
    Type(String),
    #[error("statement has no subject")]
    NoSubject,
    #[error("statement subject[{0}] has no digest")]
    SubjectWithoutDigest(usize),
    #[error("predicate is not a SLSA v1 provenance: {0}")]
    Predicate(serde_json::Error),
}

impl Statement {
    /// A failure to serialize the predicate is an error, never a
    /// statement without one.
    pub fn new_slsa(
        subject: Vec<ResourceDescriptor>,
        predicate: &Provenance,
    ) -> Result<Self, StatementError> {
        Ok(Statement {
            type_: STATEMENT_TYPE_V1.to_string(),
            subject,
            predicate_type: SLSA_PROVENANCE_V1.to_string(),
            predicate: Some(serde_json::value::to_raw_value(predicate)?),
        })
    }

    /// Canonical bytes we sign: compact JSON with struct field order fixed by
    /// the types and map keys sorted (BTreeMap), so equal statements give
    /// equal bytes. An error is returned, never empty bytes to sign.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StatementError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Parse and check the Statement-level rules of the spec.
    pub fn parse(bytes: &[u8]) -> Result<Self, StatementError> {
        let st: Statement = serde_json::from_slice(bytes)?;
        if st.type_ != STATEMENT_TYPE_V1 {
            return Err(StatementError::Type(st.type_));
        }
        if st.subject.is_empty() {
            return Err(StatementError::NoSubject);
        }
        if let Some(i) = st.subject.iter().position(|s| s.digest.is_empty()) {
            return Err(StatementError::SubjectWithoutDigest(i));
        }
        Ok(st)
    }

    pub fn provenance(&self) -> Result<Provenance, StatementError> {
        let raw = self.predicate.as_ref().map_or("null", |p| p.get());
        serde_json::from_str(raw).map_err(StatementError::Predicate)
    }
}

/// SLSA Provenance v1 predicate. `D` is how `resolvedDependencies` is
/// held: built descriptors when read, a [`super::DescriptorList`]
/// borrowing the hashed trees when written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(
        serialize = "D: Serialize + Descriptors",
        deserialize = "D: Deserialize<'de> + Default + Descriptors"
    )
)]
pub struct Provenance<D = Vec<ResourceDescriptor>> {
    pub build_definition: BuildDefinition<D>,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(
        serialize = "D: Serialize + Descriptors",
        deserialize = "D: Deserialize<'de> + Default + Descriptors"
    )
)]
pub struct BuildDefinition<D = Vec<ResourceDescriptor>> {
    pub build_type: String,
    pub external_parameters: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub internal_parameters: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Descriptors::is_empty")]
    pub resolved_dependencies: D,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BuildMetadata>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builder_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// RFC 3339, UTC, millisecond precision (`2026-11-25T03:21:32.123Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

crate::exit_class!(StatementError => crate::error::exit::INVALID);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Entry, EntryKind, RelPath};
    use crate::provenance::{BuildFacts, DescriptorList, ExternalParameters, InternalParameters};

    /// What is signed (a statement serialized straight from trees) is
    /// byte for byte what the typed statement serializes to once parsed:
    /// the output is the canonical form of our own types.
    #[test]
    fn streamed_statement_is_the_typed_statement() {
        let entries: Vec<Entry> = (0..50u8)
            .map(|i| Entry {
                path: RelPath::from_bytes(format!("dir/f{i}.bin")),
                kind: EntryKind::File {
                    sha256: [i; 32],
                    size: i as u64,
                    executable: false,
                    git_blob: None,
                },
            })
            .collect();
        let prefix = RelPath::from_bytes("out");
        let mut subjects = DescriptorList::new();
        subjects.push_entries(&prefix, &entries, true);
        let mut materials = DescriptorList::new();
        materials.push_entries(&prefix, &entries[..7], false);
        materials.push(ResourceDescriptor::uri("base", "oci://example/base"));
        let obs = BuildFacts {
            builder_id: "https://ci.example.com".into(),
            external: ExternalParameters {
                command: Some(vec!["make".into()]),
                materials: vec!["out".into()],
                products: vec!["out".into()],
                excludes: Vec::new(),
                subjects: Vec::new(),
            },
            internal: InternalParameters {
                materials_as: "files".into(),
                products_as: "files".into(),
                on_error: "fail".into(),
                ..Default::default()
            },
            materials,
            exit: Some(crate::provenance::ExitStatus::observed(0, "run")),
            started: time::OffsetDateTime::UNIX_EPOCH,
            finished: time::OffsetDateTime::UNIX_EPOCH,
            invocation_id: "id".into(),
            byproducts: Vec::new(),
        };
        let provenance = obs.into_provenance();
        let streamed = serde_json::to_vec(&StatementRef::slsa(&subjects, &provenance)).unwrap();
        let typed = Statement::parse(&streamed).unwrap();
        assert_eq!(typed.subject.len(), 50);
        assert_eq!(typed.to_bytes().unwrap(), streamed);
        let p = typed.provenance().unwrap();
        assert_eq!(p.build_definition.resolved_dependencies.len(), 8);
        assert_eq!(
            serde_json::to_vec(&p).unwrap(),
            serde_json::to_vec(&provenance).unwrap()
        );
        // Built from the typed parts, the same bytes again: the predicate
        // is in them, never silently left out.
        let built = Statement::new_slsa(typed.subject.clone(), &p).unwrap();
        assert_eq!(built.to_bytes().unwrap(), streamed);
    }
}
