//! Pure export wire formats: no sockets, no clocks, no allocation on the encode path.
//!
//! One module per format. Each has a `Repr` (a plain value) with `parse` / `buffer_len` / `emit`;
//! fixed-size headers also have a zero-copy `Packet<T: AsRef<[u8]>>` view whose field offsets live in a
//! private `mod field`. Contract of the views (as in smoltcp): after `new_checked` (or `check_len`) no
//! accessor panics. Decoders never panic on any input and report the field that was short or invalid.
//!
//! - [`netflow5`]: Cisco NetFlow v5 (24-byte header + up to 30 × 48-byte records).
//! - [`ipfix`]: IPFIX (RFC 7011) messages, template and data sets, two standard flow templates.
//! - [`sflow5`]: sFlow v5 datagrams, flow samples with raw packet headers, interface counter samples.
//! - [`gre`]: GRE (RFC 2784/2890) with key and sequence number.
//! - [`erspan`]: ERSPAN Type II and Type III headers carried in GRE.

pub mod codec;
pub mod erspan;
pub mod gre;
pub mod ipfix;
pub mod netflow5;
pub mod sflow5;

pub use codec::{Reader, Writer};

/// Why a datagram could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ended inside `field`.
    #[error("truncated {field}: need {needed} bytes, {available} left")]
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },
    /// `field` holds a value this decoder does not accept (or an encoder was given one that does not fit).
    #[error("invalid {field}: {value:#x}")]
    Invalid { field: &'static str, value: u64 },
    /// Bytes remained after `field` where none were expected.
    #[error("{count} trailing bytes after {field}")]
    TrailingData { field: &'static str, count: usize },
    /// The caller's output buffer is too small.
    #[error("output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall { needed: usize, available: usize },
    /// A builder has no room left for this item (record limit or size budget reached); flush and retry.
    #[error("no room for {item}: needs {needed} bytes, {available} left")]
    NoRoom {
        item: &'static str,
        needed: usize,
        available: usize,
    },
}

impl Error {
    pub(crate) fn invalid(field: &'static str, value: impl Into<u64>) -> Self {
        Self::Invalid {
            field,
            value: value.into(),
        }
    }
}
