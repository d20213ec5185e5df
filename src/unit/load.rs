//! Loading: unit file paths in, trust-checked and validated units (or diagnostics) out.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::sources::{Layers, Sources};
use super::{links, parse, raw, trust, unit_name, Diagnostic, Error, Unit};

/// Unit files are a few hundred bytes; a cap keeps a stray huge file from
/// being read whole into memory.
const MAX_UNIT_SIZE: u64 = 1024 * 1024;

/// Reads, trust-checks and parses one unit file.
pub fn load_file(path: &Path) -> Result<Unit, Error> {
    load_with_text(path, &mut Vec::new()).map(|(unit, _)| unit)
}

/// `load_file`, and the files outside it that it reads (its env files), known once the unit
/// file itself parses: a change of one of them is a change of the unit, even while it fails.
pub fn load_file_with_externals(path: &Path) -> (Result<Unit, Error>, Vec<PathBuf>) {
    let mut externals = Vec::new();
    let loaded = load_with_text(path, &mut externals).map(|(unit, _)| unit);
    (loaded, externals)
}

/// `load_file`, also returning the unit's sources, to locate problems found later;
/// `externals` gets the paths outside its own file whose change changes it (its template,
/// drop-ins and their directories, env files, secrets), as far as they are known.
fn load_with_text(path: &Path, externals: &mut Vec<PathBuf>) -> Result<(Unit, Sources), Error> {
    let Some(name) = unit_name(path) else {
        return Err(Error::Invalid {
            diagnostics: vec![Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                message: "not a unit file name: expected NAME.toml (dotfiles and editor backups are ignored)".into(),
            }],
        });
    };
    let layers = if super::is_template(&name) {
        Layers::for_template(path, &name)
    } else {
        Layers::discover(path, &name)
    };
    *externals = layers.externals(path);
    let sources = layers.read()?;
    let mut unit = super::parse_sources(&layers.name, path, &sources)
        .map_err(|diagnostics| Error::Invalid { diagnostics })?;
    externals.extend(unit.external_files());
    super::envfile::apply(&mut unit).map_err(|diagnostics| Error::Invalid { diagnostics })?;
    super::secrets::apply(&mut unit).map_err(|diagnostics| Error::Invalid { diagnostics })?;
    Ok((unit, sources))
}

/// Reads a file as UTF-8, refusing one larger than `MAX_UNIT_SIZE`.
pub(super) fn read_capped(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    fs::File::open(path)?
        .take(MAX_UNIT_SIZE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_UNIT_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_UNIT_SIZE} bytes"),
        ));
    }
    Ok(text)
}

/// The unit files in `dir`, sorted by path.
pub fn unit_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if unit_name(&path).is_some_and(|n| !super::is_template(&n)) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Checks files and directories of unit files; see `unit::check_paths`.
pub fn check_paths(paths: &[PathBuf], networks: Option<&BTreeSet<String>>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for path in paths {
        let is_dir = match fs::metadata(path) {
            Ok(meta) => meta.is_dir(),
            Err(source) => {
                out.extend(
                    Error::Read {
                        path: path.clone(),
                        source,
                    }
                    .diagnostics(),
                );
                continue;
            }
        };
        if !is_dir {
            match load_with_text(path, &mut Vec::new()) {
                Ok(loaded) => {
                    // A lone file is judged against the units beside it: the directory it
                    // would be loaded from. Loops need the others loaded; the directory's
                    // own check finds those.
                    let dir = match path.parent() {
                        Some(p) if !p.as_os_str().is_empty() => p,
                        _ => Path::new("."),
                    };
                    let names = unit_files(dir).ok().map(|files| names_of(&files));
                    out.extend(cross_file(&[loaded], names.as_ref(), networks));
                }
                Err(e) => out.extend(e.diagnostics()),
            }
            continue;
        }
        // An untrusted directory refuses every file in it: say so once.
        if let Err(e) = trust::check_dir(path) {
            out.extend(e.diagnostics());
            continue;
        }
        match unit_files(path) {
            Ok(files) => {
                let names = names_of(&files);
                let mut found = Vec::new();
                let mut loaded = Vec::new();
                // Templates too, each as an instance of its own: one no instance uses yet is
                // checked all the same (its problems, shared by its instances, said once).
                let templates = templates(path);
                for file in files.into_iter().chain(templates) {
                    match load_with_text(&file, &mut Vec::new()) {
                        Ok(unit) => loaded.push(unit),
                        Err(e) => found.extend(e.diagnostics()),
                    }
                }
                found.extend(cross_file(&loaded, Some(&names), networks));
                // File by file, as the directory lists them; a file's own order is kept.
                found.sort_by(|a, b| a.file.cmp(&b.file));
                found.dedup();
                out.extend(found);
            }
            Err(source) => out.extend(
                Error::Read {
                    path: path.clone(),
                    source,
                }
                .diagnostics(),
            ),
        }
    }
    out
}

