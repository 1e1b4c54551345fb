//! Pod mode state: what the init container (`provenant snapshot`) saw before
//! the builder started, kept in a state volume only provenant's containers
//! mount, and the comparisons the sidecar (`provenant record`) makes at the
//! end (products = what changed; materials the build modified).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{decode_percent, Entry, EntryKind, RelPath, SpecialKind, Tree};
pub use crate::provenance::PodIdentity;
use crate::provenance::{clean_prefix, HashedRoot, ResourceDescriptor};

/// File name of the snapshot inside the state directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
pub const SNAPSHOT_VERSION: u32 = 1;
/// Annotation on byproducts describing a material the build changed.
pub const ANN_MATERIAL_CHANGE: &str = "provenant.materialChange";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no snapshot at {path}: run `provenant snapshot --state {state}` as an init container first")]
    Missing { path: String, state: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a provenant snapshot: {reason}")]
    Corrupt { path: String, reason: String },
}

/// One hashed root in the snapshot file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapRoot {
    pub given: String,
    pub is_dir: bool,
    pub entries: Vec<SnapEntry>,
}

/// One entry; exactly one of `sha256`, `link`, `special`, `error` is set.
/// Paths and link targets that are not UTF-8 are percent-encoded and
/// flagged, as in the attestation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapEntry {
    pub path: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub percent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_blob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link_percent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    pub taken_on: String,
    #[serde(default, skip_serializing_if = "PodIdentity::is_empty")]
    pub pod: PodIdentity,
    #[serde(default)]
    pub excludes: Vec<String>,
    /// `--subject` globs fixed at snapshot time for the sidecar.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    pub materials_as: String,
    pub materials: Vec<SnapRoot>,
    /// The workspace before the build: products are what differs from it.
    #[serde(default)]
    pub workspace: Vec<SnapRoot>,
    /// Inputs known by reference only (buildpacks, base images).
    #[serde(default)]
    pub references: Vec<ResourceDescriptor>,
}

fn encode(bytes: &[u8]) -> (String, bool) {
    RelPath::from_bytes(bytes.to_vec()).encoded()
}

fn decode(s: &str, percent: bool) -> Option<Vec<u8>> {
    if percent {
        decode_percent(s)
    } else {
        Some(s.as_bytes().to_vec())
    }
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

impl SnapEntry {
    pub fn from_entry(e: &Entry) -> SnapEntry {
        let (path, percent) = e.path.encoded();
        let mut s = SnapEntry {
            path,
            percent,
            sha256: None,
            size: None,
            executable: false,
            git_blob: None,
            link: None,
            link_percent: false,
            special: None,
            error: None,
        };
        match &e.kind {
            EntryKind::File {
                sha256,
                size,
                executable,
                git_blob,
            } => {
                s.sha256 = Some(hex::encode(sha256));
                s.size = Some(*size);
                s.executable = *executable;
                s.git_blob = git_blob.map(hex::encode);
            }
            EntryKind::Symlink { target } => {
                let (t, p) = encode(target);
                s.link = Some(t);
                s.link_percent = p;
            }
            EntryKind::Special { kind } => s.special = Some(kind.to_string()),
            EntryKind::Error { message } => s.error = Some(message.clone()),
        }
        s
    }

    pub fn to_entry(&self) -> Result<Entry, String> {
        let path = decode(&self.path, self.percent)
            .ok_or_else(|| format!("entry '{}': bad percent-encoding", self.path))?;
        let bad = |field: &str| format!("entry '{}': invalid {field}", self.path);
        let kind = if let Some(sha) = &self.sha256 {
            EntryKind::File {
                sha256: hex_array(sha).ok_or_else(|| bad("sha256"))?,
                size: self.size.unwrap_or(0),
                executable: self.executable,
                git_blob: match &self.git_blob {
                    Some(g) => Some(hex_array(g).ok_or_else(|| bad("gitBlob"))?),
                    None => None,
                },
            }
        } else if let Some(t) = &self.link {
            EntryKind::Symlink {
                target: decode(t, self.link_percent).ok_or_else(|| bad("link"))?,
            }
        } else if let Some(k) = &self.special {
            EntryKind::Special {
                kind: match k.as_str() {
                    "fifo" => SpecialKind::Fifo,
                    "socket" => SpecialKind::Socket,
                    "char-device" => SpecialKind::CharDevice,
                    "block-device" => SpecialKind::BlockDevice,
                    "empty-dir" => SpecialKind::EmptyDir,
                    _ => return Err(bad("special")),
                },
            }
        } else if let Some(m) = &self.error {
            EntryKind::Error { message: m.clone() }
        } else {
            return Err(format!(
                "entry '{}' has no sha256, link, special or error",
                self.path
            ));
        };
        Ok(Entry {
            path: RelPath::from_bytes(path),
            kind,
        })
    }
}

impl SnapRoot {
    pub fn from_hashed(r: &HashedRoot) -> SnapRoot {
        SnapRoot {
            given: r.given.display().to_string(),
            is_dir: r.is_dir,
            entries: r.tree.entries.iter().map(SnapEntry::from_entry).collect(),
        }
    }

    pub fn to_hashed(&self) -> Result<HashedRoot, String> {
        let given = PathBuf::from(&self.given);
        let prefix = if self.is_dir {
            clean_prefix(&given)
        } else {
            clean_prefix(given.parent().unwrap_or(Path::new("")))
        };
        let mut entries = self
            .entries
            .iter()
            .map(SnapEntry::to_entry)
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(HashedRoot {
            given: given.clone(),
            prefix,
            is_dir: self.is_dir,
            tree: Tree {
                root: given,
                root_is_dir: self.is_dir,
                entries,
            },
        })
    }
}

impl Snapshot {
    pub fn path_in(state: &Path) -> PathBuf {
        state.join(SNAPSHOT_FILE)
    }

    pub fn load(state: &Path) -> Result<Snapshot, StateError> {
        let path = Self::path_in(state);
        let p = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StateError::Missing {
                path: p.clone(),
                state: state.display().to_string(),
            },
            _ => StateError::Read {
                path: p.clone(),
                source,
            },
        })?;
        let snap: Snapshot = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(StateError::Corrupt {
                path: p,
                reason: format!(
                    "version {} (this provenant reads {SNAPSHOT_VERSION})",
                    snap.version
                ),
            });
        }
        Ok(snap)
    }

    pub fn roots(list: &[SnapRoot], path: &Path) -> Result<Vec<HashedRoot>, StateError> {
        list.iter()
            .map(|r| r.to_hashed())
            .collect::<Result<_, _>>()
            .map_err(|reason| StateError::Corrupt {
                path: path.display().to_string(),
                reason,
            })
    }
}

