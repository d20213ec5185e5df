//! Compose YAML in, a plain tree out in which every node keeps its line and column: aliases
//! resolved (with saphyr's expansion budget), merge keys (`<<: *defaults`) applied, and
//! compose's variable interpolation (`${VAR:-default}`) done on every string.

use std::collections::BTreeMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// Where a node is: 1-based line and column in the file (for a command line: line 1, the
/// column of the argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true`, `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Any other scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, keys as text.
    Map(Vec<(String, Node)>),
}

/// A value and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where it starts.
    pub at: Pos,
    /// What it is.
    pub value: Value,
}

impl Node {
    /// A node of `value` at `at`.
    pub fn new(at: Pos, value: Value) -> Self {
        Node { at, value }
    }

    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The entries of a mapping (none for anything else).
    pub fn entries(&self) -> &[(String, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// A scalar as text (`3` is "3", `true` "true"); None for null, sequences and mappings.
    pub fn text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A sequence's items, or a lone scalar as a sequence of one (compose takes both in many
    /// places).
    pub fn items(&self) -> Vec<&Node> {
        match &self.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            _ => vec![self],
        }
    }
}

/// Why a file is no compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where.
    pub at: Pos,
    /// What.
    pub message: String,
}

/// Parses the first document of `text`; interpolates `vars` (compose's `${VAR}` forms) into
/// every string, reporting unset variables without defaults through `unset`.
pub fn parse(
    text: &str,
    vars: &BTreeMap<String, String>,
    unset: &mut Vec<(Pos, String)>,
) -> Result<Node, SyntaxError> {
    first_document(text, Some(vars), unset)
}

/// Parses the first document of `text` with strings as written (no interpolation): for YAML
/// that is not a compose file (CDI specs).
pub fn parse_literal(text: &str) -> Result<Node, SyntaxError> {
    first_document(text, None, &mut Vec::new())
}

/// The first document of `text` as a tree, interpolated with `vars` if given.
fn first_document(
    text: &str,
    vars: Option<&BTreeMap<String, String>>,
    unset: &mut Vec<(Pos, String)>,
) -> Result<Node, SyntaxError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| SyntaxError {
        at: Pos {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        },
        message: e.info().to_owned(),
    })?;
    let Some(doc) = docs.into_iter().next() else {
        return Ok(Node::new(Pos { line: 1, col: 1 }, Value::Null));
    };
    let chars: Vec<char> = text.chars().collect();
    convert(&doc, &chars, vars, unset)
}

/// An integer as compose's Go parser reads it: `0440` is octal (YAML 1.1's reading, which
/// compose files rely on for modes), anything else as YAML 1.2 read it.
fn integer(y: &MarkedYaml<'_>, chars: &[char], parsed: i64) -> i64 {
    let raw: String = chars
        .get(y.span.start.index()..y.span.end.index())
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let raw = raw.trim();
    if raw.len() > 1 && raw.starts_with('0') && raw.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(raw, 8).unwrap_or(parsed)
    } else {
        parsed
    }
}

fn pos(y: &MarkedYaml<'_>) -> Pos {
    Pos {
        line: y.span.start.line(),
        col: y.span.start.col() + 1,
    }
}

fn convert(
    y: &MarkedYaml<'_>,
    chars: &[char],
    vars: Option<&BTreeMap<String, String>>,
    unset: &mut Vec<(Pos, String)>,
) -> Result<Node, SyntaxError> {
    let at = pos(y);
    let value = match &y.data {
        YamlData::Value(s) => match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Int(integer(y, chars, *i)),
            Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
            Scalar::String(s) => Value::Str(text_of(s, vars, at, unset)?),
        },
        YamlData::Representation(s, _, _) => Value::Str(text_of(s, vars, at, unset)?),
        YamlData::Sequence(items) => Value::Seq(
            items
                .iter()
                .map(|i| convert(i, chars, vars, unset))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(map) => {
            let mut entries: Vec<(String, Node)> = Vec::new();
            let mut merged: Vec<(String, Node)> = Vec::new();
            for (k, v) in map.iter() {
                let key = match &k.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                    YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                    YamlData::Value(Scalar::FloatingPoint(f)) => f.into_inner().to_string(),
                    YamlData::Value(Scalar::Null) => "null".into(),
                    YamlData::Representation(s, _, _) => s.to_string(),
                    _ => {
                        return Err(SyntaxError {
                            at: pos(k),
                            message: "a mapping key must be a scalar".into(),
                        })
                    }
                };
                let node = convert(v, chars, vars, unset)?;
                if key == "<<" {
                    // YAML 1.1's merge key, which compose files use with anchors: the entries
                    // of the mapping (or mappings) named, under the ones written here.
                    for m in node.items() {
                        for (mk, mv) in m.entries() {
                            if !merged.iter().any(|(k, _)| k == mk) {
                                merged.push((mk.clone(), mv.clone()));
                            }
                        }
                    }
                } else {
                    entries.push((key, node));
                }
            }
            for (k, v) in merged {
                if !entries.iter().any(|(e, _)| *e == k) {
                    entries.push((k, v));
                }
            }
            Value::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(inner, chars, vars, unset),
        YamlData::Alias(_) | YamlData::BadValue => return Err(SyntaxError {
            at,
            message:
                "an alias that cannot be resolved (unknown anchor, or more expansion than allowed)"
                    .into(),
        }),
    };
    Ok(Node::new(at, value))
}

/// A string, interpolated when there are variables to interpolate.
fn text_of(
    s: &str,
    vars: Option<&BTreeMap<String, String>>,
    at: Pos,
    unset: &mut Vec<(Pos, String)>,
) -> Result<String, SyntaxError> {
    match vars {
        Some(v) => interpolate(s, v, at, unset),
        None => Ok(s.to_owned()),
    }
}

