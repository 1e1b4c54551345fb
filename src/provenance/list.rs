//! Lists of resource descriptors serialized straight from hashed trees.
//!
//! A build with 100k products has 100k subjects. Building a
//! [`ResourceDescriptor`] for each (a name, a digest set, its strings) took
//! 65 ms and ~40 MB in the sidecar before a byte was serialized; here the
//! JSON for each file is written from the tree entry itself, byte for byte
//! what [`ResourceDescriptor::from_entry`] would serialize to (tested).
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::digest::{encode_into, Entry, EntryKind, RelPath};

use super::{ResourceDescriptor, ALG_SHA256, ANN_PATH_ENCODING};

/// One run of a list.
#[derive(Debug, Clone)]
enum Part<'a> {
    One(ResourceDescriptor),
    /// Entries of a tree, named `prefix/path`; with `files_only`, entries
    /// that are not regular files are left out (subjects need a digest).
    Entries {
        prefix: &'a RelPath,
        entries: &'a [Entry],
        files_only: bool,
    },
}

/// An ordered list of descriptors: some built, some borrowed from trees.
#[derive(Debug, Clone, Default)]
pub struct DescriptorList<'a>(Vec<Part<'a>>);

impl<'a> DescriptorList<'a> {
    pub fn new() -> Self {
        DescriptorList(Vec::new())
    }

    pub fn push(&mut self, d: ResourceDescriptor) {
        self.0.push(Part::One(d));
    }

    /// Every entry of `entries`, as [`ResourceDescriptor::from_entry`]
    /// describes it, or only the regular files.
    pub fn push_entries(&mut self, prefix: &'a RelPath, entries: &'a [Entry], files_only: bool) {
        self.0.push(Part::Entries {
            prefix,
            entries,
            files_only,
        });
    }

    fn counted(e: &Entry, files_only: bool) -> bool {
        !files_only || matches!(e.kind, EntryKind::File { .. })
    }

    pub fn extend(&mut self, ds: impl IntoIterator<Item = ResourceDescriptor>) {
        self.0.extend(ds.into_iter().map(Part::One));
    }

    pub fn len(&self) -> usize {
        self.0
            .iter()
            .map(|p| match p {
                Part::One(_) => 1,
                Part::Entries {
                    entries,
                    files_only,
                    ..
                } => entries
                    .iter()
                    .filter(|e| Self::counted(e, *files_only))
                    .count(),
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About how many bytes of JSON this list serializes to (a little
    /// more, rarely less): a buffer sized from it is not reallocated.
    pub fn json_size_hint(&self) -> usize {
        self.0
            .iter()
            .map(|p| match p {
                Part::One(_) => 512,
                Part::Entries {
                    prefix, entries, ..
                } => entries
                    .iter()
                    // {"name":"P/N","digest":{"sha256":"<64>"}},
                    .map(|e| prefix.as_bytes().len() + e.path.as_bytes().len() + 100)
                    .sum(),
            })
            .sum()
    }

    /// The descriptors in order, built (for the first few in a log line,
    /// or where a caller needs owned values).
    pub fn iter(&self) -> impl Iterator<Item = ResourceDescriptor> + '_ {
        self.0.iter().flat_map(|p| -> Box<dyn Iterator<Item = _>> {
            match p {
                Part::One(d) => Box::new(std::iter::once(d.clone())),
                Part::Entries {
                    prefix,
                    entries,
                    files_only,
                } => Box::new(
                    entries
                        .iter()
                        .filter(|e| Self::counted(e, *files_only))
                        .map(|e| ResourceDescriptor::from_entry(prefix, e)),
                ),
            }
        })
    }

    pub fn to_vec(&self) -> Vec<ResourceDescriptor> {
        self.iter().collect()
    }
}

impl From<Vec<ResourceDescriptor>> for DescriptorList<'_> {
    fn from(v: Vec<ResourceDescriptor>) -> Self {
        DescriptorList(v.into_iter().map(Part::One).collect())
    }
}

/// Lists that may be absent from the JSON when empty, as the specs'
/// optional repeated fields are.
pub trait Descriptors {
    fn is_empty(&self) -> bool;
}

impl Descriptors for Vec<ResourceDescriptor> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl Descriptors for DescriptorList<'_> {
    fn is_empty(&self) -> bool {
        DescriptorList::is_empty(self)
    }
}

/// A regular file's descriptor as [`ResourceDescriptor::sha256`] plus the
/// path-encoding annotation serializes it: `name`, `digest`,
/// `annotations`, in the struct's field order.
struct FileDescriptor<'s> {
    name: &'s str,
    sha256: &'s [u8; 32],
    encoded: bool,
}

