//! The seckill stock store's contract with Redis: where a goods lives, the
//! Lua scripts that decide on it, and the arguments each script takes.
//!
//! The server's Redis stock store and the bench's redis-direct baseline both
//! call these scripts; this crate is the one place their keys and arguments
//! are spelled, so the two cannot drift apart. It does no I/O and depends
//! on nothing: each side sends the commands with its own Redis client.
//!
//! # Key layout
//!
//! Each goods lives under keys that share a hash tag, so a Redis Cluster
//! keeps them on one node and one script may touch them all:
//!
//! ```text
//! <prefix>{g<id>}:stock         integer: units left
//! <prefix>{g<id>}:buyers        hash: user id → the order numbers the user
//!                               holds, oldest first, space-separated
//!                               ("o1 o2"; mostly just one)
//! <prefix>{g<id>}:queue         stream of reserved orders (queued mode): the
//!                               consumer group "writers" moves them to the
//!                               order store, then acks and deletes them
//! <prefix>{g<id>}:epoch         the epoch of the last load, issued by the
//!                               order store (each reconciliation takes a new,
//!                               higher one): scripts carry the epoch they
//!                               were sent under and act only on it; while a
//!                               reconciliation counts, "<epoch>:loading"
//!                               (see freeze.lua), and nothing acts
//! <prefix>{g<id>}:buyers:staged:<epoch>
//!                               a load's buyers, written before the load
//!                               puts them in place (gone after it)
//! <prefix>{g<id>}:tokens        hash: purchase token → "user expires_ms",
//!                               then " order_no" once it reserved a unit
//!                               (taken off by forget.lua if that order is
//!                               never made)
//! <prefix>{g<id>}:token_expiry  sorted set: token → when it may be forgotten
//!                               (expires_ms plus its lifetime again), so
//!                               that ISSUE can prune the tokens hash
//! <prefix>{g<id>}:req           hash: client request id (32 hex digits) →
//!                               "user order_no", the order its first BUY
//!                               reserved
//! <prefix>{g<id>}:req_expiry    sorted set: request id → when it may be
//!                               forgotten (RESERVE prunes a batch per call)
//! <prefix>{g<id>}:released      integer: units RELEASE gave back, ever; a
//!                               change tells each server that a holder let go
//! <prefix>{g<id>}:ctl           hash: the sale controls RESERVE enforces
//!                               (paused "1"/"0", start_ms, end_ms) and their
//!                               version (see control.lua); none: open
//! ```
//!
//! # Scripts
//!
//! Every decision is one Lua script ([`RESERVE`], [`RELEASE`], [`ISSUE`],
//! [`ADD`], each from its own `.lua` file with its KEYS/ARGV/result contract
//! at the top), so it is atomic against every other call. Lua numbers are
//! doubles, exact only up to 2^53, and user ids, order numbers and tokens use
//! all 64 bits: they stay strings inside the scripts and are only compared,
//! never converted. Times in milliseconds (about 2^41 today) are the only
//! numbers the scripts compare as numbers.
//!
//! Every script that changes a goods' stock is fenced by the goods' epoch,
//! which each [`Load`] raises to one the order store issued: a script sent
//! before a load and run after it (Redis stalled, the caller timed out, the
//! goods was reconciled meanwhile, by this server or another) finds another
//! epoch and does nothing, instead of changing the reloaded stock. It
//! answers `{"stale", epoch}`, so that the caller can learn the goods' epoch
//! and send again; a script that finds no stock returns nil: "not loaded".
//! RELEASE needs no fence (its file says why).
//!
//! # Calling a script
//!
//! Each script has a typed call ([`ReserveCall`], [`ReleaseCall`],
//! [`IssueCall`], [`AddCall`]) implementing [`Call`]: the script, which
//! [`Keys`] it takes in which order, and its ARGV as the bytes Redis gets.
//! With the `redis` crate, for instance:
//!
//! ```text
//! let keys = prefix.keys(goods);
//! let mut inv = Script::new(ReserveCall::SCRIPT).prepare_invoke();
//! for &key in ReserveCall::KEYS {
//!     inv.key(keys.get(key));
//! }
//! call.write_args(&mut |arg| {
//!     inv.arg(arg);
//! });
//! ```

mod buckets;
mod calls;
mod keys;
mod load;
mod reserve;

pub use buckets::{bucket_of, Part, ReceiveCall, SendCall, MAX_BUCKETS, RECEIVE, SEND};
pub use calls::{
    AddCall, ControlCall, ForgetCall, IssueCall, ReleaseCall, Unmade, ADD, CONTROL, FORGET, HELD,
    ISSUE, RELEASE,
};
pub use keys::{Key, Keys, Prefix, PrefixError};
pub use load::{
    holders, BadNumber, Command, EpochState, Load, LoadCommands, FREEZE, HSET_CHUNK, LOAD,
};
pub use reserve::{Decision, Mode, ReserveBuyer, ReserveCall, RESERVE};

/// One call of one of the scripts.
pub trait Call {
    /// The script's Lua source.
    const SCRIPT: &'static str;
    /// The keys the script takes, in the order of its KEYS.
    const KEYS: &'static [Key];
    /// Hands `arg` each argument of ARGV in order, as the bytes Redis gets
    /// (Redis sees every argument as a string; numbers go in decimal).
    fn write_args(&self, arg: &mut dyn FnMut(&[u8]));
}

/// Writes ARGV through a caller's sink, numbers in decimal without an
/// allocation: the reserve call is on every BUY's path.
struct Argv<'f>(&'f mut dyn FnMut(&[u8]));

impl Argv<'_> {
    fn num(&mut self, n: impl Into<u64>) {
        (self.0)(itoa::Buffer::new().format(n.into()).as_bytes());
    }

    /// A 128-bit number as 32 lowercase hex digits, the form request ids
    /// take in Redis.
    fn hex128(&mut self, n: u128) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (i, d) in hex.iter_mut().enumerate() {
            // A nibble: < 16, so the index and the cast are exact.
            *d = DIGITS[((n >> (4 * (31 - i))) & 0xf) as usize];
        }
        (self.0)(&hex);
    }

    fn text(&mut self, s: &str) {
        (self.0)(s.as_bytes());
    }
}

#[cfg(test)]
pub(crate) fn argv(call: &impl Call) -> Vec<String> {
    let mut out = Vec::new();
    call.write_args(&mut |a| out.push(String::from_utf8_lossy(a).into_owned()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_in_decimal() {
        let mut out = Vec::new();
        let mut sink = |a: &[u8]| out.push(String::from_utf8_lossy(a).into_owned());
        let mut argv = Argv(&mut sink);
        for n in [0, 7, 10, 1 << 53, (1 << 53) + 1, u64::MAX] {
            argv.num(n);
        }
        argv.text("durable");
        assert_eq!(
            out,
            [
                "0",
                "7",
                "10",
                "9007199254740992",
                "9007199254740993",
                "18446744073709551615",
                "durable"
            ]
        );
    }
}
