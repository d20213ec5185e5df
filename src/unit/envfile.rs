//! `env_file`: Docker's and compose's `.env` syntax in, `KEY=value` pairs out, merged under
//! the unit's inline `env` when the unit is loaded (so the spec hash covers their content and
//! a changed file recreates the container like a changed unit).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{hash, trust, Diagnostic, Unit};

/// Env files are small; a cap keeps a stray huge file from being read whole.
const MAX_ENV_FILE: u64 = 1024 * 1024;

/// The pairs of an env file's text, in order; `Err((line, message))` at the first bad line.
///
/// `KEY=value` per line; blank lines and lines starting with `#` are skipped; `export ` before
/// the key is allowed; a value in double quotes takes `\n`, `\t`, `\"`, `\\` escapes, one in
/// single quotes is taken as written; an unquoted value ends at ` #` (a comment) and loses
/// trailing blanks. A bare `KEY` is refused: Docker would pass its own daemon's variable,
/// which is rarely what was meant.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((
                n,
                format!(
                    "{:?} has no `=`: write `{}=` for an empty value (the daemon's own environment is not passed)",
                    line.trim(),
                    line.trim()
                ),
            ));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err((n, format!("invalid variable name {key:?}")));
        }
        let value = value.trim_start();
        let value = if let Some(rest) = value.strip_prefix('"') {
            double_quoted(rest).map_err(|m| (n, m))?
        } else if let Some(rest) = value.strip_prefix('\'') {
            let (v, after) = rest
                .split_once('\'')
                .ok_or_else(|| (n, "unterminated single quote".to_owned()))?;
            check_after(after).map_err(|m| (n, m))?;
            v.to_owned()
        } else {
            let end = value.find(" #").or_else(|| value.find("\t#"));
            value[..end.unwrap_or(value.len())].trim_end().to_owned()
        };
        if value.contains('\0') {
            return Err((n, format!("the value of {key} contains a NUL byte")));
        }
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn double_quoted(rest: &str) -> Result<String, String> {
    let mut v = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                check_after(chars.as_str())?;
                return Ok(v);
            }
            '\\' => match chars.next() {
                Some('n') => v.push('\n'),
                Some('t') => v.push('\t'),
                Some('r') => v.push('\r'),
                Some(other) => v.push(other),
                None => break,
            },
            c => v.push(c),
        }
    }
    Err("unterminated double quote (values span one line)".to_owned())
}

/// After a closing quote: nothing but blanks and a comment.
fn check_after(after: &str) -> Result<(), String> {
    let after = after.trim_start();
    if after.is_empty() || after.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected {after:?} after the closing quote"))
    }
}

/// The pairs of the env file at `path`, trust-checked as `apply` reads it.
pub fn read_pairs(path: &Path) -> Result<Vec<(String, String)>, String> {
    trust::check(path).map_err(|e| e.to_string())?;
    let text = read(path).map_err(|e| e.to_string())?;
    parse(&text).map_err(|(line, message)| format!("{}:{line}: {message}", path.display()))
}

/// Reads `unit`'s env files (trust-checked as unit files are), merges them under its inline
/// `env` (later files over earlier ones, `env` over all) and hashes the result. Problems are
/// diagnostics in the env file (or at its line 1 when it cannot be read).
pub fn apply(unit: &mut Unit) -> Result<(), Vec<Diagnostic>> {
    if unit.container.env_files.is_empty() {
        return Ok(());
    }
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for path in &unit.container.env_files {
        let at = |line: usize, message: String| Diagnostic {
            file: path.clone(),
            line,
            column: 1,
            message: format!("env_file of unit {}: {message}", unit.name),
        };
        if let Err(e) = trust::check(path) {
            problems.push(at(1, e.to_string()));
            continue;
        }
        match read(path) {
            Err(e) => problems.push(at(1, format!("cannot read: {e}"))),
            Ok(text) => match parse(&text) {
                Ok(pairs) => merged.extend(pairs),
                Err((line, message)) => problems.push(at(line, message)),
            },
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    merged.extend(std::mem::take(&mut unit.container.env));
    unit.container.env = merged;
    unit.spec_hash = hash::spec_hash(
        &unit.container,
        &unit.mounts,
        &unit.network,
        &unit.resources,
        &unit.security,
        &unit.secrets,
    );
    Ok(())
}

fn read(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_ENV_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_ENV_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_ENV_FILE} bytes"
        )));
    }
    Ok(text)
}

/// Where an `env_file` entry points: absolute as written, else beside the unit file.
pub fn resolve(unit_file: &Path, entry: &str) -> PathBuf {
    let p = Path::new(entry);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        unit_file.parent().unwrap_or(Path::new("/")).join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_env_syntax() {
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\\n\"\nD='single $X'\nE=value # comment\nF=\nG=a=b\n";
        let got = parse(text).unwrap();
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted # not a comment\n"),
            ("D", "single $X"),
            ("E", "value"),
            ("F", ""),
            ("G", "a=b"),
        ];
        assert_eq!(
            got,
            want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
    }

    #[test]
    fn bad_lines_are_located() {
        assert_eq!(parse("A=1\nLONELY\n").unwrap_err().0, 2);
        assert_eq!(parse("A=\"open\n").unwrap_err().0, 1);
        assert_eq!(parse("A='x' y\n").unwrap_err().0, 1);
        assert_eq!(parse("BAD KEY=1\n").unwrap_err().0, 1);
    }
}
