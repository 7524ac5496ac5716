//! The deployment files (`deploy/compose.yaml`, every file in `deploy/kubernetes/`, `deploy/Dockerfile`
//! and `deploy/env.example`) only use what `seam` has: every `--flag` of a seam command line is an
//! option in the `--help` of the subcommand it is given to, and every `SEAM_*` name is an environment
//! variable of those subcommands (clap prints `[env: SEAM_X=]`) or one of the few seam reads itself
//! ([`ENV_ONLY`]).
//!
//! The files are read as text, not parsed as YAML: a YAML crate would cost build time for one test,
//! and the files are simple. The rules:
//! - A file is cut into units: in YAML, a document (`---`) is cut at every key indented by 0 or 2
//!   spaces (a compose service or extension, a Deployment's `template`); a Dockerfile is one unit.
//! - Seam command lines: the image's entrypoint is `seam`, so the list that replaces the image's
//!   command is seam's arguments (compose's `command:`, Kubernetes' `args:`, a Dockerfile's `CMD` after
//!   an `ENTRYPOINT` that runs seam), unless the unit names another image or replaces the entrypoint
//!   (compose's `entrypoint:`, Kubernetes' `command:`). Elsewhere (those replaced entrypoints,
//!   `test:`, `RUN`, `ENTRYPOINT`, `HEALTHCHECK`, and commands in backticks in comments) a `seam` word
//!   in command position starts one: first, or after `--`, `exec`, `-c`, `CMD`, or a shell separator.
//!   The words up to the first option are the subcommand (`seam token create`); the `--long` options
//!   after it are checked, up to a shell separator.
//! - `SEAM_*` names anywhere in a unit (comments included) are checked against every subcommand the
//!   unit runs; a unit that runs none (a compose `x-` anchor, a Secret) against every subcommand its
//!   file runs, or, when the file runs none, every subcommand any deploy file runs.

use crate::common::seam;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Variables seam reads from the environment itself, not through clap: `--help` never lists them.
/// Each must be documented for users (in README.md or under docs/), which the test checks too.
const ENV_ONLY: [&str; 2] = [
    // The key that seals integrations' credentials (base64 of 32 bytes), read by seam-metastore's
    // crypto.rs; every process of a cluster must hold the same one.
    "SEAM_SECRET_KEY",
    // The dashboard admin's password, set on every start, read by seam-server's ui/session.rs.
    "SEAM_ADMIN_PASSWORD",
];

/// Words after which a `seam` word is a program being run, not an argument.
const COMMAND_POSITION_AFTER: [&str; 9] = ["--", "exec", "-c", "CMD", "&&", "||", ";", "|", "CMD-SHELL"];

/// Words that end a command in a shell string.
const SHELL_SEPARATORS: [&str; 4] = ["&&", "||", ";", "|"];

/// Where something was found: a file relative to the workspace, and a line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    file: String,
    line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// `seam <subcommand…> --flag…` as a deploy file writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CommandLine {
    at: Location,
    /// The subcommand words (`["serve"]`, `["token", "create"]`, or none for `seam --version`).
    subcommand: Vec<String>,
    /// The `--long` options given, without their values.
    flags: Vec<String>,
    /// What the container runs (`command:`, `args:`, `CMD`), rather than a build step, a health check
    /// or an example in a comment: its environment is the unit's.
    runs: bool,
}

/// What runs together: the seam command lines of a compose service or a pod template, and the
/// `SEAM_*` names its environment holds.
#[derive(Debug, Default)]
struct Unit {
    commands: Vec<CommandLine>,
    env: Vec<(String, Location)>,
}

/// A deploy file, cut into units.
#[derive(Debug)]
struct DeployFile {
    units: Vec<Unit>,
}

