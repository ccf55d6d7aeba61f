//! sFlow version 5 (sflow.org/sflow_version_5.txt): XDR, big-endian, everything padded to 4 bytes.
//!
//! ```text
//! datagram: version=5 | agent type (1 v4, 2 v6) | agent address | sub_agent_id | sequence | uptime (ms)
//!           | num_samples | samples...
//! sample:   data_format (20-bit enterprise, 12-bit format) | length | body
//! flow sample (0:1):     sequence | source_id | sampling_rate | sample_pool | drops | input | output
//!                        | num_records | records...
//! counters sample (0:2): sequence | source_id | num_records | records...
//! record:   data_format | length | body
//! sampled header (flow record 0:1):  protocol (1 Ethernet) | frame_length | stripped | header_length
//!                                    | header bytes padded to 4
//! generic interface counters (counter record 0:1): 88 bytes, see [`IfCounters`]
//! ```
//!
//! Decoding keeps unknown samples and records as [`Sample::Other`] / [`FlowRecord::Other`] /
//! [`CounterRecord::Other`] with their raw bytes, so they survive a round trip. Encoding goes through
//! [`DatagramBuilder`], which writes samples into a caller buffer while keeping the datagram inside a size
//! budget (see [`udp_payload_budget`]). The datagram sequence number (per datagram per sub-agent) and the
//! sample sequence numbers (per data source) are the caller's.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Error, Reader, Writer};

/// sFlow datagram version.
pub const VERSION: u32 = 5;
/// Default collector UDP port.
pub const DEFAULT_PORT: u16 = 6343;
/// Datagram header length with an IPv4 agent address (num_samples included).
pub const HEADER_LEN_V4: usize = 28;
/// Datagram header length with an IPv6 agent address.
pub const HEADER_LEN_V6: usize = 40;
/// `header_protocol` of an Ethernet (ISO 802.3) sampled header.
pub const HEADER_PROTOCOL_ETHERNET: u32 = 1;
/// Interface value meaning "unknown" (format 0, value 0x3fffffff).
pub const INTERFACE_UNKNOWN: u32 = 0x3fff_ffff;
/// Length of the generic interface counters record body.
pub const IF_COUNTERS_LEN: usize = 88;
/// Fixed part of a flow sample body (before the records).
pub const FLOW_SAMPLE_FIXED_LEN: usize = 32;
/// Fixed part of a counters sample body.
pub const COUNTERS_SAMPLE_FIXED_LEN: usize = 12;

const AGENT_IPV4: u32 = 1;
const AGENT_IPV6: u32 = 2;

/// An sFlow `data_format`: 20-bit enterprise and 12-bit format number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataFormat(pub u32);

impl DataFormat {
    /// Sample 0:1.
    pub const FLOW_SAMPLE: Self = Self(0x0000_0001);
    /// Sample 0:2.
    pub const COUNTERS_SAMPLE: Self = Self(0x0000_0002);
    /// Flow record 0:1.
    pub const SAMPLED_HEADER: Self = Self(0x0000_0001);
    /// Counter record 0:1.
    pub const IF_COUNTERS: Self = Self(0x0000_0001);

    pub const fn new(enterprise: u32, format: u32) -> Self {
        Self((enterprise & 0x000f_ffff) << 12 | (format & 0x0fff))
    }

    pub const fn enterprise(self) -> u32 {
        self.0 >> 12
    }

    pub const fn format(self) -> u32 {
        self.0 & 0x0fff
    }
}

/// A data source: type in the top 8 bits (0 ifIndex, 1 VLAN, 2 physical entity, 3 logical entity) and
/// index in the low 24.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SourceId(pub u32);

impl SourceId {
    pub const fn new(kind: u8, index: u32) -> Self {
        Self((kind as u32) << 24 | (index & 0x00ff_ffff))
    }

    /// An interface data source.
    pub const fn if_index(index: u32) -> Self {
        Self::new(0, index)
    }

    pub const fn kind(self) -> u8 {
        (self.0 >> 24) as u8
    }

    pub const fn index(self) -> u32 {
        self.0 & 0x00ff_ffff
    }
}

/// Rounds up to the XDR 4-byte boundary.
const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// The datagram header fields the caller chooses; `num_samples` follows from the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramHeader {
    pub agent: IpAddr,
    pub sub_agent_id: u32,
    /// Datagrams sent before this one by this sub-agent.
    pub sequence: u32,
    /// Milliseconds since the agent started.
    pub uptime_ms: u32,
}

impl DatagramHeader {
    /// Header length including `num_samples`: 28 (IPv4 agent) or 40 (IPv6).
    pub const fn buffer_len(&self) -> usize {
        match self.agent {
            IpAddr::V4(_) => HEADER_LEN_V4,
            IpAddr::V6(_) => HEADER_LEN_V6,
        }
    }

