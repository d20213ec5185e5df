//! A `docker run` (or `podman run`) command line in, the compose service it amounts to out,
//! so that one converter serves both. Each value's position is its argument's number.

use super::yaml::{Node, Pos, Value};
use super::{Note, NoteKind};

/// Flags whose value goes to a compose key as one more item of a list.
const LISTS: &[(&[&str], &str)] = &[
    (&["-e", "--env"], "environment"),
    (&["--env-file"], "env_file"),
    (&["-v", "--volume"], "volumes"),
    (&["--tmpfs"], "tmpfs"),
    (&["-p", "--publish"], "ports"),
    (&["-l", "--label"], "labels"),
    (&["--sysctl"], "sysctls"),
    (&["--device"], "devices"),
    (&["--cap-add"], "cap_add"),
    (&["--cap-drop"], "cap_drop"),
    (&["--security-opt"], "security_opt"),
    (&["--dns"], "dns"),
    (&["--dns-search"], "dns_search"),
    (&["--dns-option", "--dns-opt"], "dns_opt"),
    (&["--add-host"], "extra_hosts"),
    (&["--expose"], "expose"),
];

/// Flags whose value is a compose key's one value.
const SCALARS: &[(&[&str], &str)] = &[
    (&["-h", "--hostname"], "hostname"),
    (&["-u", "--user"], "user"),
    (&["-w", "--workdir"], "working_dir"),
    (&["--restart"], "restart"),
    (&["--shm-size"], "shm_size"),
    (&["-m", "--memory"], "mem_limit"),
    (&["--cpus"], "cpus"),
    (&["--pids-limit"], "pids_limit"),
    (&["--stop-signal"], "stop_signal"),
    (&["--pull"], "pull_policy"),
];

/// Boolean flags and their compose keys.
const BOOLS: &[(&str, &str)] = &[
    ("--read-only", "read_only"),
    ("--init", "init"),
    ("--privileged", "privileged"),
];

/// Flags that mean nothing for a unit: said, dropped.
const IGNORED: &[(&str, &str)] = &[
    ("-d", "a unit's container always runs in the background"),
    (
        "--detach",
        "a unit's container always runs in the background",
    ),
    ("--rm", "the unit's container is removed when the unit is"),
    ("-i", "a unit's container has no input"),
    ("--interactive", "a unit's container has no input"),
    (
        "-t",
        "a unit's container has no terminal; its output goes to `rctl logs`",
    ),
    (
        "--tty",
        "a unit's container has no terminal; its output goes to `rctl logs`",
    ),
];

/// Flags with a value that have no compose key: said, dropped, value skipped.
const REFUSED_WITH_VALUE: &[&str] = &[
    "--platform",
    "--ip",
    "--ip6",
    "--mac-address",
    "--cgroup-parent",
    "--cpuset-cpus",
    "--cpu-shares",
    "-c",
    "--memory-swap",
    "--memory-reservation",
    "--userns",
    "--uts",
    "--pid",
    "--ipc",
    "--runtime",
    "--gpus",
    "--network-alias",
    "--link",
    "--volumes-from",
    "--cidfile",
    "--group-add",
    "--blkio-weight",
    "--storage-opt",
    "--oom-score-adj",
];

