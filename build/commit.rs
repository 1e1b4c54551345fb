// Where the commit a binary was built from comes from, in order: the
// PROVENANT_GIT_COMMIT environment variable (the Dockerfile passes it, as its
// context has no .git), the git checkout itself, the `.git_archival.txt` that
// `git archive` fills in (export-subst, see .gitattributes: GitHub's source
// tarballs are made that way), and the `.cargo_vcs_info.json` that
// `cargo package` writes. Shared by build.rs and tests/cli_contract.rs, so
// the tarball cases are tested without building a second copy.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The commit, and the files whose change means it may have changed.
pub struct Found {
    pub commit: Option<String>,
    pub watch: Vec<PathBuf>,
}

fn is_hex_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

/// The commit of the checkout at `dir` (and only if `dir` is its top level:
/// a tarball unpacked inside some other repository is not that repository).
fn from_git(dir: &Path, watch: &mut Vec<PathBuf>) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), dir) {
        return None;
    }
    let head = git(dir, &["rev-parse", "--verify", "HEAD"])?;
    if !is_hex_id(&head) {
        return None;
    }
    // HEAD moves when it or the branch it names changes (a worktree has its
    // own HEAD but shares the refs).
    let abs = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    };
    if let Some(git_dir) = git(dir, &["rev-parse", "--git-dir"]).map(abs) {
        watch.push(git_dir.join("HEAD"));
    }
    if let Some(common) = git(dir, &["rev-parse", "--git-common-dir"]).map(abs) {
        watch.push(common.join("packed-refs"));
        if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            watch.push(common.join(branch));
        }
    }
    Some(head)
}

fn from_archival(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".git_archival.txt")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("node:"))
        .map(str::trim)
        // Unsubstituted (`$Format:%H$`) when the file was not made by git archive.
        .filter(|s| is_hex_id(s))
        .map(str::to_string)
}

fn from_cargo_vcs_info(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    // {"git": {"sha1": "..."}, ...}: one field, not worth a JSON parser in
    // the build script.
    let at = text.find("\"sha1\"")?;
    let rest = &text[at + 6..];
    let start = rest.find('"')? + 1;
    let end = start + rest[start..].find('"')?;
    Some(rest[start..end].to_string()).filter(|s| is_hex_id(s))
}

pub fn find(dir: &Path, env_override: Option<String>) -> Found {
    let mut watch = vec![
        dir.join(".git_archival.txt"),
        dir.join(".cargo_vcs_info.json"),
    ];
    let commit = env_override
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| from_git(dir, &mut watch))
        .or_else(|| from_archival(dir))
        .or_else(|| from_cargo_vcs_info(dir));
    Found { commit, watch }
}
