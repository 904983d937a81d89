//! The client request id of a BUY: one logical purchase, named by the client,
//! across its retries, reconnections and servers.
//!
//! It is not the frame's request id (a `u64` that pairs a reply with its
//! request on one connection): that one changes with every send, this one
//! stays the same for every send of one BUY. PROTOCOL.md calls it
//! `client_request_id`, section 5.1.

use std::fmt;
use std::num::NonZeroU128;
use std::str::FromStr;

use thiserror::Error;

/// A BUY's client request id: a non-zero `u128`, random in practice.
///
/// 0 is not an id: it has no encoding (a BUY without an id is the shorter
/// body, not an id of 0), so each BUY has exactly one encoding. The type
/// makes a zero id unrepresentable rather than checked.
///
/// Shown as 32 lowercase hex digits; parsed from 1 to 32 hex digits or a
/// UUID's 36-character form, so that an id from a system that names things
/// with UUIDs can be used as it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(NonZeroU128);

impl RequestId {
    /// The id `value`, or `None` for 0.
    pub const fn new(value: u128) -> Option<RequestId> {
        match NonZeroU128::new(value) {
            Some(v) => Some(RequestId(v)),
            None => None,
        }
    }

    /// The id from its 16 wire bytes (big-endian), or `None` if all are 0.
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<RequestId> {
        RequestId::new(u128::from_be_bytes(bytes))
    }

    /// The id as a number.
    pub const fn get(self) -> u128 {
        self.0.get()
    }

    /// The id's 16 wire bytes, big-endian.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.get().to_be_bytes()
    }

    /// Whether the sender marked this BUY a repeat: bit 127, set on every
    /// send of a purchase after its first (PROTOCOL.md, section 9). A
    /// server answers a repeat only from its stores, never from what it
    /// knows without them (a sold-out flag, the window), so that a repeat
    /// gets the first answer.
    pub const fn is_repeat(self) -> bool {
        self.0.get() & REPEAT != 0
    }

    /// This id marked a repeat.
    pub const fn repeat(self) -> RequestId {
        match NonZeroU128::new(self.0.get() | REPEAT) {
            Some(v) => RequestId(v),
            None => self,
        }
    }

    /// The id without the repeat mark: the purchase's name, the same on
    /// every send. `None` if nothing is left (an id of only the mark).
    pub const fn purchase(self) -> Option<RequestId> {
        RequestId::new(self.0.get() & !REPEAT)
    }
}

/// The repeat mark: bit 127 of a client request id.
const REPEAT: u128 = 1 << 127;

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.get())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

/// Why a string is not a [`RequestId`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseRequestIdError {
    #[error("a request id is 1 to 32 hex digits or a UUID, not {0:?}")]
    Malformed(String),
    #[error("a request id is never 0")]
    Zero,
}

impl FromStr for RequestId {
    type Err = ParseRequestIdError;

    fn from_str(s: &str) -> Result<RequestId, ParseRequestIdError> {
        let malformed = || ParseRequestIdError::Malformed(s.to_owned());
        let digits: String = if is_uuid_form(s) {
            s.chars().filter(|&c| c != '-').collect()
        } else {
            s.to_owned()
        };
        // from_str_radix would take a leading '+': only digits are an id.
        if digits.is_empty() || digits.len() > 32 || !digits.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(malformed());
        }
        let value = u128::from_str_radix(&digits, 16).map_err(|_| malformed())?;
        RequestId::new(value).ok_or(ParseRequestIdError::Zero)
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`: dashes at the UUID's places only,
/// so that a stray dash elsewhere is an error rather than ignored.
fn is_uuid_form(s: &str) -> bool {
    s.len() == 36
        && s.char_indices()
            .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repeat_mark_is_bit_127_and_the_purchase_the_rest() {
        let first = RequestId::new(0x1234).unwrap();
        assert!(!first.is_repeat());
        let again = first.repeat();
        assert!(again.is_repeat());
        assert_eq!(again.get(), 0x1234 | 1 << 127);
        assert_eq!(again.purchase(), Some(first));
        assert_eq!(first.purchase(), Some(first));
        assert_eq!(again.repeat(), again);
        assert_eq!(RequestId::new(1 << 127).unwrap().purchase(), None);
    }

    #[test]
    fn zero_is_no_id() {
        assert_eq!(RequestId::new(0), None);
        assert_eq!(RequestId::from_bytes([0; 16]), None);
        assert_eq!("0".parse::<RequestId>(), Err(ParseRequestIdError::Zero));
        assert_eq!(
            "00000000-0000-0000-0000-000000000000".parse::<RequestId>(),
            Err(ParseRequestIdError::Zero)
        );
    }

    #[test]
    fn it_shows_as_32_hex_digits_and_parses_back() {
        let id = RequestId::new(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210).unwrap();
        assert_eq!(id.to_string(), "0123456789abcdeffedcba9876543210");
        assert_eq!(
            format!("{id:?}"),
            "RequestId(0123456789abcdeffedcba9876543210)"
        );
        assert_eq!(id.to_string().parse(), Ok(id));
        assert_eq!(RequestId::from_bytes(id.to_bytes()), Some(id));
        assert_eq!(id.to_bytes()[0], 0x01, "big-endian");
        let one = RequestId::new(1).unwrap();
        assert_eq!(one.to_string(), "00000000000000000000000000000001");
        assert_eq!("1".parse(), Ok(one));
        assert_eq!("ABC".parse::<RequestId>().map(RequestId::get), Ok(0xabc));
    }

    #[test]
    fn a_uuid_is_an_id() {
        let id: RequestId = "01234567-89ab-cdef-fedc-ba9876543210".parse().unwrap();
        assert_eq!(id.get(), 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "+1",
            "-1",
            "0x1",
            "g",
            " 1",
            "123456789012345678901234567890123",
            "0123456789abcdef-fedcba9876543210",
            "0123456-789ab-cdef-fedc-ba9876543210",
        ] {
            assert!(
                matches!(
                    bad.parse::<RequestId>(),
                    Err(ParseRequestIdError::Malformed(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
