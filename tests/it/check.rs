//! `rctl check` without a daemon, and every shipped unit file parses.

use std::process::Command;

use crate::harness::*;

#[test]
fn check_accepts_good_and_locates_bad() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, unit("sleep 1", "")).unwrap();
    let out = Command::new(RCTL).arg("check").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[container]\nrootfs = \"/r\"\ncommand = [\"sh\"]\nstop_timeout = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(RCTL).arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("{}:4:", bad.display())), "{text}");
}

#[test]
fn shipped_units_and_examples_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("units")];
    if let Ok(ex) = std::fs::read_dir(root.join("examples")) {
        paths.extend(ex.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut count = 0;
    for p in &paths {
        count += std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
            .count();
    }
    assert!(count > 0, "units/ holds sample units");
    let out = Command::new(RCTL)
        .arg("check")
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
