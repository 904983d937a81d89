//! Addresses blocked in the kernel: after an address is refused for
//! `--accept-rate-per-ip`, its connection requests are dropped for
//! `--block-for` by a socket filter (classic BPF) on the public listening
//! sockets, before the kernel answers them. Linux only.
//!
//! Why: refusing at accept stops what a connection would cost the reactors,
//! not what a flood of new connections costs. Each refused one still takes
//! the kernel a handshake and a teardown and the acceptor an accept, a
//! write and a close, and the refused client comes back at once: 50 threads
//! reconnecting that way kept a normal client's p99 at 16–33 ms on a 2-core
//! machine (BENCHMARKS.md, "the attack from an address of its own"). A SYN
//! the filter drops costs the kernel a look-up and a few instructions, and
//! its sender's `connect` waits for TCP's retransmission (a second or more)
//! instead of coming back. It is what a host firewall's per-source limit
//! does (nftables' dynamic sets, iptables' `hashlimit`), done by the server
//! for the addresses it already refuses.
//!
//! Only a SYN without ACK (a connection request) is matched. IPv6 sources
//! are blocked by their /64, as the rate limiter keys them; an IPv4 client
//! of a dual-stack listener sends IPv4 packets, matched as IPv4. The filter
//! is on the public listeners only: `--admin-listen` stays open to an
//! operator whose address is blocked.
//!
//! What a filter costs the kernel bounds how it is used. Every change of
//! the list is a new program for each listener: changes are batched, at
//! most [`ATTACH_BURST`] in any [`ATTACH_BURST`] × [`ATTACH_GAP_MS`], and
//! blocks end on a grid of [`END_GRID_MS`], so that an attacker with many
//! addresses cannot make the acceptors rebuild it for each one. A connection the kernel completes
//! holds a reference to its listener's filter of that moment (and is
//! charged its size): the acceptor takes it off each connection it accepts
//! while filters are in use ([`Blocklist::clean`]), or long-lived
//! connections would pin every version of the list.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use parking_lot::Mutex;
use socket2::Socket;

mod filter;

/// Addresses blocked at once at most: every connection request runs the
/// list. Past it (or past what the kernel takes: a filter is charged to the
/// socket's option memory, `net.core.optmem_max`, twice while one replaces
/// another), an address over the rate is refused at accept, as without a
/// block.
pub const MAX_BLOCKED: usize = 512;

/// Filters put on the listeners at most one per this long, on average:
/// addresses blocked meanwhile are refused at accept until the next.
const ATTACH_GAP_MS: u64 = 100;

/// Filters that may be put on in any `ATTACH_BURST` × [`ATTACH_GAP_MS`]
/// (a sliding window), however close together: a flooder blocked again
/// as its block ends (the filter just rebuilt without it) is blocked at
/// once, not after a gap.
const ATTACH_BURST: usize = 4;

/// Blocks end on multiples of this (rounded up), so that their ends come
/// in batches.
const END_GRID_MS: u64 = 250;

/// After an attach failed, how long until it is tried again.
const RETRY_MS: u64 = 1000;

/// How long after the last filter came off the listeners an accepted
/// connection may still hold one: it was completed while the filter was
/// on and waited in the listen queue since.
const LINGER_MS: u64 = 10_000;

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
    /// How long a block lasts; zero: blocks are off.
    block_for: Duration,
    start: Instant,
    /// Milliseconds since `start` when [`expire`](Self::expire) has work
    /// (a block's end, a batch to attach, a retry), `u64::MAX` when none:
    /// read by every acceptor after each poll without the lock.
    next_due_ms: AtomicU64,
    /// Until when (ms since `start`) an accepted connection may hold a
    /// filter: `u64::MAX` while one is on the listeners, 0 before the
    /// first.
    filtered_until_ms: AtomicU64,
    /// Leaf lock: held while the filter is rebuilt and attached.
    state: Mutex<State>,
}

