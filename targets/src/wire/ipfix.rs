//! IPFIX (RFC 7011): messages of a 16-byte header and sets — template sets (id 2) and data sets (id =
//! template id >= 256) — with two standard flow templates.
//!
//! ```text
//! message header: version=0x000a | length (whole message) | export time (s) | sequence | domain id
//! set header:     set id | length (header included)
//! template:       template id | field count | field specifiers (E bit + 15-bit IE, length [, PEN])
//! ```
//!
//! # The two templates
//!
//! [`TEMPLATE_ID_IPV4`] (256, 57-byte records) and [`TEMPLATE_ID_IPV6`] (257, 81-byte records) carry the
//! same fields, in this order (IANA IE number, length):
//!
//! | IE | name | len |
//! |---|---|---|
//! | 8 / 27 | sourceIPv4Address / sourceIPv6Address | 4 / 16 |
//! | 12 / 28 | destinationIPv4Address / destinationIPv6Address | 4 / 16 |
//! | 7 | sourceTransportPort | 2 |
//! | 11 | destinationTransportPort | 2 |
//! | 4 | protocolIdentifier | 1 |
//! | 5 | ipClassOfService | 1 |
//! | 6 | tcpControlBits (RFC 7125: 16 bits) | 2 |
//! | 10 | ingressInterface | 4 |
//! | 14 | egressInterface | 4 |
//! | 2 | packetDeltaCount | 8 |
//! | 1 | octetDeltaCount | 8 |
//! | 152 | flowStartMilliseconds | 8 |
//! | 153 | flowEndMilliseconds | 8 |
//! | 136 | flowEndReason | 1 |
//!
//! Counters are deltas since the previous export of the flow (never Skydive's cumulative re-export), and
//! records are unidirectional. The message sequence number is the number of data records sent before this
//! message in the domain (RFC 7011 §3.1): [`MessageBuilder::data_records`] tells the caller how far to
//! advance it. Over UDP the caller resends templates periodically ([`MessageBuilder::push_templates`]).
//!
//! Decoding keeps a [`TemplateCache`] keyed by (observation domain, template id), understands variable
//! length fields and enterprise-specific specifiers, and keeps data sets of unknown templates raw.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;

use super::{Error, Reader, Writer};

/// IPFIX version number.
pub const VERSION: u16 = 0x000a;
/// IANA port for IPFIX over UDP.
pub const DEFAULT_PORT: u16 = 4739;
/// Message header length.
pub const HEADER_LEN: usize = 16;
/// Set header length.
pub const SET_HEADER_LEN: usize = 4;
/// Set id of template sets.
pub const TEMPLATE_SET_ID: u16 = 0x0002;
/// Set id of options template sets.
pub const OPTIONS_TEMPLATE_SET_ID: u16 = 0x0003;
/// Lowest data set id (= lowest template id).
pub const MIN_DATA_SET_ID: u16 = 0x0100;
/// Field length meaning "variable length".
pub const VARIABLE_LENGTH: u16 = 0xffff;
/// Template id of IPv4 flow records.
pub const TEMPLATE_ID_IPV4: u16 = 0x0100;
/// Template id of IPv6 flow records.
pub const TEMPLATE_ID_IPV6: u16 = 0x0101;
/// Encoded length of an IPv4 flow record.
pub const RECORD_LEN_IPV4: usize = 57;
/// Encoded length of an IPv6 flow record.
pub const RECORD_LEN_IPV6: usize = 81;
/// Largest message (the length field is 16 bits).
pub const MAX_MESSAGE_LEN: usize = 0xffff;

const ENTERPRISE_BIT: u16 = 0x8000;

/// IANA information element numbers used here.
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const IP_CLASS_OF_SERVICE: u16 = 5;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const INGRESS_INTERFACE: u16 = 10;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const EGRESS_INTERFACE: u16 = 14;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const FLOW_END_REASON: u16 = 136;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
}

/// flowEndReason values (IANA).
pub mod end_reason {
    pub const IDLE_TIMEOUT: u8 = 0x01;
    pub const ACTIVE_TIMEOUT: u8 = 0x02;
    pub const END_OF_FLOW: u8 = 0x03;
    pub const FORCED_END: u8 = 0x04;
    pub const LACK_OF_RESOURCES: u8 = 0x05;
}

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const VERSION: Field = 0..2;
    pub const LENGTH: Field = 2..4;
    pub const EXPORT_TIME: Field = 4..8;
    pub const SEQUENCE: Field = 8..12;
    pub const DOMAIN_ID: Field = 12..16;
}

