//! Checks the encoders against tshark, the reference decoder: every emitted datagram is wrapped in
//! Ethernet/IPv4/UDP (or Ethernet/IPv4/GRE for ERSPAN) with correct checksums, written to a pcap, and
//! decoded with `tshark -T fields`. The decode must not be malformed and the printed fields must equal
//! what was encoded.
//!
//! tshark must be installed (`apt-get install tshark`); without it these tests fail on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

use topotap_targets::wire::erspan::{self, Mirrored, Repr as ErspanRepr, Session, TypeII, TypeIII};
use topotap_targets::wire::ipfix::{self, FlowRecord, MessageBuilder, MessageHeader};
use topotap_targets::wire::netflow5::{self, DatagramBuilder, HeaderRepr, RecordRepr, Sampling};
use topotap_targets::wire::sflow5::{
    self, CounterRecord, DatagramHeader, FlowRecord as SflowRecord, FlowSampleHeader, IfCounters,
    SampledHeader, SourceId,
};

const EXPORTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const COLLECTOR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

// ---------------------------------------------------------------------------------------------------
// Packet building and pcap writing

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0x00];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, protocol, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::with_capacity(usize::from(len));
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&len.to_be_bytes());
    let initial: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let mut c = checksum(&u, initial);
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

fn ethernet(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    f.extend_from_slice(payload);
    f
}

/// Ethernet/IPv4/UDP frame from `src` to `dst`.
fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(&ipv4(src, dst, 17, &udp(src, dst, sport, dport, payload)))
}

/// A frame that an exporter would sample or mirror: UDP on ports no dissector claims.
fn inner_frame(len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    udp_frame(
        Ipv4Addr::new(10, 1, 0, 1),
        Ipv4Addr::new(10, 1, 0, 2),
        40000,
        40001,
        &payload,
    )
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).expect("write pcap");
}

/// Runs tshark over `frames` and returns, per packet, the values of `fields` (several occurrences
/// comma-joined). Fails if tshark is missing, errors, or marks any packet malformed.
fn tshark(frames: &[Vec<u8>], extra: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("export.pcap");
    write_pcap(&pcap, frames);
    // For debugging a failure: TOPOTAP_TSHARK_KEEP=DIR keeps every pcap (`tshark -V -r` it).
    if let Some(keep) = std::env::var_os("TOPOTAP_TSHARK_KEEP") {
        let first = fields.first().copied().unwrap_or("export");
        let name = format!("{first}-{}.pcap", fields.len());
        std::fs::copy(&pcap, Path::new(&keep).join(name)).expect("keep pcap");
    }
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(&pcap).args(extra);
    cmd.args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]);
    for f in fields
        .iter()
        .chain(&["_ws.malformed", "_ws.expert.severity"])
    {
        cmd.args(["-e", f]);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "tshark is not on PATH: install it to run these tests \
             (apt-get install --no-install-recommends tshark; CI installs it)"
        ),
        Err(e) => panic!("running tshark: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), frames.len(), "tshark output:\n{stdout}");
    for row in &rows {
        let n = row.len();
        assert_eq!(row[n - 2], "", "malformed packet: {row:?}");
        // Expert severity: 0x00200000 chat, 0x00400000 note, 0x00600000 warn, 0x00800000 error.
        for sev in row[n - 1].split(',').filter(|s| !s.is_empty()) {
            let sev: u32 = sev.parse().unwrap_or(u32::MAX);
            assert!(sev < 0x0060_0000, "tshark warning/error: {row:?}");
        }
    }
    rows.into_iter()
        .map(|mut r| {
            r.truncate(fields.len());
            r
        })
        .collect()
}

/// Asserts `fields[i] == expected[i]` for one decoded packet, naming the field on mismatch.
fn assert_fields(row: &[String], fields: &[&str], expected: &[&str]) {
    assert_eq!(fields.len(), expected.len());
    for ((field, got), want) in fields.iter().zip(row).zip(expected) {
        assert_eq!(got, want, "tshark field {field}");
    }
}

// ---------------------------------------------------------------------------------------------------
// NetFlow v5