struct State {
    /// The public listening sockets, by acceptor: duplicates of their
    /// descriptors (a filter belongs to the socket, which each descriptor
    /// names), dropped when that acceptor stops.
    listeners: Vec<Option<Socket>>,
    /// In the order they were blocked, so ends ascend: (source, end in ms
    /// since `start`).
    sources: Vec<(Source, u64)>,
    /// Whether the listeners' filters may differ from `sources`' (a batch
    /// not attached yet, blocks ended, an attach that failed).
    stale: bool,
    /// When each of the last [`ATTACH_BURST`] attaches leaves the window
    /// (its time plus the window), ms since `start`, the first to leave at
    /// `next_slot`.
    window_frees_ms: [u64; ATTACH_BURST],
    next_slot: usize,
    /// No attach before this (after one failed), ms since `start`.
    retry_at_ms: u64,
    /// Sources blocked at once at most: [`MAX_BLOCKED`], or fewer after the
    /// kernel refused a filter for its size, until the list is empty again.
    capacity: usize,
    /// Whether a full list was already reported since it last had room.
    full_reported: bool,
    /// Whether the kernel refused a filter for another reason than its
    /// size: nothing is blocked any more.
    off: bool,
    /// When a block may next be logged at info, ms since `start`: once a
    /// second at most, the others at debug.
    next_info_ms: u64,
}

impl State {
    /// When the list may next be attached: once the window has room, and
    /// not before a retry's time.
    fn next_attach_ms(&self) -> u64 {
        self.window_frees_ms[self.next_slot].max(self.retry_at_ms)
    }
}

