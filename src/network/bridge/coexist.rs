//! Living beside other firewalls. In netfilter an `accept` only ends one chain: a packet our
//! table lets through is still dropped by any other base chain on the same hook that drops it.
//! Two kinds of host rulesets matter:
//!
//! - iptables (legacy or nft backend) with a `FORWARD` chain that drops, as Docker leaves it
//!   (`-P FORWARD DROP`) or firewalld's iptables backend and ufw do: the bridge's traffic is
//!   accepted at the top of that chain, as the CNI firewall plugin and Docker's own rules do
//!   (`-i BRIDGE -j ACCEPT`, and towards the bridge only replies and published ports:
//!   `-o BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT`);
//! - nftables tables of their own (firewalld's nftables backend, `/etc/nftables.conf`) with a
//!   `forward` chain whose policy is drop: rcd does not edit another program's table; it says
//!   at start which table drops and the two rules that let the bridge through (see
//!   docs/networking.md).

use std::process::Command;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The rules rcd puts at the top of an iptables `FORWARD` chain for `bridge`.
pub fn forward_rules(bridge: &str) -> [Vec<String>; 2] {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    [
        s(&["-i", bridge, "-j", "ACCEPT"]),
        s(&[
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
            "-j",
            "ACCEPT",
        ]),
    ]
}

/// The iptables binaries whose `filter` table is in use on this host: `iptables-legacy` if
/// the kernel's x_tables filter table exists, `iptables-nft` if nftables has its `ip filter`
/// table with a `FORWARD` chain. Neither is made by asking.
fn iptables_in_use() -> Vec<&'static str> {
    let mut out = Vec::new();
    let legacy = std::fs::read_to_string("/proc/net/ip_tables_names").unwrap_or_default();
    if legacy.lines().any(|l| l.trim() == "filter") {
        out.push("iptables-legacy");
    }
    if run("nft", &["list", "chain", "ip", "filter", "FORWARD"]).is_ok() {
        out.push("iptables-nft");
    }
    out
}

fn run(bin: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    match crate::bounded::run(cmd, b"", TIMEOUT) {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(format!("{bin}: {e:?}")),
    }
}

/// Accepts `bridge`'s traffic at the top of every iptables `FORWARD` chain in use (once: a
/// rule already there is left). Errors are logged: a host without iptables needs nothing.
pub fn allow_forwarding(bridge: &str) {
    for bin in iptables_in_use() {
        for rule in forward_rules(bridge).iter().rev() {
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            let check = [&["-w", "-C", "FORWARD"][..], &args].concat();
            if run(bin, &check).is_ok() {
                continue;
            }
            let insert = [&["-w", "-I", "FORWARD", "1"][..], &args].concat();
            match run(bin, &insert) {
                Ok(_) => tracing::info!(bridge, "{bin}: accepting {bridge}'s traffic in FORWARD"),
                Err(e) => tracing::warn!(bridge, "{bin} -I FORWARD {}: {e}", args.join(" ")),
            }
        }
    }
    warn_about_dropping_tables(bridge);
}

/// Takes out what `allow_forwarding` put in (for a bridge given up, and for tests).
pub fn disallow_forwarding(bridge: &str) {
    for bin in iptables_in_use() {
        for rule in forward_rules(bridge) {
            let args: Vec<&str> = rule.iter().map(String::as_str).collect();
            let delete = [&["-w", "-D", "FORWARD"][..], &args].concat();
            while run(bin, &delete).is_ok() {}
        }
    }
}

/// Logs each nftables table (not iptables-nft's, not rcd's) with a `forward` chain that drops
/// by default: rcd's bridge traffic dies there unless that table lets it through.
fn warn_about_dropping_tables(bridge: &str) {
    let Ok(json) = run("nft", &["-j", "list", "chains"]) else {
        return;
    };
    for (family, table, chain) in dropping_forward_chains(&json) {
        tracing::warn!(
            bridge,
            "nftables chain {family} {table} {chain} drops forwarded packets by default: \
             containers on {bridge} reach nothing through it unless it has \
             `iifname \"{bridge}\" accept` and `oifname \"{bridge}\" ct state established,related accept` \
             and `ct status dnat accept` (see docs/networking.md)"
        );
    }
}

/// The forward-hook base chains with policy drop in `nft -j list chains` output, except
/// iptables-nft's (`ip filter FORWARD`, handled through iptables) and rcd's own tables.
pub fn dropping_forward_chains(json: &str) -> Vec<(String, String, String)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let c = &item["chain"];
        if c["hook"] != "forward" || c["policy"] != "drop" {
            continue;
        }
        let (family, table, name) = (
            c["family"].as_str().unwrap_or_default(),
            c["table"].as_str().unwrap_or_default(),
            c["name"].as_str().unwrap_or_default(),
        );
        let iptables = matches!(family, "ip" | "ip6") && table == "filter" && name == "FORWARD";
        if iptables || table.starts_with("rcd_") {
            continue;
        }
        out.push((family.to_string(), table.to_string(), name.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_other_tables_forward_chains_that_drop() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"chain": {"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 10, "policy": "drop"}},
          {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
          {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 3, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
          {"chain": {"family": "inet", "table": "rcd_abc", "name": "x", "handle": 4, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
          {"chain": {"family": "inet", "table": "firewalld", "name": "filter_IN", "handle": 5}}]}"#;
        assert_eq!(
            dropping_forward_chains(json),
            [(
                "inet".to_string(),
                "firewalld".to_string(),
                "filter_FORWARD".to_string()
            )]
        );
        assert!(dropping_forward_chains("not json").is_empty());
        assert_eq!(forward_rules("rcd0")[0].join(" "), "-i rcd0 -j ACCEPT");
    }
}
