//! RESERVE, the flash sale: its call and its answer.

use crate::{Argv, Call, Key};

/// The reserve script; its contract is at the top of `lua/reserve.lua`.
pub const RESERVE: &str = include_str!("../lua/reserve.lua");

/// What happens to a reserved order besides the deduction (the server's
/// ack mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: the caller writes the order to the order store itself.
    Durable,
    /// The order is appended to the goods' queue in the same atomic step,
    /// for the order writers to drain.
    Queued,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Durable => "durable",
            Mode::Queued => "queued",
        }
    }
}

/// One buyer of a [`ReserveCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveBuyer {
    pub user: u64,
    /// The number the order gets if a unit is reserved.
    pub order_no: u64,
    /// The purchase token the buyer carries, 0 for none.
    pub token: u64,
    /// The client's id of this BUY, the same on every retry of it; `None`
    /// for a BUY without one.
    pub request_id: Option<u128>,
}

/// One RESERVE: a batch of buyers of one goods, decided in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveCall<'a> {
    pub mode: Mode,
    pub goods: u64,
    /// The caller's clock: of the sale window, of token expiry, of when a
    /// request id may be forgotten, and the created time of queued orders
    /// (ids are pruned by it or by Redis's clock, whichever is behind).
    pub now_ms: u64,
    /// The epoch of the caller's last load of the goods: the script acts
    /// only if the goods still has it.
    pub epoch: u64,
    /// Orders one user may hold at once; 0 is taken as 1.
    pub per_user_limit: u8,
    /// Every buyer must carry a token issued to them, unused and unexpired.
    pub token_required: bool,
    /// The payment deadline written into queued orders.
    pub pay_by_ms: u64,
    /// How long a request id is remembered after the BUY that reserved
    /// under it.
    pub request_id_ttl_ms: u64,
    pub buyers: &'a [ReserveBuyer],
}

impl Call for ReserveCall<'_> {
    const SCRIPT: &'static str = RESERVE;
    const KEYS: &'static [Key] = &[
        Key::Stock,
        Key::Buyers,
        Key::Queue,
        Key::Epoch,
        Key::Tokens,
        Key::Ctl,
        Key::Req,
        Key::ReqExpiry,
    ];

    fn write_args(&self, arg: &mut dyn FnMut(&[u8])) {
        let mut argv = Argv(arg);
        argv.text(self.mode.as_str());
        argv.num(self.goods);
        argv.num(self.now_ms);
        argv.num(self.epoch);
        argv.num(self.per_user_limit);
        argv.text(if self.token_required { "1" } else { "0" });
        argv.num(self.pay_by_ms);
        argv.num(self.request_id_ttl_ms);
        for b in self.buyers {
            argv.num(b.user);
            argv.num(b.order_no);
            argv.num(b.token);
            match b.request_id {
                Some(id) => argv.hex128(id),
                None => argv.text("0"),
            }
        }
    }
}

/// What RESERVE decided for one buyer: each word of the string that
/// follows the units left in its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A unit was taken under the proposed order number.
    Reserved,
    /// No unit left; nothing was taken.
    SoldOut,
    /// The token was not issued to this user for this goods, or forgotten.
    TokenInvalid,
    TokenExpired,
    /// The token reserved a unit before, and that order is no longer held.
    TokenUsed,
    /// The buyer already holds this order (at the limit, or a retry).
    Held(u64),
    /// The request id reserved this order before: the first answer again.
    Replayed(u64),
    /// The request id is another user's; nothing was taken.
    RequestIdTaken,
    /// The sale controls close the sale; nothing was taken.
    Paused,
    NotStarted,
    Ended,
}

