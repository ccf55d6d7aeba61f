//! Cisco NetFlow v5: a 24-byte header followed by 1–30 records of 48 bytes, all big-endian.
//!
//! Layout from Cisco's "NetFlow export datagram format" tables (see `wire-formats.md`). Contracts that
//! differ from Skydive's exporter on purpose:
//! - `flow_sequence` is the number of flows exported *before* this datagram (collectors check
//!   `next = prev.flow_sequence + prev.count`); the caller owns the counter, [`DatagramBuilder`] only
//!   writes it.
//! - Up to [`MAX_RECORDS`] (30) records per datagram.
//! - `sampling_interval` carries the 2-bit mode and 14-bit interval; see [`Sampling`].
//! - Records are unidirectional: a bidirectional flow is two records.
//!
//! After [`Packet::new_checked`] / [`Record::new_checked`] no accessor panics.

use core::net::Ipv4Addr;

use super::{Error, Reader};

/// NetFlow version number in the header.
pub const VERSION: u16 = 0x0005;
/// Header length in bytes.
pub const HEADER_LEN: usize = 24;
/// Flow record length in bytes.
pub const RECORD_LEN: usize = 48;
/// Most records one datagram may carry.
pub const MAX_RECORDS: usize = 30;
/// Largest datagram: 24 + 30 × 48 = 1,464 bytes.
pub const MAX_DATAGRAM_LEN: usize = HEADER_LEN + MAX_RECORDS * RECORD_LEN;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const VERSION: Field = 0..2;
    pub const COUNT: Field = 2..4;
    pub const SYS_UPTIME: Field = 4..8;
    pub const UNIX_SECS: Field = 8..12;
    pub const UNIX_NSECS: Field = 12..16;
    pub const FLOW_SEQUENCE: Field = 16..20;
    pub const ENGINE_TYPE: usize = 20;
    pub const ENGINE_ID: usize = 21;
    pub const SAMPLING: Field = 22..24;
}

mod rfield {
    pub type Field = core::ops::Range<usize>;