#[test]
fn netflow5_decodes_in_tshark() {
    let header = HeaderRepr {
        sys_uptime_ms: 123_456,
        unix_secs: 1_700_000_000,
        unix_nsecs: 500_000,
        flow_sequence: 1000,
        engine_type: 3,
        engine_id: 7,
        sampling: Sampling::deterministic(100),
    };
    let tcp = RecordRepr {
        src_addr: Ipv4Addr::new(10, 0, 0, 1),
        dst_addr: Ipv4Addr::new(10, 0, 0, 2),
        next_hop: Ipv4Addr::new(10, 0, 0, 254),
        input: 3,
        output: 4,
        packets: 5,
        octets: 420,
        first_ms: 120_000,
        last_ms: 123_400,
        src_port: 40000,
        dst_port: 443,
        tcp_flags: 0x1b,
        protocol: 6,
        tos: 0x10,
        src_as: 65000,
        dst_as: 65001,
        src_mask: 24,
        dst_mask: 16,
    };
    let icmp = RecordRepr {
        src_addr: Ipv4Addr::new(10, 0, 0, 2),
        dst_addr: Ipv4Addr::new(10, 0, 0, 1),
        protocol: 1,
        dst_port: 0x0800, // echo request: type 8 code 0
        packets: 1,
        octets: 84,
        first_ms: 123_000,
        last_ms: 123_000,
        ..Default::default()
    };
    let mut buf = [0u8; netflow5::MAX_DATAGRAM_LEN];
    let mut b = DatagramBuilder::new(&mut buf, header).unwrap();
    b.push(&tcp).unwrap();
    b.push(&icmp).unwrap();
    let datagram = b.finish().to_vec();
    // A full datagram of 30 records decodes too.
    let mut full_buf = [0u8; netflow5::MAX_DATAGRAM_LEN];
    let mut full = DatagramBuilder::new(
        &mut full_buf,
        HeaderRepr {
            flow_sequence: 1002,
            ..header
        },
    )
    .unwrap();
    while full.push(&tcp).is_ok() {}
    let full = full.finish().to_vec();
    assert_eq!(full.len(), 1464);

    let frames = [
        udp_frame(EXPORTER, COLLECTOR, 50000, 2055, &datagram),
        udp_frame(EXPORTER, COLLECTOR, 50000, 2055, &full),
    ];
    let fields = [
        "cflow.version",
        "cflow.count",
        "cflow.sysuptime",
        "cflow.unix_secs",
        "cflow.unix_nsecs",
        "cflow.sequence",
        "cflow.engine_type",
        "cflow.engine_id",
        "cflow.samplingmode",
        "cflow.samplerate",
        "cflow.srcaddr",
        "cflow.dstaddr",
        "cflow.nexthop",
        "cflow.inputint",
        "cflow.outputint",
        "cflow.packets",
        "cflow.octets",
        "cflow.timestart",
        "cflow.timeend",
        "cflow.srcport",
        "cflow.dstport",
        "cflow.tcpflags",
        "cflow.protocol",
        "cflow.tos",
        "cflow.srcas",
        "cflow.dstas",
        "cflow.srcmask",
        "cflow.dstmask",
    ];
    let rows = tshark(&frames, &[], &fields);
    assert_fields(
        &rows[0],
        &fields,
        &[
            "5",
            "2",
            "123.456000000",
            "1700000000",
            "500000",
            "1000",
            "3",
            "7",
            "1",
            "100",
            "10.0.0.1,10.0.0.2",
            "10.0.0.2,10.0.0.1",
            "10.0.0.254,0.0.0.0",
            "3,0",
            "4,0",
            "5,1",
            "420,84",
            "120.000000000,123.000000000",
            "123.400000000,123.000000000",
            "40000,0",
            "443,2048",
            "0x1b,0x00",
            "6,1",
            "0x10,0x00",
            "65000,0",
            "65001,0",
            "24,0",
            "16,0",
        ],
    );
    assert_eq!(rows[1][1], "30");
    assert_eq!(rows[1][5], "1002");
    assert_eq!(rows[1][10].split(',').count(), 30);
}

// ---------------------------------------------------------------------------------------------------
// IPFIX

