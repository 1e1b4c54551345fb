use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{Entry, EntryKind, RelPath, Tree};

/// Digest algorithm names as the in-toto DigestSet spec spells them.
pub const ALG_SHA256: &str = "sha256";
/// Git tree object id of a directory (SHA-1 object format).
pub const ALG_GIT_TREE: &str = "gitTree";

/// Annotation set on descriptors whose `name` had to be percent-encoded
/// because the path was not valid UTF-8 (see `docs/build-type.md`).
pub const ANN_PATH_ENCODING: &str = "provenant.pathEncoding";
/// Annotation recording what a non-file entry was (symlink, fifo, ...).
pub const ANN_FILE_TYPE: &str = "provenant.fileType";
/// Annotation carrying a symlink's target string.
pub const ANN_LINK_TARGET: &str = "provenant.linkTarget";
/// Annotation carrying why an entry could not be hashed.
pub const ANN_ERROR: &str = "provenant.error";

/// An in-toto ResourceDescriptor. At least one of `uri`, `digest`, `content`
/// must be set for the descriptor to be valid; constructors here guarantee it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
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
        let mut d = BTreeMap::new();
        d.insert(ALG_SHA256.to_string(), hex::encode(digest));
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

    pub fn sha256_hex(&self) -> Option<&str> {
        self.digest.get(ALG_SHA256).map(String::as_str)
    }

    pub fn annotate(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.annotations.insert(key.to_string(), value.into());
        self
    }

    /// Descriptors for every entry of a hashed tree. `prefix` is the name the
    /// user gave the root (e.g. `src`), so names read as paths from where the
    /// command ran. Entries that are not regular files have no content digest;
    /// they are described by annotations and a `uri` naming their kind so the
    /// descriptor stays valid and nothing is silently dropped.
    pub fn from_tree(prefix: &RelPath, tree: &Tree) -> Vec<ResourceDescriptor> {
        tree.entries
            .iter()
            .map(|e| Self::from_entry(prefix, e))
            .collect()
    }

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
                    rd = rd.annotate(ANN_PATH_ENCODING, "percent");
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

    /// One descriptor for a whole directory, by its git tree id, so a large
    /// source tree costs one line instead of one descriptor per file.
    /// `None` when the tree was walked without git blob ids.
    pub fn git_tree(prefix: &RelPath, tree: &Tree) -> Option<ResourceDescriptor> {
        let (name, encoded) = prefix.encoded();
        let mut d = BTreeMap::new();
        d.insert(ALG_GIT_TREE.to_string(), tree.git_tree()?);
        let mut rd = ResourceDescriptor {
            name: Some(if name.is_empty() { ".".into() } else { name }),
            digest: d,
            ..Default::default()
        };
        if encoded {
            rd = rd.annotate(ANN_PATH_ENCODING, "percent");
        }
        Some(rd)
    }
}
