//! The command line as a contract with its users and their scripts: every
//! command's help ends with examples that parse and run; completions load
//! in real shells and complete; man pages render with groff; docs/reference.md
//! is what the CLI definitions say; every exit code in the README's table is
//! produced by the case it names, with one error line (or one JSON event);
//! colour follows --color and NO_COLOR; keygen asks for its password on a
//! real pseudo-terminal; --version names the commit, also from a tarball.
mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use common::*;

#[path = "../build/commit.rs"]
#[allow(dead_code)]
mod commit;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The commands a user runs, by name, from the CLI definition itself.
fn command_names() -> Vec<String> {
    provenant::cli::Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect()
}

fn cmd_run(dir: &Path, args: &[&str]) -> Run {
    let mut c = provenant(dir);
    c.args(args);
    run(c)
}

// ---------------------------------------------------------------------------
// Help and examples

/// The lines of the `Examples:` block that ends `text`, or a failure saying
/// why there is none.
fn trailing_examples(text: &str) -> Vec<String> {
    let (_, block) = text
        .rsplit_once("\nExamples:\n")
        .unwrap_or_else(|| panic!("no Examples: section in\n{text}"));
    let lines: Vec<String> = block
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.to_string())
        .collect();
    // Nothing after the examples but blank lines: they end the help.
    let rest: Vec<&str> = block.lines().skip(lines.len()).collect();
    assert!(
        rest.iter().all(|l| l.trim().is_empty()),
        "the examples must end the help; after them: {rest:?}"
    );
    lines
}

#[test]
fn every_help_ends_with_two_or_three_examples() {
    let d = tempfile::tempdir().unwrap();
    let mut names = command_names();
    assert!(names.len() >= 12, "{names:?}");
    names.insert(0, String::new());
    for name in &names {
        for flag in ["--help", "-h"] {
            let args: Vec<&str> = [name.as_str(), flag]
                .into_iter()
                .filter(|a| !a.is_empty())
                .collect();
            let r = cmd_run(d.path(), &args).ok();
            let ex = trailing_examples(&r.stdout);
            assert!(
                (2..=3).contains(&ex.len()),
                "provenant {name} {flag}: {ex:?}"
            );
            for l in &ex {
                assert!(
                    l.starts_with("  ") && l.contains("provenant "),
                    "provenant {name} {flag}: example {l:?}"
                );
            }
            if !name.is_empty() {
                assert!(
                    ex.iter().all(|l| l.contains(&format!("provenant {name}"))),
                    "examples of {name} must run {name}: {ex:?}"
                );
            }
        }
    }
    // Global options come last, under their own heading, not among a
    // command's own options.
    let r = cmd_run(d.path(), &["attest", "--help"]).ok();
    let own = r.stdout.find("\nOptions:\n").unwrap();
    let global = r.stdout.find("\nGlobal options:\n").unwrap();
    assert!(own < global);
    let own_part = &r.stdout[own..global];
    for g in ["--log-format", "--log-level", "--color"] {
        assert!(!own_part.contains(g), "{g} among attest's own options");
        assert!(r.stdout[global..].contains(g));
    }
}

/// Splits one shell command line into words (quotes and `\` escapes; what
/// the examples use), stopping at a comment, a pipe or a redirection.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                have = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => cur.extend(chars.next()),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                have = true;
                cur.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if have {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            '#' | '|' | '>' | '<' if !have => break,
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    if have {
        words.push(cur);
    }
    words
}

/// Every example's provenant invocation, as words starting with `provenant`.
fn example_invocations() -> Vec<(String, Vec<String>)> {
    let mut cmd = provenant::cli::Cli::command();
    cmd.build();
    let mut out = Vec::new();
    let mut all = vec![cmd.clone()];
    all.extend(cmd.get_subcommands().cloned());
    for c in &all {
        for line in provenant::cli::docs::examples(c).unwrap_or_default() {
            // `kubectl logs ... -c provenant | provenant verify ...`: the
            // command after the pipe.
            let at = match line.find("| provenant ") {
                Some(i) => i + 2,
                None => line
                    .find("provenant ")
                    .unwrap_or_else(|| panic!("{line:?}")),
            };
            out.push((line.clone(), shell_words(&line[at..])));
        }
    }
    out
}

#[test]
fn every_example_parses_with_the_current_flags() {
    let examples = example_invocations();
    assert!(examples.len() >= 28, "{}", examples.len());
    for (line, words) in examples {
        // The environment must not fill in what an example leaves out.
        let r = provenant::cli::Cli::command()
            .try_get_matches_from(&words)
            .map(|_| ());
        if let Err(e) = r {
            panic!("example {line:?} does not parse:\n{e}");
        }
    }
}

