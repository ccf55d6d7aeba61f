//! Byte cursors shared by every wire module.
//!
//! [`Reader`] is a bounds-checked cursor in the style of rustls' `msgs/codec.rs`: every read names the
//! field it was reading, so a short or malformed datagram yields an [`Error`] that says which field was
//! missing instead of a panic. [`Writer`] is its emitting twin; encoders check the total length once up
//! front (`buffer_len`) and then write through it.

use super::Error;

/// A forward-only cursor over received bytes. No method panics, whatever the input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    offs: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, offs: 0 }
    }

    /// Takes the next `len` bytes, or fails naming `field`.
    pub fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], Error> {
        let available = self.left();
        if len > available {
            return Err(Error::Truncated {
                field,
                needed: len,
                available,
            });
        }
        let start = self.offs;
        self.offs += len;
        Ok(&self.buf[start..self.offs])
    }

    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Splits off the next `len` bytes as their own reader (for length-prefixed parts).
    pub fn sub(&mut self, len: usize, field: &'static str) -> Result<Reader<'a>, Error> {
        self.take(len, field).map(Reader::new)
    }

    /// Everything not yet read; the cursor moves to the end.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.offs..];
        self.offs = self.buf.len();
        rest
    }

    /// Bytes not yet read.
    pub fn left(&self) -> usize {
        self.buf.len() - self.offs
    }

    /// Whether any byte is left.
    pub fn any_left(&self) -> bool {
        self.offs < self.buf.len()
    }

    /// Bytes read so far.
    pub fn used(&self) -> usize {
        self.offs
    }

    /// Fails naming `field` when bytes are left over.
    pub fn expect_empty(&self, field: &'static str) -> Result<(), Error> {
        match self.left() {
            0 => Ok(()),
            count => Err(Error::TrailingData { field, count }),
        }
    }
}

/// A forward cursor that writes into a caller-provided buffer.
///
/// Contract: the caller has checked that the buffer holds everything it will write (every encoder compares
/// against its `buffer_len` first and returns [`Error::BufferTooSmall`] otherwise). Writing past the end is
/// a bug in the encoder and panics.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    offs: usize,
}

impl<'a> Writer<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, offs: 0 }
    }

    /// Checks that `buf` holds `needed` bytes, then starts writing at its beginning.
    pub fn with_room(buf: &'a mut [u8], needed: usize) -> Result<Self, Error> {
        if buf.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                available: buf.len(),
            });
        }
        Ok(Self::new(buf))
    }

    /// Writes raw bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        let end = self.offs + bytes.len();
        self.buf[self.offs..end].copy_from_slice(bytes);
        self.offs = end;
    }

    /// Writes `n` zero bytes (padding, reserved fields).
    pub fn zeros(&mut self, n: usize) {
        let end = self.offs + n;
        self.buf[self.offs..end].fill(0);
        self.offs = end;
    }

    /// Writes one byte.
    pub fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    /// Writes a big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    /// Writes a big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// Writes a big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }

    /// Bytes written so far.
    pub fn used(&self) -> usize {
        self.offs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_names_missing_field() {
        let mut r = Reader::new(&[0x00, 0x05, 0x01]);
        assert_eq!(r.u16("version"), Ok(5));
        assert_eq!(
            r.u16("count"),
            Err(Error::Truncated {
                field: "count",
                needed: 2,
                available: 1
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.u8("count"), Ok(1));
        assert!(r.expect_empty("datagram").is_ok());
    }

    #[test]
    fn reader_sub_and_trailing() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5]);
        let mut sub = r.sub(3, "record").unwrap();
        assert_eq!(sub.u8("a"), Ok(1));
        assert_eq!(
            sub.expect_empty("record"),
            Err(Error::TrailingData {
                field: "record",
                count: 2
            })
        );
        assert_eq!(r.rest(), &[4, 5]);
        assert!(!r.any_left());
        assert!(r.sub(1, "next").is_err());
    }

    #[test]
    fn writer_checks_room_once() {
        let mut buf = [0xffu8; 8];
        assert!(Writer::with_room(&mut buf, 9).is_err());
        let mut w = Writer::with_room(&mut buf, 8).unwrap();
        w.u16(0x0a0b);
        w.zeros(2);
        w.u32(0x01020304);
        assert_eq!(w.used(), 8);
        assert_eq!(buf, [0x0a, 0x0b, 0, 0, 1, 2, 3, 4]);
    }
}
