//! A network namespace's interface counters, as `/proc/<pid>/net/dev` shows them from inside
//! it: `rctl stats` and the Docker API's `stats`.

use serde::{Deserialize, Serialize};

/// One interface's counters since it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name in the namespace (`eth0`).
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// The interfaces of the network namespace of process `pid`, loopback left out; none if it
/// cannot be read (the process is gone).
pub fn interfaces(pid: i32) -> Vec<Interface> {
    std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// `net/dev`'s table: two header lines, then `name: rx(bytes packets errs drop fifo frame
/// compressed multicast) tx(bytes packets ...)`.
fn parse(text: &str) -> Vec<Interface> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some(Interface {
                name: name.to_owned(),
                rx_bytes: *v.first()?,
                rx_packets: *v.get(1)?,
                tx_bytes: *v.get(8)?,
                tx_packets: *v.get(9)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
eth0:    5000      40    0    0    0     0          0         0     3000      30    0    0    0     0       0          0\n";
        assert_eq!(
            parse(text),
            vec![Interface {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_packets: 40,
                tx_bytes: 3000,
                tx_packets: 30
            }]
        );
    }
}