    pub const SRC_ADDR: Field = 0..4;
    pub const DST_ADDR: Field = 4..8;
    pub const NEXT_HOP: Field = 8..12;
    pub const INPUT: Field = 12..14;
    pub const OUTPUT: Field = 14..16;
    pub const PACKETS: Field = 16..20;
    pub const OCTETS: Field = 20..24;
    pub const FIRST: Field = 24..28;
    pub const LAST: Field = 28..32;
    pub const SRC_PORT: Field = 32..34;
    pub const DST_PORT: Field = 34..36;
    pub const PAD1: usize = 36;
    pub const TCP_FLAGS: usize = 37;
    pub const PROTOCOL: usize = 38;
    pub const TOS: usize = 39;
    pub const SRC_AS: Field = 40..42;
    pub const DST_AS: Field = 42..44;
    pub const SRC_MASK: usize = 44;
    pub const DST_MASK: usize = 45;
    pub const PAD2: Field = 46..48;
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn ip4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// A read/write view of a NetFlow v5 datagram (header plus records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer and checks that the header and all `count` records fit.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header and `count` records are all present.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                field: "netflow5 header",
                needed: HEADER_LEN,
                available: len,
            });
        }
        let needed = HEADER_LEN + usize::from(self.count()) * RECORD_LEN;
        if len < needed {
            return Err(Error::Truncated {
                field: "netflow5 records",
                needed,
                available: len,
            });
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::VERSION])
    }

    pub fn count(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::COUNT])
    }

    pub fn sys_uptime(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SYS_UPTIME])
    }

    pub fn unix_secs(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::UNIX_SECS])
    }

    pub fn unix_nsecs(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::UNIX_NSECS])
    }

    pub fn flow_sequence(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::FLOW_SEQUENCE])
    }

    pub fn engine_type(&self) -> u8 {
        self.buffer.as_ref()[field::ENGINE_TYPE]
    }

    pub fn engine_id(&self) -> u8 {
        self.buffer.as_ref()[field::ENGINE_ID]
    }

    /// The raw `sampling_interval` word (mode in the top 2 bits).
    pub fn sampling_interval(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SAMPLING])
    }

    /// Record `index`, if it lies inside `count` and inside the buffer.
    pub fn record(&self, index: usize) -> Option<Record<&[u8]>> {
        if index >= usize::from(self.count()) {
            return None;
        }
        let start = HEADER_LEN + index * RECORD_LEN;
        self.buffer
            .as_ref()
            .get(start..start + RECORD_LEN)
            .map(Record::new_unchecked)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::VERSION].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_count(&mut self, v: u16) {
        self.buffer.as_mut()[field::COUNT].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_sys_uptime(&mut self, v: u32) {
        self.buffer.as_mut()[field::SYS_UPTIME].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_unix_secs(&mut self, v: u32) {
        self.buffer.as_mut()[field::UNIX_SECS].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_unix_nsecs(&mut self, v: u32) {
        self.buffer.as_mut()[field::UNIX_NSECS].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_flow_sequence(&mut self, v: u32) {
        self.buffer.as_mut()[field::FLOW_SEQUENCE].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_engine_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::ENGINE_TYPE] = v;
    }

    pub fn set_engine_id(&mut self, v: u8) {
        self.buffer.as_mut()[field::ENGINE_ID] = v;
    }

    pub fn set_sampling_interval(&mut self, v: u16) {
        self.buffer.as_mut()[field::SAMPLING].copy_from_slice(&v.to_be_bytes());
    }
}

/// A read/write view of one 48-byte flow record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Record<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let record = Self::new_unchecked(buffer);
        record.check_len()?;
        Ok(record)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        let available = self.buffer.as_ref().len();
        if available < RECORD_LEN {
            return Err(Error::Truncated {
                field: "netflow5 record",
                needed: RECORD_LEN,
                available,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        ip4(&self.buffer.as_ref()[rfield::SRC_ADDR])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        ip4(&self.buffer.as_ref()[rfield::DST_ADDR])
    }

    pub fn next_hop(&self) -> Ipv4Addr {
        ip4(&self.buffer.as_ref()[rfield::NEXT_HOP])
    }

    pub fn input(&self) -> u16 {
        be16(&self.buffer.as_ref()[rfield::INPUT])
    }

    pub fn output(&self) -> u16 {
        be16(&self.buffer.as_ref()[rfield::OUTPUT])
    }

    pub fn packets(&self) -> u32 {
        be32(&self.buffer.as_ref()[rfield::PACKETS])
    }

    pub fn octets(&self) -> u32 {
        be32(&self.buffer.as_ref()[rfield::OCTETS])
    }

    pub fn first(&self) -> u32 {
        be32(&self.buffer.as_ref()[rfield::FIRST])
    }

    pub fn last(&self) -> u32 {
        be32(&self.buffer.as_ref()[rfield::LAST])
    }

    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[rfield::SRC_PORT])
    }

    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[rfield::DST_PORT])
    }

    pub fn tcp_flags(&self) -> u8 {
        self.buffer.as_ref()[rfield::TCP_FLAGS]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[rfield::PROTOCOL]
    }

    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[rfield::TOS]
    }

    pub fn src_as(&self) -> u16 {
        be16(&self.buffer.as_ref()[rfield::SRC_AS])
    }

    pub fn dst_as(&self) -> u16 {
        be16(&self.buffer.as_ref()[rfield::DST_AS])
    }

    pub fn src_mask(&self) -> u8 {
        self.buffer.as_ref()[rfield::SRC_MASK]
    }

    pub fn dst_mask(&self) -> u8 {
        self.buffer.as_ref()[rfield::DST_MASK]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Record<T> {
    fn put(&mut self, range: core::ops::Range<usize>, bytes: &[u8]) {
        self.buffer.as_mut()[range].copy_from_slice(bytes);
    }

    pub fn set_src_addr(&mut self, v: Ipv4Addr) {
        self.put(rfield::SRC_ADDR, &v.octets());
    }

    pub fn set_dst_addr(&mut self, v: Ipv4Addr) {
        self.put(rfield::DST_ADDR, &v.octets());
    }

    pub fn set_next_hop(&mut self, v: Ipv4Addr) {
        self.put(rfield::NEXT_HOP, &v.octets());
    }

    pub fn set_input(&mut self, v: u16) {
        self.put(rfield::INPUT, &v.to_be_bytes());
    }

    pub fn set_output(&mut self, v: u16) {
        self.put(rfield::OUTPUT, &v.to_be_bytes());
    }

    pub fn set_packets(&mut self, v: u32) {
        self.put(rfield::PACKETS, &v.to_be_bytes());
    }

    pub fn set_octets(&mut self, v: u32) {
        self.put(rfield::OCTETS, &v.to_be_bytes());
    }

    pub fn set_first(&mut self, v: u32) {
        self.put(rfield::FIRST, &v.to_be_bytes());
    }

    pub fn set_last(&mut self, v: u32) {
        self.put(rfield::LAST, &v.to_be_bytes());
    }

    pub fn set_src_port(&mut self, v: u16) {
        self.put(rfield::SRC_PORT, &v.to_be_bytes());
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.put(rfield::DST_PORT, &v.to_be_bytes());
    }

    pub fn set_tcp_flags(&mut self, v: u8) {
        self.buffer.as_mut()[rfield::TCP_FLAGS] = v;
    }

    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[rfield::PROTOCOL] = v;
    }

    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[rfield::TOS] = v;
    }

    pub fn set_src_as(&mut self, v: u16) {
        self.put(rfield::SRC_AS, &v.to_be_bytes());
    }

    pub fn set_dst_as(&mut self, v: u16) {
        self.put(rfield::DST_AS, &v.to_be_bytes());
    }

    pub fn set_src_mask(&mut self, v: u8) {
        self.buffer.as_mut()[rfield::SRC_MASK] = v;
    }

    pub fn set_dst_mask(&mut self, v: u8) {
        self.buffer.as_mut()[rfield::DST_MASK] = v;
    }

    /// Zeroes both pad fields.
    pub fn clear_padding(&mut self) {
        let buf = self.buffer.as_mut();
        buf[rfield::PAD1] = 0;
        buf[rfield::PAD2].fill(0);
    }
}

