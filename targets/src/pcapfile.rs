//! Capture files: a zero-copy reader for classic pcap and pcapng held in memory, a streaming reader
//! over any [`Read`] in bounded memory, and a classic pcap writer.
//!
//! [`PcapReader`] walks a byte slice (a file read or mapped whole) and yields [`PcapRecord`]s that
//! borrow it: no allocation per packet. [`PcapStream`] reads the same formats from a file or a
//! request body as it arrives, holding at most one read buffer and one record. Classic pcap in either byte order with microsecond or nanosecond
//! timestamps; pcapng sections in either byte order with Interface Description, Enhanced Packet, Simple
//! Packet and (obsolete) Packet blocks, per-interface link types and `if_tsresol`/`if_tsoffset`; other
//! block types are skipped. Malformed input yields one [`PcapError`] naming the offset, then the
//! iteration ends; nothing panics.

use std::io::{self, Read, Write};

use crate::packet::{LinkType, Timestamp};

/// One captured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcapRecord<'a> {
    pub timestamp: Timestamp,
    /// Length of the packet on the wire (the captured `data` may be shorter: snaplen).
    pub orig_len: u32,
    pub data: &'a [u8],
    pub link_type: LinkType,
    /// pcapng interface index (0 for classic pcap).
    pub interface: u32,
}

/// Why a capture file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    #[error("not a pcap file: bad magic 0x{0:08x}")]
    BadMagic(u32),
    #[error("not a pcap file: {0} bytes is too short for a file header")]
    TruncatedHeader(usize),
    #[error("truncated packet record at offset {0}")]
    TruncatedRecord(usize),
    #[error("invalid pcapng block at offset {offset}: {reason}")]
    InvalidBlock { offset: usize, reason: &'static str },
    #[error(
        "pcapng packet at offset {offset} names interface {interface}, which was not described"
    )]
    UnknownInterface { offset: usize, interface: u32 },
    #[error(
        "record at offset {offset} is {len} bytes long, more than the {MAX_RECORD_LEN} accepted"
    )]
    RecordTooLarge { offset: usize, len: usize },
    #[error("cannot read the capture: {0}")]
    Read(String),
}

impl PcapError {
    /// The same error with its offset moved by `base` bytes.
    fn shifted(self, base: usize) -> Self {
        match self {
            PcapError::TruncatedRecord(o) => PcapError::TruncatedRecord(o + base),
            PcapError::InvalidBlock { offset, reason } => PcapError::InvalidBlock {
                offset: offset + base,
                reason,
            },
            PcapError::UnknownInterface { offset, interface } => PcapError::UnknownInterface {
                offset: offset + base,
                interface,
            },
            PcapError::RecordTooLarge { offset, len } => PcapError::RecordTooLarge {
                offset: offset + base,
                len,
            },
            e => e,
        }
    }
}

/// Longest record (classic record header and data, or pcapng block) [`PcapStream`] accepts: libpcap's
/// largest snaplen is 256 KiB, Wireshark's largest pcapng block 16 MiB.
pub const MAX_RECORD_LEN: usize = 16 << 20;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_BOM: u32 = 0x1A2B_3C4D;
const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;

#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: LinkType,
    snaplen: u32,
    /// Timestamp unit: `(numerator ns, shift)`: ns = units * num >> shift, or units / div.
    resolution: Resolution,
    offset_secs: i64,
}

#[derive(Clone, Copy, Debug)]
enum Resolution {
    /// 10^-k seconds.
    Decimal(u8),
    /// 2^-k seconds.
    Binary(u8),
}

impl Resolution {
    fn to_nanos(self, units: u64) -> u64 {
        match self {
            Resolution::Decimal(k) if k <= 9 => units.saturating_mul(10u64.pow(u32::from(9 - k))),
            Resolution::Decimal(k) => {
                let div = 10u128.checked_pow(u32::from(k - 9)).unwrap_or(u128::MAX);
                (u128::from(units) / div) as u64
            }
            Resolution::Binary(k) => {
                let ns = (u128::from(units) * 1_000_000_000) >> k.min(127);
                u64::try_from(ns).unwrap_or(u64::MAX)
            }
        }
    }
}

