//! Links between units: the valid units of one directory in, the references that cannot be
//! met out. A `container:<unit>` network mode and `[unit] after`, `requires`, `wants` must name
//! a unit that exists; the ones that order starts (`container:` and `after`) must not lead back
//! to where they started.
//!
//! One file cannot tell whether another exists, so this runs over a whole directory
//! (`rctl check`); the daemon runs it for one unit at a time over its unit table.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{NetworkMode, Unit};

/// A reference from one unit to another that cannot be met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkProblem {
    /// The unit whose key is at fault.
    pub unit: String,
    /// The key: `mode` (of `[network]`), or `after`, `requires`, `wants` (of `[unit]`).
    pub key: &'static str,
    /// The unit it names.
    pub target: String,
    /// What is wrong, naming the unit.
    pub message: String,
    /// For a cycle: the units around it, from this one back to it.
    pub cycle: Option<Vec<String>>,
}

impl LinkProblem {
    /// What the unit waits for because of it, as `rctl status` says (`Waiting: for ...`).
    pub fn waiting_for(&self) -> String {
        match &self.cycle {
            Some(path) => format!("a cycle to be broken: {}", path.join(" -> ")),
            None => format!("unit {}, which does not exist", self.target),
        }
    }
}

/// Every unit `unit` names, with the key naming it: its `container:` target, then its deps.
pub fn references(unit: &Unit) -> impl Iterator<Item = (&'static str, &str)> {
    let joined = match &unit.network.mode {
        NetworkMode::Container(t) => Some(("mode", t.as_str())),
        _ => None,
    };
    joined
        .into_iter()
        .chain(unit.deps.all().map(|(k, n)| (k, n.as_str())))
}

/// The units whose start `unit`'s waits for: its `container:` target and its `after`.
fn ordering(unit: &Unit) -> impl Iterator<Item = (&'static str, &str)> {
    references(unit).filter(|(k, _)| matches!(*k, "mode" | "after"))
}

fn phrase(key: &str, target: &str) -> String {
    match key {
        "mode" => format!("network mode container:{target}"),
        _ => format!("{key} {target:?}"),
    }
}

/// Checks the references of every unit in `units` against each other; `names` is every unit
/// file present, valid or not (an invalid one reports its own errors). Problems come sorted
/// by unit name, then in the unit's key order.
pub fn links<'a>(
    units: impl IntoIterator<Item = &'a Unit>,
    names: &BTreeSet<String>,
) -> Vec<LinkProblem> {
    let by_name: BTreeMap<&str, &Unit> = units.into_iter().map(|u| (u.name.as_str(), u)).collect();
    by_name
        .values()
        .flat_map(|u| unit_links(u, |n| by_name.get(n).copied(), |n| names.contains(n)))
        .collect()
}

/// The problems of one unit's references: `lookup` finds a valid unit by name, `exists` says
/// whether a unit file of that name is present at all.
pub fn unit_links<'a>(
    unit: &Unit,
    lookup: impl Fn(&str) -> Option<&'a Unit>,
    exists: impl Fn(&str) -> bool,
) -> Vec<LinkProblem> {
    let mut problems = Vec::new();
    let problem = |key: &'static str, target: &str, what: String| LinkProblem {
        unit: unit.name.clone(),
        key,
        target: target.to_owned(),
        message: format!("unit {}: {} {what}", unit.name, phrase(key, target)),
        cycle: None,
    };
    for (key, target) in references(unit) {
        if !exists(target) {
            problems.push(problem(
                key,
                target,
                "names a unit that does not exist".into(),
            ));
        }
    }
    for (key, target) in ordering(unit) {
        if !exists(target) {
            continue;
        }
        if let Some(path) = path_back(&unit.name, target, &lookup) {
            let mut cycle = vec![unit.name.clone()];
            cycle.extend(path);
            let what = format!("forms a cycle: {}", cycle.join(" -> "));
            let mut p = problem(key, target, what);
            p.cycle = Some(cycle);
            problems.push(p);
        }
    }
    problems
}

/// The shortest chain of ordering references from `from` to `home` (both ends included), if
/// there is one.
fn path_back<'a>(
    home: &str,
    from: &str,
    lookup: &impl Fn(&str) -> Option<&'a Unit>,
) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([from.to_owned()]);
    let mut seen = BTreeSet::from([from.to_owned()]);
    while let Some(at) = queue.pop_front() {
        if at == home {
            let mut path = vec![at.clone()];
            let mut cur = at;
            while let Some(prev) = came_from.get(&cur) {
                path.push(prev.clone());
                cur = prev.clone();
            }
            path.reverse();
            return Some(path);
        }
        let Some(u) = lookup(&at) else { continue };
        for (_, next) in ordering(u) {
            if seen.insert(next.to_owned()) {
                came_from.insert(next.to_owned(), at.clone());
                queue.push_back(next.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn unit(name: &str, mode: &str) -> Unit {
        let text = format!(
            "[container]\nrootfs = \"/r\"\ncommand = [\"x\"]\n[network]\nmode = \"{mode}\"\n"
        );
        match super::super::parse(name, Path::new("x.toml"), &text) {
            Ok(u) => u,
            Err(ds) => panic!("{name}: {ds:?}"),
        }
    }

    #[test]
    fn container_links() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (&[("web", "container:db"), ("db", "bridge")], &[]),
            (&[("web", "container:db"), ("db", "host")], &[]),
            // A chain ending in a unit of its own network.
            (
                &[("a", "container:b"), ("b", "container:c"), ("c", "none")],
                &[],
            ),
            (
                &[("web", "container:db")],
                &["unit web: network mode container:db names a unit that does not exist"],
            ),
            (
                &[("a", "container:b"), ("b", "container:a")],
                &[
                    "unit a: network mode container:b forms a cycle: a -> b -> a",
                    "unit b: network mode container:a forms a cycle: b -> a -> b",
                ],
            ),
            (
                &[
                    ("a", "container:b"),
                    ("b", "container:c"),
                    ("c", "container:a"),
                    ("d", "container:a"),
                ],
                &[
                    "unit a: network mode container:b forms a cycle: a -> b -> c -> a",
                    "unit b: network mode container:c forms a cycle: b -> c -> a -> b",
                    "unit c: network mode container:a forms a cycle: c -> a -> b -> c",
                ],
            ),
        ];
        for (units, want) in cases {
            let units: Vec<Unit> = units.iter().map(|(n, m)| unit(n, m)).collect();
            let names = units.iter().map(|u| u.name.clone()).collect();
            let got: Vec<String> = links(&units, &names)
                .into_iter()
                .map(|p| p.message)
                .collect();
            assert_eq!(got, *want);
        }
        // A unit file that exists but is invalid still exists.
        let web = unit("web", "container:db");
        let names = ["web", "db"].map(String::from).into_iter().collect();
        assert_eq!(links([&web], &names), []);
    }
}