    /// Parses the header and returns it with `num_samples`.
    pub fn parse(r: &mut Reader<'_>) -> Result<(Self, u32), Error> {
        let version = r.u32("sflow version")?;
        if version != VERSION {
            return Err(Error::invalid("sflow version", version));
        }
        let agent = match r.u32("sflow agent address type")? {
            AGENT_IPV4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("sflow agent address")?)),
            AGENT_IPV6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("sflow agent address")?)),
            other => return Err(Error::invalid("sflow agent address type", other)),
        };
        let header = Self {
            agent,
            sub_agent_id: r.u32("sflow sub_agent_id")?,
            sequence: r.u32("sflow sequence_number")?,
            uptime_ms: r.u32("sflow uptime")?,
        };
        Ok((header, r.u32("sflow num_samples")?))
    }

    fn emit(&self, w: &mut Writer<'_>, num_samples: u32) {
        w.u32(VERSION);
        match self.agent {
            IpAddr::V4(a) => {
                w.u32(AGENT_IPV4);
                w.put(&a.octets());
            }
            IpAddr::V6(a) => {
                w.u32(AGENT_IPV6);
                w.put(&a.octets());
            }
        }
        w.u32(self.sub_agent_id);
        w.u32(self.sequence);
        w.u32(self.uptime_ms);
        w.u32(num_samples);
    }
}

/// The fixed fields of a flow sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FlowSampleHeader {
    /// Flow samples generated before this one by this data source.
    pub sequence: u32,
    pub source_id: SourceId,
    /// N in 1-in-N sampling.
    pub sampling_rate: u32,
    /// Packets that could have been sampled (all packets seen by the source).
    pub sample_pool: u32,
    /// Samples lost for lack of resources.
    pub drops: u32,
    /// Input interface: 2-bit format + 30-bit value; [`INTERFACE_UNKNOWN`] when unknown.
    pub input: u32,
    /// Output interface, same encoding.
    pub output: u32,
}

/// Flow record 0:1, the leading bytes of a sampled packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampledHeader<'a> {
    /// [`HEADER_PROTOCOL_ETHERNET`] for Ethernet frames.
    pub protocol: u32,
    /// Original length of the frame, including octets later stripped (e.g. the 4-byte FCS).
    pub frame_length: u32,
    /// Octets removed from the frame before sampling (e.g. 4 for the FCS).
    pub stripped: u32,
    /// The sampled bytes (the caller truncates, typically to 128).
    pub header: &'a [u8],
}

/// A flow record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowRecord<'a> {
    SampledHeader(SampledHeader<'a>),
    /// Any other record, kept as raw XDR.
    Other {
        format: DataFormat,
        data: &'a [u8],
    },
}

impl<'a> FlowRecord<'a> {
    /// Encoded length including the 8-byte format/length prefix.
    pub const fn buffer_len(&self) -> usize {
        8 + self.body_len()
    }

    const fn body_len(&self) -> usize {
        match self {
            Self::SampledHeader(h) => 16 + padded(h.header.len()),
            Self::Other { data, .. } => padded(data.len()),
        }
    }

    fn parse(format: DataFormat, mut body: Reader<'a>) -> Result<Self, Error> {
        if format != DataFormat::SAMPLED_HEADER {
            return Ok(Self::Other {
                format,
                data: body.rest(),
            });
        }
        let protocol = body.u32("sflow sampled header protocol")?;
        let frame_length = body.u32("sflow sampled header frame_length")?;
        let stripped = body.u32("sflow sampled header stripped")?;
        let len = body.u32("sflow sampled header length")? as usize;
        let header = body.take(len, "sflow sampled header bytes")?;
        body.take(padded(len) - len, "sflow sampled header padding")?;
        body.expect_empty("sflow sampled header")?;
        Ok(Self::SampledHeader(SampledHeader {
            protocol,
            frame_length,
            stripped,
            header,
        }))
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match self {
            Self::SampledHeader(h) => {
                w.u32(DataFormat::SAMPLED_HEADER.0);
                w.u32(len32("sflow sampled header", self.body_len())?);
                w.u32(h.protocol);
                w.u32(h.frame_length);
                w.u32(h.stripped);
                w.u32(len32("sflow sampled header length", h.header.len())?);
                put_padded(w, h.header);
            }
            Self::Other { format, data } => {
                w.u32(format.0);
                w.u32(len32("sflow flow record", data.len())?);
                put_padded(w, data);
            }
        }
        Ok(())
    }
}

fn len32(field: &'static str, len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::invalid(field, len as u64))
}

fn put_padded(w: &mut Writer<'_>, data: &[u8]) {
    w.put(data);
    w.zeros(padded(data.len()) - data.len());
}