#[test]
fn ipfix_decodes_in_tshark() {
    let v4 = FlowRecord {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        src_port: 40000,
        dst_port: 443,
        protocol: 6,
        tos: 0x10,
        tcp_flags: 0x12,
        ingress: 3,
        egress: 4,
        packets: 10,
        octets: 5_000_000_000,
        start_ms: 1_700_000_000_250,
        end_ms: 1_700_000_005_750,
        end_reason: ipfix::end_reason::IDLE_TIMEOUT,
    };
    let v6 = FlowRecord {
        src: IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap()),
        dst: IpAddr::V6("2001:db8::2".parse::<Ipv6Addr>().unwrap()),
        protocol: 17,
        src_port: 5000,
        dst_port: 5001,
        tcp_flags: 0,
        end_reason: ipfix::end_reason::ACTIVE_TIMEOUT,
        ..v4
    };
    let header = MessageHeader {
        export_time: 1_700_000_010,
        sequence: 0,
        observation_domain_id: 42,
    };
    let mut buf = [0u8; 1500];
    let mut b = MessageBuilder::new(&mut buf, header, 1472).unwrap();
    b.push_templates().unwrap();
    b.push_record(&v4).unwrap();
    b.push_record(&v6).unwrap();
    let sent = b.data_records();
    let first = b.finish().to_vec();
    // The next message carries the count of data records sent before it.
    b.reset(MessageHeader {
        sequence: sent,
        ..header
    });
    b.push_record(&v4).unwrap();
    let second = b.finish().to_vec();

    let frames = [
        udp_frame(EXPORTER, COLLECTOR, 50001, ipfix::DEFAULT_PORT, &first),
        udp_frame(EXPORTER, COLLECTOR, 50001, ipfix::DEFAULT_PORT, &second),
    ];
    let fields = [
        "cflow.version",
        "cflow.len",
        "cflow.exporttime",
        "cflow.sequence",
        "cflow.od_id",
        "cflow.flowset_id",
        "cflow.template_id",
        "cflow.srcaddr",
        "cflow.dstaddr",
        "cflow.srcaddrv6",
        "cflow.dstaddrv6",
        "cflow.srcport",
        "cflow.dstport",
        "cflow.protocol",
        "cflow.tos",
        "cflow.tcpflags",
        "cflow.tcpflags.syn",
        "cflow.tcpflags.ack",
        "cflow.inputint",
        "cflow.outputint",
        "cflow.packets",
        "cflow.octets",
        "cflow.abstimestart",
        "cflow.abstimeend",
        "cflow.flow_end_reason",
    ];
    let rows = tshark(&frames, &["-t", "u"], &fields);
    let len = first.len().to_string();
    assert_fields(
        &rows[0],
        &fields,
        &[
            "10",
            &len,
            "1700000010",
            "0",
            "42",
            "2,256,257",
            "256,257",
            "10.0.0.1",
            "10.0.0.2",
            "2001:db8::1",
            "2001:db8::2",
            "40000,5000",
            "443,5001",
            "6,17",
            "0x10,0x10",
            // tcpControlBits is 16 bits wide (RFC 7125).
            "0x0012,0x0000",
            "1,0",
            "1,0",
            "3,3",
            "4,4",
            "10,10",
            "5000000000,5000000000",
            "Nov 14, 2023 22:13:20.250000000 UTC,Nov 14, 2023 22:13:20.250000000 UTC",
            "Nov 14, 2023 22:13:25.750000000 UTC,Nov 14, 2023 22:13:25.750000000 UTC",
            "1,2",
        ],
    );
    assert_eq!(rows[1][3], "2");
    assert_eq!(rows[1][5], "256");
    assert_eq!(rows[1][7], "10.0.0.1");
}

// ---------------------------------------------------------------------------------------------------
// sFlow v5

