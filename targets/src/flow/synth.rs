//! Synthetic traffic for benchmarks and tests: minimum-size (64-byte) Ethernet/IPv4/UDP frames over a
//! given number of flows, interleaved round-robin, written as a classic pcap.

use std::io::{self, Write};

use crate::packet::{LinkType, Timestamp};
use crate::pcapfile::PcapWriter;

/// Size of each synthetic frame (14 Ethernet + 20 IPv4 + 8 UDP + 22 payload).
pub const FRAME_LEN: usize = 64;

/// Build the frame of flow `flow` (`reverse`: the B→A direction). Flow `i` runs between
/// `10.x.y.z:(1024 + i % 50000)` and `172.16.0.1:53000+i/50000`, MACs derived from `i`.
pub fn udp_frame(flow: u32, reverse: bool) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    let client_mac = [
        0x02,
        0x00,
        (flow >> 16) as u8,
        (flow >> 8) as u8,
        flow as u8,
        0x01,
    ];
    let server_mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];
    let client_ip = (0x0a00_0000 | (flow & 0x00ff_ffff)).to_be_bytes();
    let server_ip = [172, 16, 0, 1];
    let client_port = (1024 + flow % 50_000) as u16;
    let server_port = (53_000 + flow / 50_000) as u16;
    let (smac, dmac, sip, dip, sport, dport) = if reverse {
        (
            server_mac,
            client_mac,
            server_ip,
            client_ip,
            server_port,
            client_port,
        )
    } else {
        (
            client_mac,
            server_mac,
            client_ip,
            server_ip,
            client_port,
            server_port,
        )
    };
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&smac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&50u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&sip);
    ip[16..20].copy_from_slice(&dip);
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&30u16.to_be_bytes());
    f
}

/// Write `packets` frames over `flows` flows (packet `j` belongs to flow `j % flows`; every fourth round
/// goes B→A), one microsecond apart from `start`, as a microsecond pcap. Returns the writer's output.
pub fn write_udp_pcap<W: Write>(
    out: W,
    packets: u64,
    flows: u32,
    start: Timestamp,
) -> io::Result<W> {
    let flows = flows.max(1);
    let mut w = PcapWriter::new(out, LinkType::Ethernet, 262_144)?;
    for j in 0..packets {
        let flow = (j % u64::from(flows)) as u32;
        let round = j / u64::from(flows);
        let frame = udp_frame(flow, round % 4 == 3);
        w.write_packet(
            Timestamp::from_micros(start.as_micros() + j),
            FRAME_LEN as u32,
            &frame,
        )?;
    }
    w.flush()?;
    Ok(w.into_inner())
}

/// [`write_udp_pcap`] into memory.
pub fn udp_pcap(packets: u64, flows: u32) -> Vec<u8> {
    let bytes = 24 + packets as usize * (16 + FRAME_LEN);
    write_udp_pcap(
        Vec::with_capacity(bytes),
        packets,
        flows,
        Timestamp::from_secs(1_700_000_000),
    )
    .unwrap_or_default()
}
