//! What a plugin's DEL leaves behind when the namespace is already gone, removed by us.
//!
//! The bridge plugin (1.1.1, Debian 12) finds the masquerade rules to remove from the
//! addresses on the container's interface; with the namespace gone it finds none and leaves
//! its per-container nat chain and the POSTROUTING jump to it. The chain's name is
//! `CNI-` + the first 24 hex digits of SHA-512(network name + container id) (the plugins'
//! `utils.FormatChainName`), so it can be removed without the addresses.

use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha512};

/// The bridge plugin's masquerade chain for a container on a network.
pub(crate) fn masquerade_chain(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    format!("CNI-{}", &hex::encode(digest)[..24])
}

/// Removes the POSTROUTING jumps to `chain`, then the chain, from the nat tables of iptables
/// and ip6tables. Absent rules, chains and binaries are fine.
pub(crate) fn remove_nat_chain(chain: &str, timeout: Duration) -> Result<(), String> {
    for bin in ["iptables", "ip6tables"] {
        let listed = match iptables(bin, &["-t", "nat", "-S", "POSTROUTING"], timeout) {
            Ok(out) => out,
            // No such binary (or no IPv6 nat): nothing of ours can be there.
            Err(Failure::Spawn(_)) => continue,
            Err(e) if bin == "ip6tables" => {
                tracing::debug!("{bin}: {e}");
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        for line in listed.lines() {
            let words = split_words(line);
            if words.first().map(String::as_str) != Some("-A")
                || words.len() < 3
                || words[words.len() - 2] != "-j"
                || words[words.len() - 1] != chain
            {
                continue;
            }
            let mut args = vec!["-t".to_string(), "nat".to_string(), "-D".to_string()];
            args.extend(words.into_iter().skip(1));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            iptables(bin, &args, timeout).map_err(|e| e.to_string())?;
        }
        for op in ["-F", "-X"] {
            match iptables(bin, &["-t", "nat", op, chain], timeout) {
                Ok(_) => {}
                Err(Failure::Exit(msg)) if is_no_chain(&msg) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(())
}

fn is_no_chain(msg: &str) -> bool {
    msg.contains("No chain") || msg.contains("does not exist")
}

#[derive(Debug)]
enum Failure {
    Spawn(String),
    Exit(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Spawn(m) | Failure::Exit(m) => f.write_str(m),
        }
    }
}

fn iptables(bin: &str, args: &[&str], timeout: Duration) -> Result<String, Failure> {
    let mut cmd = Command::new(bin);
    cmd.arg("-w").args(args).env_remove("NOTIFY_SOCKET");
    let what = format!("{bin} {}", args.join(" "));
    match crate::bounded::run(cmd, b"", timeout) {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(Failure::Exit(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(crate::bounded::RunError::Spawn(e)) => Err(Failure::Spawn(format!("{what}: {e}"))),
        Err(crate::bounded::RunError::Wait(e)) => Err(Failure::Exit(format!("{what}: {e}"))),
        Err(crate::bounded::RunError::TimedOut { .. }) => Err(Failure::Exit(format!(
            "{what}: did not finish within {timeout:?}"
        ))),
    }
}

/// Splits a line of `iptables -S` into its arguments: words, or double-quoted strings with
/// backslash escapes (`--comment "name: \"rcd\" id: \"x\""`).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' if quoted => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                c if c.is_whitespace() && !quoted => break,
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_the_plugins() {
        // As bridge 1.1.1 named it for network "exp", container "exp1".
        assert_eq!(
            masquerade_chain("exp", "exp1"),
            "CNI-be7ebe97f2ac10e898eaf962"
        );
    }

    #[test]
    fn words() {
        let line = r#"-A POSTROUTING -s 10.90.250.2/32 -m comment --comment "name: \"exp\" id: \"exp1\"" -j CNI-be7ebe97f2ac10e898eaf962"#;
        assert_eq!(
            split_words(line),
            [
                "-A",
                "POSTROUTING",
                "-s",
                "10.90.250.2/32",
                "-m",
                "comment",
                "--comment",
                "name: \"exp\" id: \"exp1\"",
                "-j",
                "CNI-be7ebe97f2ac10e898eaf962"
            ]
        );
        assert!(split_words("  ").is_empty());
    }
}