/// A read/write view of the 16-byte message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the header is present and that the message is as long as its length field.
    pub fn check_len(&self) -> Result<(), Error> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(Error::Truncated {
                field: "ipfix message header",
                needed: HEADER_LEN,
                available,
            });
        }
        let len = usize::from(self.length());
        if len < HEADER_LEN {
            return Err(Error::invalid("ipfix message length", self.length()));
        }
        if available < len {
            return Err(Error::Truncated {
                field: "ipfix message",
                needed: len,
                available,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn be16(&self, r: field::Field) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn be32(&self, r: field::Field) -> u32 {
        let b = &self.buffer.as_ref()[r];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn version(&self) -> u16 {
        self.be16(field::VERSION)
    }

    pub fn length(&self) -> u16 {
        self.be16(field::LENGTH)
    }

    pub fn export_time(&self) -> u32 {
        self.be32(field::EXPORT_TIME)
    }

    pub fn sequence(&self) -> u32 {
        self.be32(field::SEQUENCE)
    }

    pub fn observation_domain_id(&self) -> u32 {
        self.be32(field::DOMAIN_ID)
    }

    /// The sets: everything after the header up to `length`.
    pub fn sets(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.length())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::VERSION].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_length(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_export_time(&mut self, v: u32) {
        self.buffer.as_mut()[field::EXPORT_TIME].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_sequence(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQUENCE].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_observation_domain_id(&mut self, v: u32) {
        self.buffer.as_mut()[field::DOMAIN_ID].copy_from_slice(&v.to_be_bytes());
    }
}

/// The message header fields a caller chooses; the length follows from the sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// Seconds since the Unix epoch.
    pub export_time: u32,
    /// Data records sent before this message in this domain, modulo 2^32.
    pub sequence: u32,
    pub observation_domain_id: u32,
}

impl MessageHeader {
    /// Parses a checked header; refuses versions other than 10.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        if packet.version() != VERSION {
            return Err(Error::invalid("ipfix version", packet.version()));
        }
        Ok(Self {
            export_time: packet.export_time(),
            sequence: packet.sequence(),
            observation_domain_id: packet.observation_domain_id(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header of a message of `length` bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, length: u16) {
        packet.set_version(VERSION);
        packet.set_length(length);
        packet.set_export_time(self.export_time);
        packet.set_sequence(self.sequence);
        packet.set_observation_domain_id(self.observation_domain_id);
    }
}

/// A field specifier: information element id, length ([`VARIABLE_LENGTH`] for variable) and, for
/// enterprise-specific elements, the private enterprise number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpecifier {
    /// 15-bit information element id.
    pub id: u16,
    pub length: u16,
    pub enterprise: Option<u32>,
}

impl FieldSpecifier {
    /// An IANA (non-enterprise) element.
    pub const fn iana(id: u16, length: u16) -> Self {
        Self {
            id,
            length,
            enterprise: None,
        }
    }

    pub const fn buffer_len(&self) -> usize {
        if self.enterprise.is_some() {
            8
        } else {
            4
        }
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let raw = r.u16("ipfix field specifier id")?;
        let length = r.u16("ipfix field specifier length")?;
        let enterprise = if raw & ENTERPRISE_BIT != 0 {
            Some(r.u32("ipfix field specifier enterprise number")?)
        } else {
            None
        };
        Ok(Self {
            id: raw & !ENTERPRISE_BIT,
            length,
            enterprise,
        })
    }

    fn emit(&self, w: &mut Writer<'_>) {
        match self.enterprise {
            Some(pen) => {
                w.u16(self.id | ENTERPRISE_BIT);
                w.u16(self.length);
                w.u32(pen);
            }
            None => {
                w.u16(self.id & !ENTERPRISE_BIT);
                w.u16(self.length);
            }
        }
    }

    /// Smallest encoding of this field: its fixed length, or 1 for a variable-length one.
    fn min_len(&self) -> usize {
        if self.length == VARIABLE_LENGTH {
            1
        } else {
            usize::from(self.length)
        }
    }
}

/// Fields of the IPv4 template, in record order.
pub static IPV4_FIELDS: [FieldSpecifier; 14] = [
    FieldSpecifier::iana(ie::SOURCE_IPV4_ADDRESS, 4),
    FieldSpecifier::iana(ie::DESTINATION_IPV4_ADDRESS, 4),
    FieldSpecifier::iana(ie::SOURCE_TRANSPORT_PORT, 2),
    FieldSpecifier::iana(ie::DESTINATION_TRANSPORT_PORT, 2),
    FieldSpecifier::iana(ie::PROTOCOL_IDENTIFIER, 1),
    FieldSpecifier::iana(ie::IP_CLASS_OF_SERVICE, 1),
    FieldSpecifier::iana(ie::TCP_CONTROL_BITS, 2),
    FieldSpecifier::iana(ie::INGRESS_INTERFACE, 4),
    FieldSpecifier::iana(ie::EGRESS_INTERFACE, 4),
    FieldSpecifier::iana(ie::PACKET_DELTA_COUNT, 8),
    FieldSpecifier::iana(ie::OCTET_DELTA_COUNT, 8),
    FieldSpecifier::iana(ie::FLOW_START_MILLISECONDS, 8),
    FieldSpecifier::iana(ie::FLOW_END_MILLISECONDS, 8),
    FieldSpecifier::iana(ie::FLOW_END_REASON, 1),
];

/// Fields of the IPv6 template, in record order.
pub static IPV6_FIELDS: [FieldSpecifier; 14] = [
    FieldSpecifier::iana(ie::SOURCE_IPV6_ADDRESS, 16),
    FieldSpecifier::iana(ie::DESTINATION_IPV6_ADDRESS, 16),
    FieldSpecifier::iana(ie::SOURCE_TRANSPORT_PORT, 2),
    FieldSpecifier::iana(ie::DESTINATION_TRANSPORT_PORT, 2),
    FieldSpecifier::iana(ie::PROTOCOL_IDENTIFIER, 1),
    FieldSpecifier::iana(ie::IP_CLASS_OF_SERVICE, 1),
    FieldSpecifier::iana(ie::TCP_CONTROL_BITS, 2),
    FieldSpecifier::iana(ie::INGRESS_INTERFACE, 4),
    FieldSpecifier::iana(ie::EGRESS_INTERFACE, 4),
    FieldSpecifier::iana(ie::PACKET_DELTA_COUNT, 8),
    FieldSpecifier::iana(ie::OCTET_DELTA_COUNT, 8),
    FieldSpecifier::iana(ie::FLOW_START_MILLISECONDS, 8),
    FieldSpecifier::iana(ie::FLOW_END_MILLISECONDS, 8),
    FieldSpecifier::iana(ie::FLOW_END_REASON, 1),
];

/// A template record. A template with no fields is a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    pub id: u16,
    pub fields: Vec<FieldSpecifier>,
}

impl Template {
    /// The standard IPv4 flow template.
    pub fn ipv4() -> Self {
        Self {
            id: TEMPLATE_ID_IPV4,
            fields: IPV4_FIELDS.to_vec(),
        }
    }

    /// The standard IPv6 flow template.
    pub fn ipv6() -> Self {
        Self {
            id: TEMPLATE_ID_IPV6,
            fields: IPV6_FIELDS.to_vec(),
        }
    }

    pub fn buffer_len(&self) -> usize {
        template_len(&self.fields)
    }
}

fn template_len(fields: &[FieldSpecifier]) -> usize {
    4 + fields.iter().map(FieldSpecifier::buffer_len).sum::<usize>()
}

/// Length of the template set [`MessageBuilder::push_templates`] writes.
pub fn standard_template_set_len() -> usize {
    SET_HEADER_LEN + template_len(&IPV4_FIELDS) + template_len(&IPV6_FIELDS)
}

/// Templates seen so far, per (observation domain id, template id).
#[derive(Debug, Clone, Default)]
pub struct TemplateCache {
    templates: HashMap<(u32, u16), Vec<FieldSpecifier>>,
}

impl TemplateCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns (or, with no fields, withdraws) a template.
    pub fn insert(&mut self, domain: u32, template: Template) {
        if template.fields.is_empty() {
            self.templates.remove(&(domain, template.id));
        } else {
            self.templates
                .insert((domain, template.id), template.fields);
        }
    }

    pub fn get(&self, domain: u32, id: u16) -> Option<&[FieldSpecifier]> {
        self.templates.get(&(domain, id)).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

/// A decoded data record: each field with its raw value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataRecord<'a> {
    pub fields: Vec<(FieldSpecifier, &'a [u8])>,
}

impl<'a> DataRecord<'a> {
    /// The value of IANA element `id`, if present.
    pub fn value(&self, id: u16) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|(f, _)| f.id == id && f.enterprise.is_none())
            .map(|(_, v)| *v)
    }
}

/// One set of a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Set<'a> {
    Templates(Vec<Template>),
    Data {
        template_id: u16,
        records: Vec<DataRecord<'a>>,
    },
    /// Options template sets, data sets whose template is unknown, and reserved set ids: kept raw.
    Other {
        set_id: u16,
        data: &'a [u8],
    },
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message<'a> {
    pub header: MessageHeader,
    pub sets: Vec<Set<'a>>,
}