/// The `sampling_interval` word: a 2-bit mode and a 14-bit interval.
///
/// Mode `0` with interval `0` means "not sampled". The common convention is mode `1` = deterministic
/// 1-in-N with N in `interval` ([`Sampling::deterministic`]); mode `2` = random.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Sampling {
    /// 2-bit sampling mode (0..=3).
    pub mode: u8,
    /// 14-bit interval N (0..=0x3fff).
    pub interval: u16,
}

impl Sampling {
    /// Largest interval the 14-bit field holds.
    pub const MAX_INTERVAL: u16 = 0x3fff;

    /// Not sampled.
    pub const NONE: Self = Self {
        mode: 0,
        interval: 0,
    };

    /// Deterministic 1-in-`interval` sampling (mode `0b01`).
    pub const fn deterministic(interval: u16) -> Self {
        Self { mode: 1, interval }
    }

    /// Random 1-in-`interval` sampling (mode `0b10`).
    pub const fn random(interval: u16) -> Self {
        Self { mode: 2, interval }
    }

    /// Splits a raw header word.
    pub const fn from_raw(raw: u16) -> Self {
        Self {
            mode: (raw >> 14) as u8,
            interval: raw & Self::MAX_INTERVAL,
        }
    }

    /// Joins mode and interval, refusing values that do not fit their bit widths.
    pub fn to_raw(self) -> Result<u16, Error> {
        if self.mode > 3 {
            return Err(Error::invalid("netflow5 sampling mode", self.mode));
        }
        if self.interval > Self::MAX_INTERVAL {
            return Err(Error::invalid("netflow5 sampling interval", self.interval));
        }
        Ok(u16::from(self.mode) << 14 | self.interval)
    }
}

/// The header fields a caller chooses; `version` is constant and `count` follows from the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HeaderRepr {
    /// Milliseconds since the exporter booted (the clock `first`/`last` are measured on).
    pub sys_uptime_ms: u32,
    pub unix_secs: u32,
    /// Residual nanoseconds of the export time.
    pub unix_nsecs: u32,
    /// Flows exported before this datagram.
    pub flow_sequence: u32,
    pub engine_type: u8,
    pub engine_id: u8,
    pub sampling: Sampling,
}

