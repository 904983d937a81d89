//! What a server says about itself in its HELLO reply, from version 2 on.
//!
//! Version 1's HELLO reply is `version`, `admin` and nothing else, and a
//! version 1 client refuses bytes after a body's last field; so the fields
//! below are sent only to a client whose HELLO asked for version 2 or more
//! (PROTOCOL.md, sections 6 and 12).

use bytes::{BufMut, BytesMut};

use crate::wire::{BodyError, Reader};

/// The oldest protocol version this crate speaks.
pub const MIN_VERSION: u16 = 1;

/// Bytes of [`ServerInfo`] on the wire.
pub const SERVER_INFO_LEN: usize = 2 + 2 + 4 + 4 + 8 + 8;

/// A server's limits, clock and features, sent after `admin` in a HELLO
/// reply of version 2 or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInfo {
    /// The oldest version the server speaks.
    pub min_version: u16,
    /// The newest version the server speaks.
    pub max_version: u16,
    /// The largest request frame `length` the server accepts (section 3).
    pub max_request_frame: u32,
    /// Requests a connection may have in flight before the server stops
    /// reading it (section 8).
    pub max_in_flight: u32,
    /// The server's clock when it answered, Unix ms: a client compares it
    /// with its own before it reads sale windows and expiry times.
    pub server_time_ms: u64,
    /// What this server does, as [`Capabilities`] bits.
    pub capabilities: Capabilities,
}

impl ServerInfo {
    pub(crate) fn encode(&self, b: &mut BytesMut) {
        b.put_u16(self.min_version);
        b.put_u16(self.max_version);
        b.put_u32(self.max_request_frame);
        b.put_u32(self.max_in_flight);
        b.put_u64(self.server_time_ms);
        b.put_u64(self.capabilities.bits());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<ServerInfo, BodyError> {
        Ok(ServerInfo {
            min_version: r.u16("min_version")?,
            max_version: r.u16("max_version")?,
            max_request_frame: r.u32("max_request_frame")?,
            max_in_flight: r.u32("max_in_flight")?,
            server_time_ms: r.u64("server_time_ms")?,
            // Bits this crate does not know are kept, not refused: a newer
            // server may have features an older client simply does not use.
            capabilities: Capabilities::from_bits(r.u64("capabilities")?),
        })
    }
}

/// Capability flags of a HELLO reply: one bit per optional feature. A
/// client ignores the bits it does not know.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u64);

impl Capabilities {
    /// BUY takes the optional `client_request_id` (section 5.1).
    pub const BUY_REQUEST_ID: Capabilities = Capabilities(1 << 0);
    /// ADD_GOODS takes the optional `client_request_id`: a repeat gets the
    /// goods the first one made (section 9).
    pub const ADD_GOODS_REQUEST_ID: Capabilities = Capabilities(1 << 1);
    /// Admin commands are served on a separate admin listener only: an
    /// admin token sent here gets `unauthorized` (section 6).
    pub const ADMIN_LISTENER_ONLY: Capabilities = Capabilities(1 << 2);
    /// ADD_GOODS takes the optional `buckets` (section 5.1).
    pub const ADD_GOODS_BUCKETS: Capabilities = Capabilities(1 << 3);
    /// STOCK is served (section 9).
    pub const STOCK: Capabilities = Capabilities(1 << 4);

    pub const fn from_bits(bits: u64) -> Capabilities {
        Capabilities(bits)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// These bits and `other`'s.
    pub const fn with(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Capabilities({:#x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A newer server may set bits this crate does not know: they are kept,
    /// and the known ones still read.
    #[test]
    fn unknown_capability_bits_are_kept_not_refused() {
        let caps = Capabilities::from_bits(0x8000_0000_0000_0001);
        assert!(caps.contains(Capabilities::BUY_REQUEST_ID));
        assert!(!caps.contains(Capabilities::ADD_GOODS_REQUEST_ID));
        assert_eq!(caps.bits(), 0x8000_0000_0000_0001);
    }
}
