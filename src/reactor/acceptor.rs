//! The acceptors: threads (`--acceptors`, 3 by default) that accept
//! connections and deal them out to the reactors, round robin. Each has a
//! listen queue of its own on the public address (several are one
//! SO_REUSEPORT group, among which the kernel spreads new connections), so
//! N acceptors hold up to N times `--backlog` of a connection storm (the
//! kernel hashes a connection to a queue however full it is: one acceptor
//! kept off a core overflows its own queue alone); the first
//! also listens on the admin address, when configured. An acceptor admits a
//! connection only within the connection limits, and tells one it refuses
//! why before closing it; an address refused for its rate of new
//! connections is then blocked in the kernel for a while (`blocklist`).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use log::{error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use seckill_proto::{Opcode, Reply, Status};

use super::admission::{Admission, Refusal};
use super::blocklist::Blocklist;
use super::rate_limit::{address_key, RateLimiter};
use super::WAKER_TOKEN;
use crate::config::Config;
use crate::dispatch::{Accepted, Reactors};
use crate::metrics::{self, Metrics};
use crate::stop::Stop;

const PUBLIC: Token = Token(0);
const ADMIN: Token = Token(1);

/// How long to wait before accepting again after the process ran out of
/// file descriptors (or another resource): the pending connections stay in
/// the kernel's backlog meanwhile, and the acceptor does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections accepted before the reactors they went to are woken: enough
/// to spare a wake-up per connection in a storm, few enough that the first
/// of a batch does not wait long for its reactor.
const ACCEPT_BATCH: usize = 64;

/// The listening sockets, bound before any thread starts, so that a port in
/// use is an error at start.
pub struct Listeners {
    /// The first acceptor's listen queue on the public address.
    public: TcpListener,
    /// The others' queues, on the same address.
    more_public: Vec<TcpListener>,
    admin: Option<TcpListener>,
}

impl Listeners {
    pub fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let backlog = effective_backlog(config.backlog, somaxconn());
        let queues = usize::from(config.acceptors.max(1));
        let (public, more_public) =
            listen_queues(config.listen, queues, config.backlog, config.socket_buffer)
                .with_context(|| format!("binding {}", config.listen))?;
        info!(
            "{queues} listen queue(s) of {backlog} (--acceptors {queues}, --backlog {})",
            config.backlog
        );
        let admin = match config.admin_listen {
            Some(admin) => {
                let l = listen(admin, config.backlog, config.socket_buffer, false)
                    .with_context(|| format!("binding the admin listener {admin}"))?;
                let bound = l.local_addr()?;
                if !bound.ip().is_loopback() {
                    warn!("the admin listener {bound} is not on loopback: keep it off public networks");
                }
                info!("admin commands on {bound} only");
                Some(l)
            }
            None => None,
        };
        Ok(Listeners {
            public,
            more_public,
            admin,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.public.local_addr()
    }

    pub fn admin_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.admin.as_ref().map(|l| l.local_addr()).transpose()
    }
}

