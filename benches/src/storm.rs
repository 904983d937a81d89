//! The connection storm: a sale opens and everyone connects at once.
//!
//! `--clients` threads open `--connects` connections in all, each thread
//! issuing its whole share of non-blocking connects at once, then a HELLO
//! on each as it comes up and reading its reply, and they hold them all
//! until the last is made (so the server ends up holding every
//! one, as at the start of a sale). Two latencies per connection: to the end
//! of `connect()` (what the kernel's listen queue decides: a queue that
//! overflows drops the handshake, and the client waits a SYN retransmit, a
//! second or more) and to the HELLO reply (what the acceptor and the
//! reactors add). The kernel's counters of listen-queue overflows and drops
//! (`/proc/net/netstat`, TcpExt ListenOverflows and ListenDrops, what
//! `nstat` shows) are read before and after: they count for the whole
//! machine, so they mean something when the server runs on the bench's
//! machine and nothing else is being connected to meanwhile.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::attack::hostile;
use crate::cli::{Common, ConnectStorm};
use crate::cost::{self, Cost, Watch};
use crate::error::Error;
use crate::report::latency_line;
use crate::scenario::resolve_all;
use crate::stats::Latency;

/// What a storm measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormReport {
    pub scenario: String,
    pub addr: String,
    pub connects: usize,
    pub clients: usize,
    /// Connects (with their HELLO) each client keeps in flight; `None`:
    /// its whole share at once.
    pub in_flight: Option<usize>,
    /// From the first connect to the last HELLO reply.
    pub duration_s: f64,
    /// Connections made and greeted.
    pub ready: u64,
    /// Connects that failed (refused, reset, timed out).
    pub connect_errors: u64,
    /// Connections made whose HELLO got no reply, or an error frame (the
    /// server refused them: its connection limits).
    pub hello_failures: u64,
    /// To the end of `connect()`.
    pub connect: Latency,
    /// To the HELLO reply, from before `connect()`.
    pub ready_latency: Latency,
    /// Connects that took over a second: each waited a SYN retransmit.
    pub connects_over_1s: u64,
    /// The kernel's listen-queue overflows (TcpExt ListenOverflows) over the
    /// run, and drops (ListenDrops); `None` if unreadable.
    pub listen_overflows: Option<u64>,
    pub listen_drops: Option<u64>,
    /// CPU of the watched processes (`--server-pid`, `--store-pids`), per
    /// connection made.
    pub cost: Vec<Cost>,
}

impl StormReport {
    pub fn passed(&self) -> bool {
        self.ready == self.connects as u64
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "connect-storm → {}: {} connects from {} threads ({} in flight each) in {:.2} s: {} ready, {} connect errors, {} HELLO failures",
            self.addr,
            self.connects,
            self.clients,
            self.in_flight.map_or("all".to_owned(), |n| n.to_string()),
            self.duration_s,
            self.ready,
            self.connect_errors,
            self.hello_failures
        );
        let _ = writeln!(s, "  connect:    {}", latency_line(&self.connect));
        let _ = writeln!(s, "  to HELLO:   {}", latency_line(&self.ready_latency));
        let show = |n: Option<u64>| n.map_or("unreadable".to_owned(), |n| n.to_string());
        let _ = writeln!(
            s,
            "  connects over 1 s: {}; listen overflows: {}, listen drops: {} (TcpExt, whole machine)",
            self.connects_over_1s,
            show(self.listen_overflows),
            show(self.listen_drops)
        );
        if !self.cost.is_empty() {
            let _ = writeln!(s, "  cpu (per connection): {}", cost::line(&self.cost));
        }
        s
    }
}