impl<'a> Message<'a> {
    /// Decodes one message, learning its templates into `cache` first so that data sets later in the same
    /// message (and in later messages) decode. Bytes after `length` are refused.
    pub fn parse(bytes: &'a [u8], cache: &mut TemplateCache) -> Result<Self, Error> {
        let packet = Packet::new_checked(bytes)?;
        let header = MessageHeader::parse(&packet)?;
        let len = usize::from(packet.length());
        if bytes.len() > len {
            return Err(Error::TrailingData {
                field: "ipfix message",
                count: bytes.len() - len,
            });
        }
        let domain = header.observation_domain_id;
        let mut r = Reader::new(&bytes[HEADER_LEN..len]);
        let mut sets = Vec::new();
        while r.any_left() {
            let set_id = r.u16("ipfix set id")?;
            let set_len = r.u16("ipfix set length")?;
            let body_len = usize::from(set_len)
                .checked_sub(SET_HEADER_LEN)
                .ok_or(Error::invalid("ipfix set length", set_len))?;
            let mut body = r.sub(body_len, "ipfix set")?;
            let set = match set_id {
                TEMPLATE_SET_ID => {
                    let templates = parse_templates(&mut body)?;
                    for t in &templates {
                        cache.insert(domain, t.clone());
                    }
                    Set::Templates(templates)
                }
                id if id >= MIN_DATA_SET_ID => match cache.get(domain, id) {
                    Some(fields) => Set::Data {
                        template_id: id,
                        records: parse_data(&mut body, fields)?,
                    },
                    None => Set::Other {
                        set_id: id,
                        data: body.rest(),
                    },
                },
                id => Set::Other {
                    set_id: id,
                    data: body.rest(),
                },
            };
            sets.push(set);
        }
        Ok(Self { header, sets })
    }

