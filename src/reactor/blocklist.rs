//! Addresses blocked in the kernel: after an address is refused for
//! `--accept-rate-per-ip`, its connection requests are dropped for
//! `--block-for` by a socket filter (classic BPF) on the public listening
//! sockets, before the kernel answers them.
//!
//! Why: refusing at accept stops what a connection would cost the reactors,
//! not what a flood of new connections costs. Each refused one still takes
//! the kernel a handshake and a teardown and the acceptor an accept, a
//! write and a close, and the refused client comes back at once: 50 threads
//! reconnecting that way kept a normal client's p99 at 16–33 ms on a 2-core
//! machine (BENCHMARKS.md, "the attack from an address of its own"). A SYN
//! the filter drops costs the kernel a look-up and a few instructions, and
//! its sender's `connect` waits for TCP's retransmission (a second, then
//! two more) instead of coming back. It is what a host firewall's
//! per-source limit does (nftables' dynamic sets, iptables' `hashlimit`),
//! done by the server for the addresses it already refuses.
//!
//! Only a SYN without ACK (a connection request) is matched: the
//! connections the kernel completes inherit the listener's filter, and
//! every packet of theirs runs its first four instructions and passes.
//! IPv6 sources are blocked by their /64, as the rate limiter keys them;
//! an IPv4 client of a dual-stack listener sends IPv4 packets, matched as
//! IPv4. The filter is on the public listeners only: `--admin-listen` stays
//! open to an operator whose address is blocked.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};
use parking_lot::Mutex;
use socket2::Socket;

/// Addresses blocked at once at most: every connection request runs the
/// list. Past it (or past what the kernel takes: a filter is charged to the
/// socket's option memory, `net.core.optmem_max`, twice while one replaces
/// another), an address over the rate is refused at accept, as without a
/// block.
pub const MAX_BLOCKED: usize = 512;

