//! Links between units: the valid units of one directory in, the `container:<unit>` network
//! modes that name a missing unit or form a cycle out.
//!
//! One file cannot tell whether another exists, so this runs over a whole directory
//! (`rctl check`); the daemon can run it over its unit table.

use std::collections::{BTreeMap, BTreeSet};

use super::{NetworkMode, Unit};

/// A unit whose `container:<unit>` network mode cannot be met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkProblem {
    /// The unit whose `[network] mode` is at fault.
    pub unit: String,
    /// What is wrong, naming the unit.
    pub message: String,
}

/// Checks the `container:<unit>` network modes of `units` against each other: each must name
/// a unit in `names` (every unit file present, valid or not: an invalid one reports its own
/// errors), and following them from unit to unit must not lead back to where it started.
/// Problems come sorted by unit name.
pub fn network_links<'a>(
    units: impl IntoIterator<Item = &'a Unit>,
    names: &BTreeSet<String>,
) -> Vec<LinkProblem> {
    let joins: BTreeMap<&str, &str> = units
        .into_iter()
        .filter_map(|u| match &u.network.mode {
            NetworkMode::Container(target) => Some((u.name.as_str(), target.as_str())),
            _ => None,
        })
        .collect();
    let mut problems = Vec::new();
    for (&unit, &target) in &joins {
        let problem = |message: String| LinkProblem {
            unit: unit.to_owned(),
            message: format!("unit {unit}: network mode container:{target} {message}"),
        };
        if !names.contains(target) {
            problems.push(problem("names a unit that does not exist".to_owned()));
            continue;
        }
        // Each unit joins at most one other, so the path from here is a single chain.
        let mut path = vec![unit, target];
        let mut at = target;
        while let Some(&next) = joins.get(at) {
            if next == unit {
                path.push(next);
                problems.push(problem(format!("forms a cycle: {}", path.join(" -> "))));
                break;
            }
            if path.contains(&next) {
                // A circle further on, not through this unit: reported by its own members.
                break;
            }
            path.push(next);
            at = next;
        }
    }
    problems
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
    fn links() {
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
            let got: Vec<String> = network_links(&units, &names)
                .into_iter()
                .map(|p| p.message)
                .collect();
            assert_eq!(got, *want);
        }
        // A unit file that exists but is invalid still exists.
        let web = unit("web", "container:db");
        let names = ["web", "db"].map(String::from).into_iter().collect();
        assert_eq!(network_links([&web], &names), []);
    }
}