fn same_content(a: &EntryKind, b: &EntryKind) -> bool {
    match (a, b) {
        (
            EntryKind::File {
                sha256: x,
                executable: ex,
                ..
            },
            EntryKind::File {
                sha256: y,
                executable: ey,
                ..
            },
        ) => x == y && ex == ey,
        _ => a == b,
    }
}

/// The entries of `now` that are new or changed compared with the root of
/// the same name in `before` (all of them if there is none): the products.
pub fn changed(before: &[HashedRoot], mut now: HashedRoot) -> HashedRoot {
    let base: HashMap<&RelPath, &EntryKind> = before
        .iter()
        .filter(|b| b.given == now.given)
        .flat_map(|b| b.tree.entries.iter().map(|e| (&e.path, &e.kind)))
        .collect();
    // In place: with 100k products a copy of the tree is 16 MB of peak
    // memory in the sidecar.
    now.tree
        .entries
        .retain(|e| !base.get(&e.path).is_some_and(|k| same_content(k, &e.kind)));
    now
}

/// Materials the build modified, added or removed, as byproducts: never
/// silently accepted, always on the record.
pub fn material_changes(before: &HashedRoot, now: &HashedRoot) -> Vec<ResourceDescriptor> {
    let old: HashMap<&RelPath, &Entry> = before.tree.entries.iter().map(|e| (&e.path, e)).collect();
    let new: HashMap<&RelPath, &Entry> = now.tree.entries.iter().map(|e| (&e.path, e)).collect();
    let mut out = Vec::new();
    for e in &now.tree.entries {
        let change = match old.get(&e.path) {
            None => "added",
            Some(o) if !same_content(&o.kind, &e.kind) => "modified",
            Some(_) => continue,
        };
        out.push(
            ResourceDescriptor::from_entry(&before.prefix, e).annotate(ANN_MATERIAL_CHANGE, change),
        );
    }
    for e in &before.tree.entries {
        if !new.contains_key(&e.path) {
            let (name, _) = before.prefix.join(&e.path).encoded();
            out.push(
                ResourceDescriptor::uri(name, "removed:").annotate(ANN_MATERIAL_CHANGE, "removed"),
            );
        }
    }
    out
}

crate::exit_class!(StateError => crate::error::exit::CANNOT_CHECK);
