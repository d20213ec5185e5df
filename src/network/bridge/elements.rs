//! Published ports as elements of the table's maps, added and removed through the nftables
//! netlink API (netlink-packet-netfilter): one batch, one transaction, a fraction of a
//! millisecond, where an `nft -f` process costs several. The table and its chains are made by
//! `nft -f` (see `nft`), once per daemon start; this module only adds and removes elements.
//!
//! Map keys and data are concatenations, each field padded to 4 bytes as nftables lays out
//! its registers: `ports4` is `ipv4_addr . inet_proto . inet_service`, `ports4_any` is
//! `inet_proto . inet_service`, and both map to `ipv4_addr . inet_service`.

use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use super::nft::{Error, Proto, Published};

/// The nftables subsystem of nfnetlink (batches name it in their header).
const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// How long the kernel may take to answer a batch.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What to do with an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Add it (one there already with the same data is fine).
    Add,
    /// Delete it.
    Delete,
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => libc::IPPROTO_TCP as u8,
        Proto::Udp => libc::IPPROTO_UDP as u8,
        Proto::Sctp => libc::IPPROTO_SCTP as u8,
    }
}

/// The map `p` goes in, its key and its data, as the kernel stores them.
pub fn encode(p: &Published) -> (&'static str, Vec<u8>, Vec<u8>) {
    let proto = [proto_number(p.proto), 0, 0, 0];
    let port = |n: u16| {
        let b = n.to_be_bytes();
        [b[0], b[1], 0, 0]
    };
    let mut data = p.container_ip.octets().to_vec();
    data.extend(port(p.container_port));
    match p.host_ip.filter(|ip| !ip.is_unspecified()) {
        Some(ip) => {
            let mut key = ip.octets().to_vec();
            key.extend(proto);
            key.extend(port(p.host_port));
            ("ports4", key, data)
        }
        None => {
            let mut key = proto.to_vec();
            key.extend(port(p.host_port));
            ("ports4_any", key, data)
        }
    }
}

fn message(table: &str, op: Op, p: &Published, seq: u32) -> NetlinkMessage<NetfilterMessage> {
    let (map, key, data) = encode(p);
    let element = vec![
        SetElementAttribute::Key(DataAttribute::Value(key)),
        SetElementAttribute::Data(DataAttribute::Value(data)),
    ];
    let body = SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.to_string()),
            SetElementList::Set(map.to_string()),
            SetElementList::Elements(vec![ListAttribute::Element(element)]),
        ],
    };
    let inner = match op {
        Op::Add => NfTablesMessage::NewSetElement(body),
        Op::Delete => NfTablesMessage::DeleteSetElement(body),
    };
    let mut msg = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0),
        inner,
    ));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    if op == Op::Add {
        msg.header.flags |= NLM_F_CREATE;
    }
    msg.header.sequence_number = seq;
    msg
}

fn control(c: ControlMessage, seq: u32) -> NetlinkMessage<NetfilterMessage> {
    let mut msg = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
        c,
    ));
    msg.header.flags = NLM_F_REQUEST;
    msg.header.sequence_number = seq;
    msg
}

/// Applies `ops` to table `table`'s maps in one transaction: all or none.
pub fn apply(table: &str, ops: &[(Op, Published)]) -> Result<(), Error> {
    if ops.is_empty() {
        return Ok(());
    }
    let io = |what: &str, e: std::io::Error| Error(format!("netlink {what}: {e}"));
    let mut msgs = vec![control(ControlMessage::BatchBegin, 0)];
    for (k, (op, p)) in ops.iter().enumerate() {
        msgs.push(message(table, *op, p, k as u32 + 1));
    }
    msgs.push(control(ControlMessage::BatchEnd, ops.len() as u32 + 1));
    let mut buf = Vec::new();
    for mut m in msgs {
        m.finalize();
        let start = buf.len();
        buf.resize(start + m.buffer_len(), 0);
        m.serialize(&mut buf[start..]);
    }

    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| io("socket", e))?;
    socket.bind_auto().map_err(|e| io("bind", e))?;
    set_timeout(&socket)?;
    socket.send(&buf, 0).map_err(|e| io("send", e))?;

    // One answer per element message (an ack, or the error that aborted the batch).
    let mut answered = 0;
    let mut first_error = None;
    let mut rx = vec![0u8; 64 * 1024];
    while answered < ops.len() {
        let n = socket
            .recv(&mut &mut rx[..], 0)
            .map_err(|e| io("receive", e))?;
        let mut offset = 0;
        while offset < n {
            let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&rx[offset..n])
                .map_err(|e| Error(format!("netlink answer: {e}")))?;
            let len = msg.header.length as usize;
            if let NetlinkPayload::Error(e) = &msg.payload {
                answered += 1;
                if e.code.is_some() && first_error.is_none() {
                    let seq = msg.header.sequence_number as usize;
                    let what = ops
                        .get(seq.wrapping_sub(1))
                        .map(|(op, p)| format!("{op:?} {p}"))
                        .unwrap_or_default();
                    first_error = Some(Error(format!("{what}: {}", e.to_io())));
                }
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A receive timeout, so a kernel that never answers cannot pin the thread.
fn set_timeout(socket: &Socket) -> Result<(), Error> {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
    let tv = nix::sys::time::TimeVal::new(TIMEOUT.as_secs() as _, 0);
    setsockopt(socket, ReceiveTimeout, &tv)
        .map_err(|e| Error(format!("netlink receive timeout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_data_are_padded_concatenations() {
        let p = Published {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            proto: Proto::Udp,
            host_port: 8080,
            container_ip: "10.89.0.5".parse().unwrap(),
            container_port: 53,
        };
        let (map, key, data) = encode(&p);
        assert_eq!(map, "ports4");
        assert_eq!(key, [127, 0, 0, 1, 17, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(data, [10, 89, 0, 5, 0, 53, 0, 0]);
        let any = Published {
            host_ip: None,
            proto: Proto::Tcp,
            ..p
        };
        let (map, key, _) = encode(&any);
        assert_eq!(
            (map, key),
            ("ports4_any", vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0])
        );
    }

    #[test]
    fn elements_added_through_netlink_are_what_nft_lists_and_go_again() {
        let tag = format!("t{}", std::process::id());
        let table = super::super::nft::Table::new(&tag, "rcdte0", "10.89.0.0/16".parse().unwrap());
        table.rebuild(&[]).unwrap();
        let list = || {
            let out = std::process::Command::new("nft")
                .args(["list", "table", "inet", &table.name])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let ps = [
            Published {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                proto: Proto::Tcp,
                host_port: 8080,
                container_ip: "10.89.0.5".parse().unwrap(),
                container_port: 80,
            },
            Published {
                host_ip: None,
                proto: Proto::Udp,
                host_port: 5353,
                container_ip: "10.89.0.6".parse().unwrap(),
                container_port: 53,
            },
        ];
        let added = table.add(&ps);
        let listed = list();
        table.remove(&ps).unwrap();
        table.remove(&ps).unwrap();
        let after = list();
        // A map that does not exist: the transaction fails and says so.
        let missing = apply("rcd_no_such_table", &[(Op::Add, ps[0])]).unwrap_err();
        table.delete().unwrap();
        added.unwrap();
        assert!(
            listed.contains("127.0.0.1 . tcp . 8080 : 10.89.0.5 . 80"),
            "{listed}"
        );
        assert!(listed.contains("udp . 5353 : 10.89.0.6 . 53"), "{listed}");
        assert!(!after.contains("elements"), "{after}");
        assert!(missing.0.contains("No such file or directory"), "{missing}");
    }
}