    /// Every data record of every data set, in order.
    pub fn data_records(&self) -> impl Iterator<Item = (u16, &DataRecord<'a>)> {
        self.sets.iter().flat_map(|s| match s {
            Set::Data {
                template_id,
                records,
            } => records
                .iter()
                .map(|r| (*template_id, r))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
    }
}

fn parse_templates(body: &mut Reader<'_>) -> Result<Vec<Template>, Error> {
    let mut templates = Vec::new();
    // Fewer than 4 bytes left is padding (RFC 7011 §3.3.1).
    while body.left() >= 4 {
        let id = body.u16("ipfix template id")?;
        if id < MIN_DATA_SET_ID {
            return Err(Error::invalid("ipfix template id", id));
        }
        let count = body.u16("ipfix template field count")?;
        let mut fields = Vec::with_capacity(usize::from(count).min(body.left() / 4));
        for _ in 0..count {
            fields.push(FieldSpecifier::parse(body)?);
        }
        templates.push(Template { id, fields });
    }
    Ok(templates)
}

fn parse_data<'a>(
    body: &mut Reader<'a>,
    fields: &[FieldSpecifier],
) -> Result<Vec<DataRecord<'a>>, Error> {
    let min_len: usize = fields.iter().map(FieldSpecifier::min_len).sum();
    let mut records = Vec::new();
    // A template whose records take no bytes cannot be framed; anything shorter than a record is padding.
    if min_len == 0 {
        return Ok(records);
    }
    while body.left() >= min_len {
        let mut values = Vec::with_capacity(fields.len());
        for f in fields {
            let len = if f.length == VARIABLE_LENGTH {
                match body.u8("ipfix variable field length")? {
                    0xff => usize::from(body.u16("ipfix variable field length")?),
                    n => usize::from(n),
                }
            } else {
                usize::from(f.length)
            };
            values.push((*f, body.take(len, "ipfix data record field")?));
        }
        records.push(DataRecord { fields: values });
    }
    Ok(records)
}

/// A unidirectional flow record in one of the two standard templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowRecord {
    /// Source address; its family picks the template (both addresses must share it).
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub tos: u8,
    /// TCP flags OR-ed over the packets.
    pub tcp_flags: u16,
    pub ingress: u32,
    pub egress: u32,
    /// Packets since the previous export of this flow.
    pub packets: u64,
    /// Layer-3 octets since the previous export.
    pub octets: u64,
    /// Unix time of the first packet, ms.
    pub start_ms: u64,
    /// Unix time of the last packet, ms.
    pub end_ms: u64,
    /// See [`end_reason`].
    pub end_reason: u8,
}

impl FlowRecord {
    /// The template this record is encoded with.
    pub const fn template_id(&self) -> u16 {
        match self.src {
            IpAddr::V4(_) => TEMPLATE_ID_IPV4,
            IpAddr::V6(_) => TEMPLATE_ID_IPV6,
        }
    }

