//! Loading a goods, and reading its holders back: the buyers hash as the
//! scripts write it.

use std::collections::HashMap;
use std::fmt;

/// Holders per HSET when loading a goods, so that a goods of many holders
/// does not become one huge command.
pub const HSET_CHUNK: usize = 1000;

/// One Redis command, as words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: &'static str,
    pub args: Vec<String>,
}

/// How long a load's staged buyers live if the load never comes.
pub const STAGED_TTL_MS: u64 = 600_000;

/// The load script; its contract is at the top of `lua/load.lua`.
pub const LOAD: &str = include_str!("../lua/load.lua");
/// The script a load begins with; its contract is at the top of
/// `lua/freeze.lua`.
pub const FREEZE: &str = include_str!("../lua/freeze.lua");

/// What a goods' epoch key holds: the epoch of its last load, and whether a
/// reconciliation has frozen it for its next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochState {
    pub epoch: u64,
    pub loading: bool,
}

impl EpochState {
    /// The epoch key's value as the scripts write it: "7" or "8:loading".
    pub fn parse(value: &str) -> Option<EpochState> {
        let (number, loading) = match value.strip_suffix(":loading") {
            Some(number) => (number, true),
            None => (value, false),
        };
        Some(EpochState {
            epoch: number.parse().ok()?,
            loading,
        })
    }
}

/// A load: sets a goods' stock to `remaining` units held apart from
/// `holders` (user, order number), replacing the stock and the buyers, under
/// `epoch`, unless a load of a later epoch came first. The queue and the
/// tokens are not the load's: it keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load<'a> {
    pub remaining: u32,
    pub holders: &'a [(u64, u64)],
    /// Issued by the order store for this load, higher than any before.
    pub epoch: u64,
    /// The goods' total the count was made from: restocks up to it are in
    /// the count (ADD for a total no higher adds nothing after the load).
    pub total: u32,
}

/// The commands of a [`Load`], which follows a [`FREEZE`] under its epoch
/// (KEYS: the epoch key; ARGV: the epoch): the `staging` writes (the buyers,
/// into a hash of this load's own), then one call of [`LOAD`] with `keys`
/// and `args`, which puts them in place atomically if the goods is still
/// frozen for this epoch (answering 1), or answers `{"stale", value}` with
/// the epoch key a later reconciliation set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadCommands {
    pub staging: Vec<Command>,
    pub keys: [String; 6],
    pub args: [String; 4],
}

impl Load<'_> {
    pub fn commands(&self, keys: &crate::Keys) -> LoadCommands {
        let staged = keys.staged(self.epoch);
        let mut staging = vec![Command {
            name: "DEL",
            args: vec![staged.clone()],
        }];
        for chunk in holder_fields(self.holders).chunks(HSET_CHUNK) {
            let mut args = Vec::with_capacity(1 + 2 * chunk.len());
            args.push(staged.clone());
            for (user, orders) in chunk {
                args.push(user.to_string());
                args.push(orders.clone());
            }
            staging.push(Command { name: "HSET", args });
        }
        if !self.holders.is_empty() {
            // A reconciler that dies before its LOAD leaves its staged
            // buyers behind: gone within ten minutes (LOAD keeps none).
            staging.push(Command {
                name: "PEXPIRE",
                args: vec![staged.clone(), STAGED_TTL_MS.to_string()],
            });
        }
        let has_holders = if self.holders.is_empty() { "0" } else { "1" };
        LoadCommands {
            staging,
            keys: [
                keys.stock.clone(),
                keys.buyers.clone(),
                keys.epoch.clone(),
                staged,
                keys.ctl.clone(),
                keys.ledger.clone(),
            ],
            args: [
                self.epoch.to_string(),
                self.remaining.to_string(),
                has_holders.to_string(),
                self.total.to_string(),
            ],
        }
    }
}

/// The holders of a load as buyers-hash fields: each user with their order
/// numbers space-separated, in the order given (the first is the one a
/// user at the limit gets back), a pair given twice counted once.
fn holder_fields(holders: &[(u64, u64)]) -> Vec<(u64, String)> {
    let mut at: HashMap<u64, usize> = HashMap::new();
    let mut fields: Vec<(u64, Vec<u64>)> = Vec::new();
    for &(user, order_no) in holders {
        let i = *at.entry(user).or_insert_with(|| {
            fields.push((user, Vec::new()));
            fields.len() - 1
        });
        let orders = &mut fields[i].1;
        if !orders.contains(&order_no) {
            orders.push(order_no);
        }
    }
    fields
        .into_iter()
        .map(|(user, orders)| {
            let text: Vec<String> = orders.iter().map(u64::to_string).collect();
            (user, text.join(" "))
        })
        .collect()
}

