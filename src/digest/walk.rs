//! The walk: every directory opened once, relative to its parent, listed
//! into one buffer; its files opened relative to it and hashed; directories
//! and files of one level in parallel, rayon's work stealing spreading deep
//! and wide trees alike over all cores.
use std::ffi::CStr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use super::dir::{Dir, Kind};
use super::{
    error_message, file_entry, hash_open, io_error, DigestError, Entry, EntryKind, ErrorPolicy,
    Excludes, RelPath, SpecialKind, WalkOptions,
};

pub(super) struct Walker<'a> {
    pub opts: &'a WalkOptions,
    pub excludes: Excludes,
    pub progress: Option<indicatif::ProgressBar>,
    /// As given: error messages name files below it.
    pub root: &'a Path,
}

/// Entries go to one shared vector in batches (sorted once at the end)
/// instead of a vector per directory, flattened again at every level: for
/// 100k files that was each entry copied once per directory level.
type Sink = Mutex<Vec<Entry>>;

fn push(sink: &Sink, batch: Vec<Entry>) {
    if !batch.is_empty() {
        sink.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(batch);
    }
}

impl Walker<'_> {
    fn abs(&self, rel: &RelPath) -> std::path::PathBuf {
        self.root.join(rel.as_path())
    }

    fn failed(&self, rel: &RelPath, e: std::io::Error) -> Result<Vec<Entry>, DigestError> {
        let abs = self.abs(rel);
        let err = io_error(&abs, e);
        match self.opts.on_error {
            ErrorPolicy::Fail => Err(err),
            ErrorPolicy::Record => {
                tracing::warn!(path = %crate::escape::path(&abs), "{err}; recorded as an error entry");
                Ok(vec![Entry {
                    path: rel.clone(),
                    kind: EntryKind::Error {
                        message: error_message(err),
                    },
                }])
            }
        }
    }

    pub fn walk_root(&self) -> Result<Vec<Entry>, DigestError> {
        self.walk_opened(Dir::open(self.root).map_err(|e| io_error(self.root, e))?)
    }

    /// The walk of a root directory opened by the caller.
    pub fn walk_opened(&self, dir: Dir) -> Result<Vec<Entry>, DigestError> {
        let sink = Mutex::new(Vec::new());
        self.walk_dir(&dir, &RelPath::default(), &sink)?;
        Ok(sink
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A root that is not a directory, opened by the caller without
    /// following links: one entry named `name`.
    pub fn single_opened(
        &self,
        f: std::fs::File,
        name: RelPath,
        ft: std::fs::FileType,
    ) -> Result<Vec<Entry>, DigestError> {
        if let Some(kind) = super::special_kind(&ft) {
            return Ok(vec![Entry {
                path: name,
                kind: EntryKind::Special { kind },
            }]);
        }
        match hash_open(f, self.opts.git_blobs) {
            Ok(d) => Ok(vec![file_entry(name, d)]),
            Err(e) => {
                let err = io_error(self.root, e);
                match self.opts.on_error {
                    ErrorPolicy::Fail => Err(err),
                    ErrorPolicy::Record => Ok(vec![Entry {
                        path: name,
                        kind: EntryKind::Error {
                            message: error_message(err),
                        },
                    }]),
                }
            }
        }
    }

    /// A root that is not a directory: one entry named `name`.
    pub fn single_file(
        &self,
        real: &Path,
        name: RelPath,
        ft: std::fs::FileType,
    ) -> Result<Vec<Entry>, DigestError> {
        if let Some(kind) = super::special_kind(&ft) {
            tracing::warn!(path = %crate::escape::path(real), kind = %kind, "not a regular file: recorded by kind, not opened");
            return Ok(vec![Entry {
                path: name,
                kind: EntryKind::Special { kind },
            }]);
        }
        let opened = std::fs::File::options()
            .read(true)
            .custom_flags(super::HASH_OPEN_FLAGS)
            .open(real);
        match opened.and_then(|f| hash_open(f, self.opts.git_blobs)) {
            Ok(d) => {
                if let Some(p) = &self.progress {
                    p.inc(d.size);
                }
                Ok(vec![file_entry(name, d)])
            }
            Err(e) => {
                let err = io_error(real, e);
                match self.opts.on_error {
                    ErrorPolicy::Fail => Err(err),
                    ErrorPolicy::Record => Ok(vec![Entry {
                        path: name,
                        kind: EntryKind::Error {
                            message: error_message(err),
                        },
                    }]),
                }
            }
        }
    }

    fn walk_dir(&self, dir: &Dir, rel: &RelPath, sink: &Sink) -> Result<(), DigestError> {
        let listing = match dir.list() {
            Ok(l) => l,
            Err(e) => {
                push(sink, self.failed(rel, e)?);
                return Ok(());
            }
        };
        let mut pending: Vec<(&CStr, RelPath, std::io::Result<Kind>)> = Vec::new();
        if self.opts.empty_dirs && !rel.as_bytes().is_empty() && listing.iter().next().is_none() {
            push(
                sink,
                vec![Entry {
                    path: rel.clone(),
                    kind: EntryKind::Special {
                        kind: SpecialKind::EmptyDir,
                    },
                }],
            );
            return Ok(());
        }
        for (name, d_type) in listing.iter() {
            let child = rel.child(name.to_bytes());
            let kind = dir.kind(name, d_type);
            let is_dir = matches!(kind, Ok(Kind::Dir));
            if !self.excludes.excluded(&child, is_dir) {
                pending.push((name, child, kind));
            }
        }
        pending
            .into_par_iter()
            .try_fold(Vec::new, |mut acc, (name, child, kind)| {
                match kind {
                    Ok(Kind::Dir) => match dir.open_dir(name) {
                        Ok(sub) => self.walk_dir(&sub, &child, sink)?,
                        Err(e) => acc.extend(self.failed(&child, e)?),
                    },
                    Ok(kind) => self.visit(dir, name, child, kind, &mut acc)?,
                    Err(e) => acc.extend(self.failed(&child, e)?),
                }
                Ok::<_, DigestError>(acc)
            })
            .try_for_each(|acc| {
                push(sink, acc?);
                Ok(())
            })
    }

    /// One entry that is not a directory.
    fn visit(
        &self,
        dir: &Dir,
        name: &CStr,
        rel: RelPath,
        kind: Kind,
        out: &mut Vec<Entry>,
    ) -> Result<(), DigestError> {
        let special = |kind| {
            tracing::warn!(path = %crate::escape::path(&self.abs(&rel)), kind = %kind, "not a regular file: recorded by kind, not opened");
            Entry {
                path: rel.clone(),
                kind: EntryKind::Special { kind },
            }
        };
        match kind {
            // A directory here was a file a moment ago: opening it as one
            // fails with a clear error below.
            Kind::File | Kind::Dir => {}
            Kind::Link => {
                match dir.read_link(name) {
                    Ok(target) => out.push(Entry {
                        path: rel,
                        kind: EntryKind::Symlink { target },
                    }),
                    Err(e) => out.extend(self.failed(&rel, e)?),
                }
                return Ok(());
            }
            Kind::Fifo | Kind::Socket | Kind::Char | Kind::Block => {
                out.extend(kind.special().map(special));
                return Ok(());
            }
        }
        match dir
            .open_file(name)
            .and_then(|f| hash_open(f, self.opts.git_blobs))
        {
            Ok(d) => {
                if let Some(p) = &self.progress {
                    p.inc(d.size);
                }
                out.push(file_entry(rel, d));
            }
            Err(e) => out.extend(self.failed(&rel, e)?),
        }
        Ok(())
    }
}
