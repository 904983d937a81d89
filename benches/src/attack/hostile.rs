//! The hostile clients: one small function per attack, each the body of one
//! attacker thread, looping until its phase ends.
//!
//! Blocking sockets with short timeouts, so that every thread sees the end
//! of its phase within [`TICK`]; the holders (truncated, idle-10k), which
//! keep thousands of connections open, watch them in one `mio::Poll`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::{Events, Interest, Poll, Token};
use seckill_proto::{Request, NO_TOKEN, VERSION};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::AttackKind;
use crate::users::{splitmix, Rng};

/// The longest a blocking call waits before its thread looks at the stop
/// flag again.
const TICK: Duration = Duration::from_millis(100);
/// How long a one-shot attacker waits for the server to close on it.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed connect, the pause before the next try.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// Requests per write of the pipelining attacks.
const BATCH: u64 = 1_000;
/// Connections a holder opens between two looks at its poll.
const OPEN_BATCH: usize = 256;
/// Opcodes the protocol does not define (`proto/src/opcode.rs`).
pub const UNKNOWN_OPCODES: [u8; 4] = [0x03, 0x30, 0x55, 0x7e];
/// The no-read bots' user ids, far from the normal client's.
const BOT_USERS: u64 = 1 << 48;
/// Request id of the HELLO of the attackers that greet.
const HELLO_ID: u64 = 1;
/// The protocol version of the wrong-version attack.
pub const WRONG_VERSION: u16 = 999;

/// What an attack's threads count, together.
#[derive(Debug, Default)]
pub struct Counters {
    opened: AtomicU64,
    connect_errors: AtomicU64,
    refused: AtomicU64,
    bytes_sent: AtomicU64,
    requests_sent: AtomicU64,
}

/// An attack's counters at the end of its phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AttackCounts {
    /// Connections established.
    pub opened: u64,
    /// Connects that failed.
    pub connect_errors: u64,
    /// Connections the server closed or reset on the attacker: refused with
    /// an error frame, cut off at its frame timeout, and the like.
    pub refused: u64,
    pub bytes_sent: u64,
    /// Whole requests written by the pipelining attacks.
    pub requests_sent: u64,
}

/// What the threads of an attack phase aim at, and how hard.
#[derive(Debug, Clone, Copy)]
pub struct Aim {
    pub addr: SocketAddr,
    /// The goods the no-read bots try to buy.
    pub goods: u64,
    pub seed: u64,
    /// Connections a holder keeps open (truncated, idle-10k).
    pub hold: usize,
    /// Requests the million-pipelined client writes.
    pub pipelined: u64,
    /// SO_SNDBUF of each connection (0: the kernel's autotuning).
    pub send_buffer: usize,
    /// The address each connection is bound to before it connects (`None`:
    /// the kernel's choice).
    pub from: Option<IpAddr>,
}

/// What every attacker thread of a phase shares.
#[derive(Debug)]
pub struct Ctx {
    pub aim: Aim,
    pub stop: AtomicBool,
    pub counters: Counters,
}

