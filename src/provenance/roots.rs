//! From the paths a user named to descriptors: materials become
//! `resolvedDependencies`, products become subjects.
use std::path::{Path, PathBuf};

use crate::digest::{self, DigestError, EntryKind, RelPath, Tree, WalkOptions};

use super::{DescriptorList, ResourceDescriptor};

/// How material roots are described.
/// How material roots become resolved dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaterialsAs {
    /// One descriptor per file (sha256).
    Files,
    /// One per directory root: its git tree id.
    Tree,
    /// One per directory root: its in-toto dirHash.
    Dirhash,
}
crate::choice!(MaterialsAs {
    Files = "files",
    Tree = "tree",
    Dirhash = "dirhash",
});

/// How product roots become subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductsAs {
    /// One subject per regular file (sha256).
    #[default]
    Files,
    /// One subject per directory root: its in-toto `dirHash` (files named
    /// directly are still one subject each). 100k files make a statement
    /// of a few hundred bytes instead of ~16 MB.
    Dirhash,
}
crate::choice!(ProductsAs {
    Files = "files",
    Dirhash = "dirhash",
});

#[derive(Debug, Clone)]
pub struct HashedRoot {
    /// The path as the user gave it.
    pub given: PathBuf,
    /// Prefix for descriptor names: the given path, cleaned; for a single
    /// file, its parent (the entry itself carries the file name).
    pub prefix: RelPath,
    pub is_dir: bool,
    pub tree: Tree,
}

#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("no products to attest: product root(s) {0} hold no regular files")]
    NoProducts(String),
}

/// `./src/` -> `src`, `.` -> ``; absolute paths stay absolute.
pub fn clean_prefix(p: &Path) -> RelPath {
    use std::os::unix::ffi::OsStrExt;
    let mut parts: Vec<&[u8]> = Vec::new();
    let bytes = p.as_os_str().as_bytes();
    let absolute = bytes.first() == Some(&b'/');
    for c in bytes.split(|b| *b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        parts.push(c);
    }
    let mut out = Vec::new();
    if absolute {
        out.push(b'/');
    }
    out.extend_from_slice(&parts.join(&b'/'));
    RelPath::from_bytes(out)
}

pub fn hash_root(path: &Path, opts: &WalkOptions) -> Result<HashedRoot, DigestError> {
    Ok(HashedRoot::from_tree(path, digest::hash_tree(path, opts)?))
}

impl HashedRoot {
    /// A root hashed elsewhere (the workspace watcher): `path` as the user
    /// gave it, `tree` its entries.
    pub fn from_tree(path: &Path, tree: Tree) -> HashedRoot {
        // As hashed, not as the path looks now: a directory swapped for a
        // file in between would otherwise move every subject's name.
        let is_dir = tree.root_is_dir;
        let prefix = if is_dir {
            clean_prefix(path)
        } else {
            clean_prefix(path.parent().unwrap_or(Path::new("")))
        };
        HashedRoot {
            given: path.to_path_buf(),
            prefix,
            is_dir,
            tree,
        }
    }
}

pub fn hash_roots(paths: &[PathBuf], opts: &WalkOptions) -> Result<Vec<HashedRoot>, DigestError> {
    paths.iter().map(|p| hash_root(p, opts)).collect()
}

/// Materials as resolvedDependencies, in the order the roots were given.
pub fn materials(
    roots: &[HashedRoot],
    how: MaterialsAs,
) -> Result<DescriptorList<'_>, DigestError> {
    let mut out = DescriptorList::new();
    for r in roots {
        let whole = match how {
            _ if !r.is_dir => None,
            MaterialsAs::Tree => ResourceDescriptor::git_tree(&r.prefix, &r.tree),
            MaterialsAs::Dirhash => Some(ResourceDescriptor::dir_hash(&r.prefix, &r.tree)?),
            MaterialsAs::Files => None,
        };
        match whole {
            Some(d) => out.push(d),
            None => out.push_entries(&r.prefix, &r.tree.entries, false),
        }
    }
    Ok(out)
}

