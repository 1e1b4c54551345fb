//! in-toto link metadata (the in-toto v1.0 `link` layout-verification
//! format, as `in-toto-run` writes it), derived from the same observation
//! as the SLSA statement, so a chain recorded by provenant also verifies
//! with `in-toto-verify` against a layout with MATCH rules between steps.
//! Signed as a DSSE envelope (payload type `application/vnd.in-toto+json`),
//! which in-toto 2.0+ loads beside classic metablocks, or as a classic
//! signed Metablock (`{"signatures": [...], "signed": LINK}`, the
//! signature over the securesystemslib canonical JSON of the link), which
//! every in-toto tool reads (in-toto 3.1.0's `in-toto-match-products` reads
//! only these); written as `<step>.<keyid[:8]>.link`, the name
//! in-toto-verify looks for.
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
    /// The link for step `name` from a statement we just made. A
    /// predicate that does not read back is an error: a link without its
    /// materials would fail every MATCH rule for a reason nobody could see.
    pub fn from_statement(
        name: &str,
        st: &Statement,
        command: &[String],
        exit_code: Option<i32>,
    ) -> Result<Link, super::StatementError> {
        let deps = st.provenance()?.build_definition.resolved_dependencies;
        let mut byproducts = BTreeMap::new();
        if let Some(c) = exit_code {
            byproducts.insert("return-value".to_string(), serde_json::json!(c));
        }
        Ok(Link {
            type_: "link".into(),
            name: name.into(),
            materials: artifacts(&deps),
            products: artifacts(&st.subject),
            byproducts,
            command: command.to_vec(),
            environment: BTreeMap::new(),
        })
    }

    /// The classic signed Metablock of this link, as JSON bytes.
    pub fn metablock(
        &self,
        signer: &dyn crate::sign::Signer,
    ) -> Result<Vec<u8>, crate::sign::KeyError> {
        let signed =
            serde_json::to_value(self).map_err(|e| crate::sign::KeyError::Sign(e.to_string()))?;
        let canonical = canonical_json(&signed).map_err(crate::sign::KeyError::Sign)?;
        let sig = signer.sign(&canonical)?;
        let block = serde_json::json!({
            "signatures": [{"keyid": signer.key_id(), "sig": hex::encode(sig)}],
            "signed": signed,
        });
        serde_json::to_vec(&block).map_err(|e| crate::sign::KeyError::Sign(e.to_string()))
    }

    /// The link as JSON, the DSSE payload; an error, never empty bytes to
    /// sign.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// `<step>.<first 8 of keyid>.link`
    pub fn file_name(&self, key_id: &str) -> String {
        format!("{}.{}.link", self.name, &key_id[..key_id.len().min(8)])
    }
}

/// securesystemslib's canonical JSON (`formats.encode_canonical`, the
/// OLPC form in-toto signs Metablocks over): object keys sorted by code
/// point, no whitespace, in strings only `\\` and `"` escaped (every other
/// character raw), integers only (no floats).
pub fn canonical_json(v: &serde_json::Value) -> Result<Vec<u8>, String> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.push(b'"');
        for c in s.chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '"' => out.extend_from_slice(b"\\\""),
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        out.push(b'"');
    }
    fn value(out: &mut Vec<u8>, v: &serde_json::Value) -> Result<(), String> {
        use serde_json::Value;
        match v {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                out.extend_from_slice(n.to_string().as_bytes())
            }
            Value::Number(n) => return Err(format!("canonical JSON has no floats ({n})")),
            Value::String(s) => string(out, s),
            Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    value(out, x)?;
                }
                out.push(b']');
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                // UTF-8 byte order is code point order, Python's str order.
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(out, k);
                    out.push(b':');
                    value(out, &m[k.as_str()])?;
                }
                out.push(b'}');
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    value(&mut out, v)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_json_is_securesystemslib_s() {
        let v = serde_json::json!({"b": [1, true, null], "a": "q\"\\\n\u{e9}", "é": {}});
        assert_eq!(
            String::from_utf8(super::canonical_json(&v).unwrap()).unwrap(),
            "{\"a\":\"q\\\"\\\\\n\u{e9}\",\"b\":[1,true,null],\"\u{e9}\":{}}"
        );
        assert!(super::canonical_json(&serde_json::json!(1.5)).is_err());
        // Integers of either sign, to the ends of i64 and u64.
        assert_eq!(
            super::canonical_json(&serde_json::json!([-1, i64::MIN, u64::MAX])).unwrap(),
            b"[-1,-9223372036854775808,18446744073709551615]"
        );
    }

    /// A predicate that does not read back gives no link, rather than a
    /// link without materials.
    #[test]
    fn a_statement_without_provenance_makes_no_link() {
        let mut st = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "out/app", "digest": {"sha256": "ab".repeat(32)}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"buildDefinition": {"buildType": "x", "externalParameters": {},
                "resolvedDependencies": [{"name": "src/a.c", "digest": {"sha256": "cd".repeat(32)}}]},
                "runDetails": {"builder": {"id": "b"}, "metadata": {}}}
        });
        let parse = |v: &serde_json::Value| {
            super::Statement::parse(&serde_json::to_vec(v).unwrap()).unwrap()
        };
        let link = super::Link::from_statement("build", &parse(&st), &[], Some(0)).unwrap();
        assert_eq!(link.materials.len(), 1, "{link:?}");
        assert_eq!(link.products.len(), 1, "{link:?}");
        let bytes = link.to_bytes().unwrap();
        assert_eq!(serde_json::from_slice::<super::Link>(&bytes).unwrap(), link);
        st["predicate"] = serde_json::json!({"not": "provenance"});
        assert!(super::Link::from_statement("build", &parse(&st), &[], Some(0)).is_err());
    }

    /// Only files are in-toto artifacts: a dependency known by URI (an
    /// image reference, even with a digest) and an upstream attestation the
    /// gate recorded are not, or every MATCH rule would trip over them.
    #[test]
    fn only_files_are_artifacts() {
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|x| x.repeat(64));
        let st = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "out/app", "digest": {"sha256": a}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"buildDefinition": {"buildType": "x", "externalParameters": {},
                "resolvedDependencies": [
                    {"name": "src/a.c", "digest": {"sha256": b}},
                    {"name": "builder-image", "uri": "oci://reg.example/b", "digest": {"sha256": c}},
                    {"name": "attestation:src", "digest": {"sha256": d}},
                    {"name": "src/no-digest", "uri": "symlink:a.c"}]},
                "runDetails": {"builder": {"id": "b"}}}
        });
        let st = super::Statement::parse(&serde_json::to_vec(&st).unwrap()).unwrap();
        let link = super::Link::from_statement("build", &st, &[], None).unwrap();
        assert_eq!(
            serde_json::to_value(&link.materials).unwrap(),
            serde_json::json!({"src/a.c": {"sha256": b}})
        );
        assert_eq!(
            serde_json::to_value(&link.products).unwrap(),
            serde_json::json!({"out/app": {"sha256": a}})
        );
    }
}
