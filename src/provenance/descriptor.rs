use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{Entry, EntryKind, RelPath, Tree};

/// Digest algorithm names as the in-toto DigestSet spec spells them.
pub const ALG_SHA256: &str = "sha256";
/// Git tree object id of a directory (SHA-1 object format).
pub const ALG_GIT_TREE: &str = "gitTree";
/// Go's dirhash Hash1 of a directory, in hex (DigestSet spec v1.1).
pub const ALG_DIR_HASH: &str = "dirHash";

/// Annotation set on descriptors whose `name` had to be percent-encoded
/// because the path was not valid UTF-8 (see `docs/build-type.md`).
pub const ANN_PATH_ENCODING: &str = "provenant.pathEncoding";
/// Annotation recording what a non-file entry was (symlink, fifo, ...).
pub const ANN_FILE_TYPE: &str = "provenant.fileType";
/// Annotation carrying a symlink's target string.
pub const ANN_LINK_TARGET: &str = "provenant.linkTarget";
/// Set beside [`ANN_LINK_TARGET`] when the target had to be
/// percent-encoded. Separate from [`ANN_PATH_ENCODING`], which is about the
/// name: one flag for both made a literal `%FF` target and the byte 0xFF
/// read the same whenever the name itself was plain.
pub const ANN_LINK_TARGET_ENCODING: &str = "provenant.linkTargetEncoding";
/// Annotation carrying why an entry could not be hashed.
pub const ANN_ERROR: &str = "provenant.error";

/// An in-toto DigestSet: algorithm -> lowercase hex. Serialized as a JSON
/// object with keys in byte order, exactly as a `BTreeMap` would be, but
/// stored as a short sorted vector: nearly every set holds one entry, and a
/// `BTreeMap` allocates a node with room for eleven, which made 100k
/// subjects cost ~55 MB more in the sidecar. Duplicate algorithms in input
/// are refused: which one would a verifier check?
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestSet(Vec<(String, String)>);

impl DigestSet {
    pub fn new() -> Self {
        DigestSet(Vec::new())
    }