impl HeaderRepr {
    /// Parses the header of a checked packet; refuses any version but 5 and counts above 30.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        if packet.version() != VERSION {
            return Err(Error::invalid("netflow5 version", packet.version()));
        }
        if usize::from(packet.count()) > MAX_RECORDS {
            return Err(Error::invalid("netflow5 count", packet.count()));
        }
        Ok(Self {
            sys_uptime_ms: packet.sys_uptime(),
            unix_secs: packet.unix_secs(),
            unix_nsecs: packet.unix_nsecs(),
            flow_sequence: packet.flow_sequence(),
            engine_type: packet.engine_type(),
            engine_id: packet.engine_id(),
            sampling: Sampling::from_raw(packet.sampling_interval()),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with `count` records. The packet must hold at least [`HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        count: u16,
    ) -> Result<(), Error> {
        if usize::from(count) > MAX_RECORDS {
            return Err(Error::invalid("netflow5 count", count));
        }
        let sampling = self.sampling.to_raw()?;
        packet.set_version(VERSION);
        packet.set_count(count);
        packet.set_sys_uptime(self.sys_uptime_ms);
        packet.set_unix_secs(self.unix_secs);
        packet.set_unix_nsecs(self.unix_nsecs);
        packet.set_flow_sequence(self.flow_sequence);
        packet.set_engine_type(self.engine_type);
        packet.set_engine_id(self.engine_id);
        packet.set_sampling_interval(sampling);
        Ok(())
    }
}

/// One unidirectional flow record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordRepr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub next_hop: Ipv4Addr,
    /// SNMP ifIndex of the input interface (16 bits in v5).
    pub input: u16,
    /// SNMP ifIndex of the output interface.
    pub output: u16,
    /// Packets in the flow since the previous export (`dPkts`).
    pub packets: u32,
    /// Layer-3 bytes in those packets (`dOctets`).
    pub octets: u32,
    /// SysUptime (ms) at the first packet.
    pub first_ms: u32,
    /// SysUptime (ms) at the last packet.
    pub last_ms: u32,
    /// Source port; 0 for protocols without ports.
    pub src_port: u16,
    /// Destination port; for ICMP by convention `type * 256 + code`.
    pub dst_port: u16,
    /// Cumulative OR of the TCP flags.
    pub tcp_flags: u8,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...).
    pub protocol: u8,
    pub tos: u8,
    pub src_as: u16,
    pub dst_as: u16,
    /// Prefix length 0..=32 (0 when unknown).
    pub src_mask: u8,
    pub dst_mask: u8,
}

impl Default for RecordRepr {
    fn default() -> Self {
        Self {
            src_addr: Ipv4Addr::UNSPECIFIED,
            dst_addr: Ipv4Addr::UNSPECIFIED,
            next_hop: Ipv4Addr::UNSPECIFIED,
            input: 0,
            output: 0,
            packets: 0,
            octets: 0,
            first_ms: 0,
            last_ms: 0,
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            protocol: 0,
            tos: 0,
            src_as: 0,
            dst_as: 0,
            src_mask: 0,
            dst_mask: 0,
        }
    }
}

impl RecordRepr {
    /// Reads a checked record. Every bit pattern is a valid record, so this cannot fail.
    pub fn parse<T: AsRef<[u8]>>(record: &Record<T>) -> Self {
        Self {
            src_addr: record.src_addr(),
            dst_addr: record.dst_addr(),
            next_hop: record.next_hop(),
            input: record.input(),
            output: record.output(),
            packets: record.packets(),
            octets: record.octets(),
            first_ms: record.first(),
            last_ms: record.last(),
            src_port: record.src_port(),
            dst_port: record.dst_port(),
            tcp_flags: record.tcp_flags(),
            protocol: record.protocol(),
            tos: record.tos(),
            src_as: record.src_as(),
            dst_as: record.dst_as(),
            src_mask: record.src_mask(),
            dst_mask: record.dst_mask(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        RECORD_LEN
    }

    /// Writes all 48 bytes, pads included. The record must hold [`RECORD_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, record: &mut Record<T>) {
        record.set_src_addr(self.src_addr);
        record.set_dst_addr(self.dst_addr);
        record.set_next_hop(self.next_hop);
        record.set_input(self.input);
        record.set_output(self.output);
        record.set_packets(self.packets);
        record.set_octets(self.octets);
        record.set_first(self.first_ms);
        record.set_last(self.last_ms);
        record.set_src_port(self.src_port);
        record.set_dst_port(self.dst_port);
        record.set_tcp_flags(self.tcp_flags);
        record.set_protocol(self.protocol);
        record.set_tos(self.tos);
        record.set_src_as(self.src_as);
        record.set_dst_as(self.dst_as);
        record.set_src_mask(self.src_mask);
        record.set_dst_mask(self.dst_mask);
        record.clear_padding();
    }
}

/// A whole datagram as a value (decoder output; also encodable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repr {
    pub header: HeaderRepr,
    pub records: Vec<RecordRepr>,
}