    pub const fn buffer_len(&self) -> usize {
        match self.src {
            IpAddr::V4(_) => RECORD_LEN_IPV4,
            IpAddr::V6(_) => RECORD_LEN_IPV6,
        }
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                w.put(&s.octets());
                w.put(&d.octets());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                w.put(&s.octets());
                w.put(&d.octets());
            }
            _ => return Err(Error::invalid("ipfix flow record address family", 0u8)),
        }
        w.u16(self.src_port);
        w.u16(self.dst_port);
        w.u8(self.protocol);
        w.u8(self.tos);
        w.u16(self.tcp_flags);
        w.u32(self.ingress);
        w.u32(self.egress);
        w.u64(self.packets);
        w.u64(self.octets);
        w.u64(self.start_ms);
        w.u64(self.end_ms);
        w.u8(self.end_reason);
        Ok(())
    }

    /// Interprets a data record by information element, whatever the template's field order.
    /// Integers may use reduced-size encoding (RFC 7011 §6.2); missing optional fields read as 0.
    pub fn from_data_record(record: &DataRecord<'_>) -> Result<Self, Error> {
        let (src, dst) = match (
            record.value(ie::SOURCE_IPV4_ADDRESS),
            record.value(ie::DESTINATION_IPV4_ADDRESS),
            record.value(ie::SOURCE_IPV6_ADDRESS),
            record.value(ie::DESTINATION_IPV6_ADDRESS),
        ) {
            (Some(s), Some(d), _, _) => (
                ip_v4(s, "sourceIPv4Address")?,
                ip_v4(d, "destinationIPv4Address")?,
            ),
            (_, _, Some(s), Some(d)) => (
                ip_v6(s, "sourceIPv6Address")?,
                ip_v6(d, "destinationIPv6Address")?,
            ),
            _ => {
                return Err(Error::Truncated {
                    field: "ipfix flow record addresses",
                    needed: 1,
                    available: 0,
                })
            }
        };
        Ok(Self {
            src,
            dst,
            src_port: narrow(record, ie::SOURCE_TRANSPORT_PORT, "sourceTransportPort")?,
            dst_port: narrow(
                record,
                ie::DESTINATION_TRANSPORT_PORT,
                "destinationTransportPort",
            )?,
            protocol: narrow(record, ie::PROTOCOL_IDENTIFIER, "protocolIdentifier")?,
            tos: narrow(record, ie::IP_CLASS_OF_SERVICE, "ipClassOfService")?,
            tcp_flags: narrow(record, ie::TCP_CONTROL_BITS, "tcpControlBits")?,
            ingress: narrow(record, ie::INGRESS_INTERFACE, "ingressInterface")?,
            egress: narrow(record, ie::EGRESS_INTERFACE, "egressInterface")?,
            packets: uint(record, ie::PACKET_DELTA_COUNT, "packetDeltaCount")?,
            octets: uint(record, ie::OCTET_DELTA_COUNT, "octetDeltaCount")?,
            start_ms: uint(record, ie::FLOW_START_MILLISECONDS, "flowStartMilliseconds")?,
            end_ms: uint(record, ie::FLOW_END_MILLISECONDS, "flowEndMilliseconds")?,
            end_reason: narrow(record, ie::FLOW_END_REASON, "flowEndReason")?,
        })
    }
}

/// An unsigned integer field in any reduced-size encoding (1..=8 bytes); 0 when absent.
fn uint(record: &DataRecord<'_>, id: u16, name: &'static str) -> Result<u64, Error> {
    match record.value(id) {
        None => Ok(0),
        Some(v) if v.len() > 8 => Err(Error::invalid(name, v.len() as u64)),
        Some(v) => Ok(v.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b))),
    }
}

/// Like [`uint`], refusing (not truncating) values wider than `T`.
fn narrow<T: TryFrom<u64>>(
    record: &DataRecord<'_>,
    id: u16,
    name: &'static str,
) -> Result<T, Error> {
    let v = uint(record, id, name)?;
    T::try_from(v).map_err(|_| Error::invalid(name, v))
}

fn ip_v4(v: &[u8], field: &'static str) -> Result<IpAddr, Error> {
    let octets: [u8; 4] = v
        .try_into()
        .map_err(|_| Error::invalid(field, v.len() as u64))?;
    Ok(IpAddr::V4(Ipv4Addr::from(octets)))
}

fn ip_v6(v: &[u8], field: &'static str) -> Result<IpAddr, Error> {
    let octets: [u8; 16] = v
        .try_into()
        .map_err(|_| Error::invalid(field, v.len() as u64))?;
    Ok(IpAddr::V6(Ipv6Addr::from(octets)))
}

/// Builds one message in a caller-provided buffer without allocating: optionally the template set, then
/// flow records, grouped into one data set per run of records of the same template.
///
/// The message stays within `min(budget, buf.len(), 65535)` bytes; a push that does not fit fails with
/// [`Error::NoRoom`] and writes nothing.
#[derive(Debug)]
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    header: MessageHeader,
    budget: usize,
    len: usize,
    /// Start offset and id of the data set being filled.
    open_set: Option<(usize, u16)>,
    data_records: u32,
}

impl<'b> MessageBuilder<'b> {
    pub fn new(buf: &'b mut [u8], header: MessageHeader, budget: usize) -> Result<Self, Error> {
        let budget = budget.min(buf.len()).min(MAX_MESSAGE_LEN);
        if budget < HEADER_LEN {
            return Err(Error::BufferTooSmall {
                needed: HEADER_LEN,
                available: budget,
            });
        }
        Ok(Self {
            buf,
            header,
            budget,
            len: HEADER_LEN,
            open_set: None,
            data_records: 0,
        })
    }

    fn close_set(&mut self) {
        if let Some((start, _)) = self.open_set.take() {
            let set_len = (self.len - start) as u16;
            self.buf[start + 2..start + 4].copy_from_slice(&set_len.to_be_bytes());
        }
    }

