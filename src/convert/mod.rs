//! `rctl convert`: a compose file (or a `docker run` command line) in, one unit per service
//! out, with every key that could not be expressed (or changed meaning) said, located.
//!
//! A unit is only written if it loads (`unit::parse`), and every unit whose service lost
//! something says so in a comment at its top: nothing converted differs silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod run;
mod service;
pub mod yaml;

use yaml::{Node, Pos, Value};

/// What a note says of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Not expressed: the unit lacks it.
    Refused,
    /// Dropped, without effect on a unit (`tty`, `container_name`).
    Ignored,
    /// Expressed with a difference worth knowing.
    Changed,
}

/// One key the conversion could not carry over as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Where the key is.
    pub at: Pos,
    /// Its path (`services.web.build`).
    pub key: String,
    /// Refused, ignored or changed.
    pub kind: NoteKind,
    /// Why.
    pub message: String,
}

/// A unit written by the conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Its name (the service's).
    pub name: String,
    /// The unit file's text.
    pub text: String,
}

/// The result of one conversion.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// What was converted, for messages (`compose.yaml`, `docker run`).
    pub source: String,
    /// Whether `source` is a command line: notes name arguments, not lines.
    pub command_line: bool,
    /// The units, in the file's order.
    pub units: Vec<Converted>,
    /// Every note, in the file's order.
    pub notes: Vec<Note>,
}

impl Conversion {
    /// Whether anything was refused (not merely ignored or changed).
    pub fn refused(&self) -> bool {
        self.notes.iter().any(|n| n.kind == NoteKind::Refused)
    }

    /// One line per note: `FILE:LINE:COL: KEY: not converted: WHY`.
    pub fn report(&self) -> Vec<String> {
        self.notes.iter().map(|n| self.line(n)).collect()
    }

    fn line(&self, n: &Note) -> String {
        let what = match n.kind {
            NoteKind::Refused => "not converted",
            NoteKind::Ignored => "ignored",
            NoteKind::Changed => "converted with a difference",
        };
        if self.command_line {
            format!(
                "{}: argument {}: {}: {what}: {}",
                self.source, n.at.col, n.key, n.message
            )
        } else {
            format!(
                "{}:{}:{}: {}: {what}: {}",
                self.source, n.at.line, n.at.col, n.key, n.message
            )
        }
    }
}

/// Why nothing could be converted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, or not a compose file.
    #[error("{file}:{line}:{col}: {message}")]
    Invalid {
        /// The file (or `docker run`).
        file: String,
        /// Line.
        line: usize,
        /// Column.
        col: usize,
        /// What is wrong.
        message: String,
    },
}

/// Converts the compose file at `path`. `env` is the environment for interpolation; a `.env`
/// file beside the compose file fills in what it lacks (compose's order).
pub fn compose(path: &Path, env: &BTreeMap<String, String>) -> Result<Conversion, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let mut vars = BTreeMap::new();
    if let Ok(dotenv) = std::fs::read_to_string(dir.join(".env")) {
        if let Ok(pairs) = crate::unit::envfile_pairs(&dotenv) {
            vars.extend(pairs);
        }
    }
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let source = path.display().to_string();
    compose_text(&source, &text, &dir, &vars)
}

