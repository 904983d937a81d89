//! Where a goods lives: the key layout the crate docs draw.

use std::fmt;

/// The key prefix of one store: every key of every goods starts with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

/// A prefix holding `{` or `}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixError(String);

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis key prefix {:?} must not contain braces", self.0)
    }
}

impl std::error::Error for PrefixError {}

impl Prefix {
    /// A prefix must hold no `{` or `}`: the per-goods hash tag has to be the
    /// first one in each key, or Redis Cluster would spread a goods' keys
    /// over nodes where no script can reach them all.
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        if prefix.contains(['{', '}']) {
            return Err(PrefixError(prefix.to_string()));
        }
        Ok(Prefix(prefix.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The keys of one goods: all of it when it has one bucket, its pool
    /// when it has several.
    pub fn keys(&self, goods: u64) -> Keys {
        self.tagged(format!("g{goods}"))
    }

    /// The keys of bucket `bucket` of a goods split over several buckets:
    /// a hash tag of its own, so that a Redis Cluster may put each bucket on
    /// another node.
    pub fn bucket_keys(&self, goods: u64, bucket: u16) -> Keys {
        self.tagged(format!("g{goods}.{bucket}"))
    }

    /// The keys of the pool of a goods split over buckets: a tag of its own
    /// too, and not the goods' own keys, so that a server that knows nothing
    /// of buckets finds no stock there (and reloads the goods, fenced,
    /// rather than sell from the pool as if it were the whole goods).
    pub fn pool_keys(&self, goods: u64) -> Keys {
        self.tagged(format!("g{goods}.p"))
    }

    fn tagged(&self, tag: String) -> Keys {
        let base = format!("{}{{{tag}}}", self.0);
        Keys {
            stock: format!("{base}:stock"),
            buyers: format!("{base}:buyers"),
            queue: format!("{base}:queue"),
            epoch: format!("{base}:epoch"),
            tokens: format!("{base}:tokens"),
            token_expiry: format!("{base}:token_expiry"),
            ctl: format!("{base}:ctl"),
            released: format!("{base}:released"),
            req: format!("{base}:req"),
            req_expiry: format!("{base}:req_expiry"),
            ledger: format!("{base}:ledger"),
        }
    }
}

/// The keys of one goods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub stock: String,
    pub buyers: String,
    pub queue: String,
    /// Bumped by every load; see the scripts.
    pub epoch: String,
    pub tokens: String,
    pub token_expiry: String,
    pub ctl: String,
    pub released: String,
    pub req: String,
    pub req_expiry: String,
    /// Units this part of a bucketed goods sent to and got from the others
    /// (see send.lua and receive.lua).
    pub ledger: String,
}

/// One of a goods' keys, as a script's KEYS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Stock,
    Buyers,
    Queue,
    Epoch,
    Tokens,
    TokenExpiry,
    Ctl,
    Released,
    Req,
    ReqExpiry,
    Ledger,
}

impl Keys {
    /// Where a load under `epoch` stages the buyers before it puts them in
    /// place: a name of its own, so that two loads never mix their writes.
    pub fn staged(&self, epoch: u64) -> String {
        format!("{}:staged:{epoch}", self.buyers)
    }

    pub fn get(&self, key: Key) -> &str {
        match key {
            Key::Stock => &self.stock,
            Key::Buyers => &self.buyers,
            Key::Queue => &self.queue,
            Key::Epoch => &self.epoch,
            Key::Tokens => &self.tokens,
            Key::TokenExpiry => &self.token_expiry,
            Key::Ctl => &self.ctl,
            Key::Released => &self.released,
            Key::Req => &self.req,
            Key::ReqExpiry => &self.req_expiry,
            Key::Ledger => &self.ledger,
        }
    }

    /// Every key of the goods, its queue and tokens included: what to
    /// delete to forget it.
    pub fn all(&self) -> [&str; 11] {
        [
            &self.stock,
            &self.buyers,
            &self.queue,
            &self.epoch,
            &self.tokens,
            &self.token_expiry,
            &self.ctl,
            &self.released,
            &self.req,
            &self.req_expiry,
            &self.ledger,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_goods_keys_share_one_hash_tag() {
        let keys = Prefix::new("sk:").unwrap().keys(42);
        assert_eq!(
            keys.all(),
            [
                "sk:{g42}:stock",
                "sk:{g42}:buyers",
                "sk:{g42}:queue",
                "sk:{g42}:epoch",
                "sk:{g42}:tokens",
                "sk:{g42}:token_expiry",
                "sk:{g42}:ctl",
                "sk:{g42}:released",
                "sk:{g42}:req",
                "sk:{g42}:req_expiry",
                "sk:{g42}:ledger",
            ]
        );
        assert_eq!(
            Prefix::new("sk:").unwrap().bucket_keys(42, 3).buyers,
            "sk:{g42.3}:buyers"
        );
        assert_eq!(
            Prefix::new("sk:").unwrap().pool_keys(42).stock,
            "sk:{g42.p}:stock"
        );
        assert_eq!(keys.get(Key::TokenExpiry), "sk:{g42}:token_expiry");
        assert_eq!(Prefix::new("").unwrap().keys(1).stock, "{g1}:stock");
    }

    #[test]
    fn a_prefix_with_braces_is_refused() {
        for bad in ["x{y}:", "{", "a}"] {
            let e = Prefix::new(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("redis key prefix {bad:?} must not contain braces")
            );
        }
    }
}
