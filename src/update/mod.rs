//! Image updates (`[update] policy = "registry"`): a unit's tag is looked up in its registry;
//! a new digest is pulled and rolled out as a recreation on that exact digest, kept only if
//! the new container passes its gate in time, else the unit goes back to the digest it ran
//! before, from the local store. The reconciler only reads what this module decides (the
//! digest to run, [`Updates::target`]); the updater task (`run`) is the one writer.
//!
//! Each unit's state is a small JSON file under `<root>/updates/`, written when a step of an
//! update is taken, so a daemon killed at any point finishes the update or its rollback.

pub mod gate;
pub mod run;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::atomic;

/// An update being tried: the new digest, and the one to go back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The digest being tried.
    pub candidate: String,
    /// The digest the unit ran before (its rollback target).
    pub from: String,
    /// When the trial began (ms since the epoch): the gate's timeout counts from here.
    pub started_ms: u64,
}

/// How the last update ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// True if the candidate was kept.
    pub ok: bool,
    /// The digest tried.
    pub digest: String,
    /// Why it was rolled back (or what an operator did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it ended (ms since the epoch).
    pub at_ms: u64,
}

/// One unit's update state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The image reference this applies to (a unit whose file names another image starts
    /// over).
    pub image: String,
    /// The digest the unit is to run; None runs the reference as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The digest it ran before the current one: where `rctl rollback` goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// An update in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<Trial>,
    /// A digest that failed its gate: not tried again until the tag moves on or
    /// `rctl update --retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// How the last update ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Outcome>,
    /// Held on `target` by `rctl rollback` until `rctl update --retry`: no update is tried.
    #[serde(default)]
    pub pinned: bool,
}

/// What the registry last said of a unit's tag; kept in memory only, so an unchanged check
/// writes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// When the tag was last looked up (ms since the epoch).
    pub checked_ms: u64,
    /// The digest it named then.
    pub digest: Option<String>,
    /// The last lookup's or pull's error.
    pub error: Option<String>,
    /// No lookup before this (ms since the epoch): the schedule, a backoff or `Retry-After`.
    pub next_ms: u64,
    /// Failed lookups in a row (the backoff's exponent).
    pub failures: u32,
}

/// A unit's updates as `rctl status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct View {
    /// Its persisted state.
    pub state: State,
    /// The digest its tag named at the last look.
    pub registry: Option<String>,
    /// When the tag was last looked up (RFC 3339).
    pub checked: Option<String>,
    /// The last lookup's or pull's error.
    pub error: Option<String>,
}

/// Every unit's update state, as the daemon knows it.
#[derive(Debug)]
pub struct Updates {
    dir: PathBuf,
    states: Mutex<HashMap<String, State>>,
    seen: Mutex<HashMap<String, Seen>>,
    /// Wakes the updater: an operator asked for something.
    pub wake: tokio::sync::Notify,
    /// Units an operator asked to check now (`rctl update --now`).
    now: Mutex<Vec<String>>,
}

/// The file name of `unit`'s state (unit names are file-name safe).
fn file(dir: &Path, unit: &str) -> PathBuf {
    dir.join(format!("{unit}.json"))
}