    fn room(&self, item: &'static str, needed: usize) -> Result<(), Error> {
        let available = self.budget - self.len;
        if needed > available {
            return Err(Error::NoRoom {
                item,
                needed,
                available,
            });
        }
        Ok(())
    }

    /// Appends a template set announcing both standard templates.
    pub fn push_templates(&mut self) -> Result<(), Error> {
        self.push_template_set(&[
            (TEMPLATE_ID_IPV4, &IPV4_FIELDS[..]),
            (TEMPLATE_ID_IPV6, &IPV6_FIELDS[..]),
        ])
    }

    /// Appends a template set with the given templates (ids >= 256).
    pub fn push_template_set(
        &mut self,
        templates: &[(u16, &[FieldSpecifier])],
    ) -> Result<(), Error> {
        let needed = SET_HEADER_LEN
            + templates
                .iter()
                .map(|(_, f)| template_len(f))
                .sum::<usize>();
        self.room("ipfix template set", needed)?;
        for (id, fields) in templates {
            if *id < MIN_DATA_SET_ID {
                return Err(Error::invalid("ipfix template id", *id));
            }
            if fields.len() > usize::from(u16::MAX) {
                return Err(Error::invalid(
                    "ipfix template field count",
                    fields.len() as u64,
                ));
            }
        }
        self.close_set();
        let mut w = Writer::new(&mut self.buf[self.len..self.len + needed]);
        w.u16(TEMPLATE_SET_ID);
        w.u16(needed as u16);
        for (id, fields) in templates {
            w.u16(*id);
            w.u16(fields.len() as u16);
            for f in *fields {
                f.emit(&mut w);
            }
        }
        self.len += needed;
        Ok(())
    }

    /// Appends a flow record to the open data set of its template, opening one if needed.
    pub fn push_record(&mut self, record: &FlowRecord) -> Result<(), Error> {
        let template = record.template_id();
        let reuse = matches!(self.open_set, Some((_, id)) if id == template);
        let needed = record.buffer_len() + if reuse { 0 } else { SET_HEADER_LEN };
        self.room("ipfix data record", needed)?;
        let start = self.len;
        let mut w = Writer::new(&mut self.buf[start..start + needed]);
        if !reuse {
            w.u16(template);
            w.u16(0); // set length, written when the set closes
        }
        record.emit(&mut w)?;
        if !reuse {
            self.close_set();
            self.open_set = Some((start, template));
        }
        self.len += needed;
        self.data_records += 1;
        Ok(())
    }

    /// Data records in this message: advance the stream's sequence number by this much after sending.
    pub fn data_records(&self) -> u32 {
        self.data_records
    }

    /// Encoded length so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing but the header was written.
    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Bytes left in the budget.
    pub fn remaining(&self) -> usize {
        self.budget - self.len
    }

    /// Closes the open set, writes the header (with the final length) and returns the message bytes.
    pub fn finish(&mut self) -> &[u8] {
        self.close_set();
        let len = self.len;
        self.header.emit(
            &mut Packet::new_unchecked(&mut self.buf[..HEADER_LEN]),
            len as u16,
        );
        &self.buf[..len]
    }

