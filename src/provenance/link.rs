//! in-toto link metadata (the in-toto v1.0 `link` layout-verification
//! format, as `in-toto-run` writes it), derived from the same observation
//! as the SLSA statement, so a chain recorded by provenant also verifies
//! with `in-toto-verify` against a layout with MATCH rules between steps.
//! Signed as a DSSE envelope (payload type `application/vnd.in-toto+json`),
//! which in-toto 2.0+ loads beside classic metablocks; written as
//! `<step>.<keyid[:8]>.link`, the name in-toto-verify looks for.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ResourceDescriptor, Statement};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    #[serde(rename = "_type")]
    pub type_: String,
    pub name: String,
    pub materials: BTreeMap<String, BTreeMap<String, String>>,
    pub products: BTreeMap<String, BTreeMap<String, String>>,
    pub byproducts: BTreeMap<String, serde_json::Value>,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, serde_json::Value>,
}

/// Artifacts as in-toto records them: path -> {alg: hex}. Only files with a
/// sha256 count (references known by URI only are not artifacts).
fn artifacts(list: &[ResourceDescriptor]) -> BTreeMap<String, BTreeMap<String, String>> {
    list.iter()
        .filter_map(|d| {
            let name = d.name.as_deref()?;
            let sha = d.digest.get("sha256")?;
            if d.uri.is_some() || name.starts_with("attestation:") {
                return None;
            }
            Some((
                name.to_string(),
                BTreeMap::from([("sha256".to_string(), sha.clone())]),
            ))
        })
        .collect()
}

impl Link {
    /// The link for step `name` from a statement we just made.
    pub fn from_statement(
        name: &str,
        st: &Statement,
        command: &[String],
        exit_code: Option<i32>,
    ) -> Link {
        let deps = st
            .provenance()
            .map(|p| p.build_definition.resolved_dependencies)
            .unwrap_or_default();
        let mut byproducts = BTreeMap::new();
        if let Some(c) = exit_code {
            byproducts.insert("return-value".to_string(), serde_json::json!(c));
        }
        Link {
            type_: "link".into(),
            name: name.into(),
            materials: artifacts(&deps),
            products: artifacts(&st.subject),
            byproducts,
            command: command.to_vec(),
            environment: BTreeMap::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `<step>.<first 8 of keyid>.link`
    pub fn file_name(&self, key_id: &str) -> String {
        format!("{}.{}.link", self.name, &key_id[..key_id.len().min(8)])
    }
}
