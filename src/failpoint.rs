//! Fault injection for the fault suite, in debug builds only. `hit(name)` acts when the file
//! named by `RCD_FAILPOINTS` has a line `name [sleep:MS] [once]`: it panics (or sleeps MS
//! milliseconds), and with `once` first removes its line. The file is read at each hit, so a
//! test turns faults on and off while the daemon runs. Release builds compile it away.
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

#[cfg(debug_assertions)]
fn act(path: &std::path::Path, name: &str) {
    let Ok(text) = std::fs::read_to_string(path) else {
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
        let _ = std::fs::write(path, rest);
    }
    match words.iter().find_map(|w| w.strip_prefix("sleep:")) {
        Some(ms) => {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(1000)))
        }
        None => panic!("failpoint {name}: injected"),
    }
}
