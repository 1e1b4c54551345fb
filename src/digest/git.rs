//! Git tree object ids of a hashed tree, so a directory can be described by
//! one digest that `git rev-parse HEAD^{tree}` reproduces.
//!
//! Git stores regular files (mode 100644, or 100755 when the owner may
//! execute) and symlinks (120000, blob = target bytes); it cannot store
//! FIFOs, sockets, devices or empty directories, so they do not contribute,
//! exactly as `git add` skips them. Entries that could not be read
//! (`--on-error record`) do not contribute either; they stay visible in the
//! per-file view.
use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

use super::{Entry, EntryKind};

pub(crate) fn blob_id_of(content_len: u64) -> Sha1 {
    let mut h = Sha1::new();
    h.update(format!("blob {content_len}\0").as_bytes());
    h
}

enum Node {
    Blob { mode: &'static str, id: [u8; 20] },
    Tree(BTreeMap<Vec<u8>, Node>),
}

fn insert(dir: &mut BTreeMap<Vec<u8>, Node>, path: &[u8], leaf: Node) {
    match path.iter().position(|b| *b == b'/') {
        None => {
            dir.insert(path.to_vec(), leaf);
        }
        Some(i) => {
            let child = dir
                .entry(path[..i].to_vec())
                .or_insert_with(|| Node::Tree(BTreeMap::new()));
            if let Node::Tree(m) = child {
                insert(m, &path[i + 1..], leaf);
            }
        }
    }
}

/// Git orders tree entries by name, comparing a subtree's name as if it
/// ended in `/`.
fn git_key(name: &[u8], node: &Node) -> Vec<u8> {
    let mut k = name.to_vec();
    if matches!(node, Node::Tree(_)) {
        k.push(b'/');
    }
    k
}

struct Item<'a> {
    key: Vec<u8>,
    mode: &'static str,
    name: &'a [u8],
    id: [u8; 20],
}

fn write_tree(dir: &BTreeMap<Vec<u8>, Node>) -> Option<[u8; 20]> {
    let mut items: Vec<Item> = Vec::new();
    for (name, node) in dir {
        let (mode, id) = match node {
            Node::Blob { mode, id } => (*mode, *id),
            Node::Tree(m) => match write_tree(m) {
                Some(id) => ("40000", id),
                None => continue, // empty directory: git has no object for it
            },
        };
        items.push(Item {
            key: git_key(name, node),
            mode,
            name,
            id,
        });
    }
    if items.is_empty() && !dir.is_empty() {
        return None;
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    let mut body = Vec::new();
    for Item { mode, name, id, .. } in items {
        body.extend_from_slice(mode.as_bytes());
        body.push(b' ');
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(&id);
    }
    let mut h = Sha1::new();
    h.update(format!("tree {}\0", body.len()).as_bytes());
    h.update(&body);
    Some(h.finalize().into())
}

/// The tree id, or `None` when a regular file was hashed without its blob
/// id (the walk ran without `git_blobs`).
pub(crate) fn tree_id(entries: &[Entry]) -> Option<String> {
    let mut root = BTreeMap::new();
    for e in entries {
        let leaf = match &e.kind {
            EntryKind::File {
                git_blob,
                executable,
                ..
            } => Node::Blob {
                mode: if *executable { "100755" } else { "100644" },
                id: (*git_blob)?,
            },
            EntryKind::Symlink { target } => {
                let mut h = blob_id_of(target.len() as u64);
                h.update(target);
                Node::Blob {
                    mode: "120000",
                    id: h.finalize().into(),
                }
            }
            EntryKind::Special { .. } | EntryKind::Error { .. } => continue,
        };
        insert(&mut root, e.path.as_bytes(), leaf);
    }
    // An empty root is git's well-known empty tree.
    let id = write_tree(&root).unwrap_or_else(|| {
        let mut h = Sha1::new();
        h.update(b"tree 0\0");
        h.finalize().into()
    });
    Some(hex::encode(id))
}
