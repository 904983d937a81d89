//! RELEASE, ISSUE and ADD: the scripts beside the sale itself.

use crate::{Argv, Call, Key};

/// The release script; its contract is at the top of `lua/release.lua`.
pub const RELEASE: &str = include_str!("../lua/release.lua");
/// The token script; its contract is at the top of `lua/issue.lua`.
pub const ISSUE: &str = include_str!("../lua/issue.lua");
/// The restock script; its contract is at the top of `lua/add.lua`.
pub const ADD: &str = include_str!("../lua/add.lua");
/// The script that reads the orders a user holds for the replicas to
/// confirm; its contract is at the top of `lua/held.lua`.
pub const HELD: &str = include_str!("../lua/held.lua");
/// The script that forgets request ids; its contract is at the top of
/// `lua/forget.lua`.
pub const FORGET: &str = include_str!("../lua/forget.lua");

/// A BUY whose order will never exist, as FORGET takes it: the user and the
/// order number, and what may still name that order: the BUY's request id
/// (0: none) and its purchase token (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmade {
    pub request_id: u128,
    pub user: u64,
    pub order_no: u64,
    pub token: u64,
}

/// One FORGET: each request id forgotten, and each token's mark of the
/// order taken off, if it still names that order; answers how many ids
/// were forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForgetCall<'a> {
    pub unmade: &'a [Unmade],
}

impl Call for ForgetCall<'_> {
    const SCRIPT: &'static str = FORGET;
    const KEYS: &'static [Key] = &[Key::Req, Key::ReqExpiry, Key::Tokens];

    fn write_args(&self, arg: &mut dyn FnMut(&[u8])) {
        let mut argv = Argv(arg);
        for u in self.unmade {
            match u.request_id {
                0 => argv.text("0"),
                id => argv.hex128(id),
            }
            argv.num(u.user);
            argv.num(u.order_no);
            argv.num(u.token);
        }
    }
}

/// The sale-control script; its contract is at the top of `lua/control.lua`.
pub const CONTROL: &str = include_str!("../lua/control.lua");

/// One CONTROL: the sale controls of a goods at `version`; answers 1 if
/// recorded, 0 if this version or a later one is there (which is written
/// back unchanged, for the caller's WAIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlCall {
    pub version: u64,
    pub paused: bool,
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Call for ControlCall {
    const SCRIPT: &'static str = CONTROL;
    const KEYS: &'static [Key] = &[Key::Ctl];

    fn write_args(&self, arg: &mut dyn FnMut(&[u8])) {
        let mut argv = Argv(arg);
        argv.num(self.version);
        argv.text(if self.paused { "1" } else { "0" });
        argv.num(self.start_ms);
        argv.num(self.end_ms);
    }
}

/// One RELEASE: gives back the units of these (user, order number) pairs
/// where the user holds the order; answers the units left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseCall<'a> {
    pub orders: &'a [(u64, u64)],
}

impl Call for ReleaseCall<'_> {
    const SCRIPT: &'static str = RELEASE;
    const KEYS: &'static [Key] = &[Key::Stock, Key::Buyers, Key::Released, Key::Epoch];

    fn write_args(&self, arg: &mut dyn FnMut(&[u8])) {
        let mut argv = Argv(arg);
        for &(user, order_no) in self.orders {
            argv.num(user);
            argv.num(order_no);
        }
    }
}

/// One ISSUE: records a purchase token, after forgetting a bounded batch of
/// those due; answers 1 if recorded, 0 if the token was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueCall {
    /// The caller's clock (tokens are pruned by it or by Redis's,
    /// whichever is behind).
    pub now_ms: u64,
    pub token: u64,
    pub user: u64,
    pub expires_ms: u64,
    /// When the token may be forgotten.
    pub forget_after_ms: u64,
    /// Tokens forgotten at most by this call.
    pub prune_batch: usize,
}

impl Call for IssueCall {
    const SCRIPT: &'static str = ISSUE;
    const KEYS: &'static [Key] = &[Key::Tokens, Key::TokenExpiry];

    fn write_args(&self, arg: &mut dyn FnMut(&[u8])) {
        let mut argv = Argv(arg);
        argv.num(self.now_ms);
        argv.num(self.token);
        argv.num(self.user);
        argv.num(self.expires_ms);
        argv.num(self.forget_after_ms);
        argv.num(u64::try_from(self.prune_batch).unwrap_or(u64::MAX));
    }
}

/// One ADD: a restock of `amount` units, fenced by the epoch; answers the
/// units left (saturated at `u32::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddCall {
    pub amount: u32,
    /// The epoch of the caller's last load of the goods.
    pub epoch: u64,
    /// The goods' total after this restock: the call's name, so that a
    /// second run of it adds nothing.
    pub total: u32,
}

impl Call for AddCall {
    const SCRIPT: &'static str = ADD;
    const KEYS: &'static [Key] = &[Key::Stock, Key::Epoch, Key::Ctl];

    fn write_args(&self, arg: &mut dyn FnMut(&[u8])) {
        let mut argv = Argv(arg);
        argv.num(self.amount);
        argv.num(self.epoch);
        argv.num(self.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argv;

    #[test]
    fn the_arguments_are_those_the_scripts_document() {
        let release = ReleaseCall {
            orders: &[(1, 100), (u64::MAX, 2)],
        };
        assert_eq!(argv(&release), ["1", "100", "18446744073709551615", "2"]);
        assert!(argv(&ReleaseCall { orders: &[] }).is_empty());
        let issue = IssueCall {
            now_ms: 1_000,
            token: 11,
            user: 7,
            expires_ms: 2_000,
            forget_after_ms: 3_000,
            prune_batch: 100,
        };
        assert_eq!(argv(&issue), ["1000", "11", "7", "2000", "3000", "100"]);
        let add = AddCall {
            amount: u32::MAX,
            epoch: 4,
            total: 9,
        };
        assert_eq!(argv(&add), ["4294967295", "4", "9"]);
        let forget = ForgetCall {
            unmade: &[
                Unmade {
                    request_id: 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
                    user: 7,
                    order_no: 700,
                    token: 0,
                },
                Unmade {
                    request_id: 0,
                    user: 8,
                    order_no: 800,
                    token: 33,
                },
            ],
        };
        assert_eq!(
            argv(&forget),
            [
                "0123456789abcdeffedcba9876543210",
                "7",
                "700",
                "0",
                "0",
                "8",
                "800",
                "33"
            ]
        );
    }

    #[test]
    fn each_script_opens_with_its_contract() {
        for script in [
            crate::RESERVE,
            RELEASE,
            ISSUE,
            ADD,
            CONTROL,
            crate::LOAD,
            crate::FREEZE,
            FORGET,
            HELD,
        ] {
            let head: Vec<&str> = script.lines().take_while(|l| l.starts_with("--")).collect();
            assert!(head.iter().any(|l| l.contains("KEYS[1]")), "{head:?}");
            assert!(head.iter().any(|l| l.contains("ARGV")), "{head:?}");
            assert!(head.iter().any(|l| l.contains("Returns")), "{head:?}");
        }
    }
}
