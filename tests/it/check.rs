//! `rctl check` without a daemon, and every shipped unit file parses.

use std::process::Command;

use crate::harness::*;

/// A daemon config with every default, so no test reads the host's /etc/rcd.
fn empty_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("rcd.toml");
    std::fs::write(
        &path,
        format!(
            "[network]\nconfig_dir = \"{}\"\n",
            dir.join("networks").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_accepts_good_and_locates_bad() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, unit("sleep 1", "")).unwrap();
    let out = Command::new(RCTL)
        .arg("check")
        .arg("--config")
        .arg(empty_config(dir.path()))
        .arg(&good)
        .output()
        .unwrap();
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
    let out = Command::new(RCTL)
        .arg("check")
        .arg("--config")
        .arg(empty_config(dir.path()))
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    // `stop_timeout = "soon"`: the 4th line, its value at column 16.
    assert!(
        text.starts_with(&format!(
            "{}:4:16: invalid duration \"soon\"",
            bad.display()
        )),
        "{text}"
    );
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
    let dir = tempfile::tempdir().unwrap();
    // Checked as an operator would install them: secrets are kept in git with its modes, so
    // on a copy made root's own 0600, as the trust rule asks.
    let copies = dir.path().join("copies");
    let mut checked = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let copy = copies.join(i.to_string());
        std::fs::create_dir_all(&copies).unwrap();
        let out = Command::new("cp")
            .arg("-r")
            .arg(p)
            .arg(&copy)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        if let Ok(secrets) = std::fs::read_dir(copy.join("secrets")) {
            use std::os::unix::fs::PermissionsExt;
            for s in secrets.flatten() {
                std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        checked.push(copy);
    }
    let paths = checked;
    let out = Command::new(RCTL)
        .arg("check")
        .arg("--config")
        .arg(empty_config(dir.path()))
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_knows_the_configured_networks_and_locates_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let nets = dir.path().join("networks");
    std::fs::create_dir(&nets).unwrap();
    let backend = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/cni/rcd.conflist"
    ))
    .unwrap()
    .replace("\"name\": \"rcd\"", "\"name\": \"backend\"")
    .replace("rcd0", "rcdback0")
    .replace("10.89.", "10.88.");
    std::fs::write(nets.join("backend.conflist"), backend).unwrap();
    let config = dir.path().join("rcd.toml");
    std::fs::write(
        &config,
        format!("[network]\nconfig_dir = \"{}\"\n", nets.display()),
    )
    .unwrap();
    let units = dir.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let with = |networks: &str| unit("sleep 1", &format!("[network]\nnetworks = [{networks}]\n"));
    std::fs::write(units.join("good.toml"), with("\"rcd\", \"backend\"")).unwrap();
    std::fs::write(units.join("bad.toml"), with("\"rcd\", \"frontend\"")).unwrap();
    let check = |config: &std::path::Path| {
        let out = Command::new(RCTL)
            .arg("check")
            .arg("--config")
            .arg(config)
            .arg(&units)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = check(&config);
    assert_eq!(code, Some(1), "{text}");
    // `networks = ["rcd", "frontend"]` is the unit's 6th line; "frontend" at column 20.
    assert_eq!(
        text,
        format!(
            "{}:6:20: unknown network \"frontend\" (configured: backend, rcd)\n",
            units.join("bad.toml").display()
        )
    );
    // A config that cannot be read is said so, not taken for "no networks".
    let (code, text) = check(&dir.path().join("missing.toml"));
    assert_eq!(code, Some(1));
    assert!(text.contains("missing.toml"), "{text}");
}

#[test]
fn check_names_each_values_origin_across_a_template_and_drop_ins() {
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    std::fs::create_dir_all(units.join("web@.toml.d")).unwrap();
    std::fs::write(units.join("web@.toml"), unit("echo %i", "")).unwrap();
    std::fs::write(
        units.join("web@.toml.d/10-mem.toml"),
        "[resources]\nmemory = \"1G\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("web@.toml", units.join("web@a.toml")).unwrap();
    // A bad value in a drop-in: located there.
    std::fs::write(
        units.join("web@.toml.d/20-bad.toml"),
        "# bad\n[resources]\ncpus = \"many\"\n",
    )
    .unwrap();
    let run = || {
        Command::new(RCTL)
            .arg("check")
            .arg("--origins")
            .arg("--config")
            .arg(empty_config(dir.path()))
            .arg(&units)
            .output()
            .unwrap()
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let bad = units.join("web@.toml.d/20-bad.toml");
    assert!(text.contains(&format!("{}:3:8:", bad.display())), "{text}");
    std::fs::remove_file(&bad).unwrap();
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    let drop_in = units.join("web@.toml.d/10-mem.toml");
    assert!(
        text.contains(&format!("memory = \"1G\"  # {}:2", drop_in.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}:3", units.join("web@.toml").display())),
        "{text}"
    );
    assert!(text.contains("\"echo a\""), "the instance's %i: {text}");
}