/// The lines of `text` with their numbers (1-based).
fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// The words of a shell-ish string, quotes removed (good enough for command lines: no escapes).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The items of a YAML flow sequence or JSON array (`["serve", "--roles", "api,scheduler"]`): commas
/// inside quotes do not split.
fn flow_items(text: &str) -> Vec<String> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut items = Vec::new();
    let mut item = String::new();
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => item.push(c),
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ',' => items.push(std::mem::take(&mut item).trim().to_owned()),
            None => item.push(c),
        }
    }
    if !item.trim().is_empty() {
        items.push(item.trim().to_owned());
    }
    items
}

/// The words of a list of items (each item may itself be a shell string: `sh -c "seam serve …"`).
fn item_words(items: &[String]) -> Vec<String> {
    items.iter().flat_map(|i| words(i)).collect()
}

/// `seam` or a path to it.
fn is_seam(word: &str) -> bool {
    word == "seam" || word.ends_with("/seam")
}

/// The command line `words` give seam, from the subcommand on (`args` of the image's entrypoint).
fn command_line(words: &[String], at: &Location, runs: bool) -> CommandLine {
    let subcommand: Vec<String> = words
        .iter()
        .take_while(|w| !w.starts_with('-') && !SHELL_SEPARATORS.contains(&w.as_str()))
        .cloned()
        .collect();
    let flags = words[subcommand.len()..]
        .iter()
        .take_while(|w| !SHELL_SEPARATORS.contains(&w.as_str()))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap_or(w).to_owned())
        .collect();
    CommandLine {
        at: at.clone(),
        subcommand,
        flags,
        runs,
    }
}

/// The words, with a quoted shell string among them (`sh -c "seam serve …"`) split into its own.
fn flatten(words: &[String]) -> Vec<String> {
    words
        .iter()
        .flat_map(|w| {
            if w.contains(char::is_whitespace) {
                self::words(w)
            } else {
                vec![w.clone()]
            }
        })
        .collect()
}

/// The positions of `seam` words in command position.
fn seam_positions(words: &[String]) -> impl Iterator<Item = usize> + '_ {
    (0..words.len()).filter(|&i| {
        is_seam(&words[i]) && (i == 0 || COMMAND_POSITION_AFTER.contains(&words[i - 1].as_str()))
    })
}

/// Every seam command line in `words` that starts with a `seam` word in command position.
fn seam_invocations(words: &[String], at: &Location, runs: bool) -> Vec<CommandLine> {
    let words = flatten(words);
    seam_positions(&words)
        .map(|i| command_line(&words[i + 1..], at, runs))
        .collect()
}

/// The command lines of a list that the container runs: seam's arguments when the list runs no
/// program of its own (the image's entrypoint is seam), else the seam invocations in it.
fn run_list(words: &[String], at: &Location, entrypoint_is_seam: bool) -> Vec<CommandLine> {
    let flat = flatten(words);
    if entrypoint_is_seam && !flat.is_empty() && seam_positions(&flat).next().is_none() {
        vec![command_line(&flat, at, true)]
    } else {
        seam_invocations(&flat, at, true)
    }
}

/// Command lines written in backticks in a comment line (`` `seam token create` ``).
fn commented_invocations(line: &str, at: &Location) -> Vec<CommandLine> {
    let Some((_, comment)) = line.split_once('#') else {
        return Vec::new();
    };
    comment
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|code| seam_invocations(&words(code), at, false))
        // `seam` alone names the program in prose.
        .filter(|c| !c.subcommand.is_empty() || !c.flags.is_empty())
        .collect()
}

/// Every `SEAM_*` name in `line`.
fn seam_names(line: &str, at: &Location) -> Vec<(String, Location)> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(pos) = line[from..].find("SEAM_") {
        let start = from + pos;
        let end = start
            + line[start..]
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(line.len() - start);
        let glued = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        // `SEAM_*` in prose names no variable.
        let name = line[start..end].trim_end_matches('_');
        if !glued && name.len() > "SEAM".len() {
            found.push((name.to_owned(), at.clone()));
        }
        from = end.max(start + 1);
    }
    found
}

/// True when an `image:` value names seam's image (`seam:latest`, `registry.example/team/seam@sha…`).
fn is_seam_image(image: &str) -> bool {
    let image = image.trim().trim_matches(|c| c == '"' || c == '\'');
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next() == Some("seam")
}