impl Decision {
    /// Each buyer's decision, in order, from RESERVE's decisions: one word
    /// per buyer, separated by spaces; `None` for a word that is none.
    pub fn parse_all(words: &[u8]) -> impl Iterator<Item = Option<Decision>> + '_ {
        words
            .split(|&b| b == b' ')
            .filter(|word| !word.is_empty())
            .map(Decision::parse)
    }

    /// One word of RESERVE's decisions: a code, "#" and the order number
    /// held, or "=" and the order a request id reserved before; `None` if
    /// it is none of these.
    pub fn parse(word: &[u8]) -> Option<Decision> {
        let number = |digits: &[u8]| std::str::from_utf8(digits).ok()?.parse::<u64>().ok();
        match word {
            [b'#', held @ ..] => number(held).map(Decision::Held),
            [b'=', first @ ..] => number(first).map(Decision::Replayed),
            code => Decision::from_code(std::str::from_utf8(code).ok()?.parse().ok()?),
        }
    }

    /// A decision the script answers with a code, `None` for one it never
    /// gives.
    fn from_code(code: i64) -> Option<Decision> {
        match code {
            1 => Some(Decision::Reserved),
            0 => Some(Decision::SoldOut),
            -1 => Some(Decision::TokenInvalid),
            -2 => Some(Decision::TokenExpired),
            -3 => Some(Decision::TokenUsed),
            -4 => Some(Decision::RequestIdTaken),
            -5 => Some(Decision::Paused),
            -6 => Some(Decision::NotStarted),
            -7 => Some(Decision::Ended),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv;

    #[test]
    fn the_arguments_are_those_the_script_documents() {
        let buyers = [
            ReserveBuyer {
                user: 7,
                order_no: 700,
                token: 0,
                request_id: None,
            },
            ReserveBuyer {
                user: u64::MAX,
                order_no: (1 << 53) + 1,
                token: 11,
                request_id: Some(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            },
        ];
        let call = ReserveCall {
            mode: Mode::Queued,
            goods: 3,
            now_ms: 1_000,
            epoch: 5,
            per_user_limit: 2,
            token_required: true,
            pay_by_ms: 2_000,
            request_id_ttl_ms: 3_600_000,
            buyers: &buyers,
        };
        assert_eq!(
            argv(&call),
            [
                "queued",
                "3",
                "1000",
                "5",
                "2",
                "1",
                "2000",
                "3600000",
                "7",
                "700",
                "0",
                "0",
                "18446744073709551615",
                "9007199254740993",
                "11",
                "0123456789abcdeffedcba9876543210"
            ]
        );
        let durable = ReserveCall {
            mode: Mode::Durable,
            token_required: false,
            buyers: &[],
            ..call
        };
        assert_eq!(
            argv(&durable),
            ["durable", "3", "1000", "5", "2", "0", "2000", "3600000"]
        );
    }

    #[test]
    fn decisions_decode_as_the_script_encodes_them() {
        // The script names its codes once, at the top; they must be these.
        assert!(RESERVE.contains("\nlocal RESERVED, SOLD_OUT = '1', '0'\n"));
        assert!(RESERVE
            .contains("\nlocal TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_USED = '-1', '-2', '-3'\n"));
        assert!(RESERVE.contains("\nlocal REQUEST_ID_TAKEN = '-4'\n"));
        assert!(RESERVE.contains("\nlocal PAUSED, NOT_STARTED, ENDED = '-5', '-6', '-7'\n"));
        let codes: Vec<_> = (-8..=2).map(Decision::from_code).collect();
        assert_eq!(
            codes,
            [
                None,
                Some(Decision::Ended),
                Some(Decision::NotStarted),
                Some(Decision::Paused),
                Some(Decision::RequestIdTaken),
                Some(Decision::TokenUsed),
                Some(Decision::TokenExpired),
                Some(Decision::TokenInvalid),
                Some(Decision::SoldOut),
                Some(Decision::Reserved),
                None
            ]
        );
        assert_eq!(
            Decision::parse(b"#18446744073709551615"),
            Some(Decision::Held(u64::MAX))
        );
        assert_eq!(Decision::parse(b"=42"), Some(Decision::Replayed(42)));
        assert_eq!(Decision::parse(b"-7"), Some(Decision::Ended));
        for bad in [
            &b""[..],
            b"=",
            b"#",
            b"x",
            b"2",
            b"#-1",
            b"18446744073709551615",
            b"#18446744073709551616",
            b"\xff",
        ] {
            assert_eq!(Decision::parse(bad), None, "{bad:?}");
        }
        let all: Vec<_> = Decision::parse_all(b"1 0 #7 =8 -4 x").collect();
        assert_eq!(
            all,
            [
                Some(Decision::Reserved),
                Some(Decision::SoldOut),
                Some(Decision::Held(7)),
                Some(Decision::Replayed(8)),
                Some(Decision::RequestIdTaken),
                None
            ]
        );
        assert_eq!(Decision::parse_all(b"").count(), 0);
    }
}
