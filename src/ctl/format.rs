//! How rctl shows things to people.

use std::time::SystemTime;

use crate::api::types::{ImageInfo, UnitStatus};
use crate::image::progress::Counts;

fn ago(ts: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(ts) else {
        return String::new();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let d = std::time::Duration::from_secs(secs);
    format!(" ({} ago)", humantime::format_duration(d))
}

/// One line of a unit's image updates: what is being tried or where it is held, what the
/// registry says, and how the last update ended.
fn update_line(u: &crate::update::View) -> String {
    let st = &u.state;
    let mut parts = Vec::new();
    if let Some(t) = &st.trial {
        parts.push(format!("trying {} (from {})", t.candidate, t.from));
    } else if st.pinned {
        parts.push(format!(
            "held on {} by rctl rollback",
            st.target.as_deref().unwrap_or("?")
        ));
    }
    if let Some(r) = &u.registry {
        parts.push(format!("registry {r}"));
    }
    if let Some(l) = &st.last {
        parts.push(if l.ok {
            format!("last: updated to {}", l.digest)
        } else {
            format!(
                "last: update-failed: {} ({})",
                l.reason.as_deref().unwrap_or("failed"),
                l.digest
            )
        });
    }
    if let Some(r) = &st.rejected {
        parts.push(format!("rejected {r}"));
    }
    if let Some(e) = &u.error {
        parts.push(format!("error: {e}"));
    }
    if parts.is_empty() {
        parts.push("follows its tag; not looked up yet".into());
    }
    parts.join("; ")
}

/// The `rctl status` block for one unit, in the spirit of `systemctl status`.
pub fn status(s: &UnitStatus, usage: Option<&crate::cgroup::Usage>, log: &str) -> String {
    let mut out = String::new();
    let dot = match s.state.as_str() {
        "running" => "●",
        "failed" | "invalid" => "×",
        _ => "○",
    };
    match &s.description {
        Some(d) => out.push_str(&format!("{dot} {} - {d}\n", s.name)),
        None => out.push_str(&format!("{dot} {}\n", s.name)),
    }
    let since = s
        .since
        .as_deref()
        .map(|t| format!(" since {t}{}", ago(t)))
        .unwrap_or_default();
    let held = if s.held { " (held by rctl stop)" } else { "" };
    out.push_str(&format!("      State: {}{since}{held}\n", s.state));
    if let Some(pid) = s.pid {
        out.push_str(&format!("        Pid: {pid}\n"));
    }
    if let Some(at) = &s.restart_at {
        out.push_str(&format!("    Restart: at {at}\n"));
    }
    let exit = match (s.exit_code, &s.exit_reason) {
        (Some(c), Some(why)) => format!("{c} ({why})"),
        (Some(c), None) => c.to_string(),
        (None, _) => "-".to_string(),
    };
    out.push_str(&format!(
        "   Restarts: {}   Last exit: {exit}\n",
        s.restarts
    ));
    if let Some(p) = &s.policy {
        let auto = match s.autostart {
            Some(false) => ", autostart off",
            _ => "",
        };
        out.push_str(&format!("     Policy: {p}{auto}\n"));
    }
    if let Some(f) = &s.file {
        out.push_str(&format!("       File: {f}\n"));
    }
    for f in &s.sources {
        let label = if f.ends_with("@.toml") {
            "Template"
        } else {
            "Drop-In"
        };
        out.push_str(&format!("{label:>11}: {f}\n"));
    }
    if let Some(id) = &s.container_id {
        out.push_str(&format!("  Container: {id}\n"));
    }
    if let Some(image) = &s.image {
        out.push_str(&format!("      Image: {image}\n"));
    }
    if let Some(d) = &s.image_digest {
        out.push_str(&format!("     Digest: {d}\n"));
    }
    if let Some(u) = &s.update {
        out.push_str(&format!("     Update: {}\n", update_line(u)));
    }
    if let Some(p) = &s.pull {
        out.push_str(&format!("    Pulling: {}\n", progress(p)));
    }
    let deps: Vec<String> = [
        ("after", &s.deps.after),
        ("requires", &s.deps.requires),
        ("wants", &s.deps.wants),
    ]
    .iter()
    .filter(|(_, l)| !l.is_empty())
    .map(|(k, l)| format!("{k} {}", l.join(", ")))
    .collect();
    if !deps.is_empty() {
        out.push_str(&format!("    Depends: {}\n", deps.join("; ")));
    }
    if s.logs_dropped > 0 {
        out.push_str(&format!(
            "       Logs: {} lines dropped (the log file could not keep up)\n",
            s.logs_dropped
        ));
    }
    if let Some(u) = usage {
        out.push_str(&format!("  Resources: {}\n", resources(u)));
    }
    if let Some(w) = &s.waiting_for {
        out.push_str(&format!("    Waiting: for {w}\n"));
    }
    if let Some(h) = &s.health {
        let streak = if h.failing_streak > 0 {
            format!(", {} failing in a row", h.failing_streak)
        } else {
            String::new()
        };
        out.push_str(&format!("     Health: {}{streak}\n", h.status.as_str()));
        if let Some(last) = h.log.back() {
            let text = last.output.trim();
            let first = text.lines().next().unwrap_or("");
            out.push_str(&format!(
                " Last probe: exit {} in {} ms{}{first}\n",
                last.exit_code,
                last.took_ms,
                if first.is_empty() { "" } else { ": " }
            ));
        }
    }
    if let Some(t) = &s.shares_network_of {
        out.push_str(&format!("    Network: shares unit {t}'s (container:{t})\n"));
    }
    if let Some(n) = &s.network {
        for j in &n.networks {
            let via = j.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            out.push_str(&format!(
                "    Network: {} {} {}{via}\n",
                j.name,
                j.ifname,
                j.address.as_deref().unwrap_or("-")
            ));
        }
        if !n.ports.is_empty() {
            out.push_str(&format!("  Published: {}\n", n.ports.join(", ")));
        }
    }
    if !s.exposed_ports.is_empty() {
        out.push_str(&format!(
            "      Ports: {} (exposed by the image; not published)\n",
            s.exposed_ports.join(", ")
        ));
    }
    if let Some(e) = &s.error {
        for (i, line) in e.lines().enumerate() {
            let label = if i == 0 {
                "      Error:"
            } else {
                "            "
            };
            out.push_str(&format!("{label} {line}\n"));
        }
    }
    if !log.trim().is_empty() {
        out.push('\n');
        let mut printer = super::logs::Printer::new(true);
        let mut buf = Vec::new();
        for line in log.lines() {
            printer.line(line.as_bytes(), &mut buf);
        }
        out.push_str(&String::from_utf8_lossy(&buf));
    }
    out
}

/// The `rctl list` table.
pub fn table(all: &[UnitStatus]) -> String {
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                match &s.health {
                    // Docker's `Up 5 minutes (healthy)`.
                    Some(h) => format!("{} ({})", s.state, h.status.as_str()),
                    None => s.state.clone(),
                },
                s.pid.map_or("-".into(), |p| p.to_string()),
                s.restarts.to_string(),
                s.exit_code.map_or("-".into(), |c| c.to_string()),
                s.error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("")
                    .to_string(),
            ]
        })
        .collect();
    columns(
        ["UNIT", "STATE", "PID", "RESTARTS", "EXIT", "ERROR"].map(String::from),
        &rows,
    )
}

