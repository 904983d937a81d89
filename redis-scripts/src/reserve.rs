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
}

/// One RESERVE: a batch of buyers of one goods, decided in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveCall<'a> {
    pub mode: Mode,
    pub goods: u64,
    /// The clock of token expiry, and the created time of queued orders.
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
        for b in self.buyers {
            argv.num(b.user);
            argv.num(b.order_no);
            argv.num(b.token);
        }
    }
}

/// What RESERVE decided for one buyer: each element after the first of its
/// answer (which is the units left).
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
}

impl Decision {
    /// A decision the script answered with an integer, `None` for one it
    /// never gives.
    pub fn from_code(code: i64) -> Option<Decision> {
        match code {
            1 => Some(Decision::Reserved),
            0 => Some(Decision::SoldOut),
            -1 => Some(Decision::TokenInvalid),
            -2 => Some(Decision::TokenExpired),
            -3 => Some(Decision::TokenUsed),
            _ => None,
        }
    }

    /// A decision the script answered with a string: the order number held,
    /// `None` if it is no number.
    pub fn from_held(order_no: &[u8]) -> Option<Decision> {
        let text = std::str::from_utf8(order_no).ok()?;
        text.parse().ok().map(Decision::Held)
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
            },
            ReserveBuyer {
                user: u64::MAX,
                order_no: (1 << 53) + 1,
                token: 11,
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
                "7",
                "700",
                "0",
                "18446744073709551615",
                "9007199254740993",
                "11"
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
            ["durable", "3", "1000", "5", "2", "0", "2000"]
        );
    }

    #[test]
    fn decisions_decode_as_the_script_encodes_them() {
        // The script names its codes once, at the top; they must be these.
        assert!(RESERVE.contains("\nlocal RESERVED, SOLD_OUT = 1, 0\n"));
        assert!(RESERVE.contains("\nlocal TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_USED = -1, -2, -3\n"));
        let codes: Vec<_> = (-4..=2).map(Decision::from_code).collect();
        assert_eq!(
            codes,
            [
                None,
                Some(Decision::TokenUsed),
                Some(Decision::TokenExpired),
                Some(Decision::TokenInvalid),
                Some(Decision::SoldOut),
                Some(Decision::Reserved),
                None
            ]
        );
        assert_eq!(
            Decision::from_held(b"18446744073709551615"),
            Some(Decision::Held(u64::MAX))
        );
        for bad in [&b""[..], b"x", b"-1", b"18446744073709551616", b"\xff"] {
            assert_eq!(Decision::from_held(bad), None, "{bad:?}");
        }
    }
}