/// `text` without a trailing YAML comment (` # …` outside quotes), trimmed.
fn without_comment(text: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return text[..i].trim(),
            None => {}
        }
        previous = c;
    }
    text.trim()
}

/// A YAML line that starts a unit: a key at indentation 0 or 2 (not a list item, not a comment).
fn starts_unit(line: &str) -> bool {
    let t = line.trim_start();
    indent(line) <= 2 && !t.is_empty() && !is_comment(line) && !t.starts_with('-') && t.contains(':')
}

/// The value of `key:` on `line` (after an optional `- `), if the line is that key.
fn key_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").unwrap_or(t);
    t.strip_prefix(key)?.strip_prefix(':').map(str::trim)
}

/// Scans a YAML file (compose, Kubernetes).
fn scan_yaml(name: &str, text: &str) -> DeployFile {
    let lines: Vec<(usize, &str)> = numbered(text).collect();
    // Cut into units: a document separator or a shallow key starts a new one.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for (i, (_, line)) in lines.iter().enumerate() {
        if i > start && (line.starts_with("---") || starts_unit(line)) {
            spans.push((start, i));
            start = i;
        }
    }
    spans.push((start, lines.len()));
    let kubernetes = lines.iter().any(|(_, l)| l.starts_with("apiVersion:"));
    let units = spans
        .into_iter()
        .map(|(from, to)| scan_yaml_unit(name, &lines[from..to], kubernetes))
        .collect();
    DeployFile { units }
}

/// Scans one unit of a YAML file; `kubernetes` tells what `command:` means (the entrypoint, not its
/// arguments as in compose).
fn scan_yaml_unit(file: &str, lines: &[(usize, &str)], kubernetes: bool) -> Unit {
    let at = |line: usize| Location {
        file: file.to_owned(),
        line,
    };
    let runs_other_image = {
        let images: Vec<&str> = lines.iter().filter_map(|(_, l)| key_value(l, "image")).collect();
        !images.is_empty() && !images.iter().any(|i| is_seam_image(i))
    };
    let (arguments_key, entrypoint_key) = if kubernetes {
        ("args", "command")
    } else {
        ("command", "entrypoint")
    };
    let replaces_entrypoint = lines.iter().any(|(_, l)| key_value(l, entrypoint_key).is_some());
    let entrypoint_is_seam = !runs_other_image && !replaces_entrypoint;
    let mut unit = Unit::default();
    let mut i = 0;
    while i < lines.len() {
        let (number, line) = lines[i];
        i += 1;
        unit.env.extend(seam_names(line, &at(number)));
        if is_comment(line) {
            unit.commands.extend(commented_invocations(line, &at(number)));
            continue;
        }
        let Some((key, value)) = ["command", "args", "entrypoint", "test"]
            .into_iter()
            .find_map(|k| key_value(line, k).map(|v| (k, v)))
        else {
            continue;
        };
        // The list's items: flow (`[a, b]`, maybe over several lines), block (`- a` lines below), a
        // block scalar (`|` or `>` and the lines below), or a plain string.
        let value = without_comment(value);
        let items = if value.starts_with('[') {
            let mut flow = value.to_owned();
            while !flow.trim_end().ends_with(']') && i < lines.len() {
                flow.push(' ');
                flow.push_str(without_comment(lines[i].1.trim()));
                unit.env.extend(seam_names(lines[i].1, &at(lines[i].0)));
                i += 1;
            }
            flow_items(&flow)
        } else if value.is_empty() {
            let mut block = Vec::new();
            while i < lines.len() && indent(lines[i].1) >= indent(line) {
                let Some(item) = lines[i].1.trim_start().strip_prefix("- ") else {
                    break;
                };
                block.push(without_comment(item).to_owned());
                unit.env.extend(seam_names(lines[i].1, &at(lines[i].0)));
                i += 1;
            }
            block
        } else if value.starts_with('|') || value.starts_with('>') {
            let mut text = String::new();
            while i < lines.len() && (lines[i].1.trim().is_empty() || indent(lines[i].1) > indent(line)) {
                text.push(' ');
                text.push_str(lines[i].1.trim());
                unit.env.extend(seam_names(lines[i].1, &at(lines[i].0)));
                i += 1;
            }
            vec![text]
        } else {
            vec![value.to_owned()]
        };
        let words = item_words(&items);
        if key == arguments_key {
            unit.commands
                .extend(run_list(&words, &at(number), entrypoint_is_seam));
        } else if key == entrypoint_key {
            unit.commands.extend(run_list(&words, &at(number), false));
        } else {
            unit.commands.extend(seam_invocations(&words, &at(number), false));
        }
    }
    unit
}

