//! What the watcher knows about every file below the watched roots, kept
//! current from inotify events: the content of a file whose events have
//! all been applied is exactly what the index says.
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::digest::{EntryKind, RelPath};

/// What an event says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Touch {
    /// Created or written, not closed yet.
    Write,
    /// A writer closed it.
    Closed,
    /// Renamed in from elsewhere or found by a scan: complete as it is.
    Appeared,
    /// Mode, times or link count changed.
    Attrib,
}

/// What should happen to a node at the end of the current event batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    Nothing,
    /// A writer closed it, or it appeared complete (renamed in, found by a
    /// scan): hash it now.
    Hash,
    /// Being written (created, modified, no close yet): hash once it has
    /// been quiet for a while, or at the end.
    Idle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Changed since it was last resolved.
    Dirty,
    /// Handed to a hashing thread at generation `gen`.
    Queued,
    Known(EntryKind),
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    /// Bumped by every event: a hash started before the latest event is
    /// stale and is dropped when it comes back.
    pub gen: u32,
    pub due: Due,
    pub state: State,
    /// The inode the known state was read from. Events are applied a
    /// moment after they happen, and a hash job opens a path as it is then;
    /// a rename carries a digest to the new name only when the inode found
    /// there is this one.
    pub ino: u64,
}

/// The nodes of one watched root, keyed by path relative to it. A
/// `BTreeMap` so that the tree comes out in byte order at the end without
/// a sort of 100k paths on the latency path.
#[derive(Debug, Default)]
pub(super) struct TopIndex {
    pub nodes: BTreeMap<RelPath, Node>,
    /// Set when events may have been lost (queue overflow, a directory
    /// that could not be watched, the root itself moved): the index is
    /// then dropped and the root hashed from scratch at the end.
    pub degraded: Option<String>,
}

impl TopIndex {
    /// Records an event on `rel`. Returns true when the node was not yet
    /// touched in this batch (the caller remembers it for the batch end).
    pub fn touch(&mut self, rel: &[u8], what: Touch) -> bool {
        let node = match self.nodes.get_mut(rel) {
            Some(n) => n,
            None => self.nodes.entry(RelPath::from_bytes(rel)).or_insert(Node {
                gen: 0,
                due: Due::Nothing,
                state: State::Dirty,
                ino: 0,
            }),
        };
        node.gen = node.gen.wrapping_add(1);
        node.state = State::Dirty;
        let first = node.due == Due::Nothing;
        node.due = match (what, node.due) {
            (Touch::Closed | Touch::Appeared, _) => Due::Hash,
            // chmod or touch after the writer closed: still complete.
            (Touch::Attrib, Due::Hash) => Due::Hash,
            (Touch::Attrib | Touch::Write, _) => Due::Idle,
        };
        first
    }

    pub fn remove(&mut self, rel: &[u8]) -> Option<Node> {
        self.nodes.remove(rel)
    }

    /// Everything strictly below the directory `rel`, removed.
    pub fn take_subtree(&mut self, rel: &[u8]) -> Vec<(RelPath, Node)> {
        let keys = subtree_keys(&self.nodes, rel);
        keys.into_iter()
            .filter_map(|k| self.nodes.remove_entry(k.as_bytes()))
            .collect()
    }
}

/// Keys of `map` strictly below the directory `dir` ("" is the root).
pub(super) fn subtree_keys<V>(map: &BTreeMap<RelPath, V>, dir: &[u8]) -> Vec<RelPath> {
    if dir.is_empty() {
        return map.keys().cloned().collect();
    }
    let mut lo = dir.to_vec();
    lo.push(b'/');
    map.range::<[u8], _>((Bound::Included(&lo[..]), Bound::Unbounded))
        .take_while(|(k, _)| k.as_bytes().starts_with(&lo))
        .map(|(k, _)| k.clone())
        .collect()
}

/// `dir/name`, or `name` at the root.
pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(dir.len() + 1 + name.len());
    v.extend_from_slice(dir);
    if !dir.is_empty() {
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(ix: &mut TopIndex, k: &str) {
        ix.touch(k.as_bytes(), Touch::Closed);
        let n = ix.nodes.get_mut(k.as_bytes()).unwrap();
        n.due = Due::Nothing;
        n.state = State::Known(EntryKind::Special {
            kind: crate::digest::SpecialKind::Fifo,
        });
    }

    #[test]
    fn subtrees_are_found_by_prefix_not_by_string_prefix() {
        let mut ix = TopIndex::default();
        for k in ["a", "a-x", "a.txt", "a/b", "a/c/d", "a0", "b/a/x"] {
            known(&mut ix, k);
        }
        let keys: Vec<String> = subtree_keys(&ix.nodes, b"a")
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(keys, ["a/b", "a/c/d"]);
        assert_eq!(subtree_keys(&ix.nodes, b"").len(), 7);
        let taken: Vec<String> = ix
            .take_subtree(b"a")
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(taken, ["a/b", "a/c/d"]);
        let left: Vec<String> = ix.nodes.keys().map(|k| k.to_string()).collect();
        assert_eq!(left, ["a", "a-x", "a.txt", "a0", "b/a/x"]);
    }

    #[test]
    fn a_close_after_a_write_is_due_for_hashing_an_attrib_keeps_it_so() {
        let mut ix = TopIndex::default();
        assert!(ix.touch(b"f", Touch::Write));
        assert!(!ix.touch(b"f", Touch::Closed));
        assert!(!ix.touch(b"f", Touch::Attrib));
        let n = ix.nodes.get(&b"f"[..]).unwrap();
        assert_eq!(n.due, Due::Hash);
        assert_eq!(n.gen, 3);
        // Written again after the close: wait for the next close.
        ix.touch(b"f", Touch::Write);
        assert_eq!(ix.nodes.get(&b"f"[..]).unwrap().due, Due::Idle);
        ix.nodes.get_mut(&b"f"[..]).unwrap().due = Due::Nothing;
        // A chmod on a file nobody writes: look at it once it is quiet.
        assert!(ix.touch(b"f", Touch::Attrib));
        assert_eq!(ix.nodes.get(&b"f"[..]).unwrap().due, Due::Idle);
    }
}
