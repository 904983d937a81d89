//! Frame boundaries: the length prefix and the fixed header.

use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Bytes of the header that every frame has after the length: opcode and
/// request id. The length field counts these, so it is never below this.
pub const HEADER_LEN: usize = 1 + 8;

/// One whole frame, borrowed from the buffer it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub opcode: u8,
    /// Chosen by the client, echoed by the reply.
    pub id: u64,
    pub body: &'a [u8],
}

/// Why no frame could be taken from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Not all of the frame has arrived yet; read more and try again.
    #[error("incomplete frame")]
    Incomplete,
    /// The length field is over the limit. The frame is never buffered: a
    /// peer that sends this is closed.
    #[error("frame length {len} is over the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    /// The length field is too small to hold the header.
    #[error("frame length {len} is shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: u32 },
}

impl<'a> Frame<'a> {
    /// Finds the frame at the start of `buf`. Returns it with the number of
    /// bytes it occupies (prefix included), to be consumed by the caller.
    ///
    /// Only the 4-byte prefix is read before the limits are checked, so a
    /// hostile length costs nothing.
    pub fn parse(buf: &'a [u8], max_len: u32) -> Result<(Frame<'a>, usize), FrameError> {
        let Some(prefix) = buf.get(..LEN_PREFIX) else {
            return Err(FrameError::Incomplete);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len > max_len {
            return Err(FrameError::TooLarge { len, max: max_len });
        }
        if (len as usize) < HEADER_LEN {
            return Err(FrameError::TooShort { len });
        }
        let total = LEN_PREFIX + len as usize;
        let Some(frame) = buf.get(LEN_PREFIX..total) else {
            return Err(FrameError::Incomplete);
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&frame[1..HEADER_LEN]);
        Ok((
            Frame {
                opcode: frame[0],
                id: u64::from_be_bytes(id),
                body: &frame[HEADER_LEN..],
            },
            total,
        ))
    }
}

/// Appends one frame to `dst`: the header, then whatever `body` writes, then
/// the length is filled in. Writing the body in place avoids a second buffer.
pub(crate) fn write(dst: &mut BytesMut, opcode: u8, id: u64, body: impl FnOnce(&mut BytesMut)) {
    let start = dst.len();
    dst.put_u32(0);
    dst.put_u8(opcode);
    dst.put_u64(id);
    body(dst);
    let len = dst.len() - start - LEN_PREFIX;
    let len = u32::try_from(len).expect("a frame body over 4 GiB is a bug in the caller");
    dst[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_from_the_prefix_alone() {
        assert_eq!(Frame::parse(&[0, 0], 100), Err(FrameError::Incomplete));
        assert_eq!(
            Frame::parse(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: 100
            })
        );
        assert_eq!(
            Frame::parse(&[0, 0, 0, 8], 100),
            Err(FrameError::TooShort { len: 8 })
        );
        assert_eq!(
            Frame::parse(&[0, 0, 0, 9, 1], 100),
            Err(FrameError::Incomplete)
        );
    }

    #[test]
    fn parse_takes_exactly_one_frame() {
        let mut buf = BytesMut::new();
        write(&mut buf, 2, 5, |_| {});
        write(&mut buf, 3, 6, |b| b.put_u8(9));
        let (first, used) = Frame::parse(&buf, 100).unwrap();
        assert_eq!(
            (first.opcode, first.id, first.body, used),
            (2, 5, &[][..], 13)
        );
        let (second, used2) = Frame::parse(&buf[used..], 100).unwrap();
        assert_eq!(
            (second.opcode, second.id, second.body, used2),
            (3, 6, &[9][..], 14)
        );
    }
}