impl Updates {
    /// Loads the states under `root`/updates; unreadable files are skipped (and said). The
    /// directory is made at the first write.
    pub fn open(root: &Path) -> Self {
        let dir = root.join("updates");
        let mut states = HashMap::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.flatten().collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!("update states {}: {e}", dir.display());
                Vec::new()
            }
        };
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(unit) = name.strip_suffix(".json") else {
                continue;
            };
            match atomic::read_json::<State>(&entry.path()) {
                Ok(Some(state)) => {
                    states.insert(unit.to_owned(), state);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(unit, "update state {}: {e}", entry.path().display()),
            }
        }
        Updates {
            dir,
            states: Mutex::new(states),
            seen: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            now: Mutex::default(),
        }
    }

    /// The digest `unit` is to run, if updates have chosen one for `image` (the reference its
    /// file names).
    pub fn target(&self, unit: &str, image: &str) -> Option<String> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states
            .get(unit)
            .filter(|s| s.image == image)
            .and_then(|s| s.target.clone())
    }

    /// `unit`'s state.
    pub fn get(&self, unit: &str) -> Option<State> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.get(unit).cloned()
    }

    /// Every unit's state.
    pub fn all(&self) -> HashMap<String, State> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes `unit`'s state and writes it (durably: the next step relies on it). Blocking.
    pub fn put(&self, unit: &str, state: State) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        atomic::write_json_with(&file(&self.dir, unit), &state, atomic::Sync::Data)?;
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(unit.to_owned(), state);
        Ok(())
    }

    /// Forgets `unit` (its file is gone). Blocking.
    pub fn forget(&self, unit: &str) {
        let _ = std::fs::remove_file(file(&self.dir, unit));
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(unit);
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(unit);
    }

    /// What the registry last said of `unit`'s tag.
    pub fn seen(&self, unit: &str) -> Seen {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(unit).cloned().unwrap_or_default()
    }

    /// Records what the registry said.
    pub fn set_seen(&self, unit: &str, seen: Seen) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(unit.to_owned(), seen);
    }

    /// `unit`'s updates as `rctl status` shows them, if it has any to show.
    pub fn view(&self, unit: &str, follows: bool) -> Option<View> {
        let state = self.get(unit);
        if state.is_none() && !follows {
            return None;
        }
        let seen = self.seen(unit);
        Some(View {
            state: state.unwrap_or_default(),
            registry: seen.digest,
            checked: (seen.checked_ms > 0).then(|| crate::clock::rfc3339_ms(seen.checked_ms)),
            error: seen.error,
        })
    }

    /// Asks the updater to look at `units` now, whatever their schedule.
    pub fn check_now(&self, units: &[String]) {
        self.now
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(units.iter().cloned());
        self.wake.notify_one();
    }

    /// The units asked for with [`Updates::check_now`], taken.
    pub fn take_now(&self) -> Vec<String> {
        std::mem::take(&mut *self.now.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The image names an update state keeps in the store: the digests it runs, tries and would
/// roll back to, each as `reference@digest`.
pub fn kept_names(state: &State) -> Vec<String> {
    let Ok(image) = crate::image::reference::parse(&state.image) else {
        return Vec::new();
    };
    let whole = image.whole();
    [
        state.target.as_ref(),
        state.previous.as_ref(),
        state.trial.as_ref().map(|t| &t.candidate),
        state.trial.as_ref().map(|t| &t.from),
    ]
    .into_iter()
    .flatten()
    .filter_map(|d| d.parse().ok())
    .map(|d| crate::image::reference::by_digest(&whole, &d))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_keeps_what_runs_is_tried_and_would_be_rolled_back_to() {
        let d = |c: u8| format!("sha256:{}", format!("{c:02x}").repeat(32));
        let state = State {
            image: "127.0.0.1:5000/app:1".into(),
            target: Some(d(1)),
            previous: Some(d(2)),
            trial: Some(Trial {
                candidate: d(1),
                from: d(3),
                started_ms: 0,
            }),
            rejected: Some(d(4)),
            ..State::default()
        };
        let kept = kept_names(&state);
        for c in [1, 2, 3] {
            assert!(
                kept.contains(&format!("127.0.0.1:5000/app@{}", d(c))),
                "{kept:?}"
            );
        }
        assert!(
            !kept.iter().any(|k| k.ends_with(&d(4))),
            "a rejected digest is not kept"
        );
    }

    #[test]
    fn states_survive_a_daemon_restart() {
        let dir = tempfile::tempdir().unwrap();
        let updates = Updates::open(dir.path());
        let state = State {
            image: "127.0.0.1:5000/app:1".into(),
            target: Some("sha256:aa".into()),
            pinned: true,
            ..State::default()
        };
        updates.put("web", state.clone()).unwrap();
        let again = Updates::open(dir.path());
        assert_eq!(again.get("web"), Some(state));
        assert_eq!(
            again.target("web", "127.0.0.1:5000/app:1"),
            Some("sha256:aa".into())
        );
        // Another image named in the file: the state is not its.
        assert_eq!(again.target("web", "127.0.0.1:5000/other:1"), None);
        again.forget("web");
        assert_eq!(Updates::open(dir.path()).get("web"), None);
    }
}
