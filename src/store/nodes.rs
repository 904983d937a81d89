//! Node ids leased from the order store: the registry every server on one
//! order store claims its node id in (`nodes` in MySQL's `schema.sql` and in
//! SQLite's), so that no two live servers make order numbers under the same
//! id.
//!
//! Each row is one id: its holder (a random token per server process, 0
//! once released), when the lease ends, and how far the numbers of the id
//! may be stamped. Time is the database's own clock (MySQL's
//! `UTC_TIMESTAMP(6)`; SQLite's `now`, which is the one host's), never a
//! server's, so servers with skewed clocks agree on when a lease ended.
//!
//! - A claim takes an id nobody holds: never claimed, released, or whose
//!   lease ended without renewal (its server died or was cut off). An id
//!   held by a live server is never taken.
//! - The holder renews its lease every few seconds; a renewal fails once
//!   another server took the id over, and the holder then stops making
//!   numbers under it.
//! - `numbers_until_ms` is the fence: every number ever made under the id is
//!   stamped at or before it. A holder may stamp only up to the limit its
//!   claim or last renewal recorded, and a new holder starts above the limit
//!   it found, so a holder paused past its lease and taken over cannot make
//!   a number its successor makes, whatever the clocks say. The lease only
//!   decides *when* an id may change hands; the fence makes it safe.
//!
//! - A limit is recorded no further ahead of the database's clock than two
//!   leases ([`capped`]): a server whose clock runs ahead would otherwise
//!   record a fence its successors inherit, and they would stamp numbers
//!   that far in the future (unique still, but taken for young orders, so
//!   that the repairs of abandoned ones wait that long). Such a server is
//!   granted only what was recorded, and answers BUYs `busy` once its clock
//!   passes it.
//!
//! How a claim picks its id is decided here (`choose`), once for both
//! backends, from the rows the backend read and locked in its transaction.

use std::time::Duration;

use super::StoreError;

/// A server asking for a node id.
#[derive(Debug, Clone)]
pub struct NodeClaim<'a> {
    /// The id asked for (`--node-id`), or `None` for the lowest free one.
    pub want: Option<u16>,
    /// The largest id there is.
    pub max_id: u16,
    /// This server process's token, never 0.
    pub holder: u64,
    /// Who this is, for an operator reading the table or a refusal: pid,
    /// host, address.
    pub info: &'a str,
    /// How long the lease lasts without renewal, by the database's clock.
    pub lease: Duration,
    /// The limit the claimer would like to stamp numbers up to (Unix ms):
    /// its clock plus a lease. Raised if the id's last limit is later.
    pub until_ms: u64,
}

/// A node id as a claim finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub node_id: u16,
    pub holder: u64,
    pub info: String,
    /// Milliseconds left of the lease, by the database's clock; 0 once it
    /// ended.
    pub left_ms: u64,
    pub until_ms: u64,
}

/// A node id leased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub node_id: u16,
    /// Every number made under this id before is stamped at or before this
    /// (Unix ms): the new holder's numbers are stamped after it.
    pub floor_ms: u64,
    /// The holder may stamp numbers up to this (Unix ms), until it renews.
    pub until_ms: u64,
}

/// What a claim came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    Leased(Lease),
    /// The id asked for is held by a live server.
    Held {
        node_id: u16,
        by: String,
        left_ms: u64,
    },
    /// Every id is held by a live server.
    AllHeld,
}

/// What a claim does with the rows it read (and locked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Take this id: update its row, or insert it if `exists` is false.
    Take { lease: Lease, exists: bool },
    /// Write nothing; this is the answer.
    Refuse(Claimed),
}

/// The limit a claim or renewal asking for `until_ms` may raise the id's
/// to, with the database's clock at `store_now_ms`: at most two leases
/// ahead of it. (A fence already further ahead stays, and is granted.)
pub(crate) fn capped(until_ms: u64, store_now_ms: u64, lease: Duration) -> u64 {
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    until_ms.min(store_now_ms.saturating_add(lease_ms.saturating_mul(2)))
}

/// The limit a renewal records and grants, of a holder whose id has
/// `recorded` and who asks for `until_ms`, the database's clock at
/// `store_now_ms`: what is recorded, which never goes down (a fence the
/// holder took over may be further ahead than the cap), or the [`capped`]
/// ask if higher.
pub(crate) fn renewed(recorded: u64, until_ms: u64, store_now_ms: u64, lease: Duration) -> u64 {
    recorded.max(capped(until_ms, store_now_ms, lease))
}