/// `count` listening sockets on `addr`, each with a listen queue of
/// `backlog`: one, or the first and the others of one SO_REUSEPORT group.
fn listen_queues(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
    buffer: u32,
) -> io::Result<(TcpListener, Vec<TcpListener>)> {
    if count <= 1 {
        return Ok((listen(addr, backlog, buffer, false)?, Vec::new()));
    }
    if addr.port() != 0 {
        // SO_REUSEPORT would as well join another server's group on this
        // port (one of the same user), which would then take a share of
        // our connections: a plain bind first makes a port in use an
        // error, as it is with one queue.
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let first = listen(addr, backlog, buffer, true)?;
    // The port the kernel chose, when `addr` asked for any.
    let addr = first.local_addr()?;
    let more = (1..count)
        .map(|_| listen(addr, backlog, buffer, true))
        .collect::<io::Result<_>>()?;
    Ok((first, more))
}

/// A non-blocking listening socket on `addr` with a listen queue of
/// `backlog` (SO_REUSEADDR, as mio and std set it, so a restart does not
/// wait out TIME_WAIT; and SO_REUSEPORT when `shared`), whose connections
/// have kernel buffers of `buffer` bytes each way (0: the kernel's
/// autotuning).
fn listen(addr: SocketAddr, backlog: u32, buffer: u32, shared: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    if buffer > 0 {
        // Set before listen: accepted connections inherit both, and the
        // window scale their handshake announces fits the receive buffer.
        let asked = buffer as usize;
        socket.set_recv_buffer_size(asked)?;
        socket.set_send_buffer_size(asked)?;
        let got = socket.recv_buffer_size()?.min(socket.send_buffer_size()?);
        warn_if_capped(asked, got);
    }
    socket.bind(&addr.into())?;
    // The kernel takes the smaller of this and net.core.somaxconn.
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Warns when the kernel gave a socket less buffer than `asked` (Linux caps
/// it at net.core.rmem_max and wmem_max, silently). `got` is what the
/// socket reports, which on Linux is twice what it uses for data; returns
/// that data size when it is less than asked.
fn warn_if_capped(asked: usize, got: usize) -> Option<usize> {
    let usable = if cfg!(target_os = "linux") {
        got / 2
    } else {
        got
    };
    if usable >= asked {
        return None;
    }
    warn!(
        "--socket-buffer {asked} is capped at {usable} by the kernel \
         (net.core.rmem_max, net.core.wmem_max)"
    );
    Some(usable)
}

/// Linux's setting `net.core.NAME`, when it can be read.
pub(super) fn net_core(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Linux's cap on every listen queue (net.core.somaxconn), when it can be
/// read.
fn somaxconn() -> Option<u32> {
    net_core("somaxconn").and_then(|n| u32::try_from(n).ok())
}

/// The listen queue the kernel will give for `asked`, warning when its cap
/// cuts it down (the operator then raises net.core.somaxconn).
fn effective_backlog(asked: u32, cap: Option<u32>) -> u32 {
    match cap {
        Some(cap) if cap < asked => {
            warn!(
                "--backlog {asked} is capped at {cap} by net.core.somaxconn; \
                 raise it (sysctl -w net.core.somaxconn={asked}) for connection storms"
            );
            cap
        }
        _ => asked,
    }
}

pub struct Acceptor {
    poll: Poll,
    waker: Arc<mio::Waker>,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    /// Shared by all the acceptors, as are the connections' places.
    admission: Arc<Admission>,
    /// New connections per second per address (`--accept-rate-per-ip`),
    /// shared by all the acceptors.
    accept_rate: Arc<RateLimiter>,
    /// The addresses over that rate, blocked on every public listener.
    blocklist: Arc<Blocklist>,
    reactors: Reactors,
    /// Which reactors were handed a connection and not woken yet.
    fed: Vec<bool>,
    /// Which acceptor this is (0: the one that also has the admin port).
    index: usize,
    next: usize,
    metrics: Arc<Metrics>,
    stop: Stop,
}

impl Acceptor {
    /// `--acceptors` acceptors for `listeners` that deal connections out to
    /// `reactors`, within the configured connection limits, until `stop`
    /// (then woken through each one's [`waker`](Self::waker)).
    pub fn set(
        config: &Config,
        listeners: Listeners,
        reactors: Reactors,
        metrics: Arc<Metrics>,
        stop: Stop,
    ) -> io::Result<Vec<Self>> {
        let admission = Admission::new(
            config.max_connections,
            config.max_connections_per_ip,
            config.max_inflight_per_ip,
        );
        let accept_rate = Arc::new(RateLimiter::new(
            config.accept_rate_per_ip,
            // A second's worth at once.
            config.accept_rate_per_ip.ceil().min(f64::from(u32::MAX)) as u32,
        ));
        // Blocks follow refusals for the accept rate: none without one.
        let block_for = if config.accept_rate_per_ip > 0.0 {
            config.block_for
        } else {
            Duration::ZERO
        };
        let blocklist = Arc::new(Blocklist::new(
            block_for,
            std::iter::once(&listeners.public).chain(&listeners.more_public),
        )?);
        let Listeners {
            public,
            more_public,
            admin,
        } = listeners;
        // The first acceptor takes the admin listener too; the others only
        // their listen queue.
        let queues =
            std::iter::once((public, admin)).chain(more_public.into_iter().map(|l| (l, None)));
        queues
            .enumerate()
            .map(|(index, (public, admin))| {
                Acceptor::new(
                    public,
                    admin,
                    reactors.clone(),
                    admission.clone(),
                    accept_rate.clone(),
                    blocklist.clone(),
                    index,
                    metrics.clone(),
                    stop.clone(),
                )
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        mut listener: TcpListener,
        mut admin_listener: Option<TcpListener>,
        reactors: Reactors,
        admission: Arc<Admission>,
        accept_rate: Arc<RateLimiter>,
        blocklist: Arc<Blocklist>,
        index: usize,
        metrics: Arc<Metrics>,
        stop: Stop,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(waker(&poll)?);
        poll.registry()
            .register(&mut listener, PUBLIC, Interest::READABLE)?;
        if let Some(admin) = admin_listener.as_mut() {
            poll.registry().register(admin, ADMIN, Interest::READABLE)?;
        }
        Ok(Acceptor {
            poll,
            waker,
            listener,
            admin_listener,
            admission,
            fed: vec![false; reactors.mailboxes().len()],
            accept_rate,
            blocklist,
            reactors,
            index,
            // Each deals from its own place in the reactors, so that two
            // acceptors do not both start with reactor 0.
            next: index,
            metrics,
            stop,
        })
    }

    /// Wakes the acceptor out of `poll`, to see a stop.
    pub fn waker(&self) -> Arc<mio::Waker> {
        self.waker.clone()
    }

    pub fn spawn(self) -> io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name(format!("acceptor-{}", self.index))
            .spawn(move || {
                let (blocklist, index) = (self.blocklist.clone(), self.index);
                if let Err(e) = self.run() {
                    error!("acceptor stopped: {e}");
                }
                // Its listener is closed now (dropped with `self`), unless
                // a duplicate is kept for its filter.
                blocklist.close(index);
            })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        let mut backoff: Option<Duration> = None;
        loop {
            // Woken in time to end a block, when one is due first.
            let timeout = match (backoff, self.blocklist.until_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            }
            if self.stop.is_triggered() {
                if self.index == 0 {
                    info!("acceptor: no longer accepting");
                }
                return Ok(()); // dropping the listener closes it
            }
            self.blocklist.expire();
            // Whatever woke us (a listener event, or the end of a backoff),
            // accept until the backlogs are empty: events are edge-triggered.
            backoff = self.accept_all();
        }
    }

    /// Accepts from each listener until `WouldBlock`, a batch from one and
    /// then from the other, so that a flood of connections to the public
    /// port keeps the admin port waiting a batch at most, not until the
    /// flood stops: the admin's PAUSE is wanted most just then. Returns a
    /// backoff if a listener had to stop early.
    fn accept_all(&mut self) -> Option<Duration> {
        let mut open = [true, self.admin_listener.is_some()];
        let mut backoff = None;
        while open.contains(&true) {
            for (admin_port, open) in [false, true].into_iter().zip(open.iter_mut()) {
                if !*open {
                    continue;
                }
                match self.accept_batch(admin_port) {
                    Batch::Full => {}
                    Batch::Empty => *open = false,
                    Batch::Failed(wait) => {
                        *open = false;
                        backoff = Some(wait);
                    }
                }
            }
        }
        backoff
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections from one listener.
    ///
    /// The acceptor must keep the listen queue empty whatever the reactors
    /// are doing, so it does as little as it can per connection: accept,
    /// admission, TCP_NODELAY, a channel send. Reactors are woken once per
    /// batch, not once per connection.
    fn accept_batch(&mut self, admin_port: bool) -> Batch {
        let mut accepted = 0;
        let batch = loop {
            if accepted == ACCEPT_BATCH {
                break Batch::Full;
            }
            let listener = match (admin_port, &self.admin_listener) {
                (true, Some(admin)) => admin,
                _ => &self.listener,
            };
            match listener.accept() {
                Ok((socket, peer)) => {
                    self.admit(socket, peer, admin_port);
                    accepted += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Batch::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if concerns_one_connection(&e) => {}
                Err(e) => {
                    error!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    break Batch::Failed(ACCEPT_BACKOFF);
                }
            }
        };
        self.wake_fed();
        batch
    }

    /// Wakes every reactor handed a connection since the last call.
    fn wake_fed(&mut self) {
        let reactors = self.reactors.mailboxes();
        for (mailbox, fed) in reactors.iter().zip(self.fed.iter_mut()) {
            if std::mem::take(fed) {
                mailbox.wake();
            }
        }
    }
}

/// Whether an accept error is the new connection's own, and says nothing
/// of the listener: ECONNABORTED (the peer gave up before the accept), and
/// the network errors already pending on it, which Linux passes through
/// accept (accept(2): "should treat them like EAGAIN by retrying").
fn concerns_one_connection(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionAborted
        || matches!(
            e.raw_os_error(),
            Some(
                libc::ENETDOWN
                    | libc::EPROTO
                    | libc::ENOPROTOOPT
                    | libc::EHOSTDOWN
                    | libc::ENONET
                    | libc::EHOSTUNREACH
                    | libc::EOPNOTSUPP
                    | libc::ENETUNREACH
            )
        )
}

/// What became of a batch of accepts.
enum Batch {
    /// As many as a batch takes: there may be more.
    Full,
    /// The listen queue is empty.
    Empty,
    /// Accepting failed (out of file descriptors, say): wait this long.
    Failed(Duration),
}

impl Acceptor {
    fn admit(&mut self, mut socket: TcpStream, peer: SocketAddr, admin_port: bool) {
        // The rate first: an address over it is refused before it takes a
        // place, with the same cheap answer as the connection limits.
        let admitted = if self.accept_rate.allow(address_key(peer.ip())) {
            self.admission.admit(peer.ip(), admin_port)
        } else {
            // Told why, this once; its next connection requests do not get
            // this far while the block lasts. (Not for the admin port's
            // connections: a tool polling it would block its address on
            // the public port.)
            if !admin_port && self.blocklist.block(peer.ip()) {
                metrics::add(&self.metrics.addresses_blocked, 1);
            }
            Err(Refusal::AddressTooFast)
        };
        let ticket = match admitted {
            Ok(ticket) => ticket,
            Err(refusal) => {
                metrics::add(&self.metrics.connections_refused, 1);
                // One small frame into an empty socket buffer: the write
                // cannot block, and if it fails there is no one to tell.
                let mut frame = BytesMut::new();
                Reply::error(Status::Busy, refusal.message()).encode(
                    Opcode::Error as u8,
                    0,
                    &mut frame,
                );
                let _ = socket.write(&frame);
                return; // dropping the socket closes it
            }
        };
        metrics::add(&self.metrics.connections_accepted, 1);
        self.blocklist.clean(&socket);
        let reactors = self.reactors.mailboxes();
        let index = self.next % reactors.len();
        reactors[index].hand_over(Accepted {
            socket,
            ticket,
            admin_port,
            peer,
        });
        if let Some(fed) = self.fed.get_mut(index) {
            *fed = true;
        }
        self.next = self.next.wrapping_add(1);
    }
}

/// Registers a waker on `poll` under [`WAKER_TOKEN`].
pub fn waker(poll: &Poll) -> io::Result<mio::Waker> {
    mio::Waker::new(poll.registry(), WAKER_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    /// The kernel buffers of a connection accepted from `listen(.., buffer)`
    /// (receive, send).
    fn accepted_buffers(buffer: u32) -> (usize, usize) {
        let listener = listen("127.0.0.1:0".parse().unwrap(), 16, buffer, false).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let accepted = super::super::accept_soon(&listener);
        let socket = SockRef::from(&accepted);
        (
            socket.recv_buffer_size().unwrap(),
            socket.send_buffer_size().unwrap(),
        )
    }

    #[test]
    fn accepted_connections_inherit_the_socket_buffer() {
        // Linux doubles what is set, for its bookkeeping; what matters is
        // that the size is the one given, not the kernel's default or an
        // autotuned one.
        let (recv, send) = accepted_buffers(32 << 10);
        assert!(
            (32 << 10..=64 << 10).contains(&recv),
            "receive buffer {recv}"
        );
        assert!((32 << 10..=64 << 10).contains(&send), "send buffer {send}");
        let (recv, send) = accepted_buffers(256 << 10);
        assert!(
            (256 << 10..=512 << 10).contains(&recv),
            "receive buffer {recv}"
        );
        assert!(
            (256 << 10..=512 << 10).contains(&send),
            "send buffer {send}"
        );
    }

    /// Linux only: the cap and the doubling are Linux's.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_socket_buffer_over_the_kernels_cap_is_reported() {
        let rmem_max = net_core("rmem_max").expect("net.core.rmem_max") as usize;
        // Twice the cap must still fit the kernel's int (and the server's
        // own limit on --socket-buffer).
        assert!(
            rmem_max <= 128 << 20,
            "rmem_max {rmem_max} too large for this test"
        );
        let asked = rmem_max * 2;
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(asked).unwrap();
        let got = socket.recv_buffer_size().unwrap();
        assert_eq!(warn_if_capped(asked, got), Some(rmem_max));
        assert_eq!(warn_if_capped(64 << 10, 128 << 10), None);
    }

    /// Several listen queues are one port, the kernel spreads connections
    /// over them, and a port already in use is an error for them as for
    /// one queue.
    #[test]
    fn several_listen_queues_share_one_port_and_a_taken_port_is_an_error() {
        let (first, more) = listen_queues("127.0.0.1:0".parse().unwrap(), 3, 128, 0).unwrap();
        let addr = first.local_addr().unwrap();
        assert_eq!(more.len(), 2);
        for l in &more {
            assert_eq!(l.local_addr().unwrap(), addr);
        }
        // 64 connections hashed over 3 queues: each gets some (all 64 in
        // two of them by chance: about 3 * (2/3)^64, 1e-11).
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let queues: Vec<&TcpListener> = std::iter::once(&first).chain(&more).collect();
        let mut taken = [0usize; 3];
        for _ in 0..400 {
            for (queue, n) in queues.iter().zip(taken.iter_mut()) {
                while queue.accept().is_ok() {
                    *n += 1;
                }
            }
            if taken.iter().sum::<usize>() == clients.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(taken.iter().sum::<usize>(), 64, "{taken:?}");
        // Linux spreads a group's connections; BSD and macOS do not (the
        // server then has queues that stay empty).
        if cfg!(target_os = "linux") {
            assert!(taken.iter().all(|&n| n > 0), "{taken:?}");
        }
        // Another server on the same port, with one queue or several.
        for count in [1, 2] {
            let err = listen_queues(addr, count, 128, 0).err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(io::ErrorKind::AddrInUse),
                "{count} queue(s)"
            );
        }
    }

    #[test]
    fn a_socket_buffer_of_zero_leaves_the_kernel_defaults() {
        let (recv, _) = accepted_buffers(0);
        let (capped, _) = accepted_buffers(32 << 10);
        assert_ne!(recv, capped);
    }

    /// A flood of connections queued on the public port keeps one to the
    /// admin port waiting a batch at most: the acceptor takes a batch from
    /// each in turn, not the public queue to its end first.
    #[test]
    fn a_flood_on_the_public_port_keeps_the_admin_port_waiting_a_batch_at_most() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let public = listen(any, 1024, 0, false).unwrap();
        let admin = listen(any, 16, 0, false).unwrap();
        let (public_addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
        let (set, reactors) = super::super::ReactorSet::new(1).unwrap();
        let mut acceptor = Acceptor::new(
            public,
            Some(admin),
            reactors,
            Admission::new(10_000, 10_000, 0),
            Arc::new(RateLimiter::new(0.0, 0)),
            Arc::new(Blocklist::new(Duration::ZERO, []).unwrap()),
            0,
            Arc::new(Metrics::default()),
            Stop::new(),
        )
        .unwrap();
        // connect() returns once the handshake is done: queued to accept.
        let flood = 2 * ACCEPT_BATCH + 8;
        let _clients: Vec<std::net::TcpStream> = (0..flood)
            .map(|_| std::net::TcpStream::connect(public_addr).unwrap())
            .collect();
        let _operator = std::net::TcpStream::connect(admin_addr).unwrap();
        assert_eq!(acceptor.accept_all(), None);
        let inbox = &set.parts[0].2;
        let admin_port: Vec<bool> = inbox.accepted.try_iter().map(|a| a.admin_port).collect();
        assert_eq!(admin_port.len(), flood + 1);
        let admin_at = admin_port
            .iter()
            .position(|&a| a)
            .expect("no admin connection");
        assert!(
            admin_at <= ACCEPT_BATCH,
            "the admin connection came after {admin_at} public ones"
        );
    }

    /// A network error pending on the new connection is that connection's:
    /// accepting goes on. Running out of descriptors is the listener's:
    /// accepting pauses.
    #[test]
    fn a_new_connections_own_error_does_not_pause_accepting() {
        for errno in [
            libc::ECONNABORTED,
            libc::EPROTO,
            libc::ENETDOWN,
            libc::EHOSTUNREACH,
        ] {
            assert!(concerns_one_connection(&io::Error::from_raw_os_error(
                errno
            )));
        }
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(!concerns_one_connection(&io::Error::from_raw_os_error(
                errno
            )));
        }
    }
}