/// Compose's interpolation: `$$` is a `$`; `$VAR`, `${VAR}`; `${VAR:-default}` (unset or
/// empty), `${VAR-default}` (unset); `${VAR:+alt}`, `${VAR+alt}`; `${VAR:?msg}`,
/// `${VAR?msg}` refuse the file. An unset variable without a default is an empty string,
/// reported through `unset`, as compose warns.
pub fn interpolate(
    s: &str,
    vars: &BTreeMap<String, String>,
    at: Pos,
    unset: &mut Vec<(Pos, String)>,
) -> Result<String, SyntaxError> {
    if !s.contains('$') {
        return Ok(s.to_owned());
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = closing_brace(r) else {
                return Err(SyntaxError {
                    at,
                    message: format!("unterminated ${{ in {s:?}"),
                });
            };
            let expr = &r[..end];
            out.push_str(&braced(expr, vars, at, unset)?);
            rest = &r[end + 1..];
        } else {
            let len = after
                .char_indices()
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
                .map_or(after.len(), |(i, _)| i);
            if len == 0 {
                out.push('$');
                rest = after;
                continue;
            }
            let name = &after[..len];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => unset.push((at, name.to_owned())),
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The index of the `}` closing a `${`, nested `${...}` in defaults counted.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn braced(
    expr: &str,
    vars: &BTreeMap<String, String>,
    at: Pos,
    unset: &mut Vec<(Pos, String)>,
) -> Result<String, SyntaxError> {
    let name_len = expr
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(expr.len(), |(i, _)| i);
    let (name, op) = expr.split_at(name_len);
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let (kind, arg) = if let Some(a) = op.strip_prefix(":-") {
        ("default-empty", a)
    } else if let Some(a) = op.strip_prefix('-') {
        ("default", a)
    } else if let Some(a) = op.strip_prefix(":+") {
        ("alt-empty", a)
    } else if let Some(a) = op.strip_prefix('+') {
        ("alt", a)
    } else if let Some(a) = op.strip_prefix(":?") {
        ("require-empty", a)
    } else if let Some(a) = op.strip_prefix('?') {
        ("require", a)
    } else if op.is_empty() {
        ("plain", "")
    } else {
        return Err(SyntaxError {
            at,
            message: format!("invalid interpolation ${{{expr}}}"),
        });
    };
    let arg = |unset: &mut Vec<(Pos, String)>| interpolate(arg, vars, at, unset);
    Ok(match kind {
        "default-empty" if !set_nonempty => arg(unset)?,
        "default" if value.is_none() => arg(unset)?,
        "alt-empty" if set_nonempty => arg(unset)?,
        "alt" if value.is_some() => arg(unset)?,
        "alt-empty" | "alt" => String::new(),
        "require-empty" if !set_nonempty => return Err(missing(name, arg(unset)?, at)),
        "require" if value.is_none() => return Err(missing(name, arg(unset)?, at)),
        _ => match value {
            Some(v) => v.clone(),
            None => {
                unset.push((at, name.to_owned()));
                String::new()
            }
        },
    })
}

fn missing(name: &str, why: String, at: Pos) -> SyntaxError {
    SyntaxError {
        at,
        message: format!("required variable {name} is missing: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("TAG", "16"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn interpolation_forms() {
        let mut unset = Vec::new();
        let at = Pos::default();
        let i = |s: &str, unset: &mut Vec<_>| interpolate(s, &vars(), at, unset).unwrap();
        assert_eq!(i("postgres:${TAG}", &mut unset), "postgres:16");
        assert_eq!(i("postgres:$TAG-x", &mut unset), "postgres:16-x");
        assert_eq!(i("${NOPE:-15}", &mut unset), "15");
        assert_eq!(i("${EMPTY:-d}|${EMPTY-d}", &mut unset), "d|");
        assert_eq!(i("${TAG:+set}${NOPE:+x}", &mut unset), "set");
        assert_eq!(i("cost $$5", &mut unset), "cost $5");
        assert_eq!(i("${NOPE:-${TAG}}", &mut unset), "16");
        assert!(unset.is_empty());
        assert_eq!(i("a${NOPE}b", &mut unset), "ab");
        assert_eq!(unset.len(), 1);
        assert!(interpolate("${NOPE:?set it}", &vars(), at, &mut unset).is_err());
    }

    #[test]
    fn anchors_and_merge_keys() {
        let text = "x-base: &base\n  restart: always\n  environment:\n    A: '1'\nservices:\n  web:\n    <<: *base\n    image: nginx\n    restart: \"no\"\n";
        let doc = parse(text, &vars(), &mut Vec::new()).unwrap();
        let web = doc.get("services").and_then(|s| s.get("web")).unwrap();
        assert_eq!(
            web.get("restart").and_then(Node::text).as_deref(),
            Some("no")
        );
        assert!(web.get("environment").is_some());
        assert_eq!(web.get("image").unwrap().at, Pos { line: 8, col: 12 });
        let modes = parse("a: 0440\nb: 440\nc: 0o440\n", &vars(), &mut Vec::new()).unwrap();
        let int = |k: &str| modes.get(k).map(|n| n.value.clone());
        assert_eq!(int("a"), Some(Value::Int(0o440)));
        assert_eq!(int("b"), Some(Value::Int(440)));
        assert_eq!(int("c"), Some(Value::Int(0o440)));
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = parse(
            "services:\n  web:\n   - a\n  b: [\n",
            &vars(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.at.line >= 3, "{e:?}");
    }
}