    /// Starts the next message in the same buffer.
    pub fn reset(&mut self, header: MessageHeader) {
        self.header = header;
        self.len = HEADER_LEN;
        self.open_set = None;
        self.data_records = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4_record() -> FlowRecord {
        FlowRecord {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 40000,
            dst_port: 443,
            protocol: 6,
            tos: 0x10,
            tcp_flags: 0x1b,
            ingress: 3,
            egress: 4,
            packets: 10,
            octets: 1500,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_001_234,
            end_reason: end_reason::END_OF_FLOW,
        }
    }

    fn v6_record() -> FlowRecord {
        FlowRecord {
            src: IpAddr::V6("2001:db8::1".parse().unwrap()),
            dst: IpAddr::V6("2001:db8::2".parse().unwrap()),
            protocol: 17,
            ..v4_record()
        }
    }

    // Header (sequence 7, domain 9, export time 0x65000000) + one data set (id 256) with v4_record().
    fn data_message() -> Vec<u8> {
        let mut m = vec![
            0x00, 0x0a, 0x00, 0x4d, // version 10, length 77
            0x65, 0x00, 0x00, 0x00, // export time
            0x00, 0x00, 0x00, 0x07, // sequence
            0x00, 0x00, 0x00, 0x09, // domain
            0x01, 0x00, 0x00, 0x3d, // set 256, length 61
            0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, // addresses
            0x9c, 0x40, 0x01, 0xbb, // ports
            0x06, 0x10, 0x00, 0x1b, // proto, tos, flags
            0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, // ingress, egress
        ];
        m.extend_from_slice(&10u64.to_be_bytes());
        m.extend_from_slice(&1500u64.to_be_bytes());
        m.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        m.extend_from_slice(&1_700_000_001_234u64.to_be_bytes());
        m.push(3);
        m
    }

    fn header() -> MessageHeader {
        MessageHeader {
            export_time: 0x6500_0000,
            sequence: 7,
            observation_domain_id: 9,
        }
    }

    fn cache_with_templates() -> TemplateCache {
        let mut cache = TemplateCache::new();
        cache.insert(9, Template::ipv4());
        cache.insert(9, Template::ipv6());
        cache
    }

    #[test]
    fn test_deconstruct() {
        let m = data_message();
        let p = Packet::new_checked(&m[..]).unwrap();
        assert_eq!(p.version(), 10);
        assert_eq!(p.length(), 77);
        assert_eq!(p.export_time(), 0x6500_0000);
        assert_eq!(p.sequence(), 7);
        assert_eq!(p.observation_domain_id(), 9);
        assert_eq!(p.sets().len(), 61);
    }

    #[test]
    fn test_construct() {
        let mut m = data_message();
        let expected = m.clone();
        m[..HEADER_LEN].fill(0);
        let mut p = Packet::new_unchecked(&mut m[..]);
        p.set_version(10);
        p.set_length(77);
        p.set_export_time(0x6500_0000);
        p.set_sequence(7);
        p.set_observation_domain_id(9);
        assert_eq!(m, expected);
    }

    #[test]
    fn test_parse() {
        let m = data_message();
        let mut cache = cache_with_templates();
        let msg = Message::parse(&m, &mut cache).unwrap();
        assert_eq!(msg.header, header());
        let records: Vec<_> = msg.data_records().collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].0, TEMPLATE_ID_IPV4);
        assert_eq!(FlowRecord::from_data_record(records[0].1), Ok(v4_record()));
        // Without the template the set is kept raw.
        let msg = Message::parse(&m, &mut TemplateCache::new()).unwrap();
        assert!(matches!(msg.sets[0], Set::Other { set_id: 256, .. }));
    }

    #[test]
    fn test_emit() {
        let mut buf = [0u8; 1500];
        let mut b = MessageBuilder::new(&mut buf, header(), 1500).unwrap();
        b.push_record(&v4_record()).unwrap();
        assert_eq!(b.data_records(), 1);
        assert_eq!(b.finish(), &data_message()[..]);
    }

    #[test]
    fn templates_then_mixed_records() {
        let mut buf = [0u8; 1500];
        let mut b = MessageBuilder::new(&mut buf, header(), 1500).unwrap();
        b.push_templates().unwrap();
        for r in [v4_record(), v4_record(), v6_record(), v4_record()] {
            b.push_record(&r).unwrap();
        }
        assert_eq!(b.data_records(), 4);
        let out = b.finish().to_vec();
        assert_eq!(
            out.len(),
            HEADER_LEN + standard_template_set_len() + 3 * SET_HEADER_LEN + 3 * 57 + 81
        );
        let mut cache = TemplateCache::new();
        let msg = Message::parse(&out, &mut cache).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(
            msg.sets[0],
            Set::Templates(vec![Template::ipv4(), Template::ipv6()])
        );
        let flows: Vec<_> = msg
            .data_records()
            .map(|(_, r)| FlowRecord::from_data_record(r).unwrap())
            .collect();
        assert_eq!(
            flows,
            vec![v4_record(), v4_record(), v6_record(), v4_record()]
        );
        assert_eq!(msg.sets.len(), 4);
    }

    #[test]
    fn builder_budget_and_mixed_family() {
        let mut buf = [0u8; 1500];
        let mut b = MessageBuilder::new(&mut buf, header(), HEADER_LEN + 4 + 57 * 2).unwrap();
        b.push_record(&v4_record()).unwrap();
        b.push_record(&v4_record()).unwrap();
        assert!(matches!(
            b.push_record(&v4_record()),
            Err(Error::NoRoom { .. })
        ));
        assert_eq!(b.remaining(), 0);
        let mut bad = v4_record();
        bad.dst = v6_record().dst;
        let mut buf = [0u8; 200];
        let mut b = MessageBuilder::new(&mut buf, header(), 200).unwrap();
        assert!(b.push_record(&bad).is_err());
        assert!(b.is_empty());
    }

    #[test]
    fn variable_length_and_enterprise_fields() {
        let fields = [
            FieldSpecifier::iana(ie::SOURCE_IPV4_ADDRESS, 4),
            FieldSpecifier::iana(ie::DESTINATION_IPV4_ADDRESS, 4),
            FieldSpecifier {
                id: 1,
                length: VARIABLE_LENGTH,
                enterprise: Some(29305),
            },
            FieldSpecifier::iana(ie::PACKET_DELTA_COUNT, 4), // reduced-size encoding
        ];
        let mut buf = [0u8; 300];
        let mut b = MessageBuilder::new(&mut buf, header(), 300).unwrap();
        b.push_template_set(&[(300, &fields)]).unwrap();
        let mut msg = b.finish().to_vec();
        let mut set = vec![0x01, 0x2c, 0x00, 0x00];
        set.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2, 3, b'a', b'b', b'c', 0, 0, 0, 5]);
        set.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2, 0xff, 0x00, 0x01, b'z', 0, 0, 0, 6]);
        set.extend_from_slice(&[0, 0]); // padding
        let set_len = set.len() as u16;
        set[2..4].copy_from_slice(&set_len.to_be_bytes());
        msg.extend_from_slice(&set);
        let total = msg.len() as u16;
        msg[2..4].copy_from_slice(&total.to_be_bytes());
        let mut cache = TemplateCache::new();
        let parsed = Message::parse(&msg, &mut cache).unwrap();
        let recs: Vec<_> = parsed.data_records().collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].1.fields[2].1, b"abc");
        assert_eq!(recs[1].1.fields[2].1, b"z");
        let flow = FlowRecord::from_data_record(recs[1].1).unwrap();
        assert_eq!(flow.packets, 6);
        assert_eq!(flow.src, IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)));
    }

    #[test]
    fn wide_values_are_refused_not_truncated() {
        let port = FieldSpecifier::iana(ie::SOURCE_TRANSPORT_PORT, 4);
        let addr = [1u8, 1, 1, 1];
        let too_wide = 70_000u32.to_be_bytes();
        let record = DataRecord {
            fields: vec![
                (FieldSpecifier::iana(ie::SOURCE_IPV4_ADDRESS, 4), &addr[..]),
                (
                    FieldSpecifier::iana(ie::DESTINATION_IPV4_ADDRESS, 4),
                    &addr[..],
                ),
                (port, &too_wide[..]),
            ],
        };
        assert_eq!(
            FlowRecord::from_data_record(&record),
            Err(Error::invalid("sourceTransportPort", 70_000u32))
        );
    }

    #[test]
    fn parse_rejects() {
        let m = data_message();
        let mut cache = cache_with_templates();
        let mut bad = m.clone();
        bad[1] = 9;
        assert_eq!(
            Message::parse(&bad, &mut cache),
            Err(Error::invalid("ipfix version", 9u16))
        );
        assert!(matches!(
            Message::parse(&m[..70], &mut cache),
            Err(Error::Truncated {
                field: "ipfix message",
                ..
            })
        ));
        let mut short_set = m.clone();
        short_set[18..20].copy_from_slice(&[0, 2]);
        assert!(matches!(
            Message::parse(&short_set, &mut cache),
            Err(Error::Invalid {
                field: "ipfix set length",
                ..
            })
        ));
        let mut long = m.clone();
        long.push(0);
        assert!(matches!(
            Message::parse(&long, &mut cache),
            Err(Error::TrailingData { .. })
        ));
    }

    prop_compose! {
        fn arb_record()(v6: bool, a: [u8; 16], b: [u8; 16], p: [u16; 3], c: [u8; 3], i: [u32; 2],
                        n: [u64; 4]) -> FlowRecord {
            let (src, dst) = if v6 {
                (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))
            } else {
                (IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                 IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            };
            FlowRecord { src, dst, src_port: p[0], dst_port: p[1], protocol: c[0], tos: c[1],
                tcp_flags: p[2], ingress: i[0], egress: i[1], packets: n[0], octets: n[1],
                start_ms: n[2], end_ms: n[3], end_reason: c[2] }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut cache = cache_with_templates();
            let _ = Message::parse(&bytes, &mut cache);
            // And with the header made plausible, so the set parser sees the input.
            if bytes.len() >= HEADER_LEN {
                let mut b = bytes.clone();
                b[0..2].copy_from_slice(&VERSION.to_be_bytes());
                let len = b.len() as u16;
                b[2..4].copy_from_slice(&len.to_be_bytes());
                b[12..16].copy_from_slice(&9u32.to_be_bytes());
                if let Ok(m) = Message::parse(&b, &mut cache) {
                    for (_, r) in m.data_records() {
                        let _ = FlowRecord::from_data_record(r);
                    }
                }
            }
        }

        #[test]
        fn round_trip(records in proptest::collection::vec(arb_record(), 0..20), h: [u32; 3]) {
            let header = MessageHeader { export_time: h[0], sequence: h[1], observation_domain_id: h[2] };
            let mut buf = vec![0u8; 4096];
            let mut b = MessageBuilder::new(&mut buf, header, 4096).unwrap();
            b.push_templates().unwrap();
            for r in &records {
                b.push_record(r).unwrap();
            }
            let out = b.finish().to_vec();
            let mut cache = TemplateCache::new();
            let msg = Message::parse(&out, &mut cache).unwrap();
            prop_assert_eq!(msg.header, header);
            let decoded: Vec<_> = msg.data_records()
                .map(|(_, r)| FlowRecord::from_data_record(r).unwrap()).collect();
            prop_assert_eq!(decoded, records);
        }
    }
}