/// Parses `cmdline` into (unit name, compose service, notes about flags with no key).
pub fn parse(cmdline: &str) -> Result<(String, Node, Vec<Note>), (Pos, String)> {
    let Some(words) = shlex::split(cmdline) else {
        return Err((Pos { line: 1, col: 1 }, "unbalanced quotes".into()));
    };
    let mut args: Vec<(usize, String)> = words
        .into_iter()
        .enumerate()
        .map(|(i, w)| (i + 1, w))
        .collect();
    // `docker run`, `podman run`, `docker container run`: the program and the verb go.
    let skip = match args
        .iter()
        .map(|(_, w)| w.as_str())
        .collect::<Vec<_>>()
        .as_slice()
    {
        [p, "container", "run", ..] if is_program(p) => 3,
        [p, "run", ..] if is_program(p) => 2,
        ["run", ..] => 1,
        _ => 0,
    };
    args.drain(..skip);
    let at = |n: usize| Pos { line: 1, col: n };
    let mut entries: Vec<(String, Node)> = Vec::new();
    let mut notes = Vec::new();
    let mut name = None;
    let mut health: Vec<(String, Node)> = Vec::new();
    let mut logging: Vec<(String, Node)> = Vec::new();
    let mut ulimits: Vec<(String, Node)> = Vec::new();
    let mut networks = Vec::new();
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    while let Some((n, arg)) = it.next() {
        if !positional.is_empty() || !arg.starts_with('-') || arg == "-" {
            positional.push((n, arg));
            // After the image, everything is the command.
            positional.extend(it.by_ref());
            break;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        // Combined short flags (`-dit`) are each a boolean.
        if !flag.starts_with("--")
            && flag.len() > 2
            && flag.chars().skip(1).all(|c| "dit".contains(c))
        {
            for c in flag.chars().skip(1) {
                let f = format!("-{c}");
                if let Some((_, why)) = IGNORED.iter().find(|(i, _)| *i == f) {
                    notes.push(note(at(n), &f, NoteKind::Ignored, why));
                }
            }
            continue;
        }
        if let Some((_, why)) = IGNORED.iter().find(|(i, _)| *i == flag) {
            notes.push(note(at(n), &flag, NoteKind::Ignored, why));
            continue;
        }
        if let Some((_, key)) = BOOLS.iter().find(|(b, _)| *b == flag) {
            let on = inline.as_deref().is_none_or(|v| v == "true");
            entries.push((key.to_string(), Node::new(at(n), Value::Bool(on))));
            continue;
        }
        if flag == "--no-healthcheck" {
            health.push(("disable".into(), Node::new(at(n), Value::Bool(true))));
            continue;
        }
        // Every other flag takes a value: `--flag=v`, `--flag v`, or `-fv` for short ones.
        let (vn, value) = match inline {
            Some(v) => (n, v),
            None if !flag.starts_with("--") && flag.len() > 2 => (n, flag[2..].to_owned()),
            None => match it.next() {
                Some(next) => next,
                None => return Err((at(n), format!("{flag} needs a value"))),
            },
        };
        let flag = if !flag.starts_with("--") && flag.len() > 2 {
            flag[..2].to_owned()
        } else {
            flag
        };
        let v = Node::new(at(vn), Value::Str(value.clone()));
        if let Some((_, key)) = LISTS.iter().find(|(fs, _)| fs.contains(&flag.as_str())) {
            push_item(&mut entries, key, v);
        } else if let Some((_, key)) = SCALARS.iter().find(|(fs, _)| fs.contains(&flag.as_str())) {
            entries.push((key.to_string(), v));
        } else {
            match flag.as_str() {
                "--name" => name = Some(value),
                "--entrypoint" => entries.push(("entrypoint".into(), Node::new(at(vn), Value::Seq(vec![v])))),
                "--network" | "--net" => match value.as_str() {
                    "none" | "host" | "bridge" => entries.push(("network_mode".into(), v)),
                    other => match other.strip_prefix("container:") {
                        Some(c) => entries.push((
                            "network_mode".into(),
                            Node::new(at(vn), Value::Str(format!("service:{c}"))),
                        )),
                        None => networks.push(Node::new(at(vn), Value::Str(value.clone()))),
                    },
                },
                "--mount" => push_item(&mut entries, "volumes", mount(&value, at(vn))),
                "--ulimit" => match value.split_once('=') {
                    Some((k, l)) => ulimits.push((k.to_owned(), Node::new(at(vn), Value::Str(l.to_owned())))),
                    None => notes.push(note(at(vn), "--ulimit", NoteKind::Refused, "expected NAME=SOFT[:HARD]")),
                },
                "--health-cmd" => health.push(("test".into(), v)),
                "--health-interval" => health.push(("interval".into(), v)),
                "--health-timeout" => health.push(("timeout".into(), v)),
                "--health-retries" => health.push((
                    "retries".into(),
                    Node::new(at(vn), value.parse().map_or(Value::Str(value.clone()), Value::Int)),
                )),
                "--health-start-period" => health.push(("start_period".into(), v)),
                "--health-start-interval" => health.push(("start_interval".into(), v)),
                "--stop-timeout" => entries.push((
                    "stop_grace_period".into(),
                    Node::new(at(vn), Value::Str(format!("{value}s"))),
                )),
                "--log-driver" => logging.push(("driver".into(), v)),
                "--log-opt" => match value.split_once('=') {
                    Some((k, o)) => {
                        let opts = match logging.iter_mut().find(|(k, _)| k == "options") {
                            Some((_, o)) => o,
                            None => {
                                logging.push(("options".into(), Node::new(at(vn), Value::Map(Vec::new()))));
                                let last = logging.len() - 1;
                                &mut logging[last].1
                            }
                        };
                        if let Value::Map(m) = &mut opts.value {
                            m.push((k.to_owned(), Node::new(at(vn), Value::Str(o.to_owned()))));
                        }
                    }
                    None => notes.push(note(at(vn), "--log-opt", NoteKind::Refused, "expected KEY=VALUE")),
                },
                f if REFUSED_WITH_VALUE.contains(&f) => {
                    notes.push(note(at(n), f, NoteKind::Refused, "no rcd equivalent"))
                }
                f => notes.push(note(at(n), f, NoteKind::Refused, "unknown to `rctl convert`; if it takes a value, that value was read as the flag's")),
            }
        }
    }
    let mut positional = positional.into_iter();
    let Some((image_n, image)) = positional.next() else {
        return Err((
            Pos { line: 1, col: 1 },
            "no image: expected `docker run [OPTIONS] IMAGE [COMMAND...]`".into(),
        ));
    };
    entries.push((
        "image".into(),
        Node::new(at(image_n), Value::Str(image.clone())),
    ));
    let command: Vec<Node> = positional
        .map(|(n, w)| Node::new(at(n), Value::Str(w)))
        .collect();
    if let Some(first) = command.first() {
        let at0 = first.at;
        entries.push(("command".into(), Node::new(at0, Value::Seq(command))));
    }
    for (key, list) in [
        ("healthcheck", health),
        ("logging", logging),
        ("ulimits", ulimits),
    ] {
        if let Some((_, first)) = list.first() {
            let at0 = first.at;
            entries.push((key.into(), Node::new(at0, Value::Map(list))));
        }
    }
    if let Some(first) = networks.first() {
        let at0 = first.at;
        entries.push(("networks".into(), Node::new(at0, Value::Seq(networks))));
    }
    let name = name.unwrap_or_else(|| name_of_image(&image));
    Ok((
        name,
        Node::new(Pos { line: 1, col: 1 }, Value::Map(entries)),
        notes,
    ))
}

fn is_program(p: &str) -> bool {
    let base = p.rsplit('/').next().unwrap_or(p);
    matches!(base, "docker" | "podman")
}

fn note(at: Pos, key: &str, kind: NoteKind, message: &str) -> Note {
    Note {
        at,
        key: key.to_owned(),
        kind,
        message: message.to_owned(),
    }
}

/// Adds `v` to the list under `key`, making the list on first use.
fn push_item(entries: &mut Vec<(String, Node)>, key: &str, v: Node) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some((
            _,
            Node {
                value: Value::Seq(items),
                ..
            },
        )) => items.push(v),
        _ => {
            let at = v.at;
            entries.push((key.to_owned(), Node::new(at, Value::Seq(vec![v]))));
        }
    }
}