enum Format {
    Classic {
        big_endian: bool,
        nanos: bool,
        link_type: LinkType,
    },
    Ng {
        big_endian: bool,
        interfaces: Vec<Interface>,
        last_ts: Timestamp,
    },
}

/// Reads pcap or pcapng records from a byte slice. An `Iterator` of `Result<PcapRecord, PcapError>`.
pub struct PcapReader<'a> {
    data: &'a [u8],
    pos: usize,
    format: Format,
    done: bool,
}

fn u16_at(b: &[u8], at: usize, be: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if be {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

fn u32_at(b: &[u8], at: usize, be: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if be {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

impl<'a> PcapReader<'a> {
    /// Check the file header. Fails on anything that is not classic pcap or pcapng.
    pub fn new(data: &'a [u8]) -> Result<Self, PcapError> {
        let Some(magic) = u32_at(data, 0, false) else {
            return Err(PcapError::TruncatedHeader(data.len()));
        };
        if magic == PCAPNG_SHB {
            // The section header is parsed as the first block.
            return Ok(PcapReader {
                data,
                pos: 0,
                format: Format::Ng {
                    big_endian: false,
                    interfaces: Vec::new(),
                    last_ts: Timestamp::ZERO,
                },
                done: false,
            });
        }
        let (big_endian, nanos) = match magic {
            MAGIC_US => (false, false),
            MAGIC_NS => (false, true),
            m if m.swap_bytes() == MAGIC_US => (true, false),
            m if m.swap_bytes() == MAGIC_NS => (true, true),
            m => return Err(PcapError::BadMagic(m.swap_bytes())),
        };
        if data.len() < 24 {
            return Err(PcapError::TruncatedHeader(data.len()));
        }
        let network = u32_at(data, 20, big_endian).unwrap_or(0);
        Ok(PcapReader {
            data,
            pos: 24,
            format: Format::Classic {
                big_endian,
                nanos,
                // The upper bits may carry FCS information.
                link_type: LinkType::from_u32(network & 0xffff),
            },
            done: false,
        })
    }

    /// Link type of a classic file, or of the first pcapng interface described so far.
    pub fn link_type(&self) -> Option<LinkType> {
        match &self.format {
            Format::Classic { link_type, .. } => Some(*link_type),
            Format::Ng { interfaces, .. } => interfaces.first().map(|i| i.link_type),
        }
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn next_classic(
        &mut self,
        big_endian: bool,
        nanos: bool,
        link_type: LinkType,
    ) -> Option<Result<PcapRecord<'a>, PcapError>> {
        let start = self.pos;
        if start >= self.data.len() {
            return None;
        }
        let be = big_endian;
        let (Some(sec), Some(frac), Some(incl), Some(orig)) = (
            u32_at(self.data, start, be),
            u32_at(self.data, start + 4, be),
            u32_at(self.data, start + 8, be),
            u32_at(self.data, start + 12, be),
        ) else {
            return Some(Err(PcapError::TruncatedRecord(start)));
        };
        let body = start + 16;
        let Some(data) = body
            .checked_add(incl as usize)
            .and_then(|end| self.data.get(body..end))
        else {
            return Some(Err(PcapError::TruncatedRecord(start)));
        };
        self.pos = body + data.len();
        let frac_ns = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1_000
        };
        Some(Ok(PcapRecord {
            timestamp: Timestamp::from_nanos(u64::from(sec) * 1_000_000_000 + frac_ns),
            orig_len: orig,
            data,
            link_type,
            interface: 0,
        }))
    }

    fn next_ng(&mut self) -> Option<Result<PcapRecord<'a>, PcapError>> {
        loop {
            let start = self.pos;
            if start >= self.data.len() {
                return None;
            }
            let Format::Ng {
                big_endian,
                interfaces,
                last_ts,
            } = &mut self.format
            else {
                return None;
            };
            let invalid = |reason| {
                Some(Err(PcapError::InvalidBlock {
                    offset: start,
                    reason,
                }))
            };
            let Some(block_type) = u32_at(self.data, start, false) else {
                return Some(Err(PcapError::TruncatedRecord(start)));
            };
            if block_type == PCAPNG_SHB {
                let Some(bom) = u32_at(self.data, start + 8, false) else {
                    return Some(Err(PcapError::TruncatedRecord(start)));
                };
                *big_endian = match bom {
                    PCAPNG_BOM => false,
                    b if b.swap_bytes() == PCAPNG_BOM => true,
                    b if start == 0 => return Some(Err(PcapError::BadMagic(b))),
                    _ => return invalid("bad byte-order magic"),
                };
                interfaces.clear();
            }
            let be = *big_endian;
            let Some(total) = u32_at(self.data, start + 4, be) else {
                return Some(Err(PcapError::TruncatedRecord(start)));
            };
            let total = total as usize;
            if total < 12 || total % 4 != 0 {
                return invalid("bad block length");
            }
            let Some(block) = start
                .checked_add(total)
                .and_then(|end| self.data.get(start..end))
            else {
                return Some(Err(PcapError::TruncatedRecord(start)));
            };
            if u32_at(block, total - 4, be) != Some(total as u32) {
                return invalid("trailing block length differs");
            }
            self.pos = start + total;
            let body = &block[8..total - 4];
            let block_type = if be {
                block_type.swap_bytes()
            } else {
                block_type
            };
            match block_type {
                PCAPNG_SHB if u16_at(body, 4, be) != Some(1) => {
                    return invalid("unsupported section version");
                }
                // Interface Description Block.
                1 => {
                    let (Some(lt), Some(snaplen)) = (u16_at(body, 0, be), u32_at(body, 4, be))
                    else {
                        return invalid("short interface description");
                    };
                    let mut iface = Interface {
                        link_type: LinkType::from_u32(u32::from(lt)),
                        snaplen,
                        resolution: Resolution::Decimal(6),
                        offset_secs: 0,
                    };
                    let mut opts = body.get(8..).unwrap_or(&[]);
                    while let (Some(code), Some(len)) = (u16_at(opts, 0, be), u16_at(opts, 2, be)) {
                        let len = usize::from(len);
                        let Some(value) = opts.get(4..4 + len) else {
                            return invalid("option overruns block");
                        };
                        match (code, value) {
                            (0, _) => break,
                            (9, [r]) => {
                                iface.resolution = if r & 0x80 == 0 {
                                    Resolution::Decimal(*r)
                                } else {
                                    Resolution::Binary(r & 0x7f)
                                };
                            }
                            (14, v) if v.len() == 8 => {
                                let mut a = [0u8; 8];
                                a.copy_from_slice(v);
                                iface.offset_secs = if be {
                                    i64::from_be_bytes(a)
                                } else {
                                    i64::from_le_bytes(a)
                                };
                            }
                            _ => {}
                        }
                        opts = opts.get(4 + len.next_multiple_of(4)..).unwrap_or(&[]);
                    }
                    interfaces.push(iface);
                }
                // Enhanced Packet Block (6) and obsolete Packet Block (2).
                6 | 2 => {
                    let (interface, hi, lo, caplen, orig) = if block_type == 6 {
                        (
                            u32_at(body, 0, be),
                            u32_at(body, 4, be),
                            u32_at(body, 8, be),
                            u32_at(body, 12, be),
                            u32_at(body, 16, be),
                        )
                    } else {
                        (
                            u16_at(body, 0, be).map(u32::from),
                            u32_at(body, 4, be),
                            u32_at(body, 8, be),
                            u32_at(body, 12, be),
                            u32_at(body, 16, be),
                        )
                    };
                    let (Some(interface), Some(hi), Some(lo), Some(caplen), Some(orig)) =
                        (interface, hi, lo, caplen, orig)
                    else {
                        return invalid("short packet block");
                    };
                    let Some(iface) = interfaces.get(interface as usize) else {
                        return Some(Err(PcapError::UnknownInterface {
                            offset: start,
                            interface,
                        }));
                    };
                    let Some(data) = body.get(20..20 + caplen as usize) else {
                        return invalid("captured length overruns block");
                    };
                    let units = u64::from(hi) << 32 | u64::from(lo);
                    let ns = iface.resolution.to_nanos(units);
                    let off = iface.offset_secs.saturating_mul(1_000_000_000);
                    let ns = ns.saturating_add_signed(off);
                    *last_ts = Timestamp::from_nanos(ns);
                    return Some(Ok(PcapRecord {
                        timestamp: *last_ts,
                        orig_len: orig,
                        data,
                        link_type: iface.link_type,
                        interface,
                    }));
                }
                // Simple Packet Block: interface 0, no timestamp (the previous packet's is used).
                3 => {
                    let Some(orig) = u32_at(body, 0, be) else {
                        return invalid("short simple packet block");
                    };
                    let Some(iface) = interfaces.first() else {
                        return Some(Err(PcapError::UnknownInterface {
                            offset: start,
                            interface: 0,
                        }));
                    };
                    let mut caplen = (orig as usize).min(body.len() - 4);
                    if iface.snaplen > 0 {
                        caplen = caplen.min(iface.snaplen as usize);
                    }
                    return Some(Ok(PcapRecord {
                        timestamp: *last_ts,
                        orig_len: orig,
                        data: &body[4..4 + caplen],
                        link_type: iface.link_type,
                        interface: 0,
                    }));
                }
                _ => {}
            }
        }
    }
}

impl<'a> Iterator for PcapReader<'a> {
    type Item = Result<PcapRecord<'a>, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.format {
            Format::Classic {
                big_endian,
                nanos,
                link_type,
            } => self.next_classic(big_endian, nanos, link_type),
            Format::Ng { .. } => self.next_ng(),
        };
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Bytes [`PcapStream`] asks its source for at a time.
const STREAM_CHUNK: usize = 1 << 20;

/// Reads pcap or pcapng records from a [`Read`] (a file, a request body) as they arrive: the memory
/// held is one read buffer (1 MiB, or one record when a record is larger, up to [`MAX_RECORD_LEN`]),
/// whatever the length of the capture. Same formats and errors as [`PcapReader`]; a read error ends
/// the stream with [`PcapError::Read`]. Records borrow the stream, so it is not an `Iterator`: call
/// [`next_record`](Self::next_record) until it gives `None`.
pub struct PcapStream<R> {
    source: R,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Offset in the capture of `buf[0]`.
    base: usize,
    eof: bool,
    format: Format,
    done: bool,
}

impl<R: Read> PcapStream<R> {
    /// Reads and checks the file header. Fails on anything that is not classic pcap or pcapng.
    pub fn new(source: R) -> Result<Self, PcapError> {
        let mut s = PcapStream {
            source,
            buf: vec![0; STREAM_CHUNK],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            format: Format::Classic {
                big_endian: false,
                nanos: false,
                link_type: LinkType::Ethernet,
            },
            done: false,
        };
        s.fill(24)?;
        let header = PcapReader::new(&s.buf[..s.end])?;
        s.start = header.pos;
        s.format = header.format;
        Ok(s)
    }

    /// Link type of a classic file, or of the first pcapng interface described so far.
    pub fn link_type(&self) -> Option<LinkType> {
        match &self.format {
            Format::Classic { link_type, .. } => Some(*link_type),
            Format::Ng { interfaces, .. } => interfaces.first().map(|i| i.link_type),
        }
    }

    /// Byte offset of the next record in the capture.
    pub fn offset(&self) -> usize {
        self.base + self.start
    }

    /// Reads until `need` unread bytes are buffered or the source ends.
    fn fill(&mut self, need: usize) -> Result<(), PcapError> {
        if self.end - self.start >= need || self.eof {
            return Ok(());
        }
        if self.start + need > self.buf.len() {
            // Move the unread bytes to the front, and grow only for a record larger than the buffer.
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start;
            self.end -= self.start;
            self.start = 0;
            if need > self.buf.len() {
                self.buf.resize(need, 0);
            }
        }
        while self.end - self.start < need {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PcapError::Read(e.to_string())),
            }
        }
        Ok(())
    }

    /// Length of the next record, from its header, once `fill` has buffered the header (0 at the end).
    fn next_len(&self) -> usize {
        let b = &self.buf[self.start..self.end];
        match &self.format {
            Format::Classic { big_endian, .. } => {
                u32_at(b, 8, *big_endian).map_or(b.len(), |incl| 16 + incl as usize)
            }
            Format::Ng { big_endian, .. } => {
                // A section header says its own byte order.
                let be = match (u32_at(b, 0, false), u32_at(b, 8, false)) {
                    (Some(PCAPNG_SHB), Some(PCAPNG_BOM)) => false,
                    (Some(PCAPNG_SHB), Some(bom)) if bom.swap_bytes() == PCAPNG_BOM => true,
                    _ => *big_endian,
                };
                u32_at(b, 4, be).map_or(b.len(), |total| total as usize)
            }
        }
    }

    /// Buffers the next record whole (or up to the end of the source) and returns where it ends in
    /// `buf`.
    fn buffer_record(&mut self) -> Result<usize, PcapError> {
        let header = match self.format {
            Format::Classic { .. } => 16,
            Format::Ng { .. } => 12,
        };
        self.fill(header)?;
        let len = self.next_len();
        if len > MAX_RECORD_LEN {
            return Err(PcapError::RecordTooLarge {
                offset: self.offset(),
                len,
            });
        }
        self.fill(len)?;
        // At least the header: a length too small to be valid is then read, and refused,
        // as the whole-file reader refuses it, not taken for a truncated record.
        Ok(self.end.min(self.start + len.max(header)))
    }

    /// Whether the buffered record carries a packet (else it only describes: pcapng section headers,
    /// interfaces, statistics...).
    fn is_packet(&self) -> bool {
        match &self.format {
            Format::Classic { .. } => true,
            Format::Ng { big_endian, .. } => {
                let t = u32_at(&self.buf[self.start..self.end], 0, *big_endian);
                matches!(t, Some(2 | 3 | 6))
            }
        }
    }

    /// A reader of `buf[start..limit]` that takes over the format's state (give it back after).
    fn reader(&mut self, limit: usize) -> PcapReader<'_> {
        let format = std::mem::replace(
            &mut self.format,
            Format::Classic {
                big_endian: false,
                nanos: false,
                link_type: LinkType::Ethernet,
            },
        );
        PcapReader {
            data: &self.buf[..limit],
            pos: self.start,
            format,
            done: false,
        }
    }

    /// The next record, an error (after which the stream ends), or `None` at the end of the capture.
    pub fn next_record(&mut self) -> Option<Result<PcapRecord<'_>, PcapError>> {
        if self.done {
            return None;
        }
        // Blocks that carry no packet are read one at a time, each buffered whole first.
        let limit = loop {
            let limit = match self.buffer_record() {
                Ok(l) => l,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if self.start == self.end {
                self.done = true;
                return None;
            }
            if self.is_packet() {
                break limit;
            }
            let mut reader = self.reader(limit);
            let err = match reader.next() {
                Some(Err(e)) => Some(e),
                _ => None,
            };
            let (pos, format) = (reader.pos, reader.format);
            self.start = pos;
            self.format = format;
            if let Some(e) = err {
                self.done = true;
                return Some(Err(e.shifted(self.base)));
            }
        };
        let base = self.base;
        let format = std::mem::replace(
            &mut self.format,
            Format::Classic {
                big_endian: false,
                nanos: false,
                link_type: LinkType::Ethernet,
            },
        );
        // Not `self.reader()`: the record returned borrows `buf` alone, not the whole stream.
        let mut reader = PcapReader {
            data: &self.buf[..limit],
            pos: self.start,
            format,
            done: false,
        };
        let item = reader.next();
        self.start = reader.pos;
        self.format = reader.format;
        match item {
            Some(Ok(r)) => Some(Ok(r)),
            Some(Err(e)) => {
                self.done = true;
                Some(Err(e.shifted(base)))
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

/// Writes a classic (little-endian) pcap file.
pub struct PcapWriter<W: Write> {
    out: W,
    nanos: bool,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Write a microsecond-resolution file header.
    pub fn new(out: W, link_type: LinkType, snaplen: u32) -> io::Result<Self> {
        Self::with_resolution(out, link_type, snaplen, false)
    }

    /// Write a file header with nanosecond (`nanos`) or microsecond timestamps.
    pub fn with_resolution(
        mut out: W,
        link_type: LinkType,
        snaplen: u32,
        nanos: bool,
    ) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&(if nanos { MAGIC_NS } else { MAGIC_US }).to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&link_type.to_u32().to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            nanos,
            snaplen,
        })
    }

    /// Append a packet; `data` is cut to the snaplen, `orig_len` is the length on the wire.
    pub fn write_packet(&mut self, ts: Timestamp, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        let frac = if self.nanos {
            ts.subsec_nanos()
        } else {
            ts.subsec_nanos() / 1_000
        };
        let secs = u32::try_from(ts.as_secs()).unwrap_or(u32::MAX);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let total = (body.len() + 12) as u32;
        let mut b = block_type.to_le_bytes().to_vec();
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&total.to_le_bytes());
        b
    }

    fn pcapng(resolution: Option<u8>) -> Vec<u8> {
        let mut shb = PCAPNG_BOM.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut f = ng_block(PCAPNG_SHB, &shb);
        let mut idb = vec![1, 0, 0, 0];
        idb.extend_from_slice(&128u32.to_le_bytes());
        if let Some(r) = resolution {
            idb.extend_from_slice(&[9, 0, 1, 0, r, 0, 0, 0, 0, 0, 0, 0]);
        }
        f.extend(ng_block(1, &idb));
        // An unknown block (name resolution) is skipped.
        f.extend(ng_block(4, &[0, 0, 0, 0]));
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&1_500_000u32.to_le_bytes());
        epb.extend_from_slice(&3u32.to_le_bytes());
        epb.extend_from_slice(&60u32.to_le_bytes());
        epb.extend_from_slice(&[1, 2, 3]);
        f.extend(ng_block(6, &epb));
        let mut spb = 5u32.to_le_bytes().to_vec();
        spb.extend_from_slice(&[9, 8, 7, 6, 5]);
        f.extend(ng_block(3, &spb));
        f
    }

    #[test]
    fn pcapng_blocks() {
        let f = pcapng(None);
        let recs: Vec<_> = PcapReader::new(&f).unwrap().collect();
        assert_eq!(recs.len(), 2, "{recs:?}");
        let r = recs[0].clone().unwrap();
        assert_eq!(r.timestamp, Timestamp::from_micros(1_500_000));
        assert_eq!((r.orig_len, r.data), (60, &[1u8, 2, 3][..]));
        assert_eq!(r.link_type, LinkType::Ethernet);
        let s = recs[1].clone().unwrap();
        assert_eq!(s.data, &[9, 8, 7, 6, 5]);
        assert_eq!(s.timestamp, r.timestamp);

        let f = pcapng(Some(9));
        let r = PcapReader::new(&f).unwrap().next().unwrap().unwrap();
        assert_eq!(r.timestamp, Timestamp::from_nanos(1_500_000));
    }

    #[test]
    fn pcapng_errors() {
        let f = pcapng(None);
        let cut = &f[..f.len() - 3];
        let last = PcapReader::new(cut).unwrap().last().unwrap();
        assert!(
            matches!(last, Err(PcapError::TruncatedRecord(_))),
            "{last:?}"
        );
        let mut bad = f.clone();
        bad[8..12].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        let first = PcapReader::new(&bad).unwrap().next().unwrap();
        assert_eq!(first, Err(PcapError::BadMagic(0xdead_beef)));
    }

    #[test]
    fn classic_big_endian_nanos() {
        let mut f = MAGIC_NS.to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&65535u32.to_be_bytes());
        f.extend_from_slice(&101u32.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&42u32.to_be_bytes());
        f.extend_from_slice(&2u32.to_be_bytes());
        f.extend_from_slice(&20u32.to_be_bytes());
        f.extend_from_slice(&[0x45, 0]);
        let mut rd = PcapReader::new(&f).unwrap();
        assert_eq!(rd.link_type(), Some(LinkType::Raw));
        let r = rd.next().unwrap().unwrap();
        assert_eq!(r.timestamp, Timestamp::from_nanos(7_000_000_042));
        assert_eq!((r.orig_len, r.data), (20, &[0x45u8, 0][..]));
        assert!(rd.next().is_none());
    }

    #[test]
    fn bad_magic_message() {
        let err = PcapReader::new(b"GIF89a.......................")
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "not a pcap file: bad magic 0x47494638");
    }
}