#[test]
fn sflow5_decodes_in_tshark() {
    let frame = inner_frame(100);
    let sampled = &frame[..64];
    let sample = |seq: u32| FlowSampleHeader {
        sequence: seq,
        source_id: SourceId::if_index(7),
        sampling_rate: 400,
        sample_pool: 400 * seq,
        drops: 2,
        input: 7,
        output: sflow5::INTERFACE_UNKNOWN,
    };
    let record = [SflowRecord::SampledHeader(SampledHeader {
        protocol: sflow5::HEADER_PROTOCOL_ETHERNET,
        frame_length: frame.len() as u32 + 4,
        stripped: 4,
        header: sampled,
    })];
    let counters = IfCounters {
        if_index: 7,
        if_type: 6,
        if_speed: 10_000_000_000,
        if_direction: 1,
        if_status: 3,
        in_octets: 123_456_789_012,
        in_ucast_pkts: 1000,
        out_octets: 987_654_321,
        out_ucast_pkts: 900,
        ..Default::default()
    };
    let header = DatagramHeader {
        agent: IpAddr::V4(EXPORTER),
        sub_agent_id: 1,
        sequence: 17,
        uptime_ms: 60_000,
    };
    let mut buf = [0u8; 1500];
    let mut b =
        sflow5::DatagramBuilder::new(&mut buf, header, sflow5::udp_payload_budget(1500, false))
            .unwrap();
    b.push_flow_sample(&sample(1), &record).unwrap();
    b.push_flow_sample(&sample(2), &record).unwrap();
    b.push_counters_sample(
        5,
        SourceId::if_index(7),
        &[CounterRecord::Interface(counters)],
    )
    .unwrap();
    let v4_datagram = b.finish().to_vec();

    let v6_agent: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let mut buf6 = [0u8; 1500];
    let mut b6 = sflow5::DatagramBuilder::new(
        &mut buf6,
        DatagramHeader {
            agent: IpAddr::V6(v6_agent),
            sequence: 18,
            ..header
        },
        1452,
    )
    .unwrap();
    b6.push_flow_sample(&sample(3), &record).unwrap();
    let v6_datagram = b6.finish().to_vec();

    let frames = [
        udp_frame(
            EXPORTER,
            COLLECTOR,
            50002,
            sflow5::DEFAULT_PORT,
            &v4_datagram,
        ),
        udp_frame(
            EXPORTER,
            COLLECTOR,
            50002,
            sflow5::DEFAULT_PORT,
            &v6_datagram,
        ),
    ];
    let fields = [
        "sflow_245.version",
        "sflow_245.agent",
        "sflow_245.agent.v6",
        "sflow_245.sub_agent_id",
        "sflow_245.sequence_number",
        "sflow_245.sysuptime",
        "sflow_245.numsamples",
        "sflow_245.sampletype",
        "sflow.flow_sample.sequence_number",
        "sflow.flow_sample.index",
        "sflow.flow_sample.sampling_rate",
        "sflow.flow_sample.sample_pool",
        "sflow.flow_sample.dropped_packets",
        "sflow.flow_sample.input_interface",
        "sflow_245.header_protocol",
        "sflow_245.header.frame_length",
        "sflow_245.header.payload_stripped",
        "sflow_245.header.sampled_header_length",
        "sflow.counters_sample.sequence_number",
        "sflow_245.ifindex",
        "sflow_245.ifspeed",
        "sflow_245.ifinoct",
        "sflow_245.ifinpkt",
        "sflow_245.ifoutoct",
        "sflow_245.ifoutpkt",
        "udp.dstport",
    ];
    let rows = tshark(&frames, &[], &fields);
    let frame_len = (frame.len() + 4).to_string();
    let two_frame_lens = format!("{frame_len},{frame_len}");
    assert_fields(
        &rows[0],
        &fields,
        &[
            "5",
            "192.0.2.1",
            "",
            "1",
            "17",
            "60000",
            "3",
            "1,1,2",
            "1,2",
            "7,7",
            "400,400",
            "400,800",
            "2,2",
            "7,7",
            "1,1",
            &two_frame_lens,
            "4,4",
            "64,64",
            "5",
            "7",
            "10000000000",
            "123456789012",
            "1000",
            "987654321",
            "900",
            // Outer UDP, then the UDP header inside each sampled frame.
            "6343,40001,40001",
        ],
    );
    assert_eq!(rows[1][2], "2001:db8::7");
    assert_eq!(rows[1][4], "18");
    assert_eq!(rows[1][6], "1");
}

