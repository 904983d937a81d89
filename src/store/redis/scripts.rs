//! The Lua scripts of `seckill-redis-scripts`, ready to run: each hashed
//! once (sent as EVALSHA, loaded again when a Redis does not know it), a
//! typed call turned into an invocation, and the answers decoded.

use ::redis::{
    Cmd, ConnectionLike, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind,
    ToRedisArgs, Value,
};
use seckill_redis_scripts::{
    AddCall, Call, ControlCall, Decision, EpochState, ForgetCall, IssueCall, Keys, LoadCommands,
    ReceiveCall, ReleaseCall, ReserveCall, SendCall, ADD, CONTROL, FORGET, FREEZE, HELD, ISSUE,
    LOAD, RECEIVE, RELEASE, RESERVE, SEND,
};

use super::link::{inconsistent, to_u32};
use crate::store::{Closed, GoodsId, Reservation, Reserved, StoreError, TokenRefusal};

/// One [`Script`] per script, so that each runs only with its own call.
pub(super) struct Scripts {
    reserve: Script,
    release: Script,
    issue: Script,
    add: Script,
    load: Script,
    freeze: Script,
    control: Script,
    forget: Script,
    held: Script,
    send: Script,
    receive: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
            issue: Script::new(ISSUE),
            add: Script::new(ADD),
            load: Script::new(LOAD),
            freeze: Script::new(FREEZE),
            control: Script::new(CONTROL),
            forget: Script::new(FORGET),
            held: Script::new(HELD),
            send: Script::new(SEND),
            receive: Script::new(RECEIVE),
        }
    }

    pub(super) fn reserve(&self, keys: &Keys, call: &ReserveCall) -> Invocation<'_> {
        invocation(&self.reserve, keys, call)
    }

    pub(super) fn release(&self, keys: &Keys, call: &ReleaseCall) -> Invocation<'_> {
        invocation(&self.release, keys, call)
    }

    pub(super) fn issue(&self, keys: &Keys, call: &IssueCall) -> Invocation<'_> {
        invocation(&self.issue, keys, call)
    }

    pub(super) fn add(&self, keys: &Keys, call: &AddCall) -> Invocation<'_> {
        invocation(&self.add, keys, call)
    }

    pub(super) fn control(&self, keys: &Keys, call: &ControlCall) -> Invocation<'_> {
        invocation(&self.control, keys, call)
    }

    pub(super) fn forget(&self, keys: &Keys, call: &ForgetCall) -> Invocation<'_> {
        invocation(&self.forget, keys, call)
    }

    pub(super) fn send(&self, keys: &Keys, call: &SendCall) -> Invocation<'_> {
        invocation(&self.send, keys, call)
    }

    pub(super) fn receive(&self, keys: &Keys, call: &ReceiveCall) -> Invocation<'_> {
        invocation(&self.receive, keys, call)
    }

    pub(super) fn freeze(&self, keys: &Keys, epoch: u64) -> Invocation<'_> {
        let mut inv = Invocation::new(&self.freeze, [&keys.epoch]);
        inv.arg(epoch);
        inv
    }

    /// HELD of `user` in `buyers` (the user's own buyers hash).
    pub(super) fn held(&self, buyers: &str, user: u64) -> Invocation<'_> {
        let mut inv = Invocation::new(&self.held, [buyers]);
        inv.arg(user);
        inv
    }

    pub(super) fn load(&self, commands: &LoadCommands) -> Invocation<'_> {
        let mut inv = Invocation::new(&self.load, &commands.keys);
        for arg in &commands.args {
            inv.arg(arg);
        }
        inv
    }
}

/// A script call ready to send: EVALSHA with its KEYS and ARGV written
/// straight into one command buffer. (redis's `ScriptInvocation` keeps each
/// argument in a `Vec` of its own and copies them all into a command at each
/// send: four allocations a buyer in a RESERVE, a fifth of the server's
/// instructions per order.) Sent as `ScriptInvocation` sends it.
pub(super) struct Invocation<'s> {
    script: &'s Script,
    cmd: Cmd,
}