impl Repr {
    /// Decodes one datagram. The length must be exactly `24 + count * 48`.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let header = Packet::new_unchecked(r.take(HEADER_LEN, "netflow5 header")?);
        let header_repr = HeaderRepr::parse(&header)?;
        let count = usize::from(header.count());
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let raw = r.take(RECORD_LEN, "netflow5 record")?;
            records.push(RecordRepr::parse(&Record::new_unchecked(raw)));
        }
        r.expect_empty("netflow5 records")?;
        Ok(Self {
            header: header_repr,
            records,
        })
    }

    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.records.len() * RECORD_LEN
    }

    /// Encodes into `buf`, returning the datagram length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut builder = DatagramBuilder::new(buf, self.header)?;
        for record in &self.records {
            builder.push(record)?;
        }
        Ok(builder.finish().len())
    }
}

/// Builds one datagram in a caller-provided buffer, record by record, without allocating.
///
/// ```
/// use topotap_targets::wire::netflow5::{DatagramBuilder, HeaderRepr, RecordRepr, MAX_DATAGRAM_LEN};
/// let mut buf = [0u8; MAX_DATAGRAM_LEN];
/// let mut b = DatagramBuilder::new(&mut buf, HeaderRepr::default()).unwrap();
/// b.push(&RecordRepr { protocol: 6, ..Default::default() }).unwrap();
/// assert_eq!(b.finish().len(), 24 + 48);
/// ```
#[derive(Debug)]
pub struct DatagramBuilder<'b> {
    buf: &'b mut [u8],
    header: HeaderRepr,
    count: usize,
    capacity: usize,
}

impl<'b> DatagramBuilder<'b> {
    /// Starts a datagram. `buf` must hold at least the header; it limits the records to
    /// `min(30, (len - 24) / 48)`. The header's sampling field is validated here.
    pub fn new(buf: &'b mut [u8], header: HeaderRepr) -> Result<Self, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        header.sampling.to_raw()?;
        let capacity = MAX_RECORDS.min((buf.len() - HEADER_LEN) / RECORD_LEN);
        Ok(Self {
            buf,
            header,
            count: 0,
            capacity,
        })
    }

    /// Appends a record, or [`Error::NoRoom`] when the datagram is full (30 records or the buffer).
    pub fn push(&mut self, record: &RecordRepr) -> Result<(), Error> {
        if self.count >= self.capacity {
            return Err(Error::NoRoom {
                item: "netflow5 record",
                needed: RECORD_LEN,
                available: 0,
            });
        }
        let start = HEADER_LEN + self.count * RECORD_LEN;
        record.emit(&mut Record::new_unchecked(
            &mut self.buf[start..start + RECORD_LEN],
        ));
        self.count += 1;
        Ok(())
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count >= self.capacity
    }

    /// Writes the header (with the final count) and returns the datagram bytes.
    pub fn finish(&mut self) -> &[u8] {
        let len = HEADER_LEN + self.count * RECORD_LEN;
        let mut packet = Packet::new_unchecked(&mut self.buf[..len]);
        // Validated in `new`, and count <= capacity <= 30, so this cannot fail.
        let _ = self.header.emit(&mut packet, self.count as u16);
        &self.buf[..len]
    }