/// What the filter matches: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    V4(u32),
    V6Prefix(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // A dual-stack listener sees an IPv4 client's packets as
                // IPv4.
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The blocked sources and the listening sockets their filter is on, shared
/// by the acceptors.
pub struct Blocklist {
    /// How long a block lasts; zero: never block.
    block_for: Duration,
    /// The public listening sockets: duplicates of the acceptors'
    /// descriptors (a filter belongs to the socket, which each descriptor
    /// names).
    listeners: Vec<Socket>,
    start: Instant,
    /// Milliseconds since `start` when the first block ends, `u64::MAX`
    /// when none: read by every acceptor after each poll without the lock.
    next_end_ms: AtomicU64,
    /// Leaf lock: held only while the filter is rebuilt and attached.
    blocked: Mutex<Blocked>,
}

#[derive(Default)]
struct Blocked {
    /// In the order they were blocked, so ends ascend: (source, end in ms
    /// since `start`).
    sources: Vec<(Source, u64)>,
    /// Whether a listener may hold a filter other than `sources`' (an
    /// attach failed on it): attached again at the next expiry.
    stale: bool,
    /// Sources blocked at once at most: [`MAX_BLOCKED`], or fewer once the
    /// kernel refused a longer filter.
    capacity: usize,
    /// Whether a full list was already reported since it last had room.
    full_reported: bool,
}

/// After an attach failed, how long until it is tried again.
const RETRY_MS: u64 = 1000;

impl Blocklist {
    /// A blocklist for the public `listeners` (each duplicated here); with
    /// a `block_for` of zero it never blocks.
    pub fn new<'a>(
        block_for: Duration,
        listeners: impl IntoIterator<Item = &'a mio::net::TcpListener>,
    ) -> std::io::Result<Blocklist> {
        let listeners = if block_for.is_zero() {
            Vec::new()
        } else {
            listeners
                .into_iter()
                .map(|l| socket2::SockRef::from(l).try_clone())
                .collect::<std::io::Result<_>>()?
        };
        Ok(Blocklist {
            block_for,
            listeners,
            start: Instant::now(),
            next_end_ms: AtomicU64::new(u64::MAX),
            blocked: Mutex::new(Blocked {
                capacity: MAX_BLOCKED,
                ..Blocked::default()
            }),
        })
    }

    /// Blocks `ip` (its /64 for IPv6) for `--block-for`. Returns whether
    /// this call blocked it: not when it already was, blocks are off, the
    /// list is full, or the kernel refused the filter (logged).
    pub fn block(&self, ip: IpAddr) -> bool {
        if self.block_for.is_zero() {
            return false;
        }
        let source = Source::from(ip);
        let now = self.now_ms();
        let mut blocked = self.blocked.lock();
        if blocked.sources.iter().any(|&(s, _)| s == source) {
            // Connections it completed before the block, refused now.
            return false;
        }
        if blocked.sources.len() >= blocked.capacity {
            if !std::mem::replace(&mut blocked.full_reported, true) {
                warn!(
                    "{} addresses blocked already: more addresses over \
                     --accept-rate-per-ip are refused at accept until blocks end",
                    blocked.sources.len()
                );
            }
            return false;
        }
        let end = now.saturating_add(self.block_for.as_millis() as u64);
        blocked.sources.push((source, end));
        if let Err(e) = self.attach(&blocked.sources) {
            // Some listeners may have taken it: the next expiry puts the
            // list without it back on them. The kernel takes no filter this
            // long: none as long is tried again.
            blocked.sources.pop();
            blocked.stale = true;
            blocked.capacity = blocked.sources.len().max(1);
            warn!(
                "the kernel refused a filter of {} blocked addresses ({e}; the limit is \
                 net.core.optmem_max): no more than {} are blocked at once",
                blocked.sources.len() + 1,
                blocked.capacity
            );
            self.next_end_ms
                .fetch_min(now + RETRY_MS, Ordering::Relaxed);
            return false;
        }
        self.next_end_ms.fetch_min(end, Ordering::Relaxed);
        info!(
            "blocking {} for {:?}: over --accept-rate-per-ip",
            shown(ip),
            self.block_for
        );
        true
    }

    /// Ends the blocks whose time is up. Cheap when none is: an atomic load
    /// and a clock read.
    pub fn expire(&self) {
        let now = self.now_ms();
        if now < self.next_end_ms.load(Ordering::Relaxed) {
            return;
        }
        let mut blocked = self.blocked.lock();
        let before = blocked.sources.len();
        blocked.sources.retain(|&(_, end)| end > now);
        if blocked.sources.len() != before {
            blocked.full_reported = false;
            blocked.stale = true;
        }
        if blocked.stale {
            // One that fails leaves a listener with its old filter, the
            // ended blocks in it: tried again a little later.
            blocked.stale = match self.attach(&blocked.sources) {
                Ok(()) => false,
                Err(e) => {
                    warn!("the kernel refused the listeners' address filter: {e}");
                    true
                }
            };
        }
        let next = match blocked.sources.first() {
            _ if blocked.stale => now + RETRY_MS,
            Some(&(_, end)) => end,
            None => u64::MAX,
        };
        self.next_end_ms.store(next, Ordering::Relaxed);
    }

    /// How long until the first block ends, for the acceptors' poll
    /// timeout; `None` when nothing is blocked.
    pub fn until_next_end(&self) -> Option<Duration> {
        match self.next_end_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            end => Some(Duration::from_millis(end.saturating_sub(self.now_ms()))),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Puts the filter for `sources` on every listener (none: the filter
    /// taken off), or returns the first listener's refusal (the others are
    /// still tried: each then holds the new filter or its old one).
    fn attach(&self, sources: &[(Source, u64)]) -> std::io::Result<()> {
        let sources: Vec<Source> = sources.iter().map(|&(s, _)| s).collect();
        let mut result = Ok(());
        for listener in &self.listeners {
            if let Err(e) = filter::install(listener, &sources) {
                result = result.and(Err(e));
            }
        }
        result
    }
}

/// An address as logged: IPv6 by the /64 blocked.
fn shown(ip: IpAddr) -> String {
    match Source::from(ip) {
        Source::V4(_) => ip.to_string(),
        Source::V6Prefix(prefix) => {
            format!("{}/64", std::net::Ipv6Addr::from(u128::from(prefix) << 64))
        }
    }
}

/// The filter program, and putting it on a socket (Linux only; elsewhere
/// the kernel has no such filter and nothing is blocked).
mod filter {
    use super::Source;

    /// An instruction: (code, jump if true, jump if false, constant).
    pub type Insn = (u16, u8, u8, u32);

    // linux/filter.h's classic BPF, as libc spells it for Linux.
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const RSH_K: u16 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
    const JA: u16 = 0x05; // BPF_JMP | BPF_JA
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const ST: u16 = 0x02; // BPF_ST: A into scratch word k
    const LD_MEM: u16 = 0x60; // BPF_LD | BPF_W | BPF_MEM: scratch word k into A
    /// Loads at this offset plus k read the network (IP) header; plain ones
    /// read the segment from its TCP header, where a TCP socket's filter
    /// starts (SKF_NET_OFF).
    const NET: u32 = 0xfff0_0000;
    const PASS: u32 = u32::MAX;
    const DROP: u32 = 0;
    /// TCP's flags byte, and SYN and ACK in it.
    const TCP_FLAGS: u32 = 13;
    const SYN: u32 = 0x02;
    const SYN_ACK: u32 = 0x12;

    /// Drops a connection request (SYN without ACK) from any of `sources`,
    /// passes every other packet.
    pub fn program(sources: &[Source]) -> Vec<Insn> {
        let v4: Vec<u32> = sources
            .iter()
            .filter_map(|s| match s {
                Source::V4(a) => Some(*a),
                Source::V6Prefix(_) => None,
            })
            .collect();
        let v6: Vec<u64> = sources
            .iter()
            .filter_map(|s| match s {
                Source::V6Prefix(p) => Some(*p),
                Source::V4(_) => None,
            })
            .collect();
        let mut p = vec![
            (LD_B_ABS, 0, 0, TCP_FLAGS),
            (AND_K, 0, 0, SYN_ACK),
            (JEQ_K, 1, 0, SYN),
            (RET_K, 0, 0, PASS),
            // The IP version, from the header's first nibble.
            (LD_B_ABS, 0, 0, NET),
            (RSH_K, 0, 0, 4),
            (JEQ_K, 1, 0, 4),
            // To the IPv6 part: past the load, two per IPv4 source, and
            // the IPv4 part's pass (a jump's k counts from the next one).
            (JA, 0, 0, 1 + 2 * v4.len() as u32 + 1),
            (LD_W_ABS, 0, 0, NET + 12), // IPv4 source address
        ];
        for a in v4 {
            p.push((JEQ_K, 0, 1, a));
            p.push((RET_K, 0, 0, DROP));
        }
        p.push((RET_K, 0, 0, PASS));
        // The IPv6 source address's first two words (bytes 8 to 15), read
        // from the packet once and kept in scratch words: a load from the
        // packet is several instructions once the kernel has translated
        // it, and the kernel charges the filter by its translated length.
        p.extend([
            (LD_W_ABS, 0, 0, NET + 8),
            (ST, 0, 0, 0),
            (LD_W_ABS, 0, 0, NET + 12),
            (ST, 0, 0, 1),
        ]);
        for prefix in v6 {
            p.push((LD_MEM, 0, 0, 0));
            p.push((JEQ_K, 0, 3, (prefix >> 32) as u32));
            p.push((LD_MEM, 0, 0, 1));
            p.push((JEQ_K, 0, 1, prefix as u32));
            p.push((RET_K, 0, 0, DROP));
        }
        p.push((RET_K, 0, 0, PASS));
        p
    }

    #[cfg(target_os = "linux")]
    pub fn install(socket: &socket2::Socket, sources: &[Source]) -> std::io::Result<()> {
        if sources.is_empty() {
            return match socket.detach_filter() {
                // No filter on it: nothing to take off.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                other => other,
            };
        }
        let program: Vec<socket2::SockFilter> = program(sources)
            .into_iter()
            .map(|(code, jt, jf, k)| socket2::SockFilter::new(code, jt, jf, k))
            .collect();
        socket.attach_filter(&program)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn install(_: &socket2::Socket, sources: &[Source]) -> std::io::Result<()> {
        if sources.is_empty() {
            return Ok(());
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "socket filters are Linux's",
        ))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{SocketAddr, TcpStream};

    use socket2::{Domain, Type};

    use super::*;

    fn listener(addr: &str) -> mio::net::TcpListener {
        let addr: SocketAddr = addr.parse().unwrap();
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
        if addr.is_ipv6() {
            // Dual stack, whatever the system's default.
            socket.set_only_v6(false).unwrap();
        }
        socket.bind(&addr.into()).unwrap();
        socket.listen(64).unwrap();
        mio::net::TcpListener::from_std(socket.into())
    }

    /// Whether a connect from `from` to `listener`'s port on `to` is
    /// answered within 300 ms (a dropped SYN is retransmitted after a
    /// second); if it is, a byte sent is read on the accepted side, the
    /// filter the accepted connection inherited passing its packets.
    fn answered(from: &str, to: &str, listener: &mio::net::TcpListener) -> bool {
        let from: IpAddr = from.parse().unwrap();
        let to = SocketAddr::new(to.parse().unwrap(), listener.local_addr().unwrap().port());
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
        match socket.connect_timeout(&to.into(), Duration::from_millis(300)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(e) => panic!("connect from {from}: {e}"),
        }
        let mut client: TcpStream = socket.into();
        std::io::Write::write_all(&mut client, b"x").unwrap();
        let accepted = (0..100)
            .find_map(|_| match listener.accept() {
                Ok((s, _)) => Some(s),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    None
                }
            })
            .expect("not accepted");
        let mut accepted = socket2::SockRef::from(&accepted).try_clone().unwrap();
        accepted.set_nonblocking(false).unwrap();
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut accepted, &mut byte).expect("the byte sent");
        true
    }

    #[test]
    fn a_blocked_address_gets_no_answer_and_others_are_served() {
        let l = listener("127.0.0.1:0");
        let list = Blocklist::new(Duration::from_secs(60), [&l]).unwrap();
        assert!(answered("127.0.0.2", "127.0.0.1", &l));
        assert!(list.block("127.0.0.2".parse().unwrap()));
        assert!(!list.block("127.0.0.2".parse().unwrap()), "blocked twice");
        assert!(!answered("127.0.0.2", "127.0.0.1", &l));
        assert!(answered("127.0.0.3", "127.0.0.1", &l));
        assert!(answered("127.0.0.1", "127.0.0.1", &l));
    }

    #[test]
    fn a_block_ends_when_its_time_is_up() {
        let l = listener("127.0.0.1:0");
        let list = Blocklist::new(Duration::from_millis(400), [&l]).unwrap();
        assert_eq!(list.until_next_end(), None);
        assert!(list.block("127.0.0.2".parse().unwrap()));
        let until = list.until_next_end().expect("an end due");
        assert!(until <= Duration::from_millis(400), "{until:?}");
        list.expire(); // not yet
        assert!(!answered("127.0.0.2", "127.0.0.1", &l));
        std::thread::sleep(list.until_next_end().unwrap_or_default());
        list.expire();
        assert_eq!(list.until_next_end(), None);
        assert!(answered("127.0.0.2", "127.0.0.1", &l));
        // And it can be blocked again.
        assert!(list.block("127.0.0.2".parse().unwrap()));
        assert!(!answered("127.0.0.2", "127.0.0.1", &l));
    }

    /// The last IPv4 source and the last IPv6 /64 of a long list are both
    /// matched (the jump over the IPv4 part lands on the IPv6 part), on a
    /// dual-stack listener that sees both kinds of packets.
    #[test]
    fn both_families_are_matched_at_the_end_of_a_long_list() {
        let l = listener("[::]:0");
        let list = Blocklist::new(Duration::from_secs(60), [&l]).unwrap();
        for i in 0..200u32 {
            assert!(list.block(IpAddr::from((0x0a00_0000 + i).to_be_bytes())));
            let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, i as u16, 0, 0, 0, 1);
            assert!(list.block(IpAddr::V6(v6)));
        }
        assert!(answered("127.0.0.9", "127.0.0.1", &l));
        assert!(answered("::1", "::1", &l));
        assert!(list.block("127.0.0.9".parse().unwrap()));
        // ::1 by its /64, ::/64.
        assert!(list.block("::2".parse().unwrap()));
        assert!(!answered("127.0.0.9", "127.0.0.1", &l));
        assert!(!answered("::1", "::1", &l));
        assert!(answered("127.0.0.8", "127.0.0.1", &l));
    }

    /// A full list of the longest entries is a filter the kernel takes, and
    /// past it nothing more is blocked.
    #[test]
    fn the_list_is_bounded_and_a_full_one_fits_the_kernels_limit() {
        let l = listener("127.0.0.1:0");
        let list = Blocklist::new(Duration::from_secs(60), [&l]).unwrap();
        for i in 0..MAX_BLOCKED as u16 {
            let v6 = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, i, 0, 0, 0, 1);
            assert!(list.block(IpAddr::V6(v6)), "entry {i}");
        }
        assert!(!list.block("127.0.0.2".parse().unwrap()));
        assert!(answered("127.0.0.2", "127.0.0.1", &l));
    }

    #[test]
    fn a_zero_block_for_never_blocks() {
        let l = listener("127.0.0.1:0");
        let list = Blocklist::new(Duration::ZERO, [&l]).unwrap();
        assert!(!list.block("127.0.0.2".parse().unwrap()));
        assert!(answered("127.0.0.2", "127.0.0.1", &l));
    }

    #[test]
    fn sources_are_keyed_as_the_rate_limiter_keys_addresses() {
        let source = |s: &str| Source::from(s.parse::<IpAddr>().unwrap());
        assert_eq!(source("::ffff:10.0.0.1"), source("10.0.0.1"));
        assert_eq!(source("2001:db8:1:2::1"), source("2001:db8:1:2:ffff::9"));
        assert_ne!(source("2001:db8:1:2::1"), source("2001:db8:1:3::1"));
        assert_eq!(
            source("2001:db8:1:2::1"),
            Source::V6Prefix(0x2001_0db8_0001_0002)
        );
    }
}