/// Reads an XDR opaque body of `len` bytes followed by its padding.
fn take_padded<'a>(
    r: &mut Reader<'a>,
    len: usize,
    field: &'static str,
) -> Result<Reader<'a>, Error> {
    let body = r.sub(len, field)?;
    r.take(padded(len) - len, field)?;
    Ok(body)
}

/// A flow sample with its records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowSample<'a> {
    pub header: FlowSampleHeader,
    pub records: Vec<FlowRecord<'a>>,
}

/// Generic interface counters (counter record 0:1, 88 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IfCounters {
    pub if_index: u32,
    pub if_type: u32,
    pub if_speed: u64,
    /// 0 unknown, 1 full-duplex, 2 half-duplex, 3 in, 4 out.
    pub if_direction: u32,
    /// Bit 0 admin up, bit 1 operational up.
    pub if_status: u32,
    pub in_octets: u64,
    pub in_ucast_pkts: u32,
    pub in_multicast_pkts: u32,
    pub in_broadcast_pkts: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub in_unknown_protos: u32,
    pub out_octets: u64,
    pub out_ucast_pkts: u32,
    pub out_multicast_pkts: u32,
    pub out_broadcast_pkts: u32,
    pub out_discards: u32,
    pub out_errors: u32,
    pub promiscuous_mode: u32,
}

impl IfCounters {
    fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Self {
            if_index: r.u32("sflow ifIndex")?,
            if_type: r.u32("sflow ifType")?,
            if_speed: r.u64("sflow ifSpeed")?,
            if_direction: r.u32("sflow ifDirection")?,
            if_status: r.u32("sflow ifStatus")?,
            in_octets: r.u64("sflow ifInOctets")?,
            in_ucast_pkts: r.u32("sflow ifInUcastPkts")?,
            in_multicast_pkts: r.u32("sflow ifInMulticastPkts")?,
            in_broadcast_pkts: r.u32("sflow ifInBroadcastPkts")?,
            in_discards: r.u32("sflow ifInDiscards")?,
            in_errors: r.u32("sflow ifInErrors")?,
            in_unknown_protos: r.u32("sflow ifInUnknownProtos")?,
            out_octets: r.u64("sflow ifOutOctets")?,
            out_ucast_pkts: r.u32("sflow ifOutUcastPkts")?,
            out_multicast_pkts: r.u32("sflow ifOutMulticastPkts")?,
            out_broadcast_pkts: r.u32("sflow ifOutBroadcastPkts")?,
            out_discards: r.u32("sflow ifOutDiscards")?,
            out_errors: r.u32("sflow ifOutErrors")?,
            promiscuous_mode: r.u32("sflow ifPromiscuousMode")?,
        })
    }

    fn emit(&self, w: &mut Writer<'_>) {
        w.u32(self.if_index);
        w.u32(self.if_type);
        w.u64(self.if_speed);
        w.u32(self.if_direction);
        w.u32(self.if_status);
        w.u64(self.in_octets);
        w.u32(self.in_ucast_pkts);
        w.u32(self.in_multicast_pkts);
        w.u32(self.in_broadcast_pkts);
        w.u32(self.in_discards);
        w.u32(self.in_errors);
        w.u32(self.in_unknown_protos);
        w.u64(self.out_octets);
        w.u32(self.out_ucast_pkts);
        w.u32(self.out_multicast_pkts);
        w.u32(self.out_broadcast_pkts);
        w.u32(self.out_discards);
        w.u32(self.out_errors);
        w.u32(self.promiscuous_mode);
    }
}

/// A counter record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterRecord<'a> {
    Interface(IfCounters),
    Other { format: DataFormat, data: &'a [u8] },
}

impl<'a> CounterRecord<'a> {
    /// Encoded length including the 8-byte format/length prefix.
    pub const fn buffer_len(&self) -> usize {
        8 + match self {
            Self::Interface(_) => IF_COUNTERS_LEN,
            Self::Other { data, .. } => padded(data.len()),
        }
    }

    fn parse(format: DataFormat, mut body: Reader<'a>) -> Result<Self, Error> {
        if format != DataFormat::IF_COUNTERS {
            return Ok(Self::Other {
                format,
                data: body.rest(),
            });
        }
        let counters = IfCounters::parse(&mut body)?;
        body.expect_empty("sflow if_counters")?;
        Ok(Self::Interface(counters))
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match self {
            Self::Interface(c) => {
                w.u32(DataFormat::IF_COUNTERS.0);
                w.u32(IF_COUNTERS_LEN as u32);
                c.emit(w);
            }
            Self::Other { format, data } => {
                w.u32(format.0);
                w.u32(len32("sflow counter record", data.len())?);
                put_padded(w, data);
            }
        }
        Ok(())
    }
}