/// Converts compose `text` (named `source` in messages; relative paths against `dir`).
pub fn compose_text(
    source: &str,
    text: &str,
    dir: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<Conversion, Error> {
    let invalid = |at: Pos, message: String| Error::Invalid {
        file: source.to_owned(),
        line: at.line,
        col: at.col,
        message,
    };
    let mut unset = Vec::new();
    let doc = yaml::parse(text, vars, &mut unset).map_err(|e| invalid(e.at, e.message))?;
    let Some(services) = doc.get("services") else {
        return Err(invalid(doc.at, "no `services:`: not a compose file".into()));
    };
    let mut notes: Vec<Note> = unset
        .into_iter()
        .map(|(at, var)| Note {
            at,
            key: format!("${var}"),
            kind: NoteKind::Changed,
            message: format!(
                "variable {var} is not set: an empty string was used (as compose does)"
            ),
        })
        .collect();
    let empty = Node::new(Pos::default(), Value::Map(Vec::new()));
    for (key, node) in doc.entries() {
        match key.as_str() {
            "services" | "volumes" | "secrets" | "configs" => {}
            "version" => notes.push(Note {
                at: node.at,
                key: key.clone(),
                kind: NoteKind::Ignored,
                message: "obsolete in compose too".into(),
            }),
            "name" => notes.push(Note {
                at: node.at,
                key: key.clone(),
                kind: NoteKind::Ignored,
                message: "units are named after their services, without a project prefix".into(),
            }),
            "networks" => {
                for (net, decl) in node.entries() {
                    if net != "default" && !matches!(decl.value, Value::Null) {
                        notes.push(Note {
                            at: decl.at,
                            key: format!("networks.{net}"),
                            kind: NoteKind::Refused,
                            message: "networks are configured in the daemon (docs/networking.md), not by units".into(),
                        });
                    }
                }
            }
            k if k.starts_with("x-") => {}
            _ => notes.push(Note {
                at: node.at,
                key: key.clone(),
                kind: NoteKind::Refused,
                message: "no rcd equivalent".into(),
            }),
        }
    }
    let names: Vec<String> = services.entries().iter().map(|(n, _)| n.clone()).collect();
    let with_health = services
        .entries()
        .iter()
        .filter(|(_, s)| {
            s.get("healthcheck").is_some_and(|h| {
                h.get("test").is_some()
                    && h.get("disable")
                        .is_none_or(|d| d.value != Value::Bool(true))
            })
        })
        .map(|(n, _)| n.clone())
        .collect();
    let project = service::Project {
        dir,
        volumes: Some(doc.get("volumes").unwrap_or(&empty)),
        secrets: doc.get("secrets"),
        configs: doc.get("configs"),
        services: names,
        with_health,
    };
    let mut units = Vec::new();
    for (name, node) in services.entries() {
        let converted = service::convert(&format!("services.{name}"), node, &project);
        if let Some(unit) = finish(name, node.at, converted, source, &mut notes) {
            units.push(unit);
        }
    }
    notes.sort_by_key(|n| (n.at.line, n.at.col));
    Ok(Conversion {
        source: source.to_owned(),
        command_line: false,
        units,
        notes,
    })
}

/// Converts a `docker run` (or `podman run`) command line; relative paths against `dir`.
pub fn docker_run(cmdline: &str, dir: &Path) -> Result<Conversion, Error> {
    let source = "docker run".to_owned();
    let (name, service, mut notes) =
        run::parse(cmdline).map_err(|(at, message)| Error::Invalid {
            file: source.clone(),
            line: at.line,
            col: at.col,
            message,
        })?;
    let project = service::Project {
        dir,
        volumes: None,
        secrets: None,
        configs: None,
        services: Vec::new(),
        with_health: Vec::new(),
    };
    let mut converted = service::convert("run", &service, &project);
    // The flags with no compose key are the unit's notes too (its header names them).
    converted.notes.splice(0..0, std::mem::take(&mut notes));
    let mut units = Vec::new();
    if let Some(unit) = finish(&name, service.at, converted, &source, &mut notes) {
        units.push(unit);
    }
    notes.sort_by_key(|n| n.at.col);
    Ok(Conversion {
        source,
        command_line: true,
        units,
        notes,
    })
}

/// The unit text of a converted service, checked to load; its notes join `notes`.
fn finish(
    name: &str,
    at: Pos,
    converted: service::Service,
    source: &str,
    notes: &mut Vec<Note>,
) -> Option<Converted> {
    let own: Vec<Note> = converted.notes;
    let table = converted.table;
    notes.extend(own.iter().cloned());
    let table = table?;
    if !crate::unit::valid_name(name) {
        notes.push(Note {
            at,
            key: name.to_owned(),
            kind: NoteKind::Refused,
            message: "not a valid unit name (letters, digits, '_', '.', '-', starting with a letter or digit)".into(),
        });
        return None;
    }
    let mut text = format!("# Converted by `rctl convert` from {source}, service {name}.\n");
    let lost: Vec<&Note> = own.iter().filter(|n| n.kind != NoteKind::Ignored).collect();
    if !lost.is_empty() {
        text.push_str("# Not carried over as written (see the conversion's report):\n");
        for n in lost {
            let what = if n.kind == NoteKind::Refused {
                "not converted"
            } else {
                "differs"
            };
            let place = if source == "docker run" {
                format!("argument {}", n.at.col)
            } else {
                format!("line {}", n.at.line)
            };
            text.push_str(&format!("#   {place}: {}: {what}\n", n.key));
        }
    }
    text.push('\n');
    match toml::to_string(&table) {
        Ok(body) => text.push_str(&body),
        Err(e) => {
            notes.push(Note {
                at,
                key: name.to_owned(),
                kind: NoteKind::Refused,
                message: format!("cannot write the unit: {e}"),
            });
            return None;
        }
    }
    let file = PathBuf::from(format!("{name}.toml"));
    if let Err(diagnostics) = crate::unit::parse(name, &file, &text) {
        for d in diagnostics {
            notes.push(Note {
                at,
                key: name.to_owned(),
                kind: NoteKind::Refused,
                message: format!(
                    "the unit would not load, so it is not written: {}",
                    d.message
                ),
            });
        }
        return None;
    }
    Some(Converted {
        name: name.to_owned(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
    }

    /// Every compose file of the corpus converts; what is not converted is exactly what its
    /// `.report` file says (`RCD_BLESS=1` rewrites them); every unit written loads.
    #[test]
    fn the_corpus_converts_with_only_the_reported_refusals() {
        let dir = corpus();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        assert!(files.len() >= 15, "{files:?}");
        let bless = std::env::var_os("RCD_BLESS").is_some();
        let mut failures = Vec::new();
        for f in files {
            let c = match compose(&f, &BTreeMap::new()) {
                Ok(c) => c,
                Err(e) => panic!("{e}"),
            };
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let mut report: String = c
                .report()
                .iter()
                .map(|l| l.replacen(&c.source, &name, 1) + "\n")
                .collect();
            for u in &c.units {
                report.push_str(&format!("unit {}\n", u.name));
                assert!(
                    crate::unit::parse(&u.name, Path::new("x.toml"), &u.text).is_ok(),
                    "{}",
                    u.text
                );
            }
            let golden = f.with_extension("report");
            if bless {
                std::fs::write(&golden, &report).unwrap();
            }
            let want = std::fs::read_to_string(&golden).unwrap_or_default();
            if want != report {
                failures.push(format!("{name}:\n--- want\n{want}--- got\n{report}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
