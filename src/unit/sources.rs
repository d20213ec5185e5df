//! A unit's sources: the files it is made of (its file, the template an instance takes, the
//! drop-ins over them) found, read and merged into one TOML table in which every value keeps
//! the file and place it came from.
//!
//! The conventions are systemd's (and Quadlet's): `web@.toml` is a template, `web@blue.toml`
//! an instance of it (an empty file or a symlink to the template; keys it has are merged over
//! the template's), `NAME.toml.d/*.toml` drop-ins are merged over the unit in file-name order,
//! an instance taking those of `web@.toml.d/` and of `web@blue.toml.d/` (a file of the same
//! name in the instance's directory replaces the template's). Tables merge, every other value
//! (arrays and arrays of tables included) is replaced whole. In a template unit, `%i` is the
//! instance, `%p` the prefix, `%n` the whole name and `%%` a '%', in every string value.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_spanned::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::raw::Problem;
use super::{trust, Error};

/// The suffix of a unit's drop-in directory, after its file name.
const DROP_IN_SUFFIX: &str = ".d";

/// The instance a template is checked as, on its own.
pub const CHECK_INSTANCE: &str = "instance";

/// The files a unit is made of, before they are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layers {
    /// The unit's name (`web`, `web@blue`).
    pub name: String,
    /// The files merged, base first: the template, the instance or unit file, the drop-ins.
    pub files: Vec<PathBuf>,
    /// The drop-in directories that apply, existing or not.
    pub dirs: Vec<PathBuf>,
}

impl Layers {
    /// The layers of the unit `name` listed at `path` in its units directory.
    pub fn discover(path: &Path, name: &str) -> Layers {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        match template_of(name) {
            Some(template) => {
                let tpath = dir.join(format!("{template}.toml"));
                let same = match (std::fs::canonicalize(&tpath), std::fs::canonicalize(path)) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                // No template: the instance file stands alone, as systemd allows.
                if tpath.exists() {
                    files.push(tpath);
                }
                if !same {
                    files.push(path.to_path_buf());
                }
                dirs.push(drop_in_dir(&dir, &template));
            }
            None => files.push(path.to_path_buf()),
        }
        dirs.push(drop_in_dir(&dir, name));
        // By file name across the directories; a later directory's file of the same name wins.
        let mut drop_ins: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
        for d in &dirs {
            let Ok(entries) = std::fs::read_dir(d) else {
                continue;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                if super::unit_name(&p).is_some() {
                    drop_ins.insert(entry.file_name(), p);
                }
            }
        }
        files.extend(drop_ins.into_values());
        Layers {
            name: name.to_owned(),
            files,
            dirs,
        }
    }

    /// The layers of a template (`web@.toml`) checked on its own: as the instance
    /// `web@CHECK_INSTANCE` whose file is a link to it.
    pub fn for_template(path: &Path, template: &str) -> Layers {
        let mut layers = Layers::discover(path, &format!("{template}{CHECK_INSTANCE}"));
        layers.files.dedup();
        layers
    }

    /// Every path whose change changes the unit besides its own file: the template, the
    /// drop-in directories (a file added to one) and the drop-ins.
    pub fn externals(&self, own: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.files.iter().filter(|f| *f != own).cloned().collect();
        if let Some(template) = template_of(&self.name) {
            let dir = own.parent().unwrap_or(Path::new("."));
            let tpath = dir.join(format!("{template}.toml"));
            if !out.contains(&tpath) {
                out.push(tpath);
            }
        }
        out.extend(self.dirs.iter().cloned());
        out
    }

    /// Reads every layer, trust-checked (drop-in directories too), capped in size.
    pub fn read(&self) -> Result<Sources, Error> {
        for d in &self.dirs {
            if d.is_dir() {
                trust::check_dir(d)?;
            }
        }
        let mut sources = Sources::new(&self.name);
        for f in &self.files {
            trust::check(f)?;
            let text = super::load::read_capped(f).map_err(|source| Error::Read {
                path: f.clone(),
                source,
            })?;
            sources.push(f, &text);
        }
        Ok(sources)
    }
}

/// `web@` for `web@blue`: the template an instance name takes, if it is one.
pub fn template_of(name: &str) -> Option<String> {
    name.split_once('@').map(|(prefix, _)| format!("{prefix}@"))
}

/// `DIR/NAME.toml.d`.
fn drop_in_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml{DROP_IN_SUFFIX}"))
}

/// One file's text inside `Sources::all`.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    range: Range<usize>,
}

/// The texts of a unit's layers, one after another in one string so that a byte offset names
/// a file and a place in it.
#[derive(Debug, Clone)]
pub struct Sources {
    name: String,
    all: String,
    segments: Vec<Segment>,
}

impl Sources {
    /// No layers yet, for the unit `name`.
    pub fn new(name: &str) -> Self {
        Sources {
            name: name.to_owned(),
            all: String::new(),
            segments: Vec::new(),
        }
    }