/// Picks the id a claim takes from every row of the registry: the one asked
/// for if it is free, else the one this holder already has (a claim retried
/// after its reply was lost), else the lowest free one.
pub(crate) fn choose(rows: &[NodeRow], claim: &NodeClaim) -> Choice {
    let row = |id: u16| rows.iter().find(|r| r.node_id == id);
    let free = |id: u16| {
        row(id).is_none_or(|r| r.holder == 0 || r.left_ms == 0 || r.holder == claim.holder)
    };
    let node_id = match claim.want {
        Some(id) if !free(id) => {
            let r = row(id);
            return Choice::Refuse(Claimed::Held {
                node_id: id,
                by: r.map_or_else(String::new, |r| r.info.clone()),
                left_ms: r.map_or(0, |r| r.left_ms),
            });
        }
        Some(id) => id,
        None => {
            let mine = rows
                .iter()
                .find(|r| r.holder == claim.holder && r.node_id <= claim.max_id);
            match mine
                .map(|r| r.node_id)
                .or_else(|| (0..=claim.max_id).find(|&id| free(id)))
            {
                Some(id) => id,
                None => return Choice::Refuse(Claimed::AllHeld),
            }
        }
    };
    let lease_ms = u64::try_from(claim.lease.as_millis()).unwrap_or(u64::MAX);
    let floor_ms = match row(node_id) {
        None => 0,
        // This holder's own claim, whose reply was lost: it wrote a limit
        // of at least a lease above the floor it was given (see below),
        // and no number was made under it. That floor again, so that the
        // numbers do not start a lease in the future; still above every
        // number of the id's previous holder.
        Some(r) if r.holder == claim.holder => r.until_ms.saturating_sub(lease_ms),
        Some(r) => r.until_ms,
    };
    Choice::Take {
        lease: Lease {
            node_id,
            floor_ms,
            until_ms: claim.until_ms.max(floor_ms.saturating_add(lease_ms)),
        },
        exists: row(node_id).is_some(),
    }
}

/// The registry of node ids, kept by the order store.
pub trait NodeRegistry: Send + Sync {
    /// Leases a node id as `choose` picks it, for `claim.lease` from now
    /// by the database's clock, in one transaction, its limit [`capped`]
    /// by that clock.
    fn claim_node(&self, claim: &NodeClaim) -> Result<Claimed, StoreError>;

    /// Extends `holder`'s lease of `node_id` by `lease` from now and raises
    /// its numbers' limit to `until_ms`, [`capped`] by the database's clock
    /// (never lowers it): the limit granted, which is what is recorded (a
    /// fence taken over further ahead than the cap included).
    /// `None`: the id is no longer this holder's (another server took it
    /// over).
    fn renew_node(
        &self,
        node_id: u16,
        holder: u64,
        lease: Duration,
        until_ms: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// Gives the id up at a clean stop, if `holder` still has it: free at
    /// once, with its limit lowered to `last_ms`, the last millisecond the
    /// holder stamped (so that the next holder need not start in the
    /// future). The holder makes no number after this.
    fn release_node(&self, node_id: u16, holder: u64, last_ms: u64) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(want: Option<u16>, holder: u64) -> NodeClaim<'static> {
        NodeClaim {
            want,
            max_id: 3,
            holder,
            info: "test",
            lease: Duration::from_secs(30),
            until_ms: 1_000_000,
        }
    }

    fn row(node_id: u16, holder: u64, left_ms: u64, until_ms: u64) -> NodeRow {
        NodeRow {
            node_id,
            holder,
            info: format!("holder {holder}"),
            left_ms,
            until_ms,
        }
    }

    fn taken(choice: Choice) -> (u16, u64, bool) {
        match choice {
            Choice::Take { lease, exists } => (lease.node_id, lease.floor_ms, exists),
            other => panic!("expected a lease, got {other:?}"),
        }
    }

    #[test]
    fn the_lowest_free_id_is_taken() {
        assert_eq!(taken(choose(&[], &claim(None, 9))), (0, 0, false));
        // 0 held, 1 ended, 2 released: 1, above its old limit.
        let rows = [row(0, 5, 1000, 10), row(1, 6, 0, 20), row(2, 0, 0, 30)];
        assert_eq!(taken(choose(&rows, &claim(None, 9))), (1, 20, true));
        let all = [
            row(0, 5, 1, 0),
            row(1, 6, 1, 0),
            row(2, 7, 1, 0),
            row(3, 8, 1, 0),
        ];
        assert_eq!(
            choose(&all, &claim(None, 9)),
            Choice::Refuse(Claimed::AllHeld)
        );
    }

    #[test]
    fn an_id_asked_for_is_taken_only_if_free() {
        let rows = [row(0, 5, 1000, 10), row(1, 6, 0, 20)];
        assert_eq!(taken(choose(&rows, &claim(Some(1), 9))), (1, 20, true));
        assert_eq!(taken(choose(&rows, &claim(Some(3), 9))), (3, 0, false));
        assert_eq!(
            choose(&rows, &claim(Some(0), 9)),
            Choice::Refuse(Claimed::Held {
                node_id: 0,
                by: "holder 5".into(),
                left_ms: 1000
            })
        );
    }

    /// A claim retried after its reply was lost finds its own lease and
    /// takes it again, rather than a second id, from the floor the lost
    /// claim was given (its limit less a lease), not from that limit.
    #[test]
    fn a_holder_gets_its_own_id_again() {
        let rows = [row(0, 0, 0, 10), row(2, 9, 1000, 40_040)];
        assert_eq!(taken(choose(&rows, &claim(None, 9))), (2, 10_040, true));
        assert_eq!(taken(choose(&rows, &claim(Some(2), 9))), (2, 10_040, true));
    }

    /// The new limit leaves a lease's worth of room above the floor, even
    /// when the claimer's clock is behind it.
    #[test]
    fn the_new_limit_is_above_the_floor() {
        let rows = [row(0, 0, 0, 5_000_000)];
        match choose(&rows, &claim(None, 9)) {
            Choice::Take { lease, .. } => {
                assert_eq!((lease.floor_ms, lease.until_ms), (5_000_000, 5_030_000))
            }
            other => panic!("{other:?}"),
        }
    }
}