impl Blocklist {
    /// A blocklist for the public `listeners` (each duplicated here, by
    /// acceptor index); with a `block_for` of zero, or off Linux, it never
    /// blocks and holds no descriptor.
    pub fn new<'a>(
        block_for: Duration,
        listeners: impl IntoIterator<Item = &'a mio::net::TcpListener>,
    ) -> std::io::Result<Blocklist> {
        let block_for = if cfg!(target_os = "linux") {
            block_for
        } else {
            Duration::ZERO
        };
        let listeners = if block_for.is_zero() {
            Vec::new()
        } else {
            listeners
                .into_iter()
                .map(|l| socket2::SockRef::from(l).try_clone().map(Some))
                .collect::<std::io::Result<_>>()?
        };
        Ok(Blocklist {
            block_for,
            start: Instant::now(),
            next_due_ms: AtomicU64::new(u64::MAX),
            filtered_until_ms: AtomicU64::new(0),
            state: Mutex::new(State {
                listeners,
                sources: Vec::new(),
                stale: false,
                window_frees_ms: [0; ATTACH_BURST],
                next_slot: 0,
                retry_at_ms: 0,
                capacity: MAX_BLOCKED,
                full_reported: false,
                off: false,
                next_info_ms: 0,
            }),
        })
    }

    /// Blocks `ip` (its /64 for IPv6) for `--block-for`, at once or with
    /// the next batch (within `ATTACH_BURST` × [`ATTACH_GAP_MS`] after a
    /// burst of changes). Returns whether this call blocked it: not when it
    /// already was, blocks are off, or the list is full.
    pub fn block(&self, ip: IpAddr) -> bool {
        if self.block_for.is_zero() {
            return false;
        }
        let source = Source::from(ip);
        let mut state = self.state.lock();
        // Read under the lock, so that ends are pushed in order.
        let now = self.now_ms();
        if state.off || state.sources.iter().any(|&(s, _)| s == source) {
            // Connections it completed before the block, refused now.
            return false;
        }
        if state.sources.len() >= state.capacity {
            if !std::mem::replace(&mut state.full_reported, true) {
                warn!(
                    "{} addresses blocked already: more addresses over \
                     --accept-rate-per-ip are refused at accept until blocks end",
                    state.sources.len()
                );
            }
            return false;
        }
        let end = (now + self.block_for.as_millis() as u64).next_multiple_of(END_GRID_MS);
        state.sources.push((source, end));
        state.stale = true;
        self.settle(&mut state, now);
        let line = format!(
            "blocking {} for {:?}: over --accept-rate-per-ip ({} blocked)",
            shown(ip),
            self.block_for,
            state.sources.len()
        );
        if now >= state.next_info_ms {
            state.next_info_ms = now + 1000;
            info!("{line}");
        } else {
            debug!("{line}");
        }
        true
    }

    /// Ends the blocks whose time is up and attaches what is due. Cheap when
    /// nothing is: an atomic load and a clock read.
    pub fn expire(&self) {
        if self.now_ms() < self.next_due_ms.load(Ordering::Relaxed) {
            return;
        }
        let mut state = self.state.lock();
        let now = self.now_ms();
        let before = state.sources.len();
        state.sources.retain(|&(_, end)| end > now);
        if state.sources.len() != before {
            state.full_reported = false;
            state.stale = true;
            if state.sources.is_empty() && !state.off {
                state.capacity = MAX_BLOCKED;
            }
        }
        self.settle(&mut state, now);
    }

    /// How long until [`expire`](Self::expire) has work, for the acceptors'
    /// poll timeout; `None` when it has none.
    pub fn until_due(&self) -> Option<Duration> {
        match self.next_due_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            due => Some(Duration::from_millis(due.saturating_sub(self.now_ms()))),
        }
    }

    /// Takes off `socket`, just accepted, the filter it may have from its
    /// listener. Nothing but an atomic load before the first block.
    pub fn clean(&self, socket: &mio::net::TcpStream) {
        let until = self.filtered_until_ms.load(Ordering::Relaxed);
        if until == 0 || self.now_ms() >= until {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            // ENOENT: it had none (completed before the first filter, or
            // after the filter came off).
            let _ = socket2::SockRef::from(socket).detach_filter();
        }
        #[cfg(not(target_os = "linux"))]
        let _ = socket;
    }

    /// Forgets acceptor `index`'s listener, which it is closing: a
    /// duplicate kept here would keep it listening, its share of new
    /// connections left in a queue no one accepts from.
    pub fn close(&self, index: usize) {
        if let Some(listener) = self.state.lock().listeners.get_mut(index) {
            *listener = None;
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Attaches `state`'s list if it is stale and the attaches of the
    /// window allow, and sets when there is work next.
    fn settle(&self, state: &mut State, now: u64) {
        if state.stale && now >= state.next_attach_ms() {
            state.window_frees_ms[state.next_slot] = now + ATTACH_BURST as u64 * ATTACH_GAP_MS;
            state.next_slot = (state.next_slot + 1) % ATTACH_BURST;
            match self.attach(state) {
                Ok(()) => state.stale = false,
                Err(e) => self.refused(state, &e),
            }
            self.filtered_until_ms.store(
                if state.sources.is_empty() && !state.stale {
                    now + LINGER_MS
                } else {
                    u64::MAX
                },
                Ordering::Relaxed,
            );
        }
        let next = match state.sources.first() {
            _ if state.stale => state.next_attach_ms().max(now + 1),
            Some(&(_, end)) => end,
            None => u64::MAX,
        };
        self.next_due_ms.store(next, Ordering::Relaxed);
    }

    /// After the kernel refused a listener the filter: for its size
    /// (ENOMEM, with more than one address), the newest blocks are dropped
    /// and fewer kept until the list is empty again; for anything else (a
    /// single address refused too), blocks are turned off. The
    /// listeners are tried again a little later (some may have taken the
    /// refused filter, or still hold the last).
    fn refused(&self, state: &mut State, e: &std::io::Error) {
        state.stale = true;
        state.retry_at_ms = self.now_ms() + RETRY_MS;
        let blocked = state.sources.len();
        if e.raw_os_error() == Some(libc::ENOMEM) && blocked > 1 {
            state.capacity = blocked * 3 / 4;
            warn!(
                "the kernel refused the listeners' filter of {blocked} blocked addresses ({e}; \
                 net.core.optmem_max bounds it): {} blocked at once at most until none is",
                state.capacity
            );
        } else {
            state.off = true;
            state.capacity = 0;
            warn!(
                "the kernel refused the listeners' filter ({e}): addresses over \
                 --accept-rate-per-ip are refused at accept, no longer blocked"
            );
        }
        state.sources.truncate(state.capacity);
    }

    /// Puts the filter for `state.sources` on every listener (none: the
    /// filter taken off), or returns the first listener's refusal (the
    /// others are still tried: each then holds the new filter or its old
    /// one).
    fn attach(&self, state: &State) -> std::io::Result<()> {
        let sources: Vec<Source> = state.sources.iter().map(|&(s, _)| s).collect();
        let mut result = Ok(());
        for listener in state.listeners.iter().flatten() {
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{SocketAddr, TcpStream};

    use socket2::{Domain, Type};

    use super::super::accept_soon;
    use super::super::acceptor::net_core;
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
        let accepted = accept_soon(listener);
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

    /// Runs the acceptors' part: waits until the list has work, and lets
    /// it do it, until it has none left or `until` holds.
    fn settle_until(list: &Blocklist, until: impl Fn() -> bool) {
        for _ in 0..100 {
            if until() {
                return;
            }
            let Some(due) = list.until_due() else { return };
            std::thread::sleep(due);
            list.expire();
        }
    }

    #[test]
    fn a_block_ends_when_its_time_is_up() {
        let l = listener("127.0.0.1:0");
        let list = Blocklist::new(Duration::from_millis(400), [&l]).unwrap();
        assert_eq!(list.until_due(), None);
        assert!(list.block("127.0.0.2".parse().unwrap()));
        let until = list.until_due().expect("an end due");
        // On the grid past 400 ms.
        assert!(
            until <= Duration::from_millis(400 + END_GRID_MS),
            "{until:?}"
        );
        list.expire(); // not yet
        assert!(!answered("127.0.0.2", "127.0.0.1", &l));
        settle_until(&list, || false);
        assert_eq!(list.until_due(), None);
        assert!(answered("127.0.0.2", "127.0.0.1", &l));
        // And it is blocked again at once: the filter was rebuilt twice in
        // all, within the burst.
        assert!(list.block("127.0.0.2".parse().unwrap()));
        assert!(!list.state.lock().stale);
        assert!(!answered("127.0.0.2", "127.0.0.1", &l));
    }

    /// Blocks in a row are each attached at once up to the burst; past it
    /// they wait for the next batch: the filter is rebuilt once per
    /// [`ATTACH_GAP_MS`] on average, whatever the number of addresses
    /// refused meanwhile.
    #[test]
    fn blocks_past_the_burst_are_attached_in_one_batch() {
        let l = listener("127.0.0.1:0");
        let list = Blocklist::new(Duration::from_secs(60), [&l]).unwrap();
        let address = |i: usize| format!("127.0.0.{}", 10 + i);
        for i in 0..ATTACH_BURST {
            assert!(list.block(address(i).parse().unwrap()));
            assert!(!list.state.lock().stale, "block {i} of the burst waited");
        }
        let past: Vec<String> = (ATTACH_BURST..ATTACH_BURST + 3).map(address).collect();
        for a in &past {
            assert!(list.block(a.parse().unwrap()));
        }
        // Not attached yet (unless this machine took a whole window to get
        // here): one batch is due within the window.
        assert!(list.state.lock().stale, "past the burst, attached at once");
        let due = list.until_due().expect("a batch due");
        assert!(
            due <= Duration::from_millis(ATTACH_BURST as u64 * ATTACH_GAP_MS),
            "{due:?}"
        );
        assert!(!answered(&address(0), "127.0.0.1", &l));
        settle_until(&list, || !list.state.lock().stale);
        for a in &past {
            assert!(!answered(a, "127.0.0.1", &l), "{a}");
        }
        assert!(answered("127.0.0.5", "127.0.0.1", &l));
    }

    /// Every listener of the list gets the filter (the acceptors' queues of
    /// one port; here three ports, to connect to each), and one whose
    /// acceptor closed it is let go.
    #[test]
    fn every_listener_gets_the_filter_but_a_closed_one() {
        let ls = [
            listener("127.0.0.1:0"),
            listener("127.0.0.1:0"),
            listener("127.0.0.1:0"),
        ];
        let list = Blocklist::new(Duration::from_secs(60), &ls).unwrap();
        list.close(1);
        assert!(list.block("127.0.0.2".parse().unwrap()));
        assert!(!answered("127.0.0.2", "127.0.0.1", &ls[0]));
        assert!(answered("127.0.0.2", "127.0.0.1", &ls[1]));
        assert!(!answered("127.0.0.2", "127.0.0.1", &ls[2]));
    }

    /// The length of the filter on `socket` (0: none), as SO_GET_FILTER
    /// tells with no buffer.
    fn filter_len(socket: &impl std::os::fd::AsRawFd) -> libc::socklen_t {
        let mut len: libc::socklen_t = 0;
        // SAFETY: a null buffer of length 0 asks only for the length,
        // written to `len`, which lives through the call.
        let done = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER, // SO_GET_FILTER
                std::ptr::null_mut(),
                &mut len,
            )
        };
        assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
        len
    }

    /// A connection completed while a filter is on holds it (the kernel
    /// copies the listener's to it); `clean` takes it off, so that
    /// connections do not pin old filters.
    #[test]
    fn an_accepted_connection_is_cleaned_of_the_listeners_filter() {
        let l = listener("127.0.0.1:0");
        let list = Blocklist::new(Duration::from_secs(60), [&l]).unwrap();
        let accept = || {
            let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            (client, accept_soon(&l))
        };
        let (_c1, before) = accept();
        assert_eq!(filter_len(&before), 0);
        assert!(list.block("127.0.0.2".parse().unwrap()));
        let (_c2, during) = accept();
        assert!(filter_len(&during) > 0, "no filter inherited");
        list.clean(&during);
        assert_eq!(filter_len(&during), 0);
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
        settle_until(&list, || !list.state.lock().stale);
        assert!(answered("127.0.0.9", "127.0.0.1", &l));
        assert!(answered("::1", "::1", &l));
        assert!(list.block("127.0.0.9".parse().unwrap()));
        // ::1 by its /64, ::/64.
        assert!(list.block("::2".parse().unwrap()));
        settle_until(&list, || !list.state.lock().stale);
        assert!(!answered("127.0.0.9", "127.0.0.1", &l));
        assert!(!answered("::1", "::1", &l));
        assert!(answered("127.0.0.8", "127.0.0.1", &l));
    }

    /// A full list of the longest entries (IPv6, both halves with the top
    /// bit set, which the kernel's translation makes longer) is a filter
    /// the kernel takes where `net.core.optmem_max` is 128 KiB (Linux's
    /// default since 6.9), and past it nothing more is blocked.
    #[test]
    fn the_list_is_bounded_and_a_full_one_fits_the_kernels_limit() {
        let optmem = net_core("optmem_max").expect("net.core.optmem_max");
        assert!(
            optmem >= 128 << 10,
            "net.core.optmem_max {optmem}: this test needs 128 KiB"
        );
        let l = listener("127.0.0.1:0");
        let list = Blocklist::new(Duration::from_secs(60), [&l]).unwrap();
        for i in 0..MAX_BLOCKED as u16 {
            let v6 = std::net::Ipv6Addr::new(0xfd00, 0xdb8, 0x8001, i, 0, 0, 0, 1);
            assert!(list.block(IpAddr::V6(v6)), "entry {i}");
        }
        // Attached as one batch, the longest filter there is.
        settle_until(&list, || !list.state.lock().stale);
        let state = list.state.lock();
        assert!(!state.stale && !state.off && state.sources.len() == MAX_BLOCKED);
        drop(state);
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

    /// Two addresses are one source exactly when the rate limiter counts
    /// them as one address.
    #[test]
    fn sources_are_keyed_as_the_rate_limiter_keys_addresses() {
        let addresses: Vec<IpAddr> = [
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "10.0.0.2",
            "2001:db8:1:2::1",
            "2001:db8:1:2:ffff::9",
            "2001:db8:1:3::1",
            "::1",
            "::2",
            "::ffff:0:1",
            "0.0.0.1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let key = super::super::rate_limit::address_key;
        for a in &addresses {
            for b in &addresses {
                let same = Source::from(*a) == Source::from(*b);
                assert_eq!(same, key(*a) == key(*b), "{a} {b}");
            }
        }
        assert_eq!(
            Source::from("2001:db8:1:2::1".parse::<IpAddr>().unwrap()),
            Source::V6Prefix(0x2001_0db8_0001_0002)
        );
    }
}
