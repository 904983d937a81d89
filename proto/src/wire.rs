//! Primitive field codecs: big-endian integers and length-prefixed strings.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Why a frame's body could not be read. The frame itself was whole, so the
/// peer can be answered by request id and the connection can go on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyError {
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("body ends before field `{0}`")]
    Truncated(&'static str),
    #[error("{0} bytes after the last field")]
    TrailingBytes(usize),
    #[error("field `{0}` is not valid UTF-8")]
    BadUtf8(&'static str),
    #[error("field `{field}` has invalid value {value}")]
    BadValue { field: &'static str, value: u64 },
    #[error("field `{field}` is {len} bytes, over the limit of {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

/// A cursor over a frame body. Every read is bounds-checked and names the
/// field it was reading, so an error says what was missing.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], BodyError> {
        if self.buf.len() < n {
            return Err(BodyError::Truncated(field));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BodyError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, BodyError> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, BodyError> {
        self.array(field).map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, BodyError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, BodyError> {
        self.array(field).map(u64::from_be_bytes)
    }

    pub(crate) fn u128(&mut self, field: &'static str) -> Result<u128, BodyError> {
        self.array(field).map(u128::from_be_bytes)
    }

    /// Bytes not read yet: how a body with an optional last field tells
    /// whether the field is there.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, BodyError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(BodyError::BadValue {
                field,
                value: v.into(),
            }),
        }
    }

    /// A string: u16 byte length, then that many bytes of UTF-8. `max` bounds
    /// the length before anything is copied.
    pub(crate) fn string(&mut self, field: &'static str, max: usize) -> Result<String, BodyError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(BodyError::TooLong { field, len, max });
        }
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| BodyError::BadUtf8(field))
    }

    /// A count of records that follow, each at least `min_size` bytes: a count
    /// the remaining body cannot hold is refused before any vector is sized
    /// from it.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        min_size: usize,
    ) -> Result<usize, BodyError> {
        let n = self.u32(field)? as usize;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(BodyError::Truncated(field));
        }
        Ok(n)
    }

    /// Every field has been read: anything left over is an error, so that two
    /// implementations cannot silently disagree about a frame's layout.
    pub(crate) fn finish(self) -> Result<(), BodyError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(BodyError::TrailingBytes(n)),
        }
    }
}

/// Writes a string as u16 length and bytes. Strings longer than `u16::MAX`
/// are cut at a character boundary: only server messages can be that long,
/// and a truncated message beats a corrupt frame.
pub(crate) fn put_string(dst: &mut BytesMut, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    dst.put_u16(end as u16);
    dst.put_slice(&s.as_bytes()[..end]);
}