    /// One file's text as the only layer.
    pub fn single(name: &str, path: &Path, text: &str) -> Self {
        let mut s = Sources::new(name);
        s.push(path, text);
        s
    }

    /// Adds a layer over those already there.
    pub fn push(&mut self, path: &Path, text: &str) {
        let start = self.all.len();
        self.all.push_str(text);
        let end = self.all.len();
        // A newline between files keeps one file's last line from running into the next.
        self.all.push('\n');
        self.segments.push(Segment {
            path: path.to_path_buf(),
            range: start..end,
        });
    }

    /// The files, in merge order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.segments.iter().map(|s| s.path.as_path())
    }

    /// All the texts, one after another: what spans index.
    pub fn text(&self) -> &str {
        &self.all
    }

    /// The file, 1-based line and column of a byte offset in `text()` (the first file's
    /// start for an offset in none).
    pub fn locate(&self, offset: usize) -> (PathBuf, usize, usize) {
        let seg = self
            .segments
            .iter()
            .find(|s| offset >= s.range.start && offset <= s.range.end)
            .or(self.segments.first());
        match seg {
            Some(s) => {
                let text = self.all.get(s.range.clone()).unwrap_or_default();
                let (line, column) = super::line_col(text, offset.saturating_sub(s.range.start));
                (s.path.clone(), line, column)
            }
            None => (PathBuf::new(), 1, 1),
        }
    }

    /// The merged table: each layer parsed, its specifiers substituted (template units) and
    /// merged over the ones before. Syntax errors of any layer are the error; problems with
    /// specifiers come back beside the table.
    pub fn table(&self) -> Result<(DeTable<'_>, Vec<Problem>), Vec<Problem>> {
        let mut merged = DeTable::new();
        let mut syntax = Vec::new();
        let mut problems = Vec::new();
        let specifiers = Specifiers::of(&self.name);
        for seg in &self.segments {
            let text = self.all.get(seg.range.clone()).unwrap_or_default();
            let (doc, errors) = DeTable::parse_recoverable(text);
            let at = seg.range.start;
            if !errors.is_empty() {
                syntax.extend(errors.iter().map(|e| {
                    let span = e.span().unwrap_or(0..0);
                    let message = match (e.message(), text.get(span.clone())) {
                        // toml does not say which key.
                        ("duplicate key", Some(key)) if !key.is_empty() => {
                            format!("duplicate key `{key}`")
                        }
                        (message, _) => message.to_owned(),
                    };
                    Problem::new(span.start + at..span.end + at, message)
                }));
                continue;
            }
            let mut table = shift_table(doc.into_inner(), at);
            if let Some(s) = &specifiers {
                s.apply_table(&mut table, &mut problems);
            }
            merge(&mut merged, table);
        }
        if syntax.is_empty() {
            Ok((merged, problems))
        } else {
            Err(syntax)
        }
    }
}

/// Every span in `table` moved by `by` bytes.
fn shift_table(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    table
        .into_iter()
        .map(|(k, v)| (shift(k, by), shift_value(v, by)))
        .collect()
}

fn shift<T>(s: Spanned<T>, by: usize) -> Spanned<T> {
    let span = s.span();
    Spanned::new(span.start + by..span.end + by, s.into_inner())
}

fn shift_value(v: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = v.span();
    let inner = match v.into_inner() {
        DeValue::Table(t) => DeValue::Table(shift_table(t, by)),
        DeValue::Array(a) => DeValue::Array(a.into_iter().map(|x| shift_value(x, by)).collect()),
        other => other,
    };
    Spanned::new(span.start + by..span.end + by, inner)
}

/// Merges `over` into `base`: tables merge key by key, anything else is replaced whole.
pub(super) fn merge<'a>(base: &mut DeTable<'a>, over: DeTable<'a>) {
    for (key, value) in over {
        let both_tables = matches!(value.get_ref(), DeValue::Table(_))
            && matches!(
                base.get(key.get_ref().as_ref()).map(Spanned::get_ref),
                Some(DeValue::Table(_))
            );
        if both_tables {
            if let (Some(old), DeValue::Table(t)) =
                (base.get_mut(key.get_ref().as_ref()), value.into_inner())
            {
                if let DeValue::Table(inner) = old.get_mut() {
                    merge(inner, t);
                }
            }
            continue;
        }
        // The new key, so that a problem with it points at the layer that set it.
        base.remove(key.get_ref().as_ref());
        base.insert(key, value);
    }
}

/// The values `%i`, `%p` and `%n` stand for in a template unit.
#[derive(Debug, Clone)]
struct Specifiers {
    name: String,
    prefix: String,
    instance: String,
}