/// Subjects: every regular file of the product roots. Other entries cannot
/// be subjects (a subject needs a digest): links, FIFOs, devices and files
/// that could not be read (`--on-error record`) are described in
/// [`product_byproducts`] instead, so nothing the build left drops out of
/// the record.
///
/// With [`ProductsAs::Dirhash`], a directory root is one subject: the
/// dirHash of its regular files, named by the root.
pub fn subjects(roots: &[HashedRoot], how: ProductsAs) -> Result<DescriptorList<'_>, RootsError> {
    let mut out = DescriptorList::new();
    let mut files = 0usize;
    for r in roots {
        files += r.tree.files().count();
        if how == ProductsAs::Dirhash && r.is_dir {
            out.push(ResourceDescriptor::dir_hash(&r.prefix, &r.tree)?);
            continue;
        }
        out.push_entries(&r.prefix, &r.tree.entries, true);
    }
    if files == 0 {
        return Err(RootsError::NoProducts(
            roots
                .iter()
                .map(|r| r.given.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    Ok(out)
}

/// Annotation naming what a byproduct is: `product` (an output entry that
/// is not a regular file), `observed-outputs` (the workspace the build
/// wrote, when the subjects are images it claimed).
pub const ANN_ROLE: &str = "provenant.role";

/// The entries of product roots that are not regular files (links with
/// their targets, FIFOs, devices, unreadable files), as byproducts: a
/// verifier sees everything the build left, and the stage gate can check
/// a directory as a whole.
pub fn product_byproducts(roots: &[HashedRoot]) -> Vec<ResourceDescriptor> {
    let mut out = Vec::new();
    for r in roots {
        for e in &r.tree.entries {
            if matches!(e.kind, EntryKind::File { .. }) {
                continue;
            }
            if let EntryKind::Error { message } = &e.kind {
                tracing::warn!(path = %r.prefix.join(&e.path).shown(), error = %message, "product could not be read; recorded as such");
            }
            out.push(ResourceDescriptor::from_entry(&r.prefix, e).annotate(ANN_ROLE, "product"));
        }
    }
    out
}

/// How the outputs that are not subjects are recorded, when subjects are
/// claimed images or files chosen with `--subject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtherOutputs {
    /// One dirHash byproduct per product root, of the whole tree.
    #[default]
    Dirhash,
    /// One byproduct per regular file that is not a subject.
    Files,
    /// Nothing beyond the subjects (said so in `internalParameters`).
    None,
}
crate::choice!(OtherOutputs {
    Dirhash = "dirhash",
    Files = "files",
    None = "none",
});

/// The product files `globs` select (relative to each root, the rules of
/// `--exclude`: `*` does not cross `/`, `**` does, a pattern matches the
/// whole path), as roots holding only those files.
pub fn select(roots: &[HashedRoot], globs: &digest::Excludes) -> Vec<HashedRoot> {
    roots
        .iter()
        .map(|r| {
            let entries = r
                .tree
                .entries
                .iter()
                .filter(|e| matches!(e.kind, EntryKind::File { .. }))
                .filter(|e| {
                    // A product named directly (not a directory) is matched by
                    // its name.
                    globs.excluded_bytes(e.path.as_bytes(), false)
                })
                .cloned()
                .collect();
            HashedRoot {
                given: r.given.clone(),
                prefix: r.prefix.clone(),
                is_dir: r.is_dir,
                tree: Tree {
                    root: r.tree.root.clone(),
                    root_is_dir: r.tree.root_is_dir,
                    entries,
                },
            }
        })
        .collect()
}

/// The outputs that are not subjects, as byproducts: each root's whole
/// tree as one dirHash (what a consumer can recompute from the directory),
/// or each regular file that is not in `subjects`.
pub fn other_outputs(
    roots: &[HashedRoot],
    subjects: &[HashedRoot],
    how: OtherOutputs,
) -> Vec<ResourceDescriptor> {
    match how {
        OtherOutputs::Dirhash => observed_outputs(roots),
        OtherOutputs::None => Vec::new(),
        OtherOutputs::Files => {
            let chosen: std::collections::HashSet<(&RelPath, &RelPath)> = subjects
                .iter()
                .flat_map(|r| r.tree.entries.iter().map(move |e| (&r.prefix, &e.path)))
                .collect();
            roots
                .iter()
                .flat_map(|r| {
                    let chosen = &chosen;
                    r.tree
                        .entries
                        .iter()
                        .filter(|e| matches!(e.kind, EntryKind::File { .. }))
                        .filter(move |e| !chosen.contains(&(&r.prefix, &e.path)))
                        .map(|e| {
                            ResourceDescriptor::from_entry(&r.prefix, e)
                                .annotate(ANN_ROLE, "output")
                        })
                })
                .collect()
        }
    }
}

/// The whole tree of each workspace as one dirHash byproduct, for builds
/// whose subjects are images the builder claimed: what the build actually
/// wrote stays on the record beside what it says it pushed.
pub fn observed_outputs(roots: &[HashedRoot]) -> Vec<ResourceDescriptor> {
    roots
        .iter()
        .map(|r| {
            let d = match ResourceDescriptor::dir_hash(&r.prefix, &r.tree) {
                Ok(d) => d,
                Err(e) => {
                    let (name, _) = r.prefix.encoded();
                    ResourceDescriptor::uri(name, "provenant:dirhash-unavailable")
                        .annotate(super::ANN_ERROR, e.to_string())
                }
            };
            d.annotate(ANN_ROLE, "observed-outputs")
        })
        .collect()
}

impl crate::error::ExitClass for RootsError {
    fn exit_code(&self) -> i32 {
        match self {
            RootsError::Digest(e) => crate::error::ExitClass::exit_code(e),
            RootsError::NoProducts(_) => crate::error::exit::CANNOT_CHECK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Security review: the builder swaps the root for a file between the
    /// hashing and the naming. The names must follow what was hashed.
    #[test]
    fn a_root_swapped_after_hashing_keeps_the_kind_it_was_hashed_as() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("out");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("app"), b"app").unwrap();
        let tree = digest::hash_tree(&root, &WalkOptions::default()).unwrap();
        assert!(tree.root_is_dir);
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::write(&root, b"now a file").unwrap();
        let h = HashedRoot::from_tree(&root, tree);
        assert!(h.is_dir);
        assert_eq!(h.prefix, clean_prefix(&root));

        let file = d.path().join("single");
        std::fs::write(&file, b"x").unwrap();
        let tree = digest::hash_tree(&file, &WalkOptions::default()).unwrap();
        assert!(!tree.root_is_dir);
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let h = HashedRoot::from_tree(&file, tree);
        assert!(!h.is_dir);
        assert_eq!(h.prefix, clean_prefix(d.path()));
    }

    #[test]
    fn prefixes_are_cleaned_of_dots_and_empty_components() {
        for (given, want) in [
            ("./src/", "src"),
            (".", ""),
            ("", ""),
            ("a//b/./c", "a/b/c"),
            ("/abs/./x/", "/abs/x"),
            ("/", "/"),
            ("..", ".."),
        ] {
            assert_eq!(
                clean_prefix(Path::new(given)).as_bytes(),
                want.as_bytes(),
                "{given:?}"
            );
        }
    }
}