/// The examples that need nothing outside a temporary directory, run as
/// written by `sh` with provenant on PATH.
#[test]
fn the_local_examples_run_as_written() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(&d.join("src/main.c"), b"int main(void) { return 0; }\n");
    write(&d.join("dist/app"), b"\x7fELF app");
    write(&d.join("out/app.tar"), b"tar");
    write(&d.join("out/app.sbom.json"), b"{}");
    write(
        &d.join("build.sh"),
        b"#!/bin/sh\nmkdir -p out && echo built >out/bin\n",
    );
    std::fs::set_permissions(
        d.join("build.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // In order: each may use what the ones before made.
    let wanted = [
        "COSIGN_PASSWORD=\"$PW\" provenant keygen -o release",
        "provenant keygen --unencrypted --algorithm ed25519 -o ci",
        "provenant attest --material src --product dist --key cosign.key -o build.intoto.jsonl",
        "provenant attest --material src --materials-as tree --product dist --products-as dirhash --key cosign.key",
        "provenant attest --material src --product dist --key cosign.key --in-toto-link links --step-name build",
        "provenant run --key cosign.key --material src --product out --attest-failed -- ./build.sh",
        "provenant verify --key cosign.pub build.intoto.jsonl",
        "provenant inspect build.intoto.jsonl",
        "provenant inspect --all build.intoto.jsonl",
        "provenant digest out/app.tar out/app.sbom.json",
        "provenant digest --dirhash dist",
        "provenant man | man -l -",
    ];
    let examples: Vec<String> = example_invocations().into_iter().map(|(l, _)| l).collect();
    // The first keygen example prompts on a terminal; with the password in
    // the environment it is the same command.
    let mut c = provenant(d);
    c.args(["keygen"]).env("COSIGN_PASSWORD", "pw");
    run(c).ok();
    for want in wanted {
        let line = examples
            .iter()
            .find(|l| l.starts_with(want))
            .unwrap_or_else(|| panic!("no example {want:?} in {examples:#?}"));
        let line = line.split(" #").next().unwrap();
        if line.contains("man -l") && Command::new("man").arg("--version").output().is_err() {
            // Only the pipe needs man-db; the page itself is rendered with
            // groff in man_pages_render_with_groff.
            continue;
        }
        let r = run({
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(line)
                .current_dir(d)
                .env("PATH", &path)
                .env("PW", "pw")
                .env("COSIGN_PASSWORD", "pw")
                .env("MANPAGER", "cat")
                .env("PAGER", "cat");
            c
        });
        assert_eq!(r.code, 0, "{line}\n{}\n{}", r.stdout, r.stderr);
    }
    assert!(d.join("release.key").exists() && d.join("ci.pub").exists());
    assert!(std::fs::read_dir(d.join("links")).unwrap().count() == 1);
}

// ---------------------------------------------------------------------------
// Completions

fn completion_script(shell: &str) -> String {
    let t = tempfile::tempdir().unwrap();
    let r = cmd_run(t.path(), &["completions", shell]).ok();
    assert!(r.stdout.len() > 1000, "{shell}: {}", r.stdout);
    r.stdout
}

/// Asks bash's completion function, as bash would on TAB, for `words`
/// (the last one being completed).
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}' || exit 9\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n_provenant provenant '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let mut c = Command::new("bash");
    c.arg("--norc").arg("-c").arg(prog);
    let r = run(c);
    assert_eq!(r.code, 0, "bash: {}", r.stderr);
    r.stdout.lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_completes_commands_flags_and_values() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("provenant.bash");
    std::fs::write(&f, completion_script("bash")).unwrap();

    let subs = bash_complete(&f, &["provenant", ""]);
    for name in command_names() {
        assert!(subs.contains(&name), "{name} not in {subs:?}");
    }
    assert_eq!(bash_complete(&f, &["provenant", "ke"]), ["keygen"]);
    let flags = bash_complete(&f, &["provenant", "keygen", "--"]);
    for flag in ["--algorithm", "--output-prefix", "--unencrypted", "--color"] {
        assert!(flags.contains(&flag.to_string()), "{flag}: {flags:?}");
    }
    let mut algs = bash_complete(&f, &["provenant", "keygen", "--algorithm", ""]);
    algs.sort();
    assert_eq!(algs, ["ecdsa-p256", "ed25519"]);
    let shells = bash_complete(&f, &["provenant", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&s.to_string()), "{shells:?}");
    }
}