impl Specifiers {
    /// For an instance name (`prefix@instance`); None for other units, whose strings are kept
    /// as written (a '%' in a plain unit's command is just a '%').
    fn of(name: &str) -> Option<Specifiers> {
        let (prefix, instance) = name.split_once('@')?;
        Some(Specifiers {
            name: name.to_owned(),
            prefix: prefix.to_owned(),
            instance: instance.to_owned(),
        })
    }

    fn apply_table(&self, table: &mut DeTable<'_>, problems: &mut Vec<Problem>) {
        for (_, v) in table.iter_mut() {
            self.apply_value(v, problems);
        }
    }

    fn apply_array(&self, array: &mut DeArray<'_>, problems: &mut Vec<Problem>) {
        for v in array.iter_mut() {
            self.apply_value(v, problems);
        }
    }

    fn apply_value(&self, v: &mut Spanned<DeValue<'_>>, problems: &mut Vec<Problem>) {
        let span = v.span();
        match v.get_mut() {
            DeValue::String(s) if s.contains('%') => match self.expand(s) {
                Ok(out) => *s = std::borrow::Cow::Owned(out),
                Err(message) => problems.push(Problem::new(span, message)),
            },
            DeValue::Table(t) => self.apply_table(t, problems),
            DeValue::Array(a) => self.apply_array(a, problems),
            _ => {}
        }
    }

    /// `s` with its specifiers replaced, or why not.
    fn expand(&self, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('i') => out.push_str(&self.instance),
                Some('p') => out.push_str(&self.prefix),
                Some('n') => out.push_str(&self.name),
                Some('%') => out.push('%'),
                Some(other) => {
                    return Err(format!(
                        "unknown specifier %{other} in a template unit (%i instance, %p prefix, %n name, %% a '%')"
                    ))
                }
                None => {
                    return Err(
                        "a '%' at the end of a value in a template unit: write %% for a '%'".into(),
                    )
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(name: &str, layers: &[(&str, &str)]) -> (String, Sources) {
        let mut s = Sources::new(name);
        for (p, t) in layers {
            s.push(Path::new(p), t);
        }
        let rendered = match s.table() {
            Ok((t, problems)) => {
                assert!(problems.is_empty(), "{problems:?}");
                format!("{t:?}")
            }
            Err(p) => panic!("{p:?}"),
        };
        (rendered, s)
    }

    #[test]
    fn tables_merge_and_arrays_replace() {
        let (t, _) = merged(
            "web",
            &[
                (
                    "web.toml",
                    "[container]\nimage = \"a\"\ncommand = [\"x\", \"y\"]\nenv = { A = \"1\", B = \"2\" }\n",
                ),
                (
                    "web.toml.d/10.toml",
                    "[container]\ncommand = [\"z\"]\nenv = { B = \"3\" }\n",
                ),
            ],
        );
        assert!(t.contains("\"a\""), "{t}");
        assert!(t.contains("\"z\"") && !t.contains("\"y\""), "{t}");
        assert!(
            t.contains("\"1\"") && t.contains("\"3\"") && !t.contains("\"2\""),
            "{t}"
        );
    }

    #[test]
    fn offsets_name_the_file_and_line() {
        let mut s = Sources::new("web");
        s.push(Path::new("a.toml"), "x = 1\ny = 2\n");
        s.push(Path::new("b.toml"), "z = 3\n");
        let z = s.text().find('z').unwrap();
        assert_eq!(s.locate(z), (PathBuf::from("b.toml"), 1, 1));
        let y = s.text().find('y').unwrap();
        assert_eq!(s.locate(y), (PathBuf::from("a.toml"), 2, 1));
    }

    #[test]
    fn specifiers_only_in_templates() {
        let (t, _) = merged(
            "web@blue",
            &[(
                "web@.toml",
                "[container]\nhostname = \"%p-%i\"\ncommand = [\"echo\", \"%n 100%%\"]\n",
            )],
        );
        assert!(t.contains("web-blue") && t.contains("web@blue 100%"), "{t}");
        let (t, _) = merged(
            "plain",
            &[("plain.toml", "[container]\ncommand = [\"date\", \"+%s\"]\n")],
        );
        assert!(t.contains("+%s"), "{t}");
        let s = Sources::single(
            "web@blue",
            Path::new("web@.toml"),
            "[container]\ncommand = [\"date\", \"+%s\"]\n",
        );
        let (_, problems) = s.table().unwrap();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("unknown specifier %s"),
            "{problems:?}"
        );
    }

    #[test]
    fn syntax_errors_are_located_in_their_layer() {
        let mut s = Sources::new("web");
        s.push(Path::new("web.toml"), "[container]\nimage = \"a\"\n");
        s.push(Path::new("web.toml.d/x.toml"), "[container\n");
        let problems = s.table().unwrap_err();
        let (file, line, _) = s.locate(problems[0].span.start);
        assert_eq!((file, line), (PathBuf::from("web.toml.d/x.toml"), 1));
    }
}