struct Sha256Set<'s>(&'s [u8; 32]);

impl Serialize for Sha256Set<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut hex = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(self.0, &mut hex);
        let hex = std::str::from_utf8(&hex).unwrap_or_default();
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(ALG_SHA256, hex)?;
        m.end()
    }
}

struct PercentAnnotation;

impl Serialize for PercentAnnotation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(ANN_PATH_ENCODING, "percent")?;
        m.end()
    }
}

impl Serialize for FileDescriptor<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", self.name)?;
        m.serialize_entry("digest", &Sha256Set(self.sha256))?;
        if self.encoded {
            m.serialize_entry("annotations", &PercentAnnotation)?;
        }
        m.end()
    }
}

impl Serialize for DescriptorList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        // Reused for every name: no allocation per file.
        let mut joined: Vec<u8> = Vec::new();
        let mut name = String::new();
        for part in &self.0 {
            let (prefix, entries, files_only) = match part {
                Part::One(d) => {
                    seq.serialize_element(d)?;
                    continue;
                }
                Part::Entries {
                    prefix,
                    entries,
                    files_only,
                } => (*prefix, *entries, *files_only),
            };
            for e in entries {
                match &e.kind {
                    EntryKind::File { sha256, .. } => {
                        // RelPath::join, into the reused buffer.
                        joined.clear();
                        joined.extend_from_slice(prefix.as_bytes());
                        if !prefix.is_empty()
                            && !e.path.is_empty()
                            && !prefix.as_bytes().ends_with(b"/")
                        {
                            joined.push(b'/');
                        }
                        joined.extend_from_slice(e.path.as_bytes());
                        name.clear();
                        let encoded = encode_into(&joined, &mut name);
                        seq.serialize_element(&FileDescriptor {
                            name: &name,
                            sha256,
                            encoded,
                        })?;
                    }
                    _ if files_only => {}
                    _ => seq.serialize_element(&ResourceDescriptor::from_entry(prefix, e))?,
                }
            }
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::SpecialKind;

    fn entry(path: &[u8], kind: EntryKind) -> Entry {
        Entry {
            path: RelPath::from_bytes(path.to_vec()),
            kind,
        }
    }

    fn file(n: u8) -> EntryKind {
        EntryKind::File {
            sha256: [n; 32],
            size: 1,
            executable: n.is_multiple_of(2),
            git_blob: None,
        }
    }

    #[test]
    fn serializes_exactly_as_the_built_descriptors() {
        let entries = vec![
            entry(b"a.txt", file(1)),
            entry(b"dir/b \"quoted\"\\.bin", file(2)),
            entry(b"dir/\xff\xfe-latin1", file(3)),
            entry(b"\xe4ml\xc3\xa4ut", file(4)),
            entry(
                b"link",
                EntryKind::Symlink {
                    target: b"../x\xff".to_vec(),
                },
            ),
            entry(
                b"pipe",
                EntryKind::Special {
                    kind: SpecialKind::Fifo,
                },
            ),
            entry(
                b"unreadable",
                EntryKind::Error {
                    message: "permission denied".into(),
                },
            ),
            entry(b"z/\n newline", file(5)),
        ];
        for prefix in [&b""[..], b"out", b"out/", b"/abs/\xff dir"] {
            let prefix = RelPath::from_bytes(prefix.to_vec());
            for files_only in [false, true] {
                let mut list = DescriptorList::new();
                list.push(ResourceDescriptor::uri("first", "https://example.com/x"));
                list.push_entries(&prefix, &entries, files_only);
                list.push(ResourceDescriptor::sha256("last", &[9; 32]));
                let built: Vec<ResourceDescriptor> =
                    std::iter::once(ResourceDescriptor::uri("first", "https://example.com/x"))
                        .chain(
                            entries
                                .iter()
                                .filter(|e| !files_only || matches!(e.kind, EntryKind::File { .. }))
                                .map(|e| ResourceDescriptor::from_entry(&prefix, e)),
                        )
                        .chain(std::iter::once(ResourceDescriptor::sha256(
                            "last", &[9; 32],
                        )))
                        .collect();
                assert_eq!(
                    serde_json::to_string(&list).unwrap(),
                    serde_json::to_string(&built).unwrap(),
                    "prefix {prefix:?} files_only {files_only}"
                );
                assert_eq!(list.len(), built.len());
                assert_eq!(list.to_vec(), built);
            }
        }
    }

    /// The sidecar sizes its output buffer from the hint, under a memory
    /// limit that grows by well under 1 KiB per file (docs/pod-mode.md): the
    /// hint must cover the JSON of a tree's files and not overshoot it by
    /// more than a little, whatever the lengths of the prefix and the names.
    #[test]
    fn the_size_hint_is_close_to_the_serialized_size() {
        for (prefix, name_len) in [("", 1), ("out", 8), ("workspace/out", 40), ("p", 200)] {
            let prefix = RelPath::from_bytes(prefix.as_bytes().to_vec());
            let entries: Vec<Entry> = (0..50u8)
                .map(|i| {
                    let name = format!("{i:02}{}", "n".repeat(name_len));
                    entry(name.as_bytes(), file(i))
                })
                .collect();
            let mut list = DescriptorList::new();
            list.push_entries(&prefix, &entries, true);
            let actual = serde_json::to_string(&list).unwrap().len();
            let hint = list.json_size_hint();
            assert!(
                hint >= actual * 9 / 10 && hint <= actual * 12 / 10,
                "prefix {prefix:?}, names of {name_len}: hint {hint} for {actual} bytes"
            );
        }
    }

    /// `resolvedDependencies` is optional: a build with no materials, or
    /// whose material roots hold no regular file where only files are
    /// listed, leaves it out rather than writing `[]`; so does a statement
    /// read back and written out again.
    #[test]
    fn an_empty_list_leaves_resolved_dependencies_out() {
        let fifo = vec![entry(
            b"pipe",
            EntryKind::Special {
                kind: SpecialKind::Fifo,
            },
        )];
        let prefix = RelPath::from_bytes(b"src".to_vec());
        let mut only_special = DescriptorList::new();
        only_special.push_entries(&prefix, &fifo, true);
        let mut one = DescriptorList::new();
        one.push_entries(&prefix, &fifo, false);
        for (deps, want) in [
            (DescriptorList::new(), ""),
            (only_special, ""),
            (
                one,
                r#","resolvedDependencies":[{"name":"src/pipe","uri":"special:fifo","annotations":{"provenant.fileType":"fifo"}}]"#,
            ),
        ] {
            let bd = crate::provenance::BuildDefinition {
                build_type: "t".into(),
                external_parameters: serde_json::Map::new(),
                internal_parameters: serde_json::Map::new(),
                resolved_dependencies: deps,
            };
            let json = format!(r#"{{"buildType":"t","externalParameters":{{}}{want}}}"#);
            assert_eq!(serde_json::to_string(&bd).unwrap(), json);
            // Read back (built descriptors), it writes out the same.
            let back: crate::provenance::BuildDefinition = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
        }
    }
}