/// Scans a Dockerfile: one unit.
fn scan_dockerfile(name: &str, text: &str) -> DeployFile {
    let at = |line: usize| Location {
        file: name.to_owned(),
        line,
    };
    let mut unit = Unit::default();
    // Instructions with their continuation lines joined, at their first line.
    let mut instructions: Vec<(usize, String)> = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (number, line) in numbered(text) {
        unit.env.extend(seam_names(line, &at(number)));
        if is_comment(line) {
            unit.commands.extend(commented_invocations(line, &at(number)));
            continue;
        }
        let (part, continues) = match line.trim_end().strip_suffix('\\') {
            Some(p) => (p, true),
            None => (line, false),
        };
        let (first, mut joined) = open.take().unwrap_or((number, String::new()));
        joined.push(' ');
        joined.push_str(part.trim());
        if continues {
            open = Some((first, joined));
        } else if !joined.trim().is_empty() {
            instructions.push((first, joined.trim().to_owned()));
        }
    }
    let list = |args: &str| -> Vec<String> {
        let args = args.trim();
        if args.starts_with('[') {
            item_words(&flow_items(args))
        } else {
            words(args)
        }
    };
    let mut entrypoint_is_seam = false;
    let mut cmd: Option<(usize, Vec<String>)> = None;
    for (number, instruction) in &instructions {
        let (keyword, args) = instruction.split_once(' ').unwrap_or((instruction, ""));
        match keyword.to_ascii_uppercase().as_str() {
            "CMD" => cmd = Some((*number, list(args))),
            "ENTRYPOINT" => {
                let words = flatten(&list(args));
                entrypoint_is_seam = seam_positions(&words).next().is_some();
                unit.commands.extend(
                    seam_invocations(&words, &at(*number), false)
                        .into_iter()
                        .filter(|c| !c.subcommand.is_empty() || !c.flags.is_empty()),
                );
            }
            "RUN" | "HEALTHCHECK" => unit
                .commands
                .extend(seam_invocations(&list(args), &at(*number), false)),
            _ => {}
        }
    }
    if let Some((number, words)) = cmd {
        unit.commands
            .extend(run_list(&words, &at(number), entrypoint_is_seam));
    }
    DeployFile { units: vec![unit] }
}

/// What `seam <subcommand> --help` lists: its long options and its environment variables.
#[derive(Debug, Default)]
struct Help {
    options: BTreeSet<String>,
    env: BTreeSet<String>,
}

impl Help {
    fn parse(text: &str) -> Help {
        let mut help = Help::default();
        for line in text.lines() {
            let t = line.trim_start();
            // Option lines: `-h, --help`, `      --data-dir <DATA_DIR>`.
            if t.starts_with('-') {
                for part in t.split(", ") {
                    if let Some(rest) = part.strip_prefix("--") {
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                            .collect();
                        if !name.is_empty() {
                            help.options.insert(format!("--{name}"));
                        }
                    }
                }
            }
            for (pos, _) in line.match_indices("[env: ") {
                let rest = &line[pos + "[env: ".len()..];
                if let Some((name, _)) = rest.split_once('=') {
                    help.env.insert(name.to_owned());
                }
            }
        }
        help
    }
}

