//! Frame decoding: `packet::decode` never panics on any link type and bytes. Round trip: the decoded
//! header fields are written back over their own bytes in a copy of the frame (after zeroing every
//! header byte the decoder reports, plus checksums and reserved bits it ignores), and decoding the copy
//! gives the same packet. Metamorphic check: an IP packet decodes the same way from the network header
//! on (as `LinkType::Raw`) as inside its frame.
//!
//! Input: one byte picks the link type, the rest is the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use topotap_targets::packet::{decode, ipproto, LinkType, Network, Packet, Transport};

const LINK_TYPES: [LinkType; 9] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Null,
    LinkType::Loop,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Other(147),
];

fn same(a: &Packet<'_>, b: &Packet<'_>) {
    assert_eq!(a.link_type, b.link_type);
    assert_eq!(a.ethernet, b.ethernet);
    assert_eq!(a.vlan_count, b.vlan_count);
    assert_eq!(a.vlan_id, b.vlan_id);
    assert_eq!(a.ethertype, b.ethertype);
    assert_eq!(a.l2_len, b.l2_len);
    same_l3(a, b);
}

fn same_l3(a: &Packet<'_>, b: &Packet<'_>) {
    assert_eq!(a.network, b.network);
    assert_eq!(a.transport, b.transport);
    assert_eq!(a.payload, b.payload);
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Writes `p`'s fields back into `buf` (a copy of `p.data`), zeroing first what they came from.
fn re_emit(p: &Packet<'_>, buf: &mut [u8]) {
    if let Some(eth) = p.ethernet {
        put(buf, 0, &eth.dst.0);
        put(buf, 6, &eth.src.0);
        // VLAN ids of up to two tags fit `vlan_id` whole; write them back into the TCIs (PCP/DEI kept).
        if p.vlan_count <= 2 {
            for t in 0..usize::from(p.vlan_count) {
                let at = 14 + 4 * t;
                if at + 2 > buf.len() {
                    break;
                }
                let shift = 12 * (usize::from(p.vlan_count) - 1 - t);
                let vid = ((p.vlan_id >> shift) & 0x0fff) as u16;
                let tci = u16::from_be_bytes([buf[at], buf[at + 1]]) & 0xf000 | vid;
                put(buf, at, &tci.to_be_bytes());
            }
        }
    }
    let o = usize::from(p.l2_len);
    let l4 = match p.network {
        Network::Ipv4(ip) => {
            let ihl = usize::from(ip.header_len);
            buf[o..o + ihl].fill(0);
            buf[o] = 0x40 | (ip.header_len / 4);
            buf[o + 1] = ip.tos;
            put(buf, o + 2, &ip.total_len.to_be_bytes());
            put(buf, o + 4, &ip.ident.to_be_bytes());
            let frag = ip.fragment_offset
                | u16::from(ip.more_fragments) << 13
                | u16::from(ip.dont_fragment) << 14;
            put(buf, o + 6, &frag.to_be_bytes());
            buf[o + 8] = ip.ttl;
            buf[o + 9] = ip.protocol;
            put(buf, o + 12, &ip.src.octets());
            put(buf, o + 16, &ip.dst.octets());
            // The transport header as the decoder saw it: within the IP total length when consistent.
            let end = if usize::from(ip.total_len) >= ihl {
                buf.len().min(o + usize::from(ip.total_len))
            } else {
                buf.len()
            };
            Some((o + ihl, end))
        }
        Network::Ipv6(ip) => {
            // Byte 6 is the first next header; with extension headers it differs from `next_header`
            // (the upper-layer protocol) and is kept as it was.
            let no_ext = buf[o + 6] == ip.next_header && ip.fragment_offset.is_none();
            let first_next = buf[o + 6];
            buf[o..o + 40].fill(0);
            let vtcfl = 6u32 << 28 | u32::from(ip.traffic_class) << 20 | ip.flow_label;
            put(buf, o, &vtcfl.to_be_bytes());
            put(buf, o + 4, &ip.payload_len.to_be_bytes());
            buf[o + 6] = first_next;
            buf[o + 7] = ip.hop_limit;
            put(buf, o + 8, &ip.src.octets());
            put(buf, o + 24, &ip.dst.octets());
            let end = if ip.payload_len > 0 {
                buf.len().min(o + 40 + usize::from(ip.payload_len))
            } else {
                buf.len()
            };
            no_ext.then_some((o + 40, end))
        }
        Network::Arp(arp) => {
            put(buf, o + 6, &arp.operation.to_be_bytes());
            put(buf, o + 8, &arp.sender_mac.0);
            put(buf, o + 14, &arp.sender_ip.octets());
            put(buf, o + 18, &arp.target_mac.0);
            put(buf, o + 24, &arp.target_ip.octets());
            None
        }
        Network::None => None,
    };
    let Some((t, end)) = l4 else { return };
    let seg = &mut buf[t..end];
    match p.transport {
        Transport::Tcp(tcp) => {
            let hl = usize::from(tcp.header_len).max(20).min(seg.len());
            seg[..hl].fill(0);
            put(seg, 0, &tcp.src_port.to_be_bytes());
            put(seg, 2, &tcp.dst_port.to_be_bytes());
            put(seg, 4, &tcp.seq.to_be_bytes());
            put(seg, 8, &tcp.ack.to_be_bytes());
            seg[12] = (tcp.header_len / 4) << 4;
            seg[13] = tcp.flags;
            put(seg, 14, &tcp.window.to_be_bytes());
        }
        Transport::Udp(ports) | Transport::Sctp(ports) => {
            let hl = if matches!(p.transport, Transport::Udp(_)) {
                8
            } else {
                12
            };
            seg[..hl].fill(0);
            put(seg, 0, &ports.src_port.to_be_bytes());
            put(seg, 2, &ports.dst_port.to_be_bytes());
        }
        Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) => {
            let v6 = matches!(p.transport, Transport::Icmpv6(_));
            seg[..4].fill(0);
            seg[0] = icmp.icmp_type;
            seg[1] = icmp.code;
            let has_id = if v6 {
                matches!(icmp.icmp_type, 128 | 129)
            } else {
                matches!(icmp.icmp_type, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
            };
            if has_id && seg.len() >= 8 {
                put(seg, 4, &icmp.id.to_be_bytes());
                put(seg, 6, &icmp.seq.to_be_bytes());
            }
        }
        Transport::None | Transport::Fragment | Transport::Other(_) => {}
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let link_type = LINK_TYPES[usize::from(sel) % LINK_TYPES.len()];
    let p = decode(link_type, data);
    assert!(std::ptr::eq(p.data, data));
    assert!(usize::from(p.l2_len) <= data.len());
    let _ = (p.ip_len(), p.tcp_flags());
    if let Network::Ipv6(ip) = p.network {
        assert_ne!(ip.next_header, ipproto::IPV6_FRAG);
    }

    // Round trip through the fields.
    let mut buf = data.to_vec();
    re_emit(&p, &mut buf);
    let q = decode(link_type, &buf);
    same(&p, &q);

    // The same IP packet without its link layer.
    if matches!(p.network, Network::Ipv4(_) | Network::Ipv6(_)) && p.l2_len > 0 {
        let r = decode(LinkType::Raw, &data[usize::from(p.l2_len)..]);
        same_l3(&p, &r);
    }
});