    /// Starts the next datagram in the same buffer.
    pub fn reset(&mut self, header: HeaderRepr) -> Result<(), Error> {
        header.sampling.to_raw()?;
        self.header = header;
        self.count = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // One datagram with a single TCP record, written out by hand from the field table.
    static DATAGRAM: [u8; 72] = [
        0x00, 0x05, 0x00, 0x01, // version 5, count 1
        0x00, 0x01, 0x86, 0xa0, // sys_uptime 100000 ms
        0x65, 0x53, 0xf1, 0x00, // unix_secs 1700000000
        0x00, 0x00, 0x03, 0xe8, // unix_nsecs 1000
        0x00, 0x00, 0x00, 0x2a, // flow_sequence 42
        0x00, 0x01, // engine type 0, id 1
        0x40, 0x64, // sampling: mode 1, interval 100
        0x0a, 0x00, 0x00, 0x01, // src 10.0.0.1
        0x0a, 0x00, 0x00, 0x02, // dst 10.0.0.2
        0x0a, 0x00, 0x00, 0xfe, // nexthop 10.0.0.254
        0x00, 0x03, 0x00, 0x04, // input 3, output 4
        0x00, 0x00, 0x00, 0x05, // dPkts 5
        0x00, 0x00, 0x01, 0xf4, // dOctets 500
        0x00, 0x01, 0x7e, 0xd0, // first 98000
        0x00, 0x01, 0x86, 0x9f, // last 99999
        0x9c, 0x40, 0x00, 0x50, // ports 40000 -> 80
        0x00, 0x1b, 0x06, 0x10, // pad, flags SYN|ACK|FIN|PSH, proto 6, tos 0x10
        0xfd, 0xe8, 0xfd, 0xe9, // AS 65000 -> 65001
        0x18, 0x10, 0x00, 0x00, // masks /24 /16, pad
    ];

    fn repr() -> Repr {
        Repr {
            header: HeaderRepr {
                sys_uptime_ms: 100_000,
                unix_secs: 1_700_000_000,
                unix_nsecs: 1000,
                flow_sequence: 42,
                engine_type: 0,
                engine_id: 1,
                sampling: Sampling::deterministic(100),
            },
            records: vec![RecordRepr {
                src_addr: Ipv4Addr::new(10, 0, 0, 1),
                dst_addr: Ipv4Addr::new(10, 0, 0, 2),
                next_hop: Ipv4Addr::new(10, 0, 0, 254),
                input: 3,
                output: 4,
                packets: 5,
                octets: 500,
                first_ms: 98_000,
                last_ms: 99_999,
                src_port: 40000,
                dst_port: 80,
                tcp_flags: 0x1b,
                protocol: 6,
                tos: 0x10,
                src_as: 65000,
                dst_as: 65001,
                src_mask: 24,
                dst_mask: 16,
            }],
        }
    }

    #[test]
    fn test_deconstruct() {
        let packet = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(packet.version(), 5);
        assert_eq!(packet.count(), 1);
        assert_eq!(packet.sys_uptime(), 100_000);
        assert_eq!(packet.unix_secs(), 1_700_000_000);
        assert_eq!(packet.unix_nsecs(), 1000);
        assert_eq!(packet.flow_sequence(), 42);
        assert_eq!(packet.engine_type(), 0);
        assert_eq!(packet.engine_id(), 1);
        assert_eq!(packet.sampling_interval(), 0x4064);
        let record = packet.record(0).unwrap();
        assert_eq!(record.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(record.dst_port(), 80);
        assert_eq!(record.tcp_flags(), 0x1b);
        assert_eq!(record.protocol(), 6);
        assert_eq!(record.src_as(), 65000);
        assert_eq!(record.dst_mask(), 16);
        assert!(packet.record(1).is_none());
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0xa5u8; 72];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(5);
        packet.set_count(1);
        packet.set_sys_uptime(100_000);
        packet.set_unix_secs(1_700_000_000);
        packet.set_unix_nsecs(1000);
        packet.set_flow_sequence(42);
        packet.set_engine_type(0);
        packet.set_engine_id(1);
        packet.set_sampling_interval(0x4064);
        let mut record = Record::new_unchecked(&mut bytes[HEADER_LEN..]);
        record.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        record.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        record.set_next_hop(Ipv4Addr::new(10, 0, 0, 254));
        record.set_input(3);
        record.set_output(4);
        record.set_packets(5);
        record.set_octets(500);
        record.set_first(98_000);
        record.set_last(99_999);
        record.set_src_port(40000);
        record.set_dst_port(80);
        record.set_tcp_flags(0x1b);
        record.set_protocol(6);
        record.set_tos(0x10);
        record.set_src_as(65000);
        record.set_dst_as(65001);
        record.set_src_mask(24);
        record.set_dst_mask(16);
        record.clear_padding();
        assert_eq!(bytes, DATAGRAM);
    }

    #[test]
    fn test_parse() {
        assert_eq!(Repr::parse(&DATAGRAM), Ok(repr()));
    }

    #[test]
    fn test_emit() {
        let repr = repr();
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        assert_eq!(repr.emit(&mut buf), Ok(72));
        assert_eq!(buf, DATAGRAM);
    }

    #[test]
    fn builder_caps_at_thirty_records() {
        let mut buf = [0u8; 2048];
        let mut b = DatagramBuilder::new(&mut buf, HeaderRepr::default()).unwrap();
        for _ in 0..MAX_RECORDS {
            b.push(&RecordRepr::default()).unwrap();
        }
        assert!(b.is_full());
        assert!(matches!(
            b.push(&RecordRepr::default()),
            Err(Error::NoRoom { .. })
        ));
        let out = b.finish();
        assert_eq!(out.len(), MAX_DATAGRAM_LEN);
        assert_eq!(Packet::new_checked(out).unwrap().count(), 30);
    }

    #[test]
    fn builder_limited_by_buffer() {
        let mut buf = [0u8; HEADER_LEN + 2 * RECORD_LEN + 10];
        let mut b = DatagramBuilder::new(&mut buf, HeaderRepr::default()).unwrap();
        b.push(&RecordRepr::default()).unwrap();
        b.push(&RecordRepr::default()).unwrap();
        assert!(b.push(&RecordRepr::default()).is_err());
        let mut tiny = [0u8; 10];
        assert!(DatagramBuilder::new(&mut tiny, HeaderRepr::default()).is_err());
    }

    #[test]
    fn sampling_bits() {
        assert_eq!(Sampling::from_raw(0x4064), Sampling::deterministic(100));
        assert_eq!(Sampling::random(0x3fff).to_raw(), Ok(0xbfff));
        assert!(Sampling::deterministic(0x4000).to_raw().is_err());
        let bad = HeaderRepr {
            sampling: Sampling {
                mode: 4,
                interval: 1,
            },
            ..Default::default()
        };
        assert!(DatagramBuilder::new(&mut [0u8; 100], bad).is_err());
    }

    #[test]
    fn parse_rejects() {
        let mut bad = DATAGRAM;
        bad[1] = 9;
        assert_eq!(
            Repr::parse(&bad),
            Err(Error::invalid("netflow5 version", 9u16))
        );
        assert!(matches!(
            Repr::parse(&DATAGRAM[..60]),
            Err(Error::Truncated {
                field: "netflow5 record",
                ..
            })
        ));
        let mut too_many = DATAGRAM;
        too_many[3] = 31;
        assert_eq!(
            Repr::parse(&too_many),
            Err(Error::invalid("netflow5 count", 31u16))
        );
        let mut long = DATAGRAM.to_vec();
        long.push(0);
        assert!(matches!(
            Repr::parse(&long),
            Err(Error::TrailingData { .. })
        ));
    }

    prop_compose! {
        fn arb_record()(a in any::<[u32; 9]>(), b in any::<[u16; 4]>(), c in any::<[u8; 5]>()) -> RecordRepr {
            RecordRepr {
                src_addr: a[0].into(), dst_addr: a[1].into(), next_hop: a[2].into(),
                input: b[0], output: b[1], packets: a[3], octets: a[4], first_ms: a[5], last_ms: a[6],
                src_port: b[2], dst_port: b[3], tcp_flags: c[0], protocol: c[1], tos: c[2],
                src_as: (a[7] >> 16) as u16, dst_as: a[7] as u16, src_mask: c[3], dst_mask: c[4],
            }
        }
    }

    prop_compose! {
        fn arb_repr()(h in any::<[u32; 4]>(), e in any::<[u8; 2]>(), mode in 0u8..4,
                      interval in 0u16..=0x3fff, records in proptest::collection::vec(arb_record(), 0..=30)) -> Repr {
            Repr {
                header: HeaderRepr {
                    sys_uptime_ms: h[0], unix_secs: h[1], unix_nsecs: h[2], flow_sequence: h[3],
                    engine_type: e[0], engine_id: e[1], sampling: Sampling { mode, interval },
                },
                records,
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = Repr::parse(&bytes);
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                for i in 0..usize::from(p.count()) {
                    prop_assert!(p.record(i).is_some());
                }
            }
        }

        #[test]
        fn round_trip(repr in arb_repr()) {
            let mut buf = vec![0u8; repr.buffer_len()];
            prop_assert_eq!(repr.emit(&mut buf), Ok(repr.buffer_len()));
            prop_assert_eq!(Repr::parse(&buf), Ok(repr));
        }
    }
}