/// Runs the storm.
pub fn run(common: &Common, args: &ConnectStorm) -> Result<StormReport, Error> {
    let addr = match resolve_all(&common.addr)?[..] {
        [one] => one,
        _ => {
            return Err(Error::Setup(
                "connect-storm measures one server: give --addr a single address".into(),
            ))
        }
    };
    let clients = args.clients.clamp(1, args.connects.max(1));
    let concurrency = args.in_flight.unwrap_or(usize::MAX).max(1);
    let before = listen_counters();
    let watched: Vec<u32> = common
        .server_pid
        .into_iter()
        .chain(common.store_pids.iter().copied())
        .collect();
    let watches = Watch::start(&watched);
    let barrier = Barrier::new(clients);
    let hello = hostile::hello(seckill_proto::VERSION);
    let hello = &hello[..];
    let started = Instant::now();
    let results: Vec<Client> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let share = args.connects / clients + usize::from(i < args.connects % clients);
                let barrier = &barrier;
                s.spawn(move || storm(addr, share, concurrency, hello, common.timeout, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let duration = started.elapsed();
    let after = listen_counters();
    let mut connect = histogram();
    let mut ready = histogram();
    let mut total = Client::new();
    for c in &results {
        let _ = connect.add(&c.connect);
        let _ = ready.add(&c.ready);
        total.connect_errors += c.connect_errors;
        total.hello_failures += c.hello_failures;
        total.over_1s += c.over_1s;
    }
    let made = ready.len();
    let delta = |f: fn(&(u64, u64)) -> u64| Some(f(&after?).saturating_sub(f(&before?)));
    Ok(StormReport {
        scenario: "connect-storm".into(),
        addr: addr.to_string(),
        connects: args.connects,
        clients,
        in_flight: args.in_flight,
        duration_s: duration.as_secs_f64(),
        ready: made,
        connect_errors: total.connect_errors,
        hello_failures: total.hello_failures,
        connect: Latency::of(&connect),
        ready_latency: Latency::of(&ready),
        connects_over_1s: total.over_1s,
        listen_overflows: delta(|c| c.0),
        listen_drops: delta(|c| c.1),
        cost: watches.iter().filter_map(|w| w.finish(made)).collect(),
    })
}

struct Client {
    connect: Histogram<u64>,
    ready: Histogram<u64>,
    connect_errors: u64,
    hello_failures: u64,
    over_1s: u64,
}

impl Client {
    fn new() -> Client {
        Client {
            connect: histogram(),
            ready: histogram(),
            connect_errors: 0,
            hello_failures: 0,
            over_1s: 0,
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// One client thread: `n` non-blocking connects, `concurrency` of them in
/// flight at a time (by default all at once: a real storm, thousands of
/// handshakes together, not one per thread), each connection greeted as
/// soon as it is up; all held until every thread is done.
fn storm(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    hello: &[u8],
    timeout: Duration,
    barrier: &Barrier,
) -> Client {
    let mut c = Client::new();
    let Some((mut poll, registry)) = Poll::new()
        .and_then(|p| p.registry().try_clone().map(|r| (p, r)))
        .ok()
    else {
        c.connect_errors += n as u64;
        barrier.wait();
        barrier.wait();
        return c;
    };
    let mut conns: Vec<Option<Pending>> = Vec::with_capacity(n);
    barrier.wait();
    let mut open = 0;
    let issue = |conns: &mut Vec<Option<Pending>>, c: &mut Client| {
        let slot = conns.len();
        let begun = Instant::now();
        let registered = mio::net::TcpStream::connect(addr).and_then(|mut stream| {
            registry.register(
                &mut stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match registered {
            Ok(stream) => {
                let mut pending = Pending {
                    stream,
                    begun,
                    connected: false,
                    input: Vec::new(),
                };
                // On loopback a handshake the listen queue has room for is
                // done by the time connect() returns: time it then, not when
                // this thread next gets round to polling its sockets.
                if pending.stream.peer_addr().is_ok() && !pending.connected_now(hello, c) {
                    conns.push(None);
                    return false;
                }
                conns.push(Some(pending));
                true
            }
            Err(_) => {
                c.connect_errors += 1;
                conns.push(None);
                false
            }
        }
    };
    while conns.len() < n && open < concurrency {
        open += usize::from(issue(&mut conns, &mut c));
    }
    let mut held = Vec::with_capacity(n);
    let mut events = Events::with_capacity(1024);
    let deadline = Instant::now() + timeout;
    while (open > 0 || conns.len() < n) && Instant::now() < deadline {
        if poll
            .poll(&mut events, Some(Duration::from_millis(100)))
            .is_err()
        {
            continue;
        }
        for event in events.iter() {
            let Some(slot) = conns.get_mut(event.token().0) else {
                continue;
            };
            let Some(p) = slot.as_mut() else { continue };
            match p.advance(hello, &mut c) {
                Step::Wait => {}
                Step::Ready => {
                    let _ = c.ready.record(p.begun.elapsed().as_micros().max(1) as u64);
                    if let Some(p) = slot.take() {
                        held.push(p.stream);
                    }
                    open -= 1;
                }
                Step::Failed => {
                    slot.take();
                    open -= 1;
                }
            }
        }
        // Keep `concurrency` connects and greetings in flight.
        while conns.len() < n && open < concurrency {
            open += usize::from(issue(&mut conns, &mut c));
        }
    }
    // Whatever is still pending at the deadline failed.
    for p in conns.into_iter().flatten() {
        if p.connected {
            c.hello_failures += 1;
        } else {
            c.connect_errors += 1;
        }
    }
    // Every thread holds its connections until all are made.
    barrier.wait();
    drop(held);
    c
}

/// A connection of the storm on its way to being greeted.
struct Pending {
    stream: mio::net::TcpStream,
    begun: Instant,
    connected: bool,
    input: Vec<u8>,
}

enum Step {
    Wait,
    Ready,
    Failed,
}

impl Pending {
    /// The connect is done: times it and sends HELLO. False if HELLO could
    /// not be sent.
    fn connected_now(&mut self, hello: &[u8], c: &mut Client) -> bool {
        self.connected = true;
        let connected = self.begun.elapsed();
        let _ = c.connect.record(connected.as_micros().max(1) as u64);
        if connected >= Duration::from_secs(1) {
            c.over_1s += 1;
        }
        let _ = self.stream.set_nodelay(true);
        // A few dozen bytes into an empty socket buffer: written whole.
        if !matches!(self.stream.write(hello), Ok(n) if n == hello.len()) {
            c.hello_failures += 1;
            return false;
        }
        true
    }

    /// Does what the last event allows: finish the connect and send HELLO,
    /// then read its reply.
    fn advance(&mut self, hello: &[u8], c: &mut Client) -> Step {
        if !self.connected {
            match self.stream.take_error() {
                Ok(None) => {}
                _ => {
                    c.connect_errors += 1;
                    return Step::Failed;
                }
            }
            match self.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Wait,
                Err(_) => {
                    c.connect_errors += 1;
                    return Step::Failed;
                }
            }
            if !self.connected_now(hello, c) {
                return Step::Failed;
            }
        }
        let mut chunk = [0u8; 512];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    c.hello_failures += 1;
                    return Step::Failed;
                }
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.hello_failures += 1;
                    return Step::Failed;
                }
            }
        }
        match hello_reply(&self.input) {
            None => Step::Wait,
            Some(true) => Step::Ready,
            Some(false) => {
                c.hello_failures += 1;
                Step::Failed
            }
        }
    }
}

/// Whether the first frame of `input` is HELLO's reply; `None` until it is
/// whole.
fn hello_reply(input: &[u8]) -> Option<bool> {
    let prefix: [u8; 4] = input.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Some(false);
    }
    let opcode = *input.get(4)?;
    input.get(4..4 + len)?;
    // A reply carries its request's opcode with the high bit set
    // (proto/PROTOCOL.md); an error frame (0xff) is a refusal.
    Some(opcode == seckill_proto::Opcode::Hello as u8 | 0x80)
}

/// TcpExt ListenOverflows and ListenDrops, from /proc/net/netstat.
fn listen_counters() -> Option<(u64, u64)> {
    parse_netstat(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// In /proc/net/netstat each group is two lines: `TcpExt: names…` then
/// `TcpExt: values…`.
fn parse_netstat(text: &str) -> Option<(u64, u64)> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some((get("ListenOverflows")?, get("ListenDrops")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_counters_are_found_by_name() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                    TcpExt: 0 120 121\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_netstat(text), Some((120, 121)));
        assert_eq!(parse_netstat("IpExt: a\nIpExt: 1\n"), None);
    }
}