/// A counters sample with its records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CountersSample<'a> {
    /// Counter samples generated before this one by this data source.
    pub sequence: u32,
    pub source_id: SourceId,
    pub records: Vec<CounterRecord<'a>>,
}

/// One sample of a datagram.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sample<'a> {
    Flow(FlowSample<'a>),
    Counters(CountersSample<'a>),
    /// Any other sample (expanded formats, other enterprises), raw.
    Other {
        format: DataFormat,
        data: &'a [u8],
    },
}

impl Sample<'_> {
    /// Encoded length including the 8-byte format/length prefix.
    pub fn buffer_len(&self) -> usize {
        8 + match self {
            Self::Flow(s) => flow_sample_body_len(&s.records),
            Self::Counters(s) => counters_sample_body_len(&s.records),
            Self::Other { data, .. } => padded(data.len()),
        }
    }
}

fn flow_sample_body_len(records: &[FlowRecord<'_>]) -> usize {
    FLOW_SAMPLE_FIXED_LEN + records.iter().map(FlowRecord::buffer_len).sum::<usize>()
}

fn counters_sample_body_len(records: &[CounterRecord<'_>]) -> usize {
    COUNTERS_SAMPLE_FIXED_LEN + records.iter().map(CounterRecord::buffer_len).sum::<usize>()
}

/// Upper bound for `Vec::with_capacity` from a count read off the wire: each element takes at least
/// `min_len` bytes, so never reserve more than the input could hold.
fn capacity(count: u32, r: &Reader<'_>, min_len: usize) -> usize {
    (count as usize).min(r.left() / min_len)
}

fn parse_sample<'a>(r: &mut Reader<'a>) -> Result<Sample<'a>, Error> {
    let format = DataFormat(r.u32("sflow sample format")?);
    let len = r.u32("sflow sample length")? as usize;
    let mut body = take_padded(r, len, "sflow sample")?;
    let sample = match format {
        DataFormat::FLOW_SAMPLE => {
            let header = FlowSampleHeader {
                sequence: body.u32("sflow flow sample sequence_number")?,
                source_id: SourceId(body.u32("sflow flow sample source_id")?),
                sampling_rate: body.u32("sflow flow sample sampling_rate")?,
                sample_pool: body.u32("sflow flow sample sample_pool")?,
                drops: body.u32("sflow flow sample drops")?,
                input: body.u32("sflow flow sample input")?,
                output: body.u32("sflow flow sample output")?,
            };
            let n = body.u32("sflow flow sample num_records")?;
            let mut records = Vec::with_capacity(capacity(n, &body, 8));
            for _ in 0..n {
                let format = DataFormat(body.u32("sflow flow record format")?);
                let len = body.u32("sflow flow record length")? as usize;
                let rec = take_padded(&mut body, len, "sflow flow record")?;
                records.push(FlowRecord::parse(format, rec)?);
            }
            Sample::Flow(FlowSample { header, records })
        }
        DataFormat::COUNTERS_SAMPLE => {
            let sequence = body.u32("sflow counters sample sequence_number")?;
            let source_id = SourceId(body.u32("sflow counters sample source_id")?);
            let n = body.u32("sflow counters sample num_records")?;
            let mut records = Vec::with_capacity(capacity(n, &body, 8));
            for _ in 0..n {
                let format = DataFormat(body.u32("sflow counter record format")?);
                let len = body.u32("sflow counter record length")? as usize;
                let rec = take_padded(&mut body, len, "sflow counter record")?;
                records.push(CounterRecord::parse(format, rec)?);
            }
            Sample::Counters(CountersSample {
                sequence,
                source_id,
                records,
            })
        }
        format => Sample::Other {
            format,
            data: body.rest(),
        },
    };
    body.expect_empty("sflow sample")?;
    Ok(sample)
}

/// A whole datagram as a value (decoder output; also encodable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Datagram<'a> {
    pub header: DatagramHeader,
    pub samples: Vec<Sample<'a>>,
}

impl<'a> Datagram<'a> {
    /// Decodes one datagram; every sample must be complete and nothing may follow the last one.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let (header, n) = DatagramHeader::parse(&mut r)?;
        let mut samples = Vec::with_capacity(capacity(n, &r, 8));
        for _ in 0..n {
            samples.push(parse_sample(&mut r)?);
        }
        r.expect_empty("sflow datagram")?;
        Ok(Self { header, samples })
    }

    pub fn buffer_len(&self) -> usize {
        self.header.buffer_len() + self.samples.iter().map(Sample::buffer_len).sum::<usize>()
    }

    /// Encodes into `buf` (no size budget beyond the buffer), returning the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        let mut b = DatagramBuilder::new(buf, self.header, needed)?;
        for sample in &self.samples {
            match sample {
                Sample::Flow(s) => b.push_flow_sample(&s.header, &s.records)?,
                Sample::Counters(s) => {
                    b.push_counters_sample(s.sequence, s.source_id, &s.records)?
                }
                Sample::Other { format, data } => b.push_raw_sample(*format, data)?,
            }
        }
        Ok(b.finish().len())
    }
}