/// `memory 1.2 MB of 16.8 MB, cpu 0.45 s, 3 pids`: what is known of it.
pub fn resources(u: &crate::cgroup::Usage) -> String {
    let mut parts = Vec::new();
    if let Some(m) = u.memory_bytes {
        parts.push(match u.memory_limit {
            Some(l) => format!("memory {} of {}", bytes(m), bytes(l)),
            None => format!("memory {}", bytes(m)),
        });
    }
    if let Some(c) = u.cpu_usec {
        parts.push(format!("cpu {:.2} s", c as f64 / 1e6));
    }
    if let Some(p) = u.pids {
        parts.push(format!("{p} pids"));
    }
    parts.join(", ")
}

/// Bytes as Docker shows them (decimal units, one decimal).
pub fn bytes(n: u64) -> String {
    let mut value = n as f64;
    for unit in ["B", "kB", "MB", "GB", "TB"] {
        if value < 1000.0 || unit == "TB" {
            return if unit == "B" {
                format!("{n} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1000.0;
    }
    format!("{n} B")
}

/// "2/3 layers, 45.2 MB of 102.0 MB (44%)".
pub fn progress(c: &Counts) -> String {
    if c.layers_total == 0 {
        return "resolving the manifest".to_string();
    }
    let pct = (c.bytes_done * 100)
        .checked_div(c.bytes_total)
        .unwrap_or(100);
    format!(
        "{}/{} layers, {} of {} ({pct}%)",
        c.layers_done,
        c.layers_total,
        bytes(c.bytes_done),
        bytes(c.bytes_total)
    )
}

/// One plain progress line (not a terminal).
pub fn pull_line(image: &str, c: &Counts) -> String {
    format!("pulling {image}: {}", progress(c))
}

/// A one-line progress bar (a terminal), redrawn in place.
pub fn pull_bar(image: &str, c: &Counts) -> String {
    const WIDTH: u64 = 30;
    let filled = (c.bytes_done * WIDTH)
        .checked_div(c.bytes_total)
        .unwrap_or(0)
        .min(WIDTH);
    format!(
        "{image} [{}{}] {}",
        "#".repeat(filled as usize),
        " ".repeat((WIDTH - filled) as usize),
        progress(c)
    )
}

/// The `rctl image ls` table.
pub fn images(all: &[ImageInfo]) -> String {
    let rows: Vec<[String; 5]> = all
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.id.trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect(),
                bytes(i.size),
                i.stored.clone().unwrap_or_default(),
                i.used_by.join(","),
            ]
        })
        .collect();
    columns(
        ["IMAGE", "ID", "SIZE", "STORED", "USED BY"].map(String::from),
        &rows,
    )
}

