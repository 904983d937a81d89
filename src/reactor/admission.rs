//! Admission: how many connections the server holds, in all and per client
//! address. A connection past either limit is told why (an error frame with
//! status `busy`) and closed at once, by the acceptor, before any reactor
//! spends memory on it.
//!
//! A connection holds a [`Ticket`] for its whole life; dropping the ticket
//! (when the reactor frees the connection) gives its place back. The ticket
//! also counts its address's requests at workers
//! (`--max-inflight-per-ip`), over all the address's connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::rate_limit::address_key;

/// Places for connections to the admin port past `--max-connections`.
pub const ADMIN_RESERVE: usize = 16;

pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    /// Requests of one address at workers at most (0: no limit).
    max_jobs_per_ip: usize,
    total: AtomicUsize,
    // Taken once per accept and once per close: not a hot path. Keyed as
    // the rate limits are (an IPv6 address by its /64).
    per_ip: Mutex<HashMap<u64, Place>>,
}

/// One address's open connections, and its requests at workers (shared by
/// its connections' tickets, so counted without the map's lock).
struct Place {
    connections: usize,
    jobs: Arc<AtomicUsize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    TooManyFromAddress,
    /// Over `--accept-rate-per-ip` (decided by the acceptor).
    AddressTooFast,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too many connections to this server, retry later",
            Refusal::TooManyFromAddress => "too many connections from your address",
            Refusal::AddressTooFast => "too many new connections from your address, slow down",
        }
    }
}

/// A connection's place; given back on drop.
pub struct Ticket {
    admission: Arc<Admission>,
    key: u64,
    /// Its address's requests at workers.
    jobs: Arc<AtomicUsize>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_ip: usize, max_jobs_per_ip: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            max_jobs_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection from `ip`, to the admin port if
    /// `admin_port`: those have [`ADMIN_RESERVE`] places past the limit
    /// in all, so that a flood that fills the server's places leaves the
    /// operator a way in (to pause the sale, say).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, admin_port: bool) -> Result<Ticket, Refusal> {
        let mut per_ip = self.per_ip.lock();
        let max_total = match admin_port {
            true => self.max_total.saturating_add(ADMIN_RESERVE),
            false => self.max_total,
        };
        if self.total.load(Ordering::Relaxed) >= max_total {
            return Err(Refusal::TooManyConnections);
        }
        let key = address_key(ip);
        let place = per_ip.entry(key).or_insert_with(|| Place {
            connections: 0,
            jobs: Arc::default(),
        });
        if place.connections >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        place.connections += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket {
            admission: self.clone(),
            key,
            jobs: place.jobs.clone(),
        })
    }

    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Ticket {
    /// Counts one more request of this address at a worker, unless its
    /// address has as many as `--max-inflight-per-ip` allows already.
    pub fn take_job(&self) -> bool {
        let max = self.admission.max_jobs_per_ip;
        if max == 0 {
            return true;
        }
        if self.jobs.fetch_add(1, Ordering::Relaxed) >= max {
            self.jobs.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// `n` requests [taken](Self::take_job) are answered, or their
    /// connection is gone (whose answers, if they come, are dropped).
    pub fn jobs_done(&self, n: usize) {
        if self.admission.max_jobs_per_ip != 0 && n > 0 {
            self.jobs.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut per_ip = self.admission.per_ip.lock();
        if let Some(place) = per_ip.get_mut(&self.key) {
            place.connections -= 1;
            if place.connections == 0 {
                // The map holds only addresses with open connections.
                per_ip.remove(&self.key);
            }
        }
        self.admission.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_and_places_come_back() {
        let a = Admission::new(3, 2, 0);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let t1 = a.admit(one, false).unwrap();
        let _t2 = a.admit(one, false).unwrap();
        assert_eq!(a.admit(one, false).err(), Some(Refusal::TooManyFromAddress));
        let _t3 = a.admit(two, false).unwrap();
        assert_eq!(a.admit(two, false).err(), Some(Refusal::TooManyConnections));
        // Two addresses of one IPv6 /64 are one client.
        let v6 = Admission::new(10, 1, 0);
        let _t = v6.admit("2001:db8::1".parse().unwrap(), false).unwrap();
        assert_eq!(
            v6.admit("2001:db8::2".parse().unwrap(), false).err(),
            Some(Refusal::TooManyFromAddress)
        );
        assert!(v6.admit("2001:db8:0:1::1".parse().unwrap(), false).is_ok());
        assert_eq!(a.open(), 3);
        drop(t1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(one, false).is_ok());
        assert!(a.per_ip.lock().len() <= 2);
    }

    /// An address's requests at workers count over all its connections, up
    /// to the limit; answered ones, and those of a connection gone, come
    /// back; another address has its own.
    #[test]
    fn requests_in_flight_count_per_address() {
        let a = Admission::new(10, 10, 3);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let (c1, c2) = (a.admit(one, false).unwrap(), a.admit(one, false).unwrap());
        assert!(c1.take_job() && c1.take_job() && c2.take_job());
        assert!(
            !c2.take_job() && !c1.take_job(),
            "the address is at its limit"
        );
        let other = a.admit("10.0.0.2".parse().unwrap(), false).unwrap();
        assert!(other.take_job());
        c2.jobs_done(1);
        assert!(c1.take_job());
        assert!(!c1.take_job());
        // c1's connection closes with its three requests unanswered.
        c1.jobs_done(3);
        assert!(c2.take_job() && c2.take_job());
        // No limit: nothing counted, nothing refused.
        let free = Admission::new(10, 10, 0);
        let t = free.admit(one, false).unwrap();
        assert!((0..1000).all(|_| t.take_job()));
    }

    /// With every place taken by connections to the public port, the admin
    /// port still has its reserve, and no more.
    #[test]
    fn the_admin_port_has_places_past_the_limit() {
        let a = Admission::new(2, 100, 0);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let _public = [
            a.admit(ip(1), false).unwrap(),
            a.admit(ip(2), false).unwrap(),
        ];
        assert_eq!(
            a.admit(ip(3), false).err(),
            Some(Refusal::TooManyConnections)
        );
        let admins: Vec<Ticket> = (0..ADMIN_RESERVE)
            .map(|_| a.admit(ip(9), true).expect("an admin place"))
            .collect();
        assert_eq!(
            a.admit(ip(9), true).err(),
            Some(Refusal::TooManyConnections)
        );
        assert_eq!(
            a.admit(ip(3), false).err(),
            Some(Refusal::TooManyConnections)
        );
        assert_eq!(admins.len(), ADMIN_RESERVE);
    }
}
