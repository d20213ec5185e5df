//! `rctl convert`: a compose file or a `docker run` line to unit files, the notes on stderr.

use std::path::Path;

use super::exit;

/// Converts `input` (a compose file, or a command line starting with `docker run`/`podman
/// run`); writes the units into `out` or prints them. Exit 1 if a key was refused.
pub fn run(input: &str, out: Option<&Path>) -> i32 {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let is_file = Path::new(input).is_file();
    let converted = if is_file {
        crate::convert::compose(Path::new(input), &env)
    } else if input.trim_start().starts_with("docker ")
        || input.trim_start().starts_with("podman ")
        || input.trim_start().starts_with("run ")
    {
        crate::convert::docker_run(input, &cwd)
    } else {
        eprintln!("rctl: {input}: neither a file nor a `docker run ...` command line");
        return exit::USAGE;
    };
    let conversion = match converted {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rctl: {e}");
            return exit::FAILED;
        }
    };
    for line in conversion.report() {
        eprintln!("{line}");
    }
    for unit in &conversion.units {
        match out {
            Some(dir) => {
                let path = dir.join(format!("{}.toml", unit.name));
                if let Err(e) =
                    std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &unit.text))
                {
                    eprintln!("rctl: {}: {e}", path.display());
                    return exit::FAILED;
                }
                eprintln!("wrote {}", path.display());
            }
            None => print!("# ---- {}.toml\n{}\n", unit.name, unit.text),
        }
    }
    if conversion.refused() {
        eprintln!(
            "rctl: {} unit(s) written; some keys were not converted (above)",
            conversion.units.len()
        );
        exit::FAILED
    } else {
        exit::OK
    }
}