    /// Sets `alg` to `value`, returning the previous value.
    pub fn insert(&mut self, alg: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let alg = alg.into();
        let value = value.into();
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&alg)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (alg, value));
                None
            }
        }
    }

    pub fn get(&self, alg: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(alg))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, alg: &str) -> bool {
        self.get(alg).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for DigestSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for DigestSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DigestSet;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a digest set (object of algorithm to hex string)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<DigestSet, A::Error> {
                let mut out = DigestSet(Vec::with_capacity(a.size_hint().unwrap_or(1).min(8)));
                while let Some((k, v)) = a.next_entry::<String, String>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate digest algorithm '{k}'"
                        )));
                    }
                    out.insert(k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// An in-toto ResourceDescriptor. At least one of `uri`, `digest`, `content`
/// must be set for the descriptor to be valid; constructors here guarantee it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "DigestSet::is_empty")]
    pub digest: DigestSet,
    /// Base64 (standard, padded) of the resource's bytes, as protobuf JSON
    /// encodes `bytes` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

impl ResourceDescriptor {
    /// A named resource with one sha256 digest.
    pub fn sha256(name: impl Into<String>, digest: &[u8; 32]) -> Self {
        let mut d = DigestSet::new();
        d.insert(ALG_SHA256, hex::encode(digest));
        ResourceDescriptor {
            name: Some(name.into()),
            digest: d,
            ..Default::default()
        }
    }

    /// A named resource identified only by a URI (e.g. an image reference
    /// whose digest is not known).
    pub fn uri(name: impl Into<String>, uri: impl Into<String>) -> Self {
        ResourceDescriptor {
            name: Some(name.into()),
            uri: Some(uri.into()),
            ..Default::default()
        }
    }

    pub fn annotate(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.annotations.insert(key.to_string(), value.into());
        self
    }

    /// The descriptor of one entry of a hashed tree. `prefix` is the name
    /// the user gave the root (e.g. `src`), so names read as paths from
    /// where the command ran. Entries that are not regular files have no
    /// content digest; they are described by annotations and a `uri` naming
    /// their kind so the descriptor stays valid and nothing is silently
    /// dropped.
    pub fn from_entry(prefix: &RelPath, entry: &Entry) -> ResourceDescriptor {
        let path = prefix.join(&entry.path);
        let (name, encoded) = path.encoded();
        let mut rd = match &entry.kind {
            EntryKind::File { sha256, .. } => ResourceDescriptor::sha256(name.clone(), sha256),
            EntryKind::Symlink { target } => {
                let (t, t_encoded) = RelPath::from_bytes(target.clone()).encoded();
                let mut rd = ResourceDescriptor::uri(name.clone(), format!("symlink:{t}"))
                    .annotate(ANN_FILE_TYPE, "symlink")
                    .annotate(ANN_LINK_TARGET, t);
                if t_encoded {
                    rd = rd.annotate(ANN_LINK_TARGET_ENCODING, "percent");
                }
                rd
            }
            EntryKind::Special { kind } => {
                ResourceDescriptor::uri(name.clone(), format!("special:{kind}"))
                    .annotate(ANN_FILE_TYPE, kind.to_string())
            }
            EntryKind::Error { message } => {
                ResourceDescriptor::uri(name.clone(), "error:unreadable")
                    .annotate(ANN_ERROR, message.clone())
            }
        };
        if encoded {
            rd = rd.annotate(ANN_PATH_ENCODING, "percent");
        }
        rd
    }

    /// One descriptor for a whole directory, by its in-toto `dirHash`: an
    /// aggregate of the per-file sha256 digests, so a large tree costs one
    /// line and no second pass over its content.
    pub fn dir_hash(
        prefix: &RelPath,
        tree: &Tree,
    ) -> Result<ResourceDescriptor, crate::digest::DigestError> {
        Ok(Self::whole_dir(prefix, ALG_DIR_HASH, tree.dir_hash()?))
    }

    /// A directory root named by `prefix` (`.` when empty) with one digest.
    fn whole_dir(prefix: &RelPath, alg: &str, value: String) -> ResourceDescriptor {
        let (name, encoded) = prefix.encoded();
        let mut d = DigestSet::new();
        d.insert(alg, value);
        let rd = ResourceDescriptor {
            name: Some(if name.is_empty() { ".".into() } else { name }),
            digest: d,
            ..Default::default()
        };
        if encoded {
            rd.annotate(ANN_PATH_ENCODING, "percent")
        } else {
            rd
        }
    }

    /// One descriptor for a whole directory, by its git tree id, so a large
    /// source tree costs one line instead of one descriptor per file.
    /// `None` when the tree was walked without git blob ids.
    pub fn git_tree(prefix: &RelPath, tree: &Tree) -> Option<ResourceDescriptor> {
        Some(Self::whole_dir(prefix, ALG_GIT_TREE, tree.git_tree()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_set_serializes_like_a_sorted_map() {
        let mut d = DigestSet::new();
        d.insert("sha512", "bb");
        d.insert("gitTree", "cc");
        d.insert("sha256", "aa");
        assert_eq!(d.insert("sha256", "a1"), Some("aa".to_string()));
        let mut m = BTreeMap::new();
        m.insert("sha512", "bb");
        m.insert("gitTree", "cc");
        m.insert("sha256", "a1");
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        let back: DigestSet = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.get("gitTree").map(String::as_str), Some("cc"));
        assert_eq!(back.len(), 3);
    }

    #[test]
    fn digest_set_refuses_duplicate_algorithms() {
        let err = serde_json::from_str::<DigestSet>(r#"{"sha256":"aa","sha256":"bb"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate digest algorithm 'sha256'"), "{err}");
        assert!(serde_json::from_str::<DigestSet>(r#"{"sha256":1}"#).is_err());
    }

    /// What `verify` prints for a signed statement whose digest is not an
    /// object says what was expected there.
    #[test]
    fn a_digest_that_is_not_an_object_says_what_was_expected() {
        for digest in ["5", r#""abc""#, "[]", "null"] {
            let st = format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"a","digest":{digest}}}],"predicateType":"x","predicate":{{}}}}"#
            );
            let err = crate::provenance::Statement::parse(st.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("statement is not valid JSON: invalid type: ")
                    && err.contains(
                        ", expected a digest set (object of algorithm to hex string) at line 1"
                    ),
                "{err}"
            );
        }
    }
}