// ---------------------------------------------------------------------------------------------------
// ERSPAN

fn gre_frame(gre_packet: &[u8]) -> Vec<u8> {
    ethernet(&ipv4(EXPORTER, COLLECTOR, 47, gre_packet))
}

#[test]
fn erspan_ii_decodes_in_tshark() {
    let frame = inner_frame(60);
    let mut session = Session::new(ErspanRepr::TypeII(TypeII {
        vlan: 100,
        cos: 5,
        encap: erspan::encap::NONE,
        truncated: false,
        session_id: 1023,
        index: 0xabcde,
    }))
    .unwrap();
    let mut buf = [0u8; 2048];
    let mut frames = Vec::new();
    for _ in 0..2 {
        let n = session.encode(&frame, &mut buf).unwrap();
        frames.push(gre_frame(&buf[..n]));
    }
    // A truncated mirror, T set: the original frame carried 40 bytes of trailer the mirror cut off.
    let mut long_frame = frame.clone();
    long_frame.extend_from_slice(&[0u8; 40]);
    let truncated = Mirrored {
        sequence: session.next_sequence(),
        header: ErspanRepr::TypeII(TypeII {
            vlan: 100,
            cos: 5,
            encap: erspan::encap::NONE,
            truncated: true,
            session_id: 1023,
            index: 0xabcde,
        }),
        frame: &long_frame[..frame.len()],
    };
    let n = truncated.emit(&mut buf).unwrap();
    frames.push(gre_frame(&buf[..n]));

    let fields = [
        "gre.flags.sequence_number",
        "gre.proto",
        "gre.sequence_number",
        "erspan.version",
        "erspan.vlan",
        "erspan.cos",
        "erspan.encap",
        "erspan.truncated",
        "erspan.spanid",
        "erspan.index",
        "udp.dstport",
    ];
    let rows = tshark(&frames, &[], &fields);
    for (i, row) in rows.iter().take(2).enumerate() {
        let seq = i.to_string();
        assert_fields(
            row,
            &fields,
            &[
                "1", "0x88be", &seq, "1", "100", "5", "0", "0", "1023", "703710", "40001",
            ],
        );
    }
    assert_eq!(rows[2][2], "2");
    assert_eq!(rows[2][7], "1");
}

#[test]
fn erspan_iii_decodes_in_tshark() {
    let frame = inner_frame(60);
    let mut session = Session::new(ErspanRepr::TypeIII(TypeIII {
        vlan: 200,
        cos: 3,
        bso: 0,
        truncated: false,
        session_id: 77,
        timestamp: 0,
        sgt: 0x1234,
        pdu_frame: false,
        frame_type: 0,
        hw_id: 0x2a,
        egress: true,
        granularity: erspan::granularity::NANOS_100,
        platform: None,
    }))
    .unwrap();
    let mut buf = [0u8; 2048];
    let mut frames = Vec::new();
    for ts in [1_000_000u32, 1_000_500] {
        if let ErspanRepr::TypeIII(h) = &mut session.header {
            h.timestamp = ts;
        }
        let n = session.encode(&frame, &mut buf).unwrap();
        frames.push(gre_frame(&buf[..n]));
    }
    let fields = [
        "gre.flags.sequence_number",
        "gre.proto",
        "gre.sequence_number",
        "erspan.version",
        "erspan.vlan",
        "erspan.cos",
        "erspan.bso",
        "erspan.truncated",
        "erspan.spanid",
        "erspan.timestamp",
        "erspan.sgt",
        "erspan.p",
        "erspan.ft",
        "erspan.hw",
        "erspan.direction",
        "erspan.gra",
        "erspan.o",
        "udp.dstport",
    ];
    let rows = tshark(&frames, &[], &fields);
    assert_fields(
        &rows[0],
        &fields,
        &[
            "1", "0x22eb", "0", "2", "200", "3", "0", "0", "77", "1000000", "4660", "0", "0", "42",
            "1", "1", "0", "40001",
        ],
    );
    assert_eq!(rows[1][2], "1");
    assert_eq!(rows[1][9], "1000500");
}