/// The templates (`NAME@.toml`) in `dir`, sorted.
fn templates(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| unit_name(p).is_some_and(|n| super::is_template(&n)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn names_of(files: &[PathBuf]) -> BTreeSet<String> {
    files.iter().filter_map(|f| unit_name(f)).collect()
}

/// What `rctl check` says of one file's text, without touching the file system: the file's
/// own problems, else those of its references to `names` (the unit files beside it) and to
/// `networks` (the configured ones, if known).
pub fn check_text(
    name: &str,
    file: &Path,
    text: &str,
    names: &BTreeSet<String>,
    networks: Option<&BTreeSet<String>>,
) -> Vec<Diagnostic> {
    match parse(name, file, text) {
        Ok(unit) => cross_file(
            &[(unit, Sources::single(name, file, text))],
            Some(names),
            networks,
        ),
        Err(diagnostics) => diagnostics,
    }
}

/// The problems of valid units' references to other units (when the unit files present are
/// known) and to networks (when the configured ones are).
fn cross_file(
    loaded: &[(Unit, Sources)],
    names: Option<&BTreeSet<String>>,
    networks: Option<&BTreeSet<String>>,
) -> Vec<Diagnostic> {
    let mut out = names.map_or_else(Vec::new, |names| link_diagnostics(loaded, names));
    if let Some(known) = networks {
        out.extend(network_diagnostics(loaded, known));
    }
    out
}

/// The cross-file problems of `loaded` units (see `links`), each at the value naming the
/// other unit.
fn link_diagnostics(loaded: &[(Unit, Sources)], names: &BTreeSet<String>) -> Vec<Diagnostic> {
    let problems = links(loaded.iter().map(|(u, _)| u), names);
    problems
        .into_iter()
        .filter_map(|p| {
            let (_, sources) = loaded.iter().find(|(u, _)| u.name == p.unit)?;
            Some(at(
                sources,
                reference_offset(sources, p.key, &p.target),
                p.message,
            ))
        })
        .collect()
}

/// A diagnostic at a byte offset of a unit's sources.
fn at(sources: &Sources, offset: usize, message: String) -> Diagnostic {
    let (file, line, column) = sources.locate(offset);
    Diagnostic {
        file,
        line,
        column,
        message,
    }
}

/// The networks that `loaded` units name and `known` lacks, each at its place in `networks`.
fn network_diagnostics(loaded: &[(Unit, Sources)], known: &BTreeSet<String>) -> Vec<Diagnostic> {
    let configured = known.iter().cloned().collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for (unit, sources) in loaded {
        let listed: Vec<(String, usize)> = raw::parse_sources(sources)
            .ok()
            .and_then(|(file, _)| file.network)
            .and_then(|n| n.into_inner().networks)
            .map(|list| {
                list.into_inner()
                    .into_iter()
                    .map(|n| (n.get_ref().clone(), n.span().start))
                    .collect()
            })
            .unwrap_or_default();
        for name in unit.network.networks.iter().filter(|n| !known.contains(*n)) {
            let offset = listed
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, at)| *at);
            out.push(at(
                sources,
                offset,
                format!("unknown network {name:?} (configured: {configured})"),
            ));
        }
    }
    out
}

/// `p` as a diagnostic at its place in the unit's files, read again (line 1, column 1 of
/// `file` if they cannot be read).
pub fn locate_link(file: &Path, p: &super::LinkProblem) -> Diagnostic {
    let sources = unit_name(file)
        .and_then(|name| Layers::discover(file, &name).read().ok())
        .unwrap_or_else(|| Sources::single(&p.unit, file, ""));
    at(
        &sources,
        reference_offset(&sources, p.key, &p.target),
        p.message.clone(),
    )
}

/// Where, in a valid unit's sources, `key` names `target`: the value of `[network] mode`, or
/// the entry of `[unit] after`, `requires` or `wants` (0 if not found, which cannot happen
/// for a reference the unit has).
fn reference_offset(sources: &Sources, key: &str, target: &str) -> usize {
    let Ok((file, _)) = raw::parse_sources(sources) else {
        return 0;
    };
    if key == "mode" {
        return file
            .network
            .and_then(|n| n.into_inner().mode)
            .map_or(0, |m| m.span().start);
    }
    let Some(unit) = file.unit.map(|u| u.into_inner()) else {
        return 0;
    };
    let list = match key {
        "after" => unit.after,
        "requires" => unit.requires,
        _ => unit.wants,
    };
    list.map(|l| l.into_inner())
        .unwrap_or_default()
        .into_iter()
        .find(|n| n.get_ref() == target)
        .map_or(0, |n| n.span().start)
}