/// IP_BIND_ADDRESS_NO_PORT on `socket` (Linux; socket2 lacks it).
fn no_port_at_bind(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, and an option value of the size given.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The body of one thread of attack `kind`; `worker` numbers the threads.
pub fn body(kind: AttackKind) -> fn(&Ctx, usize) {
    match kind {
        AttackKind::RandomBytes => random_bytes,
        AttackKind::Truncated => truncated,
        AttackKind::HugeLength => huge_length,
        AttackKind::ZeroLength => zero_length,
        AttackKind::UnknownOpcode => unknown_opcode,
        AttackKind::WrongVersion => wrong_version,
        AttackKind::Idle10k => idle,
        AttackKind::NoRead => no_read,
        AttackKind::UnreadGoods => unread_goods,
        AttackKind::MillionPipelined => million_pipelined,
    }
}

/// 1 byte to 16 KiB of random bytes, on a new connection each time.
fn random_bytes(ctx: &Ctx, worker: usize) {
    let mut rng = Rng::new(splitmix(ctx.aim.seed ^ worker as u64));
    let mut junk = Vec::new();
    while !ctx.stopped() {
        let len = 1 + rng.below(16 * 1024) as usize;
        junk.clear();
        while junk.len() < len {
            junk.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        ctx.one_shot(&junk[..len]);
    }
}

/// The first half of a HELLO frame, then silence: the server cuts each
/// connection at its --frame-timeout, and it is opened again.
fn truncated(ctx: &Ctx, _worker: usize) {
    ctx.hold(&truncated_frame());
}

/// A length prefix of 4 GiB, on a new connection each time.
fn huge_length(ctx: &Ctx, _worker: usize) {
    while !ctx.stopped() {
        ctx.one_shot(&u32::MAX.to_be_bytes());
    }
}

/// A length prefix of 0, on a new connection each time.
fn zero_length(ctx: &Ctx, _worker: usize) {
    while !ctx.stopped() {
        ctx.one_shot(&0u32.to_be_bytes());
    }
}

/// HELLO, then well-framed requests of unknown opcodes as fast as the
/// server takes them; another thread reads the replies.
fn unknown_opcode(ctx: &Ctx, _worker: usize) {
    while !ctx.stopped() {
        let Some(mut stream) = ctx.connect() else {
            continue;
        };
        let Ok(mut reader) = stream.try_clone() else {
            return;
        };
        thread::scope(|s| {
            s.spawn(|| ctx.drain(&mut reader));
            let mut out = hello(VERSION);
            let mut id = HELLO_ID;
            loop {
                id = unknown_frames(id + 1, BATCH, &mut out);
                if !ctx.send_all(&mut stream, &out, BATCH) {
                    break;
                }
                out.clear();
            }
            // Ends the reader's wait.
            let _ = stream.shutdown(Shutdown::Both);
        });
    }
}

/// HELLO with version 999, on a new connection each time.
fn wrong_version(ctx: &Ctx, _worker: usize) {
    let hello = hello(WRONG_VERSION);
    while !ctx.stopped() {
        ctx.one_shot(&hello);
    }
}

/// Connections that send nothing at all.
fn idle(ctx: &Ctx, _worker: usize) {
    ctx.hold(&[]);
}

/// HELLO, then PINGs and BUYs (of one bot user) as fast as the server takes
/// them, never reading a reply.
fn no_read(ctx: &Ctx, worker: usize) {
    let bot = BOT_USERS + worker as u64;
    while !ctx.stopped() {
        let Some(mut stream) = ctx.connect() else {
            continue;
        };
        let mut out = hello(VERSION);
        let mut id = HELLO_ID;
        loop {
            for _ in 0..BATCH / 2 {
                Request::Ping.encode(id + 1, &mut out);
                let buy = Request::Buy {
                    user_id: bot,
                    goods_id: ctx.aim.goods,
                    token: NO_TOKEN,
                    request_id: None,
                };
                buy.encode(id + 2, &mut out);
                id += 2;
            }
            if !ctx.send_all(&mut stream, &out, BATCH) {
                break;
            }
            out.clear();
        }
    }
}

/// `ctx.aim.hold` connections, each HELLO then GET_GOODS pipelined for as long
/// as the server reads them, never reading a reply: the server is left
/// holding every reply it could not send. A connection the server closes
/// stays closed (counted as refused).
fn unread_goods(ctx: &Ctx, _worker: usize) {
    let mut requests = BytesMut::new();
    for _ in 0..BATCH {
        Request::GetGoods {
            goods_id: ctx.aim.goods,
        }
        .encode(HELLO_ID + 1, &mut requests);
    }
    // Each connection, and where it is in `requests` (frames stay whole
    // across partial writes, since every round resumes there).
    let mut conns: Vec<Option<(TcpStream, usize)>> = Vec::with_capacity(ctx.aim.hold);
    for _ in 0..ctx.aim.hold {
        if ctx.stopped() {
            return;
        }
        let Some(mut stream) = ctx.connect() else {
            continue;
        };
        if !ctx.send_all(&mut stream, &hello(VERSION), 0) || stream.set_nonblocking(true).is_err() {
            continue;
        }
        conns.push(Some((stream, 0)));
    }
    while !ctx.stopped() {
        for slot in conns.iter_mut() {
            let Some((stream, at)) = slot.as_mut() else {
                continue;
            };
            loop {
                match stream.write(&requests[*at..]) {
                    Ok(n) if n > 0 => {
                        ctx.count(&ctx.counters.bytes_sent, n as u64);
                        *at = (*at + n) % requests.len();
                    }
                    Err(e) if waits(&e) => break,
                    Ok(_) | Err(_) => {
                        ctx.count(&ctx.counters.refused, 1);
                        *slot = None;
                        break;
                    }
                }
            }
        }
        thread::sleep(TICK);
    }
}

/// HELLO, then `ctx.aim.pipelined` PINGs without reading; the connection stays
/// open, unread, until the phase ends.
fn million_pipelined(ctx: &Ctx, _worker: usize) {
    let Some(mut stream) = ctx.connect() else {
        return;
    };
    let mut out = hello(VERSION);
    let mut id = HELLO_ID;
    let mut left = ctx.aim.pipelined;
    while left > 0 {
        let n = left.min(BATCH);
        for _ in 0..n {
            id += 1;
            Request::Ping.encode(id, &mut out);
        }
        if !ctx.send_all(&mut stream, &out, n) {
            return;
        }
        out.clear();
        left -= n;
    }
    while !ctx.stopped() {
        thread::sleep(TICK);
    }
}

/// A HELLO frame asking no admin rights.
pub fn hello(version: u16) -> BytesMut {
    let mut out = BytesMut::new();
    let hello = Request::Hello {
        version,
        token: String::new(),
    };
    hello.encode(HELLO_ID, &mut out);
    out
}

/// The first half of a HELLO frame.
pub fn truncated_frame() -> Vec<u8> {
    let whole = hello(VERSION);
    whole[..whole.len() / 2].to_vec()
}

/// Appends `n` frames of unknown opcodes with ids from `first_id`; returns
/// the last id.
pub fn unknown_frames(first_id: u64, n: u64, out: &mut BytesMut) -> u64 {
    let body = b"whatever";
    for k in 0..n {
        let id = first_id + k;
        out.extend_from_slice(&(9 + body.len() as u32).to_be_bytes());
        out.extend_from_slice(&[UNKNOWN_OPCODES[(id % 4) as usize]]);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(body);
    }
    first_id + n - 1
}

impl Ctx {
    pub fn new(aim: Aim) -> Ctx {
        Ctx {
            aim,
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> AttackCounts {
        let c = &self.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        AttackCounts {
            opened: get(&c.opened),
            connect_errors: get(&c.connect_errors),
            refused: get(&c.refused),
            bytes_sent: get(&c.bytes_sent),
            requests_sent: get(&c.requests_sent),
        }
    }

    fn count(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A blocking connection whose calls wait at most [`TICK`]; `None`
    /// (counted, after a short pause) if it cannot be made.
    fn connect(&self) -> Option<TcpStream> {
        let made = self.open().and_then(|s| {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(TICK))?;
            s.set_write_timeout(Some(TICK))?;
            Ok(s)
        });
        match made {
            Ok(s) => {
                self.count(&self.counters.opened, 1);
                Some(s)
            }
            Err(_) => {
                self.count(&self.counters.connect_errors, 1);
                thread::sleep(CONNECT_BACKOFF);
                None
            }
        }
    }

    /// A connected socket: its send buffer set and its source bound before
    /// the handshake, as the aim says.
    fn open(&self) -> io::Result<TcpStream> {
        let addr = self.aim.addr;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if self.aim.send_buffer > 0 {
            socket.set_send_buffer_size(self.aim.send_buffer)?;
        }
        if let Some(ip) = self.aim.from {
            // The port is chosen at connect, as without a bind, not at the
            // bind: a bind chooses among ports no socket of that address
            // holds, TIME_WAIT ones included, and the reconnecting floods
            // would run out of them.
            no_port_at_bind(&socket)?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT)?;
        Ok(socket.into())
    }

    /// Connects, sends `bytes`, and waits a moment for the server to close
    /// the connection (counted as refused) before closing it.
    fn one_shot(&self, bytes: &[u8]) {
        let Some(mut stream) = self.connect() else {
            return;
        };
        if !self.send_all(&mut stream, bytes, 0) {
            return;
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        let mut sink = [0u8; 512];
        while !self.stopped() && Instant::now() < deadline {
            match stream.read(&mut sink) {
                Ok(0) => return self.count(&self.counters.refused, 1),
                Ok(_) => {}
                Err(e) if waits(&e) => {}
                Err(_) => return self.count(&self.counters.refused, 1),
            }
        }
    }

    /// Writes all of `bytes` (`requests` whole requests), however long the
    /// server takes, unless the phase ends or the server closes the
    /// connection (counted as refused). Returns whether it all went.
    fn send_all(&self, stream: &mut TcpStream, bytes: &[u8], requests: u64) -> bool {
        let mut at = 0;
        while at < bytes.len() {
            if self.stopped() {
                return false;
            }
            match stream.write(&bytes[at..]) {
                Ok(n) if n > 0 => {
                    at += n;
                    self.count(&self.counters.bytes_sent, n as u64);
                }
                Err(e) if waits(&e) => {}
                Ok(_) | Err(_) => {
                    self.count(&self.counters.refused, 1);
                    return false;
                }
            }
        }
        self.count(&self.counters.requests_sent, requests);
        true
    }

    /// Reads and drops whatever comes, until the phase ends or the
    /// connection closes.
    fn drain(&self, stream: &mut TcpStream) {
        let mut sink = vec![0u8; 64 * 1024];
        while !self.stopped() {
            match stream.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if waits(&e) => {}
                Err(_) => return,
            }
        }
    }

    /// Keeps `aim.hold` connections open, each having sent `opening`; one
    /// the server closes (or speaks on: it only does before closing) is
    /// counted as refused and opened again.
    fn hold(&self, opening: &[u8]) {
        let Ok(mut poll) = Poll::new() else {
            return;
        };
        let mut events = Events::with_capacity(1024);
        let mut held: Vec<Option<mio::net::TcpStream>> = (0..self.aim.hold).map(|_| None).collect();
        let mut scratch = [0u8; 512];
        while !self.stopped() {
            let missing = held.iter_mut().enumerate().filter(|(_, s)| s.is_none());
            for (i, slot) in missing.take(OPEN_BATCH) {
                if self.stopped() {
                    break;
                }
                let Some(stream) = self.connect() else {
                    break;
                };
                *slot = self.start_holding(stream, opening, &poll, i);
            }
            // While connections are missing, only a glance at the poll.
            let wait = if held.iter().any(Option::is_none) {
                Duration::ZERO
            } else {
                TICK
            };
            if poll.poll(&mut events, Some(wait)).is_err() {
                continue;
            }
            for event in &events {
                let i = event.token().0;
                if held[i].as_mut().is_some_and(|s| closed(s, &mut scratch)) {
                    held[i] = None;
                    self.count(&self.counters.refused, 1);
                }
            }
        }
    }

    /// Sends `opening` on a new connection and registers it under slot `i`.
    fn start_holding(
        &self,
        mut stream: TcpStream,
        opening: &[u8],
        poll: &Poll,
        i: usize,
    ) -> Option<mio::net::TcpStream> {
        if !self.send_all(&mut stream, opening, 0) || stream.set_nonblocking(true).is_err() {
            return None;
        }
        let mut stream = mio::net::TcpStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .ok()?;
        Some(stream)
    }
}

/// A blocking call that timed out (or was interrupted): try again.
fn waits(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Whether a held (non-blocking) connection has been closed by the server;
/// what it sent before is read and dropped.
fn closed(stream: &mut mio::net::TcpStream, scratch: &mut [u8]) -> bool {
    loop {
        match stream.read(scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
mod tests {
    use seckill_proto::{Frame, FrameError, Opcode, MAX_REQUEST_FRAME};

    use super::*;

    #[test]
    fn the_truncated_frame_begins_a_valid_hello_and_stops() {
        let whole = hello(VERSION);
        let part = truncated_frame();
        assert!(part.len() > 4 && part.len() < whole.len());
        assert!(whole.starts_with(&part));
        assert_eq!(
            Frame::parse(&part, MAX_REQUEST_FRAME),
            Err(FrameError::Incomplete)
        );
        let (frame, _) = Frame::parse(&whole, MAX_REQUEST_FRAME).unwrap();
        assert_eq!(
            Request::decode(&frame).unwrap(),
            Request::Hello {
                version: VERSION,
                token: String::new()
            }
        );
    }

    #[test]
    fn the_wrong_version_is_a_well_formed_hello() {
        let bytes = hello(WRONG_VERSION);
        let (frame, used) = Frame::parse(&bytes, MAX_REQUEST_FRAME).unwrap();
        assert_eq!(used, bytes.len());
        assert!(matches!(
            Request::decode(&frame),
            Ok(Request::Hello { version: 999, .. })
        ));
    }

    #[test]
    fn unknown_opcodes_are_well_framed_and_unknown() {
        let mut out = BytesMut::new();
        let last = unknown_frames(2, 10, &mut out);
        assert_eq!(last, 11);
        let mut rest = &out[..];
        let mut ids = Vec::new();
        while !rest.is_empty() {
            let (frame, used) = Frame::parse(rest, MAX_REQUEST_FRAME).unwrap();
            assert_eq!(Opcode::from_u8(frame.opcode), None, "{:#x}", frame.opcode);
            assert!(Request::decode(&frame).is_err());
            ids.push(frame.id);
            rest = &rest[used..];
        }
        assert_eq!(ids, (2..=11).collect::<Vec<_>>());
    }

    #[test]
    fn the_bad_lengths_are_refused_from_the_prefix() {
        assert_eq!(
            Frame::parse(&u32::MAX.to_be_bytes(), MAX_REQUEST_FRAME),
            Err(FrameError::TooLarge {
                len: u32::MAX,
                max: MAX_REQUEST_FRAME
            })
        );
        assert_eq!(
            Frame::parse(&0u32.to_be_bytes(), MAX_REQUEST_FRAME),
            Err(FrameError::TooShort { len: 0 })
        );
    }

    #[test]
    fn every_attack_ends_at_once_when_nothing_listens() {
        // A port nothing listens on: every connect fails and is counted.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        for kind in AttackKind::ALL {
            let ctx = Ctx::new(Aim {
                addr,
                goods: 1,
                seed: 1,
                hold: 3,
                pipelined: 10,
                send_buffer: 0,
                from: None,
            });
            thread::scope(|s| {
                s.spawn(|| body(kind)(&ctx, 0));
                thread::sleep(Duration::from_millis(30));
                ctx.stop.store(true, Ordering::Relaxed);
            });
            let counts = ctx.counts();
            assert_eq!(counts.opened, 0, "{kind:?}");
            assert!(counts.connect_errors > 0, "{kind:?}");
        }
    }

    #[test]
    fn attack_connections_come_from_the_address_asked_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let from: IpAddr = "127.0.0.2".parse().unwrap();
        let ctx = Ctx::new(Aim {
            addr: listener.local_addr().unwrap(),
            goods: 1,
            seed: 1,
            hold: 1,
            pipelined: 1,
            send_buffer: 64 << 10,
            from: Some(from),
        });
        let _client = ctx.connect().expect("connected");
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), from);
    }
}
