//! Fault injection for the fault suite, in debug builds only. `hit(name)` acts when the file
//! named by `RCD_FAILPOINTS` has a line `name [sleep:MS] [once]`: it panics (or sleeps MS
//! milliseconds), and with `once` first removes its line. `hit_for(name, subject)` is the same
//! point for one subject (a unit): its line is `name:subject ...`. The file is read at each
//! hit, so a test turns faults on and off while the daemon runs; a test also learns that a
//! point was passed when its `sleep:0 once` line is gone (`armed_for` makes that a step which
//! began after the line was written). Release builds compile it away.
//! (The `fail` crate needs a cargo feature, which the integration tests' binaries cannot get
//! without every `cargo test` naming it; a debug-build check of one file needs nothing.)

/// Panics or sleeps if the fault `name` is switched on (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(path) = std::env::var_os("RCD_FAILPOINTS") {
        act(std::path::Path::new(&path), name);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// `hit` of the point `name` for `subject` (the line names `name:subject`).
#[inline]
pub fn hit_for(name: &str, subject: &str) {
    #[cfg(debug_assertions)]
    hit(&format!("{name}:{subject}"));
    #[cfg(not(debug_assertions))]
    let _ = (name, subject);
}

/// Whether the point `name` for `subject` is armed now: a step that asks this when it begins
/// and passes the point (`hit_for`) when it ends lets a test learn that a step which began
/// after the test armed it has ended. Always false in release builds.
#[inline]
pub fn armed_for(name: &str, subject: &str) -> bool {
    #[cfg(debug_assertions)]
    if let Some(path) = std::env::var_os("RCD_FAILPOINTS") {
        let point = format!("{name}:{subject}");
        return read(std::path::Path::new(&path)).is_some_and(|(_, text)| {
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(point.as_str()))
        });
    }
    let _ = (name, subject);
    false
}

/// The file, locked, and its text. Locked while read and rewritten: points passed at once (and
/// a test adding a line, under the same lock) never see or undo one another's half edits.
#[cfg(debug_assertions)]
fn read(path: &std::path::Path) -> Option<(nix::fcntl::Flock<std::fs::File>, String)> {
    use std::io::Read;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ok()?;
    let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some((file, text))
}

#[cfg(debug_assertions)]
fn act(path: &std::path::Path, name: &str) {
    use std::io::{Seek, Write};
    let Some((mut file, text)) = read(path) else {
        return;
    };
    let Some(line) = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
    else {
        return;
    };
    let words: Vec<&str> = line.split_whitespace().skip(1).collect();
    if words.contains(&"once") {
        let rest: String = text
            .lines()
            .filter(|l| *l != line)
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(rest.as_bytes()));
    }
    let sleep = words.iter().find_map(|w| w.strip_prefix("sleep:"));
    drop(file);
    match sleep {
        Some(ms) => {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(1000)))
        }
        None => panic!("failpoint {name}: injected"),
    }
}
