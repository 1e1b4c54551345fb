//! What the watch saw, once it ended: the index turned into trees, with
//! what was still due hashed now and degraded roots walked from scratch.
use super::*;

/// The index once the build is over.
pub struct Observed {
    pub(super) tops: Vec<(Top, TopIndex)>,
    pub(super) leftover: Option<inotify::Inotify>,
    /// Tops whose entries a [`Observed::tree`] call took.
    pub(super) consumed: Vec<bool>,
    pub(super) excludes: Excludes,
    pub(super) git_blobs: bool,
}

impl Observed {
    /// Resolves every file the watcher had not hashed yet (written in the
    /// last moments, still open, created by `link`...) on all cores.
    /// Failures follow `on_error`, as in a walk.
    pub fn resolve(&mut self, on_error: ErrorPolicy) -> Result<usize, DigestError> {
        let git_blobs = self.git_blobs;
        let mut resolved = 0;
        for (top, ix) in &mut self.tops {
            if ix.degraded.is_some() {
                continue;
            }
            let todo: Vec<(&RelPath, &mut Node)> = ix
                .nodes
                .iter_mut()
                .filter(|(_, n)| !matches!(n.state, State::Known(_)))
                .collect();
            if todo.is_empty() {
                continue;
            }
            resolved += todo.len();
            let abs_top = &top.abs;
            let results: Vec<Result<(), DigestError>> = todo
                .into_par_iter()
                .map(|(k, n)| {
                    let abs = abs_top.join(k.as_path());
                    n.state = match resolve_beneath(top, k.as_bytes(), git_blobs) {
                        Ok(Some((kind, ino))) => {
                            n.ino = ino;
                            State::Known(kind)
                        }
                        // Now a directory: its files are nodes of their own.
                        Ok(None) => State::Dirty,
                        Err(e) => {
                            let err = digest::io_error(&abs, e);
                            match on_error {
                                ErrorPolicy::Fail => return Err(err),
                                ErrorPolicy::Record => {
                                    tracing::warn!(path = %crate::escape::path(&abs), "{err}; recorded as an error entry");
                                    State::Known(EntryKind::Error {
                                        message: digest::error_message(err),
                                    })
                                }
                            }
                        }
                    };
                    Ok(())
                })
                .collect();
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
            ix.nodes.retain(|_, n| matches!(n.state, State::Known(_)));
        }
        Ok(resolved)
    }

    /// Roots whose index was dropped, with the reason.
    pub fn degraded(&self) -> Vec<(PathBuf, String)> {
        self.tops
            .iter()
            .filter_map(|(t, ix)| Some((t.abs.clone(), ix.degraded.clone()?)))
            .collect()
    }

    /// The tree of `root` (one of the roots given to [`Watch::start`]), as
    /// [`digest::hash_tree`] would walk it now; a degraded root is walked
    /// indeed. `None` for a root that was not watched. Call
    /// [`Observed::resolve`] first. `consume`: the last caller for a root
    /// takes its entries instead of copying 100k paths.
    pub fn tree(
        &mut self,
        root: &Path,
        opts: &WalkOptions,
        consume: bool,
    ) -> Option<Result<Tree, DigestError>> {
        // Through a link now (see `Watch::start`): walked by path, where
        // the sidecar's `root_nofollow` refuses it.
        let Some(canon) = unlinked(root) else {
            return std::fs::symlink_metadata(root)
                .is_ok()
                .then(|| digest::hash_tree(root, opts));
        };
        let i = self
            .tops
            .iter()
            .position(|(t, _)| canon.starts_with(&t.abs))?;
        let (top, ix) = &mut self.tops[i];
        if ix.degraded.is_some() || self.consumed[i] {
            return Some(digest::hash_tree(root, opts));
        }
        let prefix = canon
            .strip_prefix(&top.abs)
            .unwrap_or(Path::new(""))
            .as_os_str()
            .as_bytes()
            .to_vec();
        let keep = |rel: &[u8]| !self.excludes.excludes_file(rel);
        let entries: Vec<Entry> = if prefix.is_empty() && consume {
            self.consumed[i] = true;
            let nodes = std::mem::take(&mut ix.nodes);
            // Sized once: grown by doubling, 100k entries were copied
            // twice over and faulted in fresh pages each time.
            let mut v = Vec::with_capacity(nodes.len());
            v.extend(
                nodes
                    .into_iter()
                    .filter(|(k, _)| keep(k.as_bytes()))
                    .filter_map(|(path, n)| match n.state {
                        State::Known(kind) => Some(Entry { path, kind }),
                        _ => None,
                    }),
            );
            v
        } else {
            let keys = if prefix.is_empty() {
                ix.nodes.keys().cloned().collect()
            } else {
                subtree_keys(&ix.nodes, &prefix)
            };
            let strip = if prefix.is_empty() {
                0
            } else {
                prefix.len() + 1
            };
            keys.into_iter()
                .filter(|k| keep(&k.as_bytes()[strip..]))
                .filter_map(|k| {
                    let n = ix.nodes.get(k.as_bytes())?;
                    match &n.state {
                        State::Known(kind) => Some(Entry {
                            path: RelPath::from_bytes(&k.as_bytes()[strip..]),
                            kind: kind.clone(),
                        }),
                        _ => None,
                    }
                })
                .collect()
        };
        Some(Ok(Tree {
            root: root.to_path_buf(),
            // The watcher watches directories only.
            root_is_dir: true,
            entries,
        }))
    }

    /// About the size of the JSON describing every file in the index (a
    /// statement's subjects or materials): sizes the statement's buffer.
    pub fn json_size_hint(&self) -> usize {
        self.tops
            .iter()
            .flat_map(|(t, ix)| {
                let top = t.abs.as_os_str().len();
                ix.nodes.keys().map(move |k| k.as_bytes().len() + top + 100)
            })
            .sum::<usize>()
            + 64 * 1024
    }

    /// The inotify descriptor, to be dropped when the caller can afford
    /// it: closing it removes every watch, ~1 µs each in the kernel, 12 ms
    /// for a node_modules tree, which the sidecar spends after the
    /// attestation is out.
    pub fn unwatch(&mut self) -> impl Send {
        self.leftover.take()
    }
}

/// [`digest::entry_kind_at`] for `rel` below the root, its directory
/// opened beneath the root with no link followed: an entry whose path now
/// runs through a link (a directory swapped for one after its last event)
/// no longer names a file of the workspace, and is dropped (`Ok(None)`),
/// never read through the link.
fn resolve_beneath(
    top: &Top,
    rel: &[u8],
    git_blobs: bool,
) -> std::io::Result<Option<(EntryKind, u64)>> {
    let (parent, name) = split_name(rel);
    let dir = match top.open_dir(parent) {
        Ok(d) => d,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let name = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    dir.entry_kind(&name, git_blobs)
}