/// The UDP payload left in an IP packet of `mtu` bytes (IPv4 20-byte or IPv6 40-byte header, UDP 8).
pub const fn udp_payload_budget(mtu: usize, ipv6: bool) -> usize {
    let overhead = if ipv6 { 40 + 8 } else { 20 + 8 };
    mtu.saturating_sub(overhead)
}

/// Builds one datagram in a caller-provided buffer, sample by sample, without allocating, keeping it
/// within `budget` bytes.
///
/// A push that would exceed the budget fails with [`Error::NoRoom`] and writes nothing: send what
/// [`DatagramBuilder::finish`] returns, [`DatagramBuilder::reset`] with the next sequence number and push
/// again. A sample that does not fit even an empty datagram needs a shorter sampled header.
#[derive(Debug)]
pub struct DatagramBuilder<'b> {
    buf: &'b mut [u8],
    header: DatagramHeader,
    budget: usize,
    len: usize,
    num_samples: u32,
}

impl<'b> DatagramBuilder<'b> {
    /// Starts a datagram; the effective budget is `min(budget, buf.len())` and must hold the header.
    pub fn new(buf: &'b mut [u8], header: DatagramHeader, budget: usize) -> Result<Self, Error> {
        let budget = budget.min(buf.len());
        let len = header.buffer_len();
        if budget < len {
            return Err(Error::BufferTooSmall {
                needed: len,
                available: budget,
            });
        }
        Ok(Self {
            buf,
            header,
            budget,
            len,
            num_samples: 0,
        })
    }

