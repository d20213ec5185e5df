//! Loading: unit file paths in, trust-checked and validated units (or diagnostics) out.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{parse, trust, unit_name, Diagnostic, Error, Unit};

/// Unit files are a few hundred bytes; a cap keeps a stray huge file from
/// being read whole into memory.
const MAX_UNIT_SIZE: u64 = 1024 * 1024;

/// Reads, trust-checks and parses one unit file.
pub fn load_file(path: &Path) -> Result<Unit, Error> {
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
    trust::check(path)?;
    let text = read_capped(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&name, path, &text).map_err(|diagnostics| Error::Invalid { diagnostics })
}

/// Reads a file as UTF-8, refusing one larger than `MAX_UNIT_SIZE`.
fn read_capped(path: &Path) -> std::io::Result<String> {
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
        if unit_name(&path).is_some() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Checks files and directories of unit files; see `unit::check_paths`.
pub fn check_paths(paths: &[PathBuf]) -> Vec<Diagnostic> {
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
            if let Err(e) = load_file(path) {
                out.extend(e.diagnostics());
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
                for file in files {
                    if let Err(e) = load_file(&file) {
                        out.extend(e.diagnostics());
                    }
                }
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