/// `seam <subcommand> --help` for each subcommand, asked once.
struct Helps<'a> {
    ask: &'a mut dyn FnMut(&[String]) -> Result<Help, String>,
    known: HashMap<Vec<String>, Result<Help, String>>,
}

impl Helps<'_> {
    fn of(&mut self, subcommand: &[String]) -> &Result<Help, String> {
        let ask = &mut self.ask;
        self.known
            .entry(subcommand.to_vec())
            .or_insert_with(|| ask(subcommand))
    }
}

/// The subcommands that `commands` run (not build steps, health checks or comments).
fn subcommands_run<'a>(commands: impl Iterator<Item = &'a CommandLine>) -> BTreeSet<Vec<String>> {
    commands
        .filter(|c| c.runs && !c.subcommand.is_empty())
        .map(|c| c.subcommand.clone())
        .collect()
}

/// Everything in `files` that seam does not have, one line each. `ask` answers `seam <subcommand>
/// --help` (or an error when there is no such subcommand).
fn problems(files: &[DeployFile], ask: &mut dyn FnMut(&[String]) -> Result<Help, String>) -> Vec<String> {
    let mut helps = Helps {
        ask,
        known: HashMap::new(),
    };
    let mut out = Vec::new();
    let everywhere = subcommands_run(files.iter().flat_map(|f| &f.units).flat_map(|u| &u.commands));
    for file in files {
        let in_file = subcommands_run(file.units.iter().flat_map(|u| &u.commands));
        for unit in &file.units {
            for command in &unit.commands {
                let shown = shown(&command.subcommand);
                match helps.of(&command.subcommand) {
                    Err(e) => out.push(format!("{}: `{shown}` is not a seam command: {e}", command.at)),
                    Ok(help) => {
                        for flag in command.flags.iter().filter(|f| !help.options.contains(*f)) {
                            out.push(format!(
                                "{}: `{shown}` has no option {flag} (`{shown} --help`)",
                                command.at
                            ));
                        }
                    }
                }
            }
            // The environment is the unit's when it runs seam; else (an anchor, a Secret) it is shared
            // by what the file runs, or by what the deploy files run.
            let in_unit = subcommands_run(unit.commands.iter());
            let targets = [&in_unit, &in_file, &everywhere]
                .into_iter()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_default();
            for (name, at) in unit.env.iter().filter(|(n, _)| !ENV_ONLY.contains(&n.as_str())) {
                if targets.is_empty() {
                    out.push(format!(
                        "{at}: {name} is set, but no deploy file runs a seam subcommand"
                    ));
                }
                for subcommand in &targets {
                    let shown = shown(subcommand);
                    // A subcommand seam lacks is reported where it is run.
                    if let Ok(help) = helps.of(subcommand) {
                        if !help.env.contains(name) {
                            out.push(format!(
                                "{at}: `{shown}` reads no {name} (`{shown} --help` lists [env: …]; a \
                                 variable seam reads itself belongs in ENV_ONLY)"
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

fn shown(subcommand: &[String]) -> String {
    std::iter::once("seam")
        .chain(subcommand.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every deploy file, scanned; names relative to the workspace.
fn deploy_files() -> Vec<DeployFile> {
    let root = workspace();
    let mut names = vec!["deploy/compose.yaml".to_owned(), "deploy/env.example".to_owned()];
    let mut kubernetes: Vec<String> = std::fs::read_dir(root.join("deploy/kubernetes"))
        .expect("deploy/kubernetes/ exists")
        .map(|e| e.expect("a directory entry of deploy/kubernetes/").file_name())
        .map(|n| format!("deploy/kubernetes/{}", n.to_string_lossy()))
        .collect();
    kubernetes.sort();
    names.extend(kubernetes);
    let mut files: Vec<DeployFile> = names
        .iter()
        .map(|name| {
            let text =
                std::fs::read_to_string(root.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
            scan_yaml(name, &text)
        })
        .collect();
    let dockerfile = "deploy/Dockerfile";
    let text = std::fs::read_to_string(root.join(dockerfile)).expect("read deploy/Dockerfile");
    files.push(scan_dockerfile(dockerfile, &text));
    files
}

/// `seam <subcommand> --help`, run with no `SEAM_*` variable set (clap would print their values).
fn seam_help(subcommand: &[String]) -> Result<Help, String> {
    let mut cmd = seam();
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SEAM_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd
        .args(subcommand)
        .arg("--help")
        .output()
        .expect("run the seam binary");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(stderr.lines().next().unwrap_or("failed").to_owned());
    }
    Ok(Help::parse(&String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn deploy_files_use_only_options_and_variables_seam_has() {
    let files = deploy_files();
    // Against a scanner that finds nothing: the deploy files run the API and the workers.
    let run = subcommands_run(files.iter().flat_map(|f| &f.units).flat_map(|u| &u.commands));
    for expected in ["serve", "worker"] {
        assert!(
            run.contains(&vec![expected.to_owned()]),
            "found no `seam {expected}` in the deploy files (found {run:?})"
        );
    }
    let found = problems(&files, &mut seam_help);
    assert!(
        found.is_empty(),
        "the deploy files use what seam does not have:\n{}",
        found.join("\n")
    );
}

#[test]
fn variables_seam_reads_itself_are_documented() {
    let root = workspace();
    let mut docs = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/ exists") {
        let path = entry.expect("a directory entry of docs/").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let text: String = docs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())))
        .collect();
    for name in ENV_ONLY {
        assert!(
            text.contains(name),
            "{name} is in ENV_ONLY but neither README.md nor docs/ mention it"
        );
    }
}

/// The checks themselves, against a made-up `--help`: they catch what a deploy file may get wrong in
/// every form it can be written.
mod scanner {
    use super::*;

    fn fake_help(subcommand: &[String]) -> Result<Help, String> {
        let text = match subcommand
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => "  -V, --version\n          Print version\n",
            ["serve"] | ["worker"] => {
                "      --listen <LISTEN>\n          Address\n          [env: SEAM_LISTEN=]\n\
                 \x20     --roles <ROLES>\n          [env: SEAM_ROLES=]\n  -h, --help\n          Print help\n"
            }
            ["token", "create"] => "      --name <NAME>\n  -h, --help\n",
            _ => {
                return Err(format!(
                    "error: unrecognized subcommand '{}'",
                    subcommand.join(" ")
                ))
            }
        };
        Ok(Help::parse(text))
    }

    fn check(files: &[DeployFile]) -> Vec<String> {
        problems(files, &mut fake_help)
    }

    #[test]
    fn compose_flow_and_block_lists_are_checked() {
        let compose = "\
services:
  postgres:
    image: postgres:17
    command: [\"postgres\", \"--no-such-postgres-flag\"]
    healthcheck:
      test: [\"CMD-SHELL\", \"pg_isready --username=seam --dbname=seam\"]
  api:
    image: seam:latest
    command: [\"serve\", \"--roles\", \"api,scheduler\", \"--listen=0.0.0.0:8080\", \"--bogus\"]
    environment:
      SEAM_LISTEN: 0.0.0.0:8080
      SEAM_BOGUS: x
      SEAM_SECRET_KEY: ${SEAM_SECRET_KEY:?set it}
  worker:
    command:
      - worker
      - --also-bogus
";
        let found = check(&[scan_yaml("compose.yaml", compose)]);
        assert_eq!(
            found,
            [
                "compose.yaml:9: `seam serve` has no option --bogus (`seam serve --help`)",
                "compose.yaml:12: `seam serve` reads no SEAM_BOGUS (`seam serve --help` lists [env: …]; a \
                 variable seam reads itself belongs in ENV_ONLY)",
                "compose.yaml:15: `seam worker` has no option --also-bogus (`seam worker --help`)",
            ],
        );
    }

    #[test]
    fn names_in_a_unit_without_a_command_are_checked_against_the_file_s_commands() {
        let anchors = "\
x-env: &env
  SEAM_ROLES: api
  SEAM_NOPE: x
services:
  api:
    command: [\"serve\"]
  other:
    command: [\"wrker\"]
";
        let found = check(&[scan_yaml("compose.yaml", anchors)]);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("compose.yaml:3: `seam serve` reads no SEAM_NOPE")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("compose.yaml:8: `seam wrker` is not a seam command")),
            "{found:?}"
        );
        assert!(!found.iter().any(|p| p.contains("SEAM_ROLES")), "{found:?}");
    }

    #[test]
    fn kubernetes_args_and_a_secret_are_checked() {
        let deployment = "\
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: seam
          image: registry.example/team/seam:1.2
          args: [\"worker\", \"--max-jbos\", \"4\"]
          env:
            - name: SEAM_ROLES
              value: worker
---
apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      containers:
        - name: seam
          image: seam:latest
          command: [\"sh\", \"-c\"]  # [a shell, #runs seam
          args: |
            echo starting
            exec /usr/local/bin/seam serve --bogus-too
";
        let secret = "\
apiVersion: v1
kind: Secret
stringData:
  SEAM_SECRET_KEY: x
  SEAM_METASTORE_ULR: x
";
        let found = check(&[
            scan_yaml("worker.yaml", deployment),
            scan_yaml("secret.yaml", secret),
        ]);
        assert_eq!(
            found,
            [
                "worker.yaml:9: `seam worker` has no option --max-jbos (`seam worker --help`)",
                "worker.yaml:23: `seam serve` has no option --bogus-too (`seam serve --help`)",
                "secret.yaml:5: `seam serve` reads no SEAM_METASTORE_ULR (`seam serve --help` lists [env: …]; a \
                 variable seam reads itself belongs in ENV_ONLY)",
                "secret.yaml:5: `seam worker` reads no SEAM_METASTORE_ULR (`seam worker --help` lists [env: \
                 …]; a variable seam reads itself belongs in ENV_ONLY)",
            ],
        );
    }

    #[test]
    fn dockerfile_cmd_run_and_comments_are_checked() {
        let dockerfile = "\
FROM debian AS build
# Run `seam token create --nmae ci` to get a token.
RUN cargo build --release -p seam-cli --bin seam \\
    && install target/release/seam /usr/local/bin/seam
RUN seam --version && seam --verbose
ENV SEAM_LISTEN=0.0.0.0:8080 SEAM_TYPO=1
ENTRYPOINT [\"/usr/bin/tini\", \"--\", \"seam\"]
CMD [\"serve\", \"--listen\", \"0.0.0.0:8080\", \"--nope\"]
";
        let found = check(&[scan_dockerfile("Dockerfile", dockerfile)]);
        assert_eq!(
            found,
            [
                "Dockerfile:2: `seam token create` has no option --nmae (`seam token create --help`)",
                "Dockerfile:5: `seam` has no option --verbose (`seam --help`)",
                "Dockerfile:8: `seam serve` has no option --nope (`seam serve --help`)",
                "Dockerfile:6: `seam serve` reads no SEAM_TYPO (`seam serve --help` lists [env: …]; a \
                 variable seam reads itself belongs in ENV_ONLY)",
            ],
        );
    }

    #[test]
    fn words_keep_quoted_commas_and_spaces() {
        assert_eq!(
            flow_items(r#"["serve", "--roles", "api,scheduler", 'a b']"#),
            ["serve", "--roles", "api,scheduler", "a b"]
        );
        assert_eq!(words(r#"sh -c "seam serve --x""#), ["sh", "-c", "seam serve --x"]);
        assert_eq!(
            seam_names(
                "x: ${SEAM_SECRET_KEY:?set SEAM_SECRET_KEY} NOTSEAM_X SEAM_* SEAM_A1_B",
                &Location {
                    file: "f".into(),
                    line: 1
                }
            )
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>(),
            ["SEAM_SECRET_KEY", "SEAM_SECRET_KEY", "SEAM_A1_B"]
        );
    }
}
