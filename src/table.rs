//! The unit table: per unit, the desired state (its file's last valid version) beside its
//! record and what the daemon has seen of its shim. Its lock is private: the methods are the
//! only way in, each short, synchronous (nothing can hold the lock across an await) and free
//! of I/O; a closure handed to one must do no I/O either (read or write files before or after).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::Record;
use crate::unit::Unit;

/// One unit as the daemon knows it.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// The last valid version of its file (the desired state); None once the file is gone.
    pub unit: Option<Arc<Unit>>,
    /// Its file path.
    pub file: Option<PathBuf>,
    /// Whether its file is in the units directory now.
    pub present: bool,
    /// What is wrong with the file as it is now (the last valid version still applies).
    pub file_error: Option<String>,
    /// Digest of the file bytes last read (with its external files'), to skip re-parsing an
    /// unchanged file.
    pub digest: Option<[u8; 32]>,
    /// The files outside its file that it read last (its env files), watched for changes.
    pub externals: Vec<PathBuf>,
    /// Its persisted record.
    pub record: Option<Record>,
    /// A shim of this unit seen to exit (pid, start time), until the exit is observed: what
    /// the table knows of liveness without reading /proc under its lock.
    pub shim_exited: Option<(i32, u64)>,
}

impl Entry {
    /// Whether the record's shim runs, as far as the exits seen so far tell.
    pub fn shim_running(&self) -> bool {
        self.record
            .as_ref()
            .is_some_and(|r| match (r.shim_pid, r.shim_start) {
                (Some(pid), Some(start)) => self.shim_exited != Some((pid, start)),
                _ => false,
            })
    }
}

/// Every entry, as one consistent view: for questions across units (dependencies, listings).
#[derive(Debug, Clone, Copy)]
pub struct View<'a>(&'a BTreeMap<String, Entry>);

impl<'a> View<'a> {
    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<&'a Entry> {
        self.0.get(name)
    }

    /// Every entry, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'a String, &'a Entry)> {
        self.0.iter()
    }

    /// Every entry.
    pub fn values(&self) -> impl Iterator<Item = &'a Entry> {
        self.0.values()
    }

    /// How many units.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The table, as changed by a whole-table edit (a scan of the directory, recovery).
#[derive(Debug)]
pub struct Edit<'a>(&'a mut BTreeMap<String, Entry>);

impl Edit<'_> {
    /// The entry of `name`, made empty if there is none.
    pub fn entry(&mut self, name: &str) -> &mut Entry {
        self.0.entry(name.to_string()).or_default()
    }

    /// Every entry, by name, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Entry)> {
        self.0.iter_mut()
    }

    /// A view of every entry as it is now.
    pub fn view(&self) -> View<'_> {
        View(self.0)
    }
}

/// The unit table.
#[derive(Debug, Default)]
pub struct UnitTable {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl UnitTable {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many units.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every unit's name.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Whether `name` is known.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// A copy of the entry of `name`.
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.lock().get(name).cloned()
    }

    /// A copy of the record of `name`.
    pub fn record(&self, name: &str) -> Option<Record> {
        self.lock().get(name)?.record.clone()
    }

    /// Answers a question across units from one consistent view.
    pub fn view<T>(&self, f: impl FnOnce(View<'_>) -> T) -> T {
        f(View(&self.lock()))
    }

    /// Changes the entry of `name`, if there is one.
    pub fn update<T>(&self, name: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        self.lock().get_mut(name).map(f)
    }

    /// Changes the record of `name`, if it has one.
    pub fn update_record<T>(&self, name: &str, f: impl FnOnce(&mut Record) -> T) -> Option<T> {
        self.lock().get_mut(name)?.record.as_mut().map(f)
    }

    /// Changes the whole table at once (a scan, recovery).
    pub fn edit<T>(&self, f: impl FnOnce(&mut Edit<'_>) -> T) -> T {
        f(&mut Edit(&mut self.lock()))
    }

    /// Forgets `name`.
    pub fn remove(&self, name: &str) -> Option<Entry> {
        self.lock().remove(name)
    }

    /// The desired state of `name` (its file's last valid version).
    pub fn unit(&self, name: &str) -> Option<Arc<Unit>> {
        self.lock().get(name)?.unit.clone()
    }

    /// The desired state and the record of `name`, or None when it has neither: then an
    /// entry whose file is gone too is forgotten (nothing ran, nothing should).
    pub fn desired_and_record(&self, name: &str) -> Option<(Option<Arc<Unit>>, Option<Record>)> {
        let mut table = self.lock();
        let e = table.get(name)?;
        if e.unit.is_none() && e.record.is_none() {
            if !e.present {
                table.remove(name);
            }
            return None;
        }
        Some((e.unit.clone(), e.record.clone()))
    }

    /// Puts `record` in its unit's entry; returns the record it replaced (`Some(None)`: there
    /// was none), or None when the unit has no entry (then nothing changes).
    pub fn replace_record(&self, record: Record) -> Option<Option<Record>> {
        let mut table = self.lock();
        let e = table.get_mut(&record.unit)?;
        Some(e.record.replace(record))
    }

    /// Drops the record of `name` (its instance is gone): an entry with no valid version
    /// whose file is gone too is forgotten; an invalid file's stays listed with its error.
    pub fn forget_record(&self, name: &str) {
        let mut table = self.lock();
        if let Some(e) = table.get_mut(name) {
            if e.unit.is_none() && !e.present {
                table.remove(name);
            } else {
                e.record = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_change_only_through_the_methods() {
        let t = UnitTable::default();
        assert!(t.is_empty());
        t.edit(|e| e.entry("web").present = true);
        assert_eq!(t.names(), ["web"]);
        assert_eq!(
            t.update_record("web", |r| r.restarts),
            None,
            "no record yet"
        );
        t.update("web", |e| e.record = Some(Record::new("web", 1)));
        t.update_record("web", |r| r.restarts = 3);
        assert_eq!(t.record("web").map(|r| r.restarts), Some(3));
        assert_eq!(t.view(|v| v.values().filter(|e| e.present).count()), 1);
        assert!(t.remove("web").is_some());
        assert!(!t.contains("web"));
    }

    #[test]
    fn a_shim_seen_to_exit_is_not_running() {
        let mut e = Entry::default();
        let mut r = Record::new("web", 1);
        r.shim_pid = Some(10);
        r.shim_start = Some(99);
        e.record = Some(r);
        assert!(e.shim_running());
        e.shim_exited = Some((10, 98));
        assert!(e.shim_running(), "another run of that pid");
        e.shim_exited = Some((10, 99));
        assert!(!e.shim_running());
    }
}