/// `--mount type=bind,source=/a,target=/b,readonly` as compose's long volume syntax.
fn mount(value: &str, at: Pos) -> Node {
    let mut m: Vec<(String, Node)> = Vec::new();
    let mut bind: Vec<(String, Node)> = Vec::new();
    for part in value.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, "true"));
        let key = match k {
            "src" | "source" => "source",
            "dst" | "destination" | "target" => "target",
            "ro" | "readonly" => "read_only",
            "type" => "type",
            "tmpfs-size" => "tmpfs.size",
            "tmpfs-mode" => "tmpfs.mode",
            other => other,
        };
        let val = match (key, v) {
            ("read_only", "true" | "1") => Value::Bool(true),
            ("read_only", _) => Value::Bool(false),
            _ => Value::Str(v.to_owned()),
        };
        if let Some(t) = key.strip_prefix("tmpfs.") {
            match m.iter_mut().find(|(k, _)| k == "tmpfs") {
                Some((
                    _,
                    Node {
                        value: Value::Map(tm),
                        ..
                    },
                )) => tm.push((t.to_owned(), Node::new(at, val))),
                _ => m.push((
                    "tmpfs".into(),
                    Node::new(at, Value::Map(vec![(t.to_owned(), Node::new(at, val))])),
                )),
            }
        } else {
            m.push((key.to_owned(), Node::new(at, val)));
        }
    }
    // `--mount type=bind` never makes a missing source, unlike `-v`.
    bind.push(("create_host_path".into(), Node::new(at, Value::Bool(false))));
    if m.iter()
        .any(|(k, v)| k == "type" && v.text().as_deref() == Some("bind"))
    {
        m.push(("bind".into(), Node::new(at, Value::Map(bind))));
    }
    Node::new(at, Value::Map(m))
}