/// `rctl volume ls`: name, size, created, who mounts it.
pub fn volumes(all: &[crate::volume::VolumeInfo]) -> String {
    let rows: Vec<[String; 4]> = all
        .iter()
        .map(|v| {
            [
                v.name.clone(),
                bytes(v.size),
                v.created.clone(),
                v.used_by.join(","),
            ]
        })
        .collect();
    columns(
        ["VOLUME", "SIZE", "CREATED", "USED BY"].map(String::from),
        &rows,
    )
}

/// Left-aligned columns two spaces apart, the last one unpadded.
fn columns<const N: usize>(header: [String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(rows.iter()) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == N - 1 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `rctl top`: one line a process.
pub fn top(list: &[crate::api::process::Process]) -> String {
    let mut out = format!(
        "{:>8} {:>8} {:>8} {:>6} {:>2} {:>9} {:>9}  {}\n",
        "PID", "CPID", "PPID", "UID", "S", "RSS", "CPU", "COMMAND"
    );
    for p in list {
        out.push_str(&format!(
            "{:>8} {:>8} {:>8} {:>6} {:>2} {:>9} {:>9}  {}\n",
            p.pid,
            p.container_pid.map_or("-".into(), |c| c.to_string()),
            p.ppid,
            p.uid,
            p.state,
            bytes(p.rss),
            format!("{}.{:02}s", p.cpu_ms / 1000, (p.cpu_ms % 1000) / 10),
            p.command
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(45_200_000), "45.2 MB");
        assert_eq!(bytes(1_500_000_000), "1.5 GB");
    }

    #[test]
    fn pull_progress() {
        let c = Counts {
            layers_total: 3,
            layers_done: 1,
            bytes_total: 200_000_000,
            bytes_done: 50_000_000,
        };
        assert_eq!(progress(&c), "1/3 layers, 50.0 MB of 200.0 MB (25%)");
        assert!(pull_bar("x", &c).starts_with("x [#######       "));
        assert_eq!(progress(&Counts::default()), "resolving the manifest");
    }
}
