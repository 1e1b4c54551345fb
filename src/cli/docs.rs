//! Everything generated from the CLI definitions, so none of it can drift
//! from the flags: shell completions (clap_complete), man pages
//! (clap_mangen) and the command reference in docs/reference.md.
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};

use crate::verify::exit;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory to write provenant.1 and provenant-COMMAND.1 into (created
    /// if missing). Without it, provenant.1 goes to standard output.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The whole command tree, built (display and bin names filled in).
fn command() -> clap::Command {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The subcommands a user runs (not clap's `help`).
fn subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

pub fn completions(a: CompletionsArgs) -> super::CliResult {
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut cmd, "provenant", &mut out);
    out.flush()?;
    Ok(exit::OK)
}

/// Man pages: `provenant.1`, then `provenant-COMMAND.1` for each command.
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let cmd = command();
    let mut pages = vec![("provenant.1".to_string(), man_page(&cmd))];
    for sub in subcommands(&cmd) {
        let name = sub.get_display_name().unwrap_or(sub.get_name());
        pages.push((format!("{name}.1"), man_page(sub)));
    }
    pages
}

fn man_page(cmd: &clap::Command) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    // clap_mangen's own rendering of the examples (after_help) would fill
    // them into one paragraph: they are written as an EXAMPLES section in
    // no-fill mode instead, between the sections clap_mangen renders.
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(out)?;
        man.render_name_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(out)?;
        }
        if cmd.has_subcommands() {
            man.render_subcommands_section(out)?;
        }
        if let Some(examples) = examples(cmd) {
            out.extend_from_slice(b".SH EXAMPLES\n.nf\n");
            for line in examples {
                out.extend_from_slice(roff_line(&line).as_bytes());
                out.push(b'\n');
            }
            out.extend_from_slice(b".fi\n");
        }
        // Subcommands carry no version of their own (clap_mangen would
        // panic on them).
        if cmd.get_version().is_some() {
            man.render_version_section(out)?;
        }
        Ok(())
    };
    render(&mut out).expect("writing to a Vec cannot fail");
    out
}

/// One line of literal text for roff: backslashes and hyphens escaped (a
/// copied command must keep its ASCII hyphens), control characters at the
/// start neutralized.
fn roff_line(line: &str) -> String {
    let mut s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
    s
}

/// The lines after `Examples:` in a command's after-help text.
pub fn examples(cmd: &clap::Command) -> Option<Vec<String>> {
    let text = cmd.get_after_help()?.to_string();
    let rest = text.split_once("Examples:\n")?.1;
    Some(rest.lines().map(|l| l.trim().to_string()).collect())
}

pub fn man(a: ManArgs) -> super::CliResult {
    use super::Context;
    let pages = man_pages();
    let Some(dir) = a.dir else {
        let mut out = std::io::stdout().lock();
        out.write_all(&pages[0].1)?;
        out.flush()?;
        return Ok(exit::OK);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, page) in &pages {
        crate::sink::write_atomic(&dir.join(name), page)?;
    }
    tracing::info!(dir = %dir.display(), pages = pages.len(), "man pages written");
    Ok(exit::OK)
}

/// The line in docs/reference.md below which everything is generated.
pub const REFERENCE_MARKER: &str =
    "<!-- Everything below this line is generated from the CLI definitions (src/cli/docs.rs); do not edit it by hand. -->";

/// The generated part of docs/reference.md: every command with its flags,
/// environment variables, defaults and examples, then an index of the
/// environment variables.
pub fn reference_markdown() -> String {
    let cmd = command();
    let mut md = String::new();
    md.push_str("## Commands\n\n");
    md.push_str("Options under *Global options* are accepted by every command.\n\n");
    section(&mut md, &cmd, true);
    for sub in subcommands(&cmd) {
        section(&mut md, sub, false);
    }
    md.push_str("## Environment variables\n\n");
    md.push_str("Each stands for the flag beside it; a flag on the command line wins.\n\n");
    md.push_str("| variable | flag | commands |\n|---|---|---|\n");
    let mut index: std::collections::BTreeMap<String, (String, Vec<String>)> = Default::default();
    let mut note = |c: &clap::Command, name: String| {
        for a in c.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(env) = a.get_env() {
                let e = index
                    .entry(env.to_string_lossy().into_owned())
                    .or_insert_with(|| (flag_name(a), Vec::new()));
                if !e.1.contains(&name) {
                    e.1.push(name.clone());
                }
            }
        }
    };
    note(&cmd, "all".to_string());
    for sub in subcommands(&cmd) {
        note(sub, sub.get_name().to_string());
    }
    for (env, (flag, cmds)) in index {
        let cmds = if cmds.contains(&"all".to_string()) {
            "all".to_string()
        } else {
            cmds.join(", ")
        };
        md.push_str(&format!("| `{env}` | `{flag}` | {cmds} |\n"));
    }
    md
}

fn flag_name(a: &clap::Arg) -> String {
    match (a.get_long(), a.get_short()) {
        (Some(l), _) => format!("--{l}"),
        (None, Some(s)) => format!("-{s}"),
        (None, None) => format!(
            "<{}>",
            a.get_value_names()
                .and_then(|v| v.first())
                .map(|s| s.to_string())
                .unwrap_or_else(|| a.get_id().to_string().to_uppercase())
        ),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn section(md: &mut String, cmd: &clap::Command, top: bool) {
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name());
    md.push_str(&format!("### `{name}`\n\n"));
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        md.push_str(&format!("{}\n\n", one_line(&about.to_string())));
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage: ");
    md.push_str(&format!("```\n{usage}\n```\n\n"));
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .filter(|a| top || !a.is_global_set())
        .collect();
    if !args.is_empty() {
        md.push_str(if top {
            "Global options:\n\n"
        } else {
            "Options and arguments:\n\n"
        });
        md.push_str("| option | env | default | description |\n|---|---|---|---|\n");
        for a in args {
            let mut opt = String::new();
            if let Some(s) = a.get_short() {
                opt.push_str(&format!("-{s}, "));
            }
            if let Some(l) = a.get_long() {
                opt.push_str(&format!("--{l}"));
            }
            let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
            if takes_value {
                let value = a
                    .get_value_names()
                    .map(|v| {
                        v.iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
                if opt.is_empty() {
                    opt = format!("<{value}>");
                    if a.is_last_set() {
                        opt = format!("-- <{value}>...");
                    }
                } else {
                    opt.push_str(&format!(" <{value}>"));
                }
            }
            let env = a
                .get_env()
                .map(|e| format!("`{}`", e.to_string_lossy()))
                .unwrap_or_default();
            let default = if !takes_value {
                String::new()
            } else {
                a.get_default_values()
                    .iter()
                    .map(|v| format!("`{}`", v.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| one_line(&h.to_string()))
                .unwrap_or_default();
            // clap drops the full stop of a one-sentence help.
            if !help.is_empty() && !help.ends_with(['.', ')', ':']) {
                help.push('.');
            }
            let values: Vec<String> = a
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| format!("`{}`", v.get_name()))
                .collect();
            if !values.is_empty() && takes_value {
                help.push_str(&format!(" One of {}.", values.join(", ")));
            }
            if a.is_required_set() {
                help.push_str(" Required.");
            }
            md.push_str(&format!(
                "| `{opt}` | {env} | {default} | {} |\n",
                help.trim()
            ));
        }
        md.push('\n');
    }
    if let Some(ex) = examples(cmd) {
        md.push_str("Examples:\n\n```sh\n");
        for l in ex {
            md.push_str(&l);
            md.push('\n');
        }
        md.push_str("```\n\n");
    }
}