/// `docker.io/library/postgres:16` -> `postgres`.
fn name_of_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let base = last.split(['@', ':']).next().unwrap_or(last);
    if base.is_empty() {
        "container".into()
    } else {
        base.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_reads_as_a_service() {
        let (name, s, notes) = parse(
            "docker run -d --name vpn --cap-add=NET_ADMIN --device /dev/net/tun -e TZ=UTC -p 51820:51820/udp -v /srv/wg:/config --restart unless-stopped --sysctl net.ipv4.ip_forward=1 -it --ulimit nofile=1024:2048 --gpus all lscr.io/linuxserver/wireguard:latest sh -c 'exec wg'",
        )
        .unwrap();
        assert_eq!(name, "vpn");
        assert_eq!(
            s.get("image").and_then(Node::text).as_deref(),
            Some("lscr.io/linuxserver/wireguard:latest")
        );
        let cmd: Vec<String> = s
            .get("command")
            .unwrap()
            .items()
            .iter()
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(cmd, ["sh", "-c", "exec wg"]);
        assert_eq!(s.get("ports").unwrap().items().len(), 1);
        assert_eq!(
            s.get("ulimits")
                .and_then(|u| u.get("nofile"))
                .and_then(Node::text)
                .as_deref(),
            Some("1024:2048")
        );
        let kinds: Vec<(&str, NoteKind)> = notes.iter().map(|n| (n.key.as_str(), n.kind)).collect();
        assert!(kinds.contains(&("-d", NoteKind::Ignored)), "{kinds:?}");
        assert!(kinds.contains(&("-i", NoteKind::Ignored)), "{kinds:?}");
        assert!(kinds.contains(&("--gpus", NoteKind::Refused)), "{kinds:?}");
    }

    #[test]
    fn names_from_images() {
        assert_eq!(name_of_image("docker.io/library/postgres:16"), "postgres");
        assert_eq!(name_of_image("nginx"), "nginx");
        assert_eq!(name_of_image("127.0.0.1:5000/app@sha256:ab"), "app");
    }
}