impl<'s> Invocation<'s> {
    /// EVALSHA of `script` with these KEYS; the ARGV follow with
    /// [`arg`](Self::arg). Keys first: their count leads them.
    pub(super) fn new<K: AsRef<str>>(
        script: &'s Script,
        keys: impl IntoIterator<Item = K, IntoIter: ExactSizeIterator>,
    ) -> Self {
        let keys = keys.into_iter();
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(key.as_ref());
        }
        Invocation { script, cmd }
    }

    pub(super) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// Runs the script; a Redis that does not know it (restarted, failed
    /// over, flushed) is sent it, and the call once more.
    pub(super) fn invoke<T: FromRedisValue>(&self, con: &mut dyn ConnectionLike) -> RedisResult<T> {
        match self.cmd.query(con) {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load(con)?;
                self.cmd.query(con)
            }
            result => result,
        }
    }
}

/// `call`'s KEYS and ARGV on `script`, in the order the script takes them.
fn invocation<'s, C: Call>(script: &'s Script, keys: &Keys, call: &C) -> Invocation<'s> {
    let mut inv = Invocation::new(script, C::KEYS.iter().map(|&key| keys.get(key)));
    call.write_args(&mut |arg| {
        inv.arg(arg);
    });
    inv
}

/// The epoch key a fenced script found instead of the epoch it carried, if
/// it answered `{"stale", value}`; `Err` if the value is not one the
/// scripts write.
pub(super) fn stale_epoch(reply: &Value) -> Option<Result<EpochState, StoreError>> {
    let Value::Array(items) = reply else {
        return None;
    };
    match items.as_slice() {
        [Value::BulkString(tag), Value::BulkString(value)] if tag == b"stale" => Some(
            std::str::from_utf8(value)
                .ok()
                .and_then(EpochState::parse)
                .ok_or_else(|| inconsistent(format!("bad epoch key {value:?}"))),
        ),
        _ => None,
    }
}

/// The stock count a script returned, or `NotLoaded` for its nil.
pub(super) fn script_count(goods: GoodsId, what: &str, v: Value) -> Result<u32, StoreError> {
    match v {
        Value::Nil => Err(StoreError::NotLoaded(goods)),
        Value::Int(n) => to_u32(what, n),
        other => Err(inconsistent(format!("{what}: unexpected reply {other:?}"))),
    }
}

/// RESERVE's answer for `buyers` buyers of `goods`: `{remaining, a word
/// of decision per buyer}`, or `NotLoaded` for its nil.
pub(super) fn reserved(
    goods: GoodsId,
    buyers: usize,
    reply: Value,
    epoch: u64,
) -> Result<Reserved, StoreError> {
    let what = format!("reserve of goods {goods}");
    let (remaining, words) = match &reply {
        Value::Nil => return Err(StoreError::NotLoaded(goods)),
        Value::Array(items) => match items.as_slice() {
            [Value::Int(n), Value::BulkString(words)] => (to_u32(&what, *n)?, words),
            _ => return Err(inconsistent(format!("{what}: unexpected reply {reply:?}"))),
        },
        other => return Err(inconsistent(format!("{what}: unexpected reply {other:?}"))),
    };
    let decisions: Vec<Reservation> = Decision::parse_all(words)
        .map(|decision| {
            decision
                .map(reservation)
                .ok_or_else(|| inconsistent(format!("{what}: bad decisions {reply:?}")))
        })
        .collect::<Result<_, _>>()?;
    if decisions.len() != buyers {
        let why = format!("{what}: {} decisions for {buyers} buyers", decisions.len());
        return Err(inconsistent(why));
    }
    Ok(Reserved {
        decisions,
        remaining,
        epoch,
    })
}

fn reservation(decision: Decision) -> Reservation {
    match decision {
        Decision::Reserved => Reservation::Reserved,
        Decision::SoldOut => Reservation::SoldOut,
        Decision::TokenInvalid => Reservation::Token(TokenRefusal::Invalid),
        Decision::TokenExpired => Reservation::Token(TokenRefusal::Expired),
        Decision::TokenUsed => Reservation::Token(TokenRefusal::Used),
        Decision::Held(order_no) => Reservation::Held(order_no),
        Decision::Replayed(order_no) => Reservation::Replayed(order_no),
        Decision::RequestIdTaken => Reservation::RequestIdTaken,
        Decision::Paused => Reservation::Closed(Closed::Paused),
        Decision::NotStarted => Reservation::Closed(Closed::NotStarted),
        Decision::Ended => Reservation::Closed(Closed::Ended),
    }
}
