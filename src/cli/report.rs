//! How failures reach the user: one `provenant: error:` line (a JSON event
//! with `--log-format json`), for usage errors as for every other, and a
//! panic turned into exit code 1 with one line instead of Rust's report and
//! exit code 101.
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use super::{ColorWhen, LogFormat};
use crate::verify::exit;

/// The settings that shape error output, read from the raw arguments and
/// the environment before clap has parsed anything (a usage error has no
/// parsed `--log-format`).
pub struct Early {
    pub format: LogFormat,
    pub color: ColorWhen,
}

impl Early {
    pub fn scan(args: &[OsString]) -> Early {
        let mut format = match std::env::var("PROVENANT_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let mut color = ColorWhen::Auto;
        let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
        while let Some(a) = it.next() {
            // After `--` come `run`'s command and its arguments.
            if a == "--" {
                break;
            }
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) => (f.to_string(), Some(v.to_string())),
                None => (a.to_string(), None),
            };
            if flag != "--log-format" && flag != "--color" {
                continue;
            }
            let Some(value) = inline.or_else(|| it.next().map(|v| v.to_string())) else {
                break;
            };
            match (flag.as_str(), value.as_str()) {
                ("--log-format", "json") => format = LogFormat::Json,
                ("--log-format", "text") => format = LogFormat::Text,
                ("--color", "always") => color = ColorWhen::Always,
                ("--color", "never") => color = ColorWhen::Never,
                ("--color", "auto") => color = ColorWhen::Auto,
                _ => {}
            }
        }
        Early { format, color }
    }

    pub fn clap_color(&self) -> clap::ColorChoice {
        match self.color {
            ColorWhen::Always => clap::ColorChoice::Always,
            ColorWhen::Never => clap::ColorChoice::Never,
            // clap (anstream) honours NO_COLOR and the terminal itself.
            ColorWhen::Auto => clap::ColorChoice::Auto,
        }
    }
}

/// https://no-color.org: present and not empty.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether text written to stderr gets colour codes.
pub fn colour_stderr(color: ColorWhen) -> bool {
    match color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            std::io::stderr().is_terminal()
                && !no_color()
                && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        }
    }
}

/// Writes the one line for a failure that ends the process: plain text, or a
/// JSON event shaped like the tracing subscriber's (`timestamp`, `level`,
/// `message`) with the exit code as a number. Not through tracing: the log
/// filter must not be able to silence it.
pub fn fatal(format: LogFormat, message: &str, code: i32) {
    let mut err = std::io::stderr().lock();
    let _ = match format {
        LogFormat::Text => writeln!(err, "provenant: error: {message}"),
        LogFormat::Json => {
            let ts = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            #[derive(serde::Serialize)]
            struct Event<'a> {
                timestamp: String,
                level: &'static str,
                message: &'a str,
                fatal: bool,
                exit_code: i32,
            }
            let event = Event {
                timestamp: ts,
                level: "ERROR",
                message,
                fatal: true,
                exit_code: code,
            };
            writeln!(err, "{}", serde_json::to_string(&event).unwrap_or_default())
        }
    };
}

/// A clap error (or `--help`/`--version`, which clap reports the same way):
/// help and version go to stdout with exit code 0; a usage error becomes one
/// line with exit code 2, with clap's usage and hints after it only when a
/// person is reading stderr.
pub fn usage_error(e: clap::Error, early: &Early) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return exit::OK;
    }
    let rendered = e.render().to_string();
    let (line, detail) = summarize(e.kind(), &rendered);
    fatal(early.format, &line, exit::USAGE);
    if early.format == LogFormat::Text && std::io::stderr().is_terminal() && !detail.is_empty() {
        let _ = writeln!(std::io::stderr().lock(), "\n{detail}");
    }
    exit::USAGE
}

/// Clap's rendered error as one line, and the rest (usage, help) as detail.
///
/// Clap renders `error: MESSAGE\n[  more lines of the message]\n\n  tip:
/// ...\n\nUsage: provenant SUB ...\n\nFor more information, try '--help'.`;
/// the message and its tips are joined into one line that ends with the
/// help command to run for the subcommand the usage names.
pub fn summarize(kind: clap::error::ErrorKind, rendered: &str) -> (String, String) {
    let paragraphs: Vec<&str> = rendered
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let usage = paragraphs.iter().find_map(|p| p.strip_prefix("Usage: "));
    // `Usage: provenant attest [OPTIONS] ...` -> `provenant attest`
    let command = usage
        .map(|u| {
            u.split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "provenant".to_string());
    let see = format!("see '{command} --help'");
    if kind == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return (
            format!("a subcommand is required ({see})"),
            rendered.trim_end().to_string(),
        );
    }
    let flat = |p: &str| p.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut line = paragraphs
        .first()
        .map(|p| flat(p.strip_prefix("error:").unwrap_or(p)))
        .unwrap_or_default();
    let tips: Vec<String> = paragraphs
        .iter()
        .skip(1)
        .filter(|p| p.starts_with("tip:"))
        .map(|p| flat(p))
        .collect();
    for tip in &tips {
        line.push_str(&format!(" ({tip})"));
    }
    line.push_str(&format!("; {see}"));
    let detail = paragraphs
        .iter()
        .skip(1)
        .filter(|p| !p.starts_with("tip:"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n\n");
    (line, detail)
}

/// What the last panic on the main thread said, for the one line.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Panics are bugs: the main thread's is reported by `main` as one line
/// (exit code 1); one on another thread, which the code around it may
/// recover from, is logged. RUST_BACKTRACE still prints the backtrace.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // Panic messages may quote input; keep them on one line.
        let text = format!("{msg}{at}").replace(['\n', '\r'], " ");
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
        if name == "main" {
            *PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
        } else if tracing::dispatcher::has_been_set() {
            tracing::error!(thread = name, panic = %text, "internal error (a bug: please report it)");
        } else {
            eprintln!(
                "provenant: internal error in thread {name} (a bug: please report it): {text}"
            );
        }
    }));
}

pub fn panic_line() -> String {
    let what = PANIC
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or_else(|| "panic".to_string());
    format!("internal error (a bug: please report it): {what}")
}

/// Test builds only: PROVENANT_TEST_PANIC makes the command panic before it
/// starts, so the tests can check what a bug looks like to the user (exit
/// code 1, one line). Release builds do not look at the variable.
pub fn injected_fault() {
    if crate::hooks::var("PROVENANT_TEST_PANIC").is_some() {
        panic!("PROVENANT_TEST_PANIC is set");
    }
}