#[test]
fn zsh_and_fish_completions_load_and_complete() {
    let t = tempfile::tempdir().unwrap();
    // zsh: the script is a completion function file (`#compdef provenant`);
    // compinit must accept it and define _provenant.
    let dir = t.path().join("zfunc");
    std::fs::create_dir_all(&dir).unwrap();
    let z = completion_script("zsh");
    assert!(z.starts_with("#compdef provenant"), "{}", &z[..40]);
    std::fs::write(dir.join("_provenant"), &z).unwrap();
    let mut c = Command::new("zsh");
    c.args(["-f", "-n"]).arg(dir.join("_provenant"));
    let r = run(c);
    assert_eq!(r.code, 0, "zsh -n: {}", r.stderr);
    let mut c = Command::new("zsh");
    c.arg("-f").arg("-c").arg(format!(
        "fpath=('{}' $fpath); autoload -Uz compinit; compinit -u -d '{}/zcompdump'; print -r -- ${{_comps[provenant]}}",
        dir.display(),
        t.path().display()
    ));
    let r = run(c);
    assert_eq!(r.code, 0, "zsh: {}", r.stderr);
    assert_eq!(r.stdout.trim(), "_provenant", "{}", r.stderr);

    // fish answers `complete -C` with what TAB would offer.
    let f = t.path().join("provenant.fish");
    std::fs::write(&f, completion_script("fish")).unwrap();
    let fish = |line: &str| {
        let mut c = Command::new("fish");
        c.arg("--no-config")
            .arg("-c")
            .arg(format!("source '{}'; complete -C '{line}'", f.display()));
        let r = run(c);
        assert_eq!(r.code, 0, "fish: {}", r.stderr);
        r.stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let subs = fish("provenant ");
    for name in command_names() {
        assert!(subs.contains(&name), "{name} not in {subs:?}");
    }
    let algs = fish("provenant keygen --algorithm ");
    assert!(algs.contains(&"ed25519".to_string()), "{algs:?}");
    let flags = fish("provenant verify --");
    assert!(flags.contains(&"--threshold".to_string()), "{flags:?}");
}

// ---------------------------------------------------------------------------
// Man pages

#[test]
fn man_pages_render_with_groff() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man1");
    cmd_run(t.path(), &["man", "man1"]).ok();
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut want: Vec<String> = command_names()
        .iter()
        .map(|n| format!("provenant-{n}.1"))
        .collect();
    want.push("provenant.1".to_string());
    want.sort();
    assert_eq!(pages, want);
    // Without DIR: the main page on stdout, identical to the file.
    let r = cmd_run(t.path(), &["man"]).ok();
    assert_eq!(
        r.stdout.as_bytes(),
        std::fs::read(dir.join("provenant.1")).unwrap()
    );

    for page in &pages {
        let mut c = Command::new("groff");
        // -ww: every warning; -z would discard output, which is checked too.
        c.args(["-man", "-Tascii", "-ww", "-rLL=200n"])
            .arg(dir.join(page));
        let r = run(c);
        assert_eq!(r.code, 0, "groff {page}: {}", r.stderr);
        assert!(
            r.stderr.is_empty(),
            "groff warnings for {page}:\n{}",
            r.stderr
        );
        // Bold/underline by overstriking in -Tascii output: strip it.
        let text = strip_overstrike(&r.stdout);
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES"] {
            assert!(text.contains(section), "{page}: no {section}:\n{text}");
        }
        if page == "provenant-keygen.1" {
            // Examples are kept line by line, with ASCII hyphens.
            assert!(
                text.contains("provenant keygen --unencrypted --algorithm ed25519 -o ci\n"),
                "{text}"
            );
            assert!(text.contains("--output-prefix"), "{text}");
            assert!(text.contains("COSIGN_PASSWORD"), "{text}");
        }
        if page == "provenant.1" {
            assert!(
                text.contains("provenant-keygen(1)") || text.contains("keygen"),
                "{text}"
            );
        }
    }
}

fn strip_overstrike(s: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in s.chars() {
        if c == '\u{8}' {
            out.pop();
            continue;
        }
        out.push(c);
    }
    // Overstrike is `X\bX`: after removing `\b` and the char before it the
    // second copy remains.
    out.into_iter().collect()
}

// ---------------------------------------------------------------------------
// docs/reference.md

