//! Templates, instances and drop-ins on a real daemon: `web@.toml` and its instances (a symlink,
//! a file of keys of its own), `NAME.toml.d/` drop-ins merged over them, each value's origin in
//! `rctl cat` and `rctl status`, and a drop-in's change (or a new drop-in directory) applied
//! like a change of the unit file.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

const SEC: Duration = Duration::from_secs(1);

/// Writes `text` at `rel` under the units directory (directories made), by rename-over.
fn put(d: &Daemon, rel: &str, text: &str) {
    let path = d.units.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_file_name(".tmp-put");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// The last line of the unit's log that starts with `name=`.
fn last_report(d: &Daemon, unit: &str) -> String {
    let text = String::from_utf8_lossy(&d.rctl(&["logs", unit]).stdout).into_owned();
    text.lines()
        .rev()
        .find(|l| l.contains("name="))
        .unwrap_or_default()
        .to_owned()
}

fn wait_report(d: &Daemon, unit: &str, want: &str) {
    wait_until(10 * SEC, &format!("{unit} reports {want}"), || {
        last_report(d, unit).contains(want)
    });
}

#[test]
fn instances_of_a_template_with_drop_ins_run_and_follow_their_files() {
    let d = Daemon::start();
    put(
        &d,
        "web@.toml",
        &unit(
            "echo name=$NAME color=$COLOR host=$(hostname); exec sleep 1000",
            "env = { NAME = \"%i\", COLOR = \"none\" }\n[network]\nmode = \"none\"\n",
        ),
    );
    put(
        &d,
        "web@.toml.d/10-color.toml",
        "[container.env]\nCOLOR = \"red\"\n",
    );
    std::os::unix::fs::symlink("web@.toml", d.units.join("web@blue.toml")).unwrap();
    put(&d, "web@green.toml", "[container]\nhostname = \"verde\"\n");

    let blue = d.wait_state("web@blue", "running", 20 * SEC);
    let green = d.wait_state("web@green", "running", 20 * SEC);
    wait_report(&d, "web@blue", "name=blue color=red host=web-blue");
    wait_report(&d, "web@green", "name=green color=red host=verde");
    // The template itself is no unit.
    assert!(d.status("web@").is_none(), "{:?}", d.statuses());
    let id = blue["container_id"].as_str().unwrap();
    assert!(id.contains("-web_blue-"), "{id}");

    // Where each file and value comes from.
    let status = String::from_utf8_lossy(&d.rctl(&["status", "web@blue"]).stdout).into_owned();
    let template = d.units.join("web@.toml");
    let drop_in = d.units.join("web@.toml.d/10-color.toml");
    assert!(
        status.contains(&format!("Template: {}", template.display())),
        "{status}"
    );
    assert!(
        status.contains(&format!("Drop-In: {}", drop_in.display())),
        "{status}"
    );
    let cat = d.rctl(&["cat", "web@green"]);
    let cat = String::from_utf8_lossy(&cat.stdout).into_owned();
    for want in [
        format!("COLOR = \"red\"  # {}:2", drop_in.display()),
        format!("NAME = \"green\"  # {}:", template.display()),
        format!(
            "hostname = \"verde\"  # {}:2",
            d.units.join("web@green.toml").display()
        ),
    ] {
        assert!(cat.contains(&want), "{want:?} not in\n{cat}");
    }

    // A drop-in directory of the instance's own, made after the start: only that instance is
    // recreated.
    let (blue_pid, green_pid) = (pid_of(&blue), pid_of(&green));
    put(
        &d,
        "web@blue.toml.d/20-color.toml",
        "[container.env]\nCOLOR = \"blue\"\n",
    );
    d.wait_new_pid("web@blue", blue_pid, 20 * SEC);
    wait_report(&d, "web@blue", "name=blue color=blue");
    assert_eq!(
        pid_of(&d.wait_state("web@green", "running", SEC)),
        green_pid
    );

    // A typo in a drop-in stops nothing: both keep running, the error names the drop-in.
    let blue_pid = pid_of(&d.wait_state("web@blue", "running", SEC));
    put(
        &d,
        "web@.toml.d/10-color.toml",
        "[container.env]\nCOLOR = \"red\"\n[resources]\nmemory = \"lots\"\n",
    );
    wait_until(10 * SEC, "the error to show", || {
        d.status("web@green").is_some_and(|s| {
            s["error"]
                .as_str()
                .is_some_and(|e| e.contains("10-color.toml:4:10"))
        })
    });
    let s = d.status("web@blue").unwrap();
    assert_eq!(
        (s["state"].as_str(), pid_of(&s)),
        (Some("running"), blue_pid),
        "{s:#}"
    );
    assert_eq!(
        pid_of(&d.wait_state("web@green", "running", SEC)),
        green_pid
    );

    // Removing the instance's link removes that instance only.
    std::fs::remove_file(d.units.join("web@blue.toml")).unwrap();
    wait_until(20 * SEC, "web@blue to go", || {
        d.status("web@blue").is_none()
    });
    assert!(Path::new(&d.units.join("web@.toml")).exists());
    assert_eq!(
        pid_of(&d.wait_state("web@green", "running", SEC)),
        green_pid
    );
}

#[test]
fn a_plain_units_drop_in_overrides_its_file() {
    let d = Daemon::start();
    d.write_unit(
        "app",
        &unit(
            "echo name=app limit=$LIMIT; exec sleep 1000",
            "env = { LIMIT = \"100\" }\n[network]\nmode = \"none\"\n",
        ),
    );
    d.wait_state("app", "running", 20 * SEC);
    wait_report(&d, "app", "limit=100");
    let pid = pid_of(&d.wait_state("app", "running", SEC));
    put(
        &d,
        "app.toml.d/override.toml",
        "[container.env]\nLIMIT = \"42\"\n",
    );
    d.wait_new_pid("app", pid, 20 * SEC);
    wait_report(&d, "app", "limit=42");
    // Removing the drop-in takes the file's value back.
    let pid = pid_of(&d.wait_state("app", "running", SEC));
    std::fs::remove_file(d.units.join("app.toml.d/override.toml")).unwrap();
    d.wait_new_pid("app", pid, 20 * SEC);
    wait_report(&d, "app", "limit=100");
}