    fn reserve(&mut self, item: &'static str, needed: usize) -> Result<Writer<'_>, Error> {
        let available = self.budget - self.len;
        if needed > available {
            return Err(Error::NoRoom {
                item,
                needed,
                available,
            });
        }
        let start = self.len;
        self.len += needed;
        self.num_samples += 1;
        Ok(Writer::new(&mut self.buf[start..start + needed]))
    }

    /// Whether a sample of `len` encoded bytes (see [`Sample::buffer_len`]) still fits.
    pub fn fits(&self, len: usize) -> bool {
        len <= self.budget - self.len
    }

    /// Appends a flow sample.
    pub fn push_flow_sample(
        &mut self,
        header: &FlowSampleHeader,
        records: &[FlowRecord<'_>],
    ) -> Result<(), Error> {
        let body = flow_sample_body_len(records);
        let body32 = len32("sflow flow sample", body)?;
        let n = len32("sflow flow sample num_records", records.len())?;
        let (start, count) = (self.len, self.num_samples);
        let mut w = self.reserve("sflow flow sample", 8 + body)?;
        w.u32(DataFormat::FLOW_SAMPLE.0);
        w.u32(body32);
        w.u32(header.sequence);
        w.u32(header.source_id.0);
        w.u32(header.sampling_rate);
        w.u32(header.sample_pool);
        w.u32(header.drops);
        w.u32(header.input);
        w.u32(header.output);
        w.u32(n);
        let mut result = Ok(());
        for record in records {
            result = record.emit(&mut w);
            if result.is_err() {
                break;
            }
        }
        self.undo_on_error(result, start, count)
    }

    /// Appends a counters sample.
    pub fn push_counters_sample(
        &mut self,
        sequence: u32,
        source_id: SourceId,
        records: &[CounterRecord<'_>],
    ) -> Result<(), Error> {
        let body = counters_sample_body_len(records);
        let body32 = len32("sflow counters sample", body)?;
        let n = len32("sflow counters sample num_records", records.len())?;
        let (start, count) = (self.len, self.num_samples);
        let mut w = self.reserve("sflow counters sample", 8 + body)?;
        w.u32(DataFormat::COUNTERS_SAMPLE.0);
        w.u32(body32);
        w.u32(sequence);
        w.u32(source_id.0);
        w.u32(n);
        let mut result = Ok(());
        for record in records {
            result = record.emit(&mut w);
            if result.is_err() {
                break;
            }
        }
        self.undo_on_error(result, start, count)
    }

    /// Appends an already-encoded sample body of another format.
    pub fn push_raw_sample(&mut self, format: DataFormat, data: &[u8]) -> Result<(), Error> {
        let len = len32("sflow sample", data.len())?;
        let mut w = self.reserve("sflow sample", 8 + padded(data.len()))?;
        w.u32(format.0);
        w.u32(len);
        put_padded(&mut w, data);
        Ok(())
    }

    fn undo_on_error(
        &mut self,
        result: Result<(), Error>,
        len: usize,
        count: u32,
    ) -> Result<(), Error> {
        if result.is_err() {
            self.len = len;
            self.num_samples = count;
        }
        result
    }

    /// Samples pushed so far.
    pub fn num_samples(&self) -> u32 {
        self.num_samples
    }

    pub fn is_empty(&self) -> bool {
        self.num_samples == 0
    }

    /// Encoded length so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes left in the budget.
    pub fn remaining(&self) -> usize {
        self.budget - self.len
    }

    /// Writes the header (with the final sample count) and returns the datagram bytes.
    pub fn finish(&mut self) -> &[u8] {
        let hlen = self.header.buffer_len();
        self.header
            .emit(&mut Writer::new(&mut self.buf[..hlen]), self.num_samples);
        &self.buf[..self.len]
    }

    /// Starts the next datagram in the same buffer with datagram sequence number `sequence`.
    pub fn reset(&mut self, sequence: u32, uptime_ms: u32) {
        self.header.sequence = sequence;
        self.header.uptime_ms = uptime_ms;
        self.len = self.header.buffer_len();
        self.num_samples = 0;
    }
}

/// One sampled Ethernet frame of a datagram, as a collector feeds it to a flow table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampledFrame<'a> {
    /// Length of the frame on the wire, without the octets the agent stripped (the FCS).
    pub frame_length: u32,
    /// The leading bytes of the frame, as sampled.
    pub header: &'a [u8],
    /// N in 1-in-N sampling.
    pub sampling_rate: u32,
}

impl<'a> Datagram<'a> {
    /// Its sampled Ethernet frames (flow samples' `sampled_header` records of protocol
    /// [`HEADER_PROTOCOL_ETHERNET`]), in order; every other sample or record is skipped.
    /// A frame length smaller than its sampled bytes is taken as the sampled bytes.
    pub fn sampled_frames(&self) -> impl Iterator<Item = SampledFrame<'a>> + '_ {
        self.samples
            .iter()
            .filter_map(|s| match s {
                Sample::Flow(f) => Some(f),
                _ => None,
            })
            .flat_map(|f| {
                f.records.iter().filter_map(move |r| match r {
                    FlowRecord::SampledHeader(h) if h.protocol == HEADER_PROTOCOL_ETHERNET => {
                        let on_wire = h.frame_length.saturating_sub(h.stripped);
                        let sampled = u32::try_from(h.header.len()).unwrap_or(u32::MAX);
                        Some(SampledFrame {
                            frame_length: on_wire.max(sampled),
                            header: h.header,
                            sampling_rate: f.header.sampling_rate,
                        })
                    }
                    _ => None,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // IPv4 agent 192.0.2.1, one flow sample with a 6-byte sampled header (padded to 8).
    static DATAGRAM: [u8; 100] = [
        0x00, 0x00, 0x00, 0x05, // version
        0x00, 0x00, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x01, // agent IPv4 192.0.2.1
        0x00, 0x00, 0x00, 0x07, // sub agent 7
        0x00, 0x00, 0x00, 0x2a, // sequence 42
        0x00, 0x00, 0x27, 0x10, // uptime 10000
        0x00, 0x00, 0x00, 0x01, // num samples
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x40, // flow sample, length 64
        0x00, 0x00, 0x00, 0x03, // sample sequence 3
        0x00, 0x00, 0x00, 0x02, // source ifIndex 2
        0x00, 0x00, 0x01, 0x90, // rate 400
        0x00, 0x00, 0x0f, 0xa0, // pool 4000
        0x00, 0x00, 0x00, 0x00, // drops
        0x00, 0x00, 0x00, 0x02, // input 2
        0x3f, 0xff, 0xff, 0xff, // output unknown
        0x00, 0x00, 0x00, 0x01, // one record
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x18, // sampled header, length 24
        0x00, 0x00, 0x00, 0x01, // ethernet
        0x00, 0x00, 0x00, 0x44, // frame length 68
        0x00, 0x00, 0x00, 0x04, // stripped 4
        0x00, 0x00, 0x00, 0x06, // header length 6
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x00, 0x00, // header + pad
    ];

    const HDR: [u8; 6] = [1, 2, 3, 4, 5, 6];

    fn header() -> DatagramHeader {
        DatagramHeader {
            agent: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            sub_agent_id: 7,
            sequence: 42,
            uptime_ms: 10_000,
        }
    }

    fn flow_header() -> FlowSampleHeader {
        FlowSampleHeader {
            sequence: 3,
            source_id: SourceId::if_index(2),
            sampling_rate: 400,
            sample_pool: 4000,
            drops: 0,
            input: 2,
            output: INTERFACE_UNKNOWN,
        }
    }

    fn datagram() -> Datagram<'static> {
        Datagram {
            header: header(),
            samples: vec![Sample::Flow(FlowSample {
                header: flow_header(),
                records: vec![FlowRecord::SampledHeader(SampledHeader {
                    protocol: HEADER_PROTOCOL_ETHERNET,
                    frame_length: 68,
                    stripped: 4,
                    header: &HDR,
                })],
            })],
        }
    }

    #[test]
    fn test_deconstruct() {
        let mut r = Reader::new(&DATAGRAM);
        let (h, n) = DatagramHeader::parse(&mut r).unwrap();
        assert_eq!(h, header());
        assert_eq!(n, 1);
        assert_eq!(r.used(), HEADER_LEN_V4);
        let source = SourceId(0x0300_0010);
        assert_eq!((source.kind(), source.index()), (3, 16));
        let format = DataFormat::new(4413, 5);
        assert_eq!((format.enterprise(), format.format()), (4413, 5));
    }

    #[test]
    fn test_construct() {
        let mut buf = [0xa5u8; 200];
        let mut b = DatagramBuilder::new(&mut buf, header(), 1500).unwrap();
        b.push_flow_sample(
            &flow_header(),
            &[FlowRecord::SampledHeader(SampledHeader {
                protocol: HEADER_PROTOCOL_ETHERNET,
                frame_length: 68,
                stripped: 4,
                header: &HDR,
            })],
        )
        .unwrap();
        assert_eq!(b.finish(), &DATAGRAM[..]);
    }

    #[test]
    fn test_parse() {
        assert_eq!(Datagram::parse(&DATAGRAM), Ok(datagram()));
    }

    #[test]
    fn test_emit() {
        let d = datagram();
        assert_eq!(d.buffer_len(), DATAGRAM.len());
        let mut buf = vec![0xa5u8; d.buffer_len()];
        assert_eq!(d.emit(&mut buf), Ok(DATAGRAM.len()));
        assert_eq!(buf, DATAGRAM);
    }

    #[test]
    fn counters_and_ipv6_round_trip() {
        let counters = IfCounters {
            if_index: 2,
            if_type: 6,
            if_speed: 10_000_000_000,
            if_direction: 1,
            if_status: 3,
            in_octets: 1 << 40,
            in_ucast_pkts: 5,
            out_octets: 77,
            promiscuous_mode: 1,
            ..Default::default()
        };
        let d = Datagram {
            header: DatagramHeader {
                agent: IpAddr::V6(Ipv6Addr::LOCALHOST),
                ..header()
            },
            samples: vec![
                Sample::Counters(CountersSample {
                    sequence: 9,
                    source_id: SourceId::if_index(2),
                    records: vec![
                        CounterRecord::Interface(counters),
                        CounterRecord::Other {
                            format: DataFormat::new(0, 2),
                            data: &[0; 52],
                        },
                    ],
                }),
                Sample::Other {
                    format: DataFormat::new(0, 3),
                    data: &[1, 2, 3, 4],
                },
            ],
        };
        let mut buf = vec![0u8; d.buffer_len()];
        assert_eq!(d.emit(&mut buf), Ok(40 + 8 + 12 + 8 + 88 + 8 + 52 + 8 + 4));
        assert_eq!(Datagram::parse(&buf), Ok(d));
    }

    #[test]
    fn sampled_frames_are_the_ethernet_headers_without_the_fcs() {
        let d = Datagram::parse(&DATAGRAM).unwrap();
        let frames: Vec<_> = d.sampled_frames().collect();
        assert_eq!(
            frames,
            [SampledFrame {
                frame_length: 64,
                header: &HDR,
                sampling_rate: 400
            }]
        );
        // Other protocols and counter samples are skipped; a frame length shorter than
        // the sampled bytes is the sampled bytes.
        let h = |protocol, frame_length| {
            FlowRecord::SampledHeader(SampledHeader {
                protocol,
                frame_length,
                stripped: 4,
                header: &HDR,
            })
        };
        let mut buf = [0u8; 512];
        let mut b = DatagramBuilder::new(&mut buf, header(), 512).unwrap();
        b.push_flow_sample(&flow_header(), &[h(11, 100), h(1, 2)])
            .unwrap();
        b.push_counters_sample(1, SourceId(2), &[]).unwrap();
        let bytes = b.finish().to_vec();
        let d = Datagram::parse(&bytes).unwrap();
        let frames: Vec<_> = d.sampled_frames().map(|f| f.frame_length).collect();
        assert_eq!(frames, [6]);
    }

    #[test]
    fn builder_keeps_budget() {
        let mut buf = [0u8; 1500];
        let budget = udp_payload_budget(320, false);
        assert_eq!(budget, 292);
        let mut b = DatagramBuilder::new(&mut buf, header(), budget).unwrap();
        let rec = [FlowRecord::SampledHeader(SampledHeader {
            protocol: 1,
            frame_length: 64,
            stripped: 4,
            header: &[0; 60],
        })];
        // 8 + 32 + 8 + 16 + 60 = 124 per sample: two fit in 292 - 28 = 264, the third does not.
        b.push_flow_sample(&flow_header(), &rec).unwrap();
        b.push_flow_sample(&flow_header(), &rec).unwrap();
        assert!(!b.fits(124));
        assert!(matches!(
            b.push_flow_sample(&flow_header(), &rec),
            Err(Error::NoRoom { needed: 124, .. })
        ));
        assert_eq!(b.num_samples(), 2);
        let out = b.finish().to_vec();
        assert!(out.len() <= budget);
        let parsed = Datagram::parse(&out).unwrap();
        assert_eq!(parsed.samples.len(), 2);
        b.reset(43, 20_000);
        assert!(b.is_empty());
        b.push_flow_sample(&flow_header(), &rec).unwrap();
        let parsed = Datagram::parse(b.finish()).unwrap();
        assert_eq!(parsed.header.sequence, 43);
        assert_eq!(parsed.samples.len(), 1);
    }

    #[test]
    fn parse_rejects() {
        let mut bad = DATAGRAM;
        bad[3] = 4;
        assert_eq!(
            Datagram::parse(&bad),
            Err(Error::invalid("sflow version", 4u32))
        );
        assert!(matches!(
            Datagram::parse(&DATAGRAM[..92]),
            Err(Error::Truncated {
                field: "sflow sample",
                ..
            })
        ));
        // Sampled header length larger than its record.
        let mut long = DATAGRAM;
        long[91] = 200;
        assert!(matches!(
            Datagram::parse(&long),
            Err(Error::Truncated {
                field: "sflow sampled header bytes",
                ..
            })
        ));
        // A huge num_samples does not make the decoder reserve memory for it.
        let mut many = DATAGRAM;
        many[24..28].copy_from_slice(&[0xff; 4]);
        assert!(Datagram::parse(&many).is_err());
    }

    prop_compose! {
        fn arb_flow_record()(kind: bool, a: [u32; 3], data in proptest::collection::vec(any::<u8>(), 0..40))
            -> (bool, [u32; 3], Vec<u8>) { (kind, a, data) }
    }

    fn to_record(r: &(bool, [u32; 3], Vec<u8>)) -> FlowRecord<'_> {
        if r.0 {
            FlowRecord::SampledHeader(SampledHeader {
                protocol: r.1[0],
                frame_length: r.1[1],
                stripped: r.1[2],
                header: &r.2,
            })
        } else {
            FlowRecord::Other {
                // Format 0:1 is the sampled header; keep raw records on other formats.
                format: DataFormat(r.1[0] | 0x1000),
                data: &r.2[..r.2.len() & !3],
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Datagram::parse(&bytes);
        }

        #[test]
        fn mutated_datagram_never_panics(idx in 0usize..100, val: u8) {
            let mut bytes = DATAGRAM;
            bytes[idx] = val;
            let _ = Datagram::parse(&bytes);
        }

        #[test]
        fn round_trip(h: [u32; 3], v6: bool, agent: [u8; 16], fh: [u32; 7],
                      recs in proptest::collection::vec(arb_flow_record(), 0..4),
                      counters: [u32; 4]) {
            let header = DatagramHeader {
                agent: if v6 { IpAddr::V6(Ipv6Addr::from(agent)) }
                       else { IpAddr::V4(Ipv4Addr::new(agent[0], agent[1], agent[2], agent[3])) },
                sub_agent_id: h[0], sequence: h[1], uptime_ms: h[2],
            };
            let records: Vec<_> = recs.iter().map(to_record).collect();
            let d = Datagram {
                header,
                samples: vec![
                    Sample::Flow(FlowSample {
                        header: FlowSampleHeader {
                            sequence: fh[0], source_id: SourceId(fh[1]), sampling_rate: fh[2],
                            sample_pool: fh[3], drops: fh[4], input: fh[5], output: fh[6],
                        },
                        records,
                    }),
                    Sample::Counters(CountersSample {
                        sequence: counters[0],
                        source_id: SourceId(counters[1]),
                        records: vec![CounterRecord::Interface(IfCounters {
                            if_index: counters[2], in_octets: u64::from(counters[3]) << 20,
                            ..Default::default()
                        })],
                    }),
                ],
            };
            let mut buf = vec![0u8; d.buffer_len()];
            prop_assert_eq!(d.emit(&mut buf), Ok(d.buffer_len()));
            prop_assert_eq!(Datagram::parse(&buf), Ok(d));
        }
    }
}