#[test]
fn reference_doc_matches_the_cli() {
    let path = repo().join("docs/reference.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = provenant::cli::docs::REFERENCE_MARKER;
    let generated = provenant::cli::docs::reference_markdown();
    let (head, tail) = text
        .split_once(marker)
        .unwrap_or_else(|| panic!("docs/reference.md has no marker line {marker}"));
    // The hand-written part stays.
    assert!(head.contains("## Output paths"), "{head}");
    let expected = format!("{head}{marker}\n\n{generated}");
    if std::env::var_os("PROVENANT_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    assert!(
        tail.trim_start() == generated,
        "docs/reference.md is stale: run `PROVENANT_UPDATE_DOCS=1 cargo test --test cli_contract reference_doc_matches_the_cli`"
    );
    // Every command and every visible flag of each is in it.
    let mut cmd = provenant::cli::Cli::command();
    cmd.build();
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        assert!(
            generated.contains(&format!("### `provenant {}`", sub.get_name())),
            "{}",
            sub.get_name()
        );
        for a in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        {
            if let Some(l) = a.get_long() {
                assert!(generated.contains(&format!("--{l}")), "--{l}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Exit codes

/// The exit-code table of the README: code -> meaning.
fn readme_exit_codes() -> Vec<(i32, String)> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("| code | meaning |").expect("exit-code table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].parse().unwrap(), cells[2].to_string())
        })
        .collect()
}

/// An example attestation in `d`: key `k`, statement over src/ and out/.
fn attested(d: &Path) {
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    cmd_run(
        d,
        &[
            "attest",
            "--material",
            "src",
            "--product",
            "out",
            "--key",
            "k.key",
            "-o",
            "a.jsonl",
        ],
    )
    .ok();
}

#[test]
fn every_documented_exit_code_comes_from_the_case_it_names() {
    let table = readme_exit_codes();
    let codes: Vec<i32> = table.iter().map(|(c, _)| *c).collect();
    // A code added to the README needs its case here.
    assert_eq!(codes, [0, 1, 2, 3, 4, 5], "{table:?}");
    let meaning = |code: i32| &table.iter().find(|(c, _)| *c == code).unwrap().1;
    assert!(meaning(1).contains("internal error"));
    assert!(meaning(2).contains("usage"));
    assert!(meaning(5).contains("policy"));

    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    attested(d);

    // 0: success.
    let r = cmd_run(d, &["verify", "--key", "k.pub", "a.jsonl"]).ok();
    assert!(r.stdout.contains("out/app.bin"), "{}", r.stdout);

    // 1: internal error, a bug (a panic, injected in test builds).
    let mut c = provenant(d);
    c.args(["digest", "src"])
        .env("PROVENANT_TEST_PANIC", "1")
        .env_remove("RUST_BACKTRACE");
    let r = run(c).fails(1, "internal error (a bug: please report it)");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);

    // 2: usage errors, from clap and from provenant's own checks.
    cmd_run(
        d,
        &[
            "snapshot",
            "--state",
            "st",
            "--material",
            "src",
            "--workspace",
            ".",
        ],
    )
    .ok();
    for (args, needle) in [
        (
            &["verify", "--bogus", "a.jsonl"][..],
            "unexpected argument '--bogus'",
        ),
        (
            &["attest", "--product", "out"][..],
            "no signing key: pass --key FILE, --signer URL or --fulcio-url URL",
        ),
        (&["keygen", "--algorithm", "rsa"][..], "invalid value 'rsa'"),
        (&["nosuchcommand"][..], "unrecognized subcommand"),
        (&[][..], "subcommand"),
        (
            &[
                "record",
                "--publish",
                "--completion",
                "sigterm",
                "--key",
                "k.key",
                "--state",
                "st",
            ][..],
            "--publish needs --allow-image-repo",
        ),
        (
            &[
                "record",
                "--completion",
                "proces:foo",
                "--key",
                "k.key",
                "--state",
                "st",
            ][..],
            "--completion proces:foo",
        ),
    ] {
        let r = cmd_run(d, args).fails(2, needle);
        // Not a terminal: the one line and nothing else.
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }

    // 3: could not check or could not do it.
    write(&d.join("garbage.key"), b"-----BEGIN NOTHING-----\n");
    let mut enc = provenant(d);
    enc.args(["keygen", "-o", "enc"])
        .env("COSIGN_PASSWORD", "right");
    run(enc).ok();
    for (args, password, needle) in [
        (
            &["verify", "--key", "k.pub", "missing.jsonl"][..],
            None,
            "missing.jsonl",
        ),
        (
            &["verify", "--key", "missing.pub", "a.jsonl"][..],
            None,
            "missing.pub",
        ),
        (
            &[
                "attest",
                "--material",
                "nosuch",
                "--product",
                "out",
                "--key",
                "k.key",
                "-o",
                "b.jsonl",
            ][..],
            None,
            "nosuch",
        ),
        (
            &[
                "attest",
                "--product",
                "out",
                "--key",
                "garbage.key",
                "-o",
                "b.jsonl",
            ][..],
            None,
            "garbage.key",
        ),
        (
            &[
                "attest",
                "--product",
                "out",
                "--key",
                "enc.key",
                "-o",
                "b.jsonl",
            ][..],
            Some("wrong"),
            "wrong password",
        ),
        (
            &[
                "attest",
                "--product",
                "out",
                "--key",
                "k.key",
                "-o",
                "no/such/dir/b.jsonl",
            ][..],
            None,
            "no/such/dir",
        ),
        (
            &["keygen", "-o", "fresh"][..],
            None,
            "COSIGN_PASSWORD is not set",
        ),
    ] {
        let mut c = provenant(d);
        c.args(args).stdin(Stdio::null());
        if let Some(p) = password {
            c.env("COSIGN_PASSWORD", p);
        }
        run(c).fails(3, needle);
    }
    assert!(!d.join("fresh.key").exists() && !d.join("fresh.pub").exists());

    // 4: invalid attestation.
    let good = std::fs::read_to_string(d.join("a.jsonl")).unwrap();
    let env: serde_json::Value = serde_json::from_str(&good).unwrap();
    let mut tampered = env.clone();
    {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut st: serde_json::Value =
            serde_json::from_slice(&b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
        st["subject"][0]["name"] = "out/evil.bin".into();
        tampered["payload"] = b64.encode(serde_json::to_vec(&st).unwrap()).into();
    }
    let mut wrong_type = env.clone();
    wrong_type["payloadType"] = "application/json".into();
    keygen(d, "other", "ecdsa-p256");
    write(&d.join("malformed.jsonl"), b"{\"payload\": 1");
    write(&d.join("tampered.jsonl"), tampered.to_string().as_bytes());
    write(&d.join("type.jsonl"), wrong_type.to_string().as_bytes());
    for (args, needle) in [
        (
            &["verify", "--key", "k.pub", "malformed.jsonl"][..],
            "malformed.jsonl",
        ),
        (
            &["verify", "--key", "k.pub", "tampered.jsonl"][..],
            "tampered.jsonl",
        ),
        (
            &["verify", "--key", "k.pub", "type.jsonl"][..],
            "type.jsonl",
        ),
        (&["verify", "--key", "other.pub", "a.jsonl"][..], "a.jsonl"),
    ] {
        cmd_run(d, args).fails(4, needle);
    }

    // 5: valid signature, rejected by policy.
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: k.pub\nbuilderIds:\n  - https://ci.example.com/*\n",
    );
    let r =
        cmd_run(d, &["verify", "--policy", "policy.yaml", "a.jsonl"]).fails(5, "policy violation");
    assert!(
        r.stderr.contains("builder"),
        "the violated rule is named: {}",
        r.stderr
    );
}

// ---------------------------------------------------------------------------
// JSON logs

#[test]
fn json_mode_reports_errors_as_json_events_and_numbers_as_numbers() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    attested(d);
    let json_lines = |stderr: &str| -> Vec<serde_json::Value> {
        stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect()
    };
    // A usage error (the flag is read before clap parses anything), by flag
    // and by environment.
    for (args, env) in [
        (&["--log-format", "json", "verify", "--bogus"][..], None),
        (&["verify", "--log-format=json", "--bogus"][..], None),
        (&["verify", "--bogus"][..], Some("json")),
    ] {
        let mut c = provenant(d);
        c.args(args);
        if let Some(v) = env {
            c.env("PROVENANT_LOG_FORMAT", v);
        }
        let r = run(c);
        assert_eq!(r.code, 2);
        let events = json_lines(&r.stderr);
        assert_eq!(events.len(), 1, "{}", r.stderr);
        let e = &events[0];
        assert_eq!(e["level"], "ERROR");
        assert_eq!(e["fatal"], true);
        assert_eq!(e["exit_code"], 2, "a number: {e}");
        assert!(e["message"].as_str().unwrap().contains("'--bogus'"), "{e}");
        assert!(e["timestamp"].is_string());
    }
    // A runtime error, even with every log silenced.
    let r = cmd_run(
        d,
        &[
            "--log-format",
            "json",
            "--log-level",
            "off",
            "verify",
            "--key",
            "k.pub",
            "nope",
        ],
    );
    assert_eq!(r.code, 3);
    let events = json_lines(&r.stderr);
    assert_eq!(events.len(), 1, "{}", r.stderr);
    assert_eq!(events[0]["exit_code"], 3);
    assert!(events[0]["message"].as_str().unwrap().contains("nope"));

    // Logs of real work: every field that holds a number is a JSON number,
    // never its text or a Rust debug form such as `Some(0)`.
    let mut logs = String::new();
    for args in [
        &[
            "--log-format",
            "json",
            "run",
            "--key",
            "k.key",
            "--material",
            "src",
            "--product",
            "out",
            "-o",
            "r.jsonl",
            "--",
            "sh",
            "-c",
            "exit 0",
        ][..],
        &[
            "--log-format",
            "json",
            "run",
            "--key",
            "k.key",
            "--material",
            "src",
            "--product",
            "out",
            "-o",
            "r2.jsonl",
            "--",
            "sh",
            "-c",
            "exit 7",
        ][..],
        &[
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "attest",
            "--key",
            "k.key",
            "--material",
            "src",
            "--product",
            "out",
            "-o",
            "b.jsonl",
        ][..],
    ] {
        let r = cmd_run(d, args);
        assert!(r.code == 0 || r.code == 7, "{args:?}: {}", r.stderr);
        logs.push_str(&r.stderr);
    }
    logs.push_str(&record_json_logs(d));
    let events = json_lines(&logs);
    assert!(events.len() >= 8, "{logs}");
    let mut numbers = 0;
    for e in &events {
        for (k, v) in e.as_object().unwrap() {
            if v.is_number() {
                numbers += 1;
            }
            if let Some(s) = v.as_str() {
                assert!(
                    !s.starts_with("Some(") && s != "None",
                    "{k} logged in Rust debug form: {e}"
                );
                if k != "message" && k != "timestamp" {
                    assert!(
                        s.parse::<f64>().is_err(),
                        "{k} is a number logged as text: {e}"
                    );
                }
            }
        }
    }
    assert!(numbers >= 10, "{logs}");
    let finished = events
        .iter()
        .find(|e| e["message"] == "build finished; finalizing")
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(finished["exit_code"], 0, "{finished}");
}

/// `record` in a directory with a marker completion, JSON logs: its stderr.
fn record_json_logs(d: &Path) -> String {
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    cmd_run(
        d,
        &[
            "snapshot",
            "--state",
            "state",
            "--material",
            "ws/source",
            "--workspace",
            "ws",
        ],
    )
    .ok();
    let mut c = provenant(d);
    c.args([
        "--log-format",
        "json",
        "record",
        "--state",
        "state",
        "--key",
        "k.key",
        "--completion",
        "marker:ws/done",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let buf = Arc::new(Mutex::new(String::new()));
    let b = buf.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = err.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !buf
        .lock()
        .unwrap()
        .contains("ready: watching the workspace")
    {
        assert!(Instant::now() < deadline, "{}", buf.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    write(&d.join("ws/out/app"), b"app");
    write(&d.join("ws/done.tmp"), b"0\n");
    std::fs::rename(d.join("ws/done.tmp"), d.join("ws/done")).unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let logs = buf.lock().unwrap().clone();
    assert!(status.success(), "{logs}");
    logs
}

// ---------------------------------------------------------------------------
// A pseudo-terminal, for what only happens on one (password prompts,
// colour, clap's detail after a usage error).

struct Pty {
    master: std::fs::File,
    child: std::process::Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pty {
    /// Starts `c` with a new pseudo-terminal as its controlling terminal and
    /// its stdin, stdout and stderr.
    fn spawn(mut c: Command) -> Pty {
        let (mut master, mut slave) = (0, 0);
        let ws = libc::winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        unsafe { libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC) };
        let master = unsafe { std::fs::File::from_raw_fd(master) };
        let slave = unsafe { std::fs::File::from_raw_fd(slave) };
        c.stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        unsafe {
            c.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().unwrap();
        // Our copies of the terminal's slave side go with `c`: once the
        // child exits, reading the master ends.
        drop(c);
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut m = master.try_clone().unwrap();
        let o = out.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            // EIO once the last slave descriptor is closed.
            while let Ok(n) = m.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Pty {
            master,
            child,
            out,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.text().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "waiting for {needle:?} x{count}; terminal shows:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
        self.master.write_all(b"\r").unwrap();
    }

    /// Exit code and everything the terminal showed.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        };
        self.reader.take().unwrap().join().unwrap();
        let _ = self.master.as_raw_fd();
        (status.code().unwrap_or(-1), self.text())
    }
}

fn pty_provenant(dir: &Path, args: &[&str]) -> Command {
    let mut c = provenant(dir);
    c.args(args).env("TERM", "xterm").env_remove("NO_COLOR");
    c
}

#[test]
fn keygen_asks_for_the_password_twice_on_a_terminal() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();

    let mut p = Pty::spawn(pty_provenant(d, &["keygen", "-o", "tty"]));
    p.wait_for("Enter password for private key: ", 1);
    p.type_line("s3cret-pw");
    p.wait_for("Enter password for private key again: ", 1);
    p.type_line("s3cret-pw");
    let (code, screen) = p.finish();
    assert_eq!(code, 0, "{screen}");
    // Echo was off: the password never showed.
    assert!(!screen.contains("s3cret-pw"), "{screen}");
    assert!(
        screen.contains("Private key written to tty.key"),
        "{screen}"
    );
    let key = std::fs::read_to_string(d.join("tty.key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
        "{key}"
    );

    // The key opens with that password and no other.
    example_tree(d);
    let attest = |pw: &str| {
        let mut c = provenant(d);
        c.args([
            "attest",
            "--product",
            "out",
            "--key",
            "tty.key",
            "-o",
            "t.jsonl",
        ])
        .env("COSIGN_PASSWORD", pw);
        run(c)
    };
    attest("s3cret-pw").ok();
    attest("other").fails(3, "wrong password");
    cmd_run(d, &["verify", "--key", "tty.pub", "t.jsonl"]).ok();

    // Two different answers: nothing written, exit 3.
    let mut p = Pty::spawn(pty_provenant(d, &["keygen", "-o", "typo"]));
    p.wait_for("Enter password for private key: ", 1);
    p.type_line("one");
    p.wait_for("again: ", 1);
    p.type_line("two");
    let (code, screen) = p.finish();
    assert_eq!(code, 3, "{screen}");
    assert!(
        screen.contains("provenant: error: passwords do not match"),
        "{screen}"
    );
    assert!(!d.join("typo.key").exists() && !d.join("typo.pub").exists());

    // COSIGN_PASSWORD set: no question even on a terminal.
    let mut c = pty_provenant(d, &["keygen", "-o", "env"]);
    c.env("COSIGN_PASSWORD", "");
    let (code, screen) = Pty::spawn(c).finish();
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("Enter password"), "{screen}");
}

#[test]
fn colour_follows_color_and_no_color() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    attested(d);
    // Colour is an SGR sequence (`ESC [ ... m`); a progress line's cursor
    // control on a terminal is not colour.
    let coloured = |s: &str| {
        s.split('\u{1b}').skip(1).any(|rest| {
            rest.strip_prefix('[').is_some_and(|r| {
                let end = r.find(|c: char| !(c.is_ascii_digit() || c == ';'));
                end.is_some_and(|e| r[e..].starts_with('m'))
            })
        })
    };
    let verify = ["verify", "--key", "k.pub", "a.jsonl"];

    // On a terminal: colour by default, none with NO_COLOR or --color never.
    let (code, screen) = Pty::spawn(pty_provenant(d, &["keygen", "--help"])).finish();
    assert_eq!(code, 0);
    assert!(
        coloured(&screen),
        "help on a terminal is coloured:\n{screen}"
    );
    let mut c = pty_provenant(d, &["keygen", "--help"]);
    c.env("NO_COLOR", "1");
    let (_, screen) = Pty::spawn(c).finish();
    assert!(!coloured(&screen), "NO_COLOR:\n{screen}");
    let (_, screen) =
        Pty::spawn(pty_provenant(d, &["--color", "never", "keygen", "--help"])).finish();
    assert!(!coloured(&screen), "--color never:\n{screen}");
    // An empty NO_COLOR does not count (no-color.org).
    let mut c = pty_provenant(d, &["keygen", "--help"]);
    c.env("NO_COLOR", "");
    let (_, screen) = Pty::spawn(c).finish();
    assert!(coloured(&screen), "empty NO_COLOR:\n{screen}");

    // Logs: coloured on a terminal, not with NO_COLOR.
    let (code, screen) = Pty::spawn(pty_provenant(
        d,
        &[
            "attest",
            "--key",
            "k.key",
            "--product",
            "out",
            "-o",
            "c.jsonl",
        ],
    ))
    .finish();
    assert_eq!(code, 0, "{screen}");
    assert!(coloured(&screen), "logs on a terminal:\n{screen}");
    let mut c = pty_provenant(
        d,
        &[
            "attest",
            "--key",
            "k.key",
            "--product",
            "out",
            "-o",
            "c.jsonl",
        ],
    );
    c.env("NO_COLOR", "yes");
    let (_, screen) = Pty::spawn(c).finish();
    assert!(!coloured(&screen), "NO_COLOR logs:\n{screen}");

    // Piped: no colour, unless forced; --color always beats NO_COLOR.
    let r = cmd_run(
        d,
        &[
            "attest",
            "--key",
            "k.key",
            "--product",
            "out",
            "-o",
            "c.jsonl",
        ],
    )
    .ok();
    assert!(!coloured(&r.stderr), "{}", r.stderr);
    let mut c = provenant(d);
    c.args(["--color", "always"])
        .args([
            "attest",
            "--key",
            "k.key",
            "--product",
            "out",
            "-o",
            "c.jsonl",
        ])
        .env("NO_COLOR", "1");
    let r = run(c).ok();
    assert!(coloured(&r.stderr), "{}", r.stderr);
    let r = cmd_run(d, &[&["--color", "always"][..], &verify[..]].concat()).ok();
    assert!(
        !coloured(&r.stdout),
        "the verified subjects are data, never coloured"
    );
}

#[test]
fn a_usage_error_on_a_terminal_is_one_line_then_clap_s_detail() {
    let t = tempfile::tempdir().unwrap();
    let (code, screen) = Pty::spawn(pty_provenant(
        t.path(),
        &["--color", "never", "attest", "--materal", "x"],
    ))
    .finish();
    assert_eq!(code, 2, "{screen}");
    let lines: Vec<&str> = screen.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines[0].starts_with("provenant: error: unexpected argument '--materal' found"),
        "{screen}"
    );
    assert!(lines[0].contains("'--material'"), "the tip: {screen}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("provenant: error:"))
            .count(),
        1,
        "{screen}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Usage: provenant attest")),
        "{screen}"
    );
}

// ---------------------------------------------------------------------------
// --version

fn git_head() -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_commit_and_features() {
    let t = tempfile::tempdir().unwrap();
    let r = cmd_run(t.path(), &["--version"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("provenant {}", env!("CARGO_PKG_VERSION")),
        "{}",
        r.stdout
    );
    let commit = lines
        .iter()
        .find_map(|l| l.strip_prefix("commit: "))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        lines.iter().any(|l| l.starts_with("features: ")),
        "{}",
        r.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("target: ")),
        "{}",
        r.stdout
    );
    let head = git_head().expect("the tests run in a git checkout");
    if std::env::var_os("PROVENANT_GIT_COMMIT").is_none() {
        assert_eq!(commit, head, "built from this checkout");
    }
    let r = cmd_run(t.path(), &["-V"]).ok();
    assert_eq!(
        r.stdout.trim(),
        format!(
            "provenant {} ({})",
            env!("CARGO_PKG_VERSION"),
            &commit[..12]
        )
    );
}