/// A field or value of the buyers hash that is not a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadNumber(pub String);

impl fmt::Display for BadNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is no u64", self.0)
    }
}

impl std::error::Error for BadNumber {}

/// The holders recorded in a buyers hash (its fields and values, as
/// HGETALL gives them): one (user, order number) pair per held order,
/// sorted.
pub fn holders<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<(u64, u64)>, BadNumber> {
    let number = |s: &str| s.parse().map_err(|_| BadNumber(s.to_string()));
    let mut holders = Vec::new();
    for (user, orders) in fields {
        let user = number(user)?;
        // split(' '), not split_whitespace: an empty or doubly spaced list
        // is not one the scripts write, and must not pass.
        for order_no in orders.split(' ') {
            holders.push((user, number(order_no)?));
        }
    }
    holders.sort_unstable();
    Ok(holders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Prefix;

    #[test]
    fn a_load_stages_the_buyers_then_puts_them_in_place_under_its_epoch() {
        let keys = Prefix::new("p:").unwrap().keys(1);
        let load = Load {
            remaining: 7,
            holders: &[(9, 900), (8, 800), (9, 901), (9, 900)],
            epoch: 5,
            total: 10,
        };
        let words = |c: &Command| {
            let mut w = vec![c.name.to_string()];
            w.extend(c.args.iter().cloned());
            w.join(" ")
        };
        let commands = load.commands(&keys);
        let staging: Vec<String> = commands.staging.iter().map(words).collect();
        assert_eq!(
            staging,
            [
                "DEL p:{g1}:buyers:staged:5",
                "HSET p:{g1}:buyers:staged:5 9 900 901 8 800",
                "PEXPIRE p:{g1}:buyers:staged:5 600000",
            ]
        );
        assert_eq!(
            commands.keys,
            [
                "p:{g1}:stock",
                "p:{g1}:buyers",
                "p:{g1}:epoch",
                "p:{g1}:buyers:staged:5",
                "p:{g1}:ctl",
                "p:{g1}:ledger"
            ]
        );
        assert_eq!(commands.args, ["5", "7", "1", "10"]);
        // Nobody holds anything: no HSET (it would need a field).
        let empty = Load {
            remaining: 0,
            holders: &[],
            epoch: 6,
            total: 0,
        };
        let commands = empty.commands(&keys);
        assert_eq!(commands.staging.len(), 1);
        assert_eq!(commands.args, ["6", "0", "0", "0"]);
    }

    #[test]
    fn the_epoch_key_reads_as_an_epoch_and_whether_it_is_loading() {
        let at = |epoch, loading| Some(EpochState { epoch, loading });
        assert_eq!(EpochState::parse("7"), at(7, false));
        assert_eq!(EpochState::parse("8:loading"), at(8, true));
        for bad in ["", ":loading", "x", "7:", "-1", "7:loading:loading"] {
            assert_eq!(EpochState::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn many_holders_go_in_chunks() {
        let keys = Prefix::new("p:").unwrap().keys(1);
        let holders: Vec<(u64, u64)> = (0..2_500).map(|u| (u, u + 1)).collect();
        let load = Load {
            remaining: 1,
            holders: &holders,
            epoch: 1,
            total: 2_501,
        };
        let hsets: Vec<usize> = load
            .commands(&keys)
            .staging
            .iter()
            .filter(|c| c.name == "HSET")
            .map(|c| (c.args.len() - 1) / 2)
            .collect();
        assert_eq!(hsets, [HSET_CHUNK, HSET_CHUNK, 500]);
    }

    #[test]
    fn holders_read_back_sorted_and_a_bad_field_is_named() {
        let got = holders([("9", "901 900"), ("8", "800")]);
        assert_eq!(got, Ok(vec![(8, 800), (9, 900), (9, 901)]));
        for (user, orders, bad) in [
            ("x", "1", "x"),
            ("1", "1  2", ""),
            ("1", "", ""),
            ("1", "1 -2", "-2"),
        ] {
            assert_eq!(holders([(user, orders)]), Err(BadNumber(bad.into())));
        }
        assert_eq!(BadNumber("x".into()).to_string(), "\"x\" is no u64");
    }
}