/// build/commit.rs, as build.rs uses it, on the ways provenant's source
/// reaches a builder: a checkout, `git archive` (GitHub's tarballs), a
/// `cargo package` crate, a plain copy.
#[test]
fn the_commit_is_found_in_a_tarball_without_git() {
    let head = git_head().expect("a git checkout");
    let t = tempfile::tempdir().unwrap();
    let d = t.path();

    // git archive HEAD: export-subst fills in .git_archival.txt.
    let tar = d.join("src.tar");
    let r = run({
        let mut c = Command::new("git");
        c.arg("-C")
            .arg(repo())
            .args(["archive", "--format=tar", "-o"])
            .arg(&tar)
            .arg("HEAD");
        c
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    let x = d.join("archive");
    std::fs::create_dir_all(&x).unwrap();
    let r = run({
        let mut c = Command::new("tar");
        c.arg("-xf").arg(&tar).arg("-C").arg(&x);
        c
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!x.join(".git").exists());
    assert_eq!(
        commit::find(&x, None).commit.as_deref(),
        Some(head.as_str())
    );

    // A plain copy: the archival file unsubstituted, no .git: unknown.
    let plain = d.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::copy(
        repo().join(".git_archival.txt"),
        plain.join(".git_archival.txt"),
    )
    .unwrap();
    assert_eq!(commit::find(&plain, None).commit, None);

    // cargo package's record of the commit.
    let id = "0123456789abcdef0123456789abcdef01234567";
    std::fs::write(
        plain.join(".cargo_vcs_info.json"),
        format!("{{\n  \"git\": {{\n    \"sha1\": \"{id}\"\n  }},\n  \"path_in_vcs\": \"\"\n}}\n"),
    )
    .unwrap();
    assert_eq!(commit::find(&plain, None).commit.as_deref(), Some(id));
    // The environment wins (the Dockerfile's build argument).
    assert_eq!(
        commit::find(&plain, Some("feedface".into()))
            .commit
            .as_deref(),
        Some("feedface")
    );

    // Unpacked inside some other checkout: that checkout's HEAD is not ours.
    let inside: PathBuf = repo()
        .join("target/commit-test")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&inside).unwrap();
    let found = commit::find(&inside, None).commit;
    std::fs::remove_dir_all(&inside).unwrap();
    assert_eq!(found, None);

    // And in the checkout itself, HEAD.
    assert_eq!(
        commit::find(repo(), None).commit.as_deref(),
        Some(head.as_str())
    );
}

// ---------------------------------------------------------------------------
// The Dockerfile (built for real only where a Rust base image can be had;
// what can be checked without one is checked here).

#[test]
fn the_dockerfile_pins_its_base_labels_the_image_and_runs_as_non_root() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let arg = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("no ARG {name}= default"))
            .to_string()
    };
    // The base by digest, through the build argument.
    let base = arg("RUST_IMAGE");
    let (_, digest) = base
        .split_once("@sha256:")
        .expect("RUST_IMAGE pinned by digest");
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{base}"
    );
    assert!(text.contains("\nFROM ${RUST_IMAGE} AS build\n"));
    // Built per platform.
    assert!(text.contains("\nARG TARGETARCH\n"));
    assert!(text.contains("${TARGETARCH"));
    // Dependencies in their own layer, before the sources arrive.
    let deps = text.find("COPY Cargo.toml Cargo.lock").unwrap();
    let sources = text.find("COPY src/ src/").unwrap();
    assert!(deps < sources);
    assert!(text[deps..sources].contains("cargo build --release --locked"));
    // OCI labels, with the crate's own version and licence.
    for label in [
        "title",
        "description",
        "licenses",
        "version",
        "revision",
        "created",
    ] {
        assert!(
            text.contains(&format!("org.opencontainers.image.{label}=")),
            "{label}"
        );
    }
    assert_eq!(arg("VERSION"), env!("CARGO_PKG_VERSION"));
    assert!(text.contains(&format!(
        "org.opencontainers.image.licenses=\"{}\"",
        env!("CARGO_PKG_LICENSE")
    )));
    // The final stage, and the image scripts/build-images.sh makes, never
    // run as root.
    for file in ["Dockerfile", "images/provenant.Containerfile"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let last_from = text.rfind("\nFROM ").unwrap();
        let user = text[last_from..]
            .lines()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{file}: no USER in the final stage"));
        let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
        assert_ne!(uid, 0, "{file}");
    }
}
