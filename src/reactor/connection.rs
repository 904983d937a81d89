//! One client connection as its reactor sees it: a socket, a read buffer, a
//! write buffer, and the little state the protocol needs.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;
use seckill_proto::{Opcode, Reply};

use super::admission::Ticket;
use crate::dispatch::Accepted;

/// Bytes read from a socket per `read` call: the size of the reactor's
/// scratch buffer.
pub const READ_CHUNK: usize = 16 * 1024;

/// How long a connection closed for a bad frame, its side shut, waits for
/// its peer's end before it is closed anyway ([`Connection::close_now`]).
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// ... and how much of the peer's input it reads and drops meanwhile.
pub const LINGER_BYTES: usize = 256 << 10;

/// Bytes written to `socket` that its peer has not acknowledged yet (the
/// kernel's SIOCOUTQ, which is TIOCOUTQ: tcp(7)), `None` if it cannot say.
#[cfg(target_os = "linux")]
fn unacknowledged(socket: &TcpStream) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points at
    // `queued`, alive for the call; the descriptor is the socket's own.
    let done = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    (done == 0).then(|| usize::try_from(queued).ok()).flatten()
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_: &TcpStream) -> Option<usize> {
    None
}

pub struct Connection {
    pub socket: TcpStream,
    /// Its place among the open connections, given back on drop; and its
    /// address's count of requests at workers.
    pub ticket: Ticket,
    /// Accepted on the admin listener.
    pub admin_port: bool,
    pub peer: Option<SocketAddr>,
    /// Tells this connection apart from earlier ones in the same slab slot.
    pub generation: u64,
    /// Bytes read but not yet decoded: at most one frame (bounded by the
    /// frame limit) plus one read chunk.
    pub rbuf: BytesMut,
    /// Encoded replies not yet written.
    pub wbuf: BytesMut,
    /// HELLO has succeeded.
    pub greeted: bool,
    /// HELLO presented the admin token.
    pub admin: bool,
    /// The protocol version HELLO agreed on; 0 before. Replies are sent in
    /// it: a status newer than it is sent as the older one it refines.
    pub version: u16,
    /// Requests handed to workers and not yet answered.
    pub inflight: usize,
    pub last_read: Instant,
    /// Since when the read buffer has held the start of a frame that is not
    /// complete (the slowloris deadline counts from here).
    pub partial_since: Option<Instant>,
    /// Read no more; close once every reply is written.
    pub closing: bool,
    /// When the idle sweep first found the connection `closing`: it gets a
    /// frame timeout from then to flush its last replies, however much it
    /// keeps sending (input is read and thrown away, and must not keep it).
    pub closing_seen: Option<Instant>,
    /// The peer closed its side: the whole frames already read are still
    /// answered, then the connection is `closing`.
    pub eof: bool,
    /// Every reply written, the server's side was shut then (a FIN after
    /// them), and the connection waits for the peer's end, its input read
    /// and dropped meanwhile, for a while: see [`Connection::close_now`].
    pub shut_down_at: Option<Instant>,
    /// Bytes of input read and dropped since the server's side was shut.
    pub discarded: usize,
    /// The server is shutting down: read nothing more from the socket, but
    /// answer the whole frames already read (the peer sent them and the
    /// server took them), then the connection is `closing`.
    pub draining: bool,
    /// Closed and deregistered; the slot is freed after this poll round.
    pub closed: bool,
    /// The socket may hold unread bytes. Set by a readable event, cleared
    /// by a short read: under edge-triggered readiness new data brings a
    /// new event, so reading again until `WouldBlock` would only cost a
    /// syscall that says so.
    pub readable: bool,
    /// The peer shut its side (or the socket failed): the end of input
    /// brings no new edge, so reads go on until `WouldBlock` or the end
    /// rather than stop at a short read.
    pub read_closed: bool,
    /// The socket may take more bytes. Cleared when a write would block,
    /// set again by a writable event; a connection whose peer does not read
    /// costs no write attempts meanwhile.
    pub writable: bool,
    /// Waiting in the reactor's list of connections to flush this turn.
    pub dirty: bool,
    /// Waiting in the reactor's list of connections that used their
    /// request budget for the turn and have more to do.
    pub again: bool,
    /// Requests taken from this connection in turn `taken_in` of its
    /// reactor: however many times a turn drives it (an event, then a
    /// completion), it takes at most `--requests-per-turn` in all.
    pub taken: usize,
    pub taken_in: u64,
    /// Unsent reply bytes last counted into the reactors' shared total.
    pub counted: usize,
    /// Buffered input bytes last counted into the reactors' shared total.
    pub counted_input: usize,
    /// Bytes the read buffer was advanced past (served) since it was
    /// allocated: with its capacity, about the memory it holds (more, once
    /// a reserve moved its bytes to the front: at worst a copy too many).
    pub served: usize,
    /// Requests answered `bad_request` so far.
    pub bad_requests: u32,
    /// Bytes at the head of the write buffer that finish a frame the peer
    /// has received the beginning of (a write cut it): what must go before
    /// any other frame, should the rest be dropped.
    cut: usize,
    /// Why the server gave up on the connection, not sent yet: the
    /// connection-level error frame waits for the replies to the requests
    /// in flight ([`Connection::give_up`]).
    farewell: Option<Reply>,
}

pub enum ReadOutcome {
    /// Some bytes were read (and, if fewer than asked, the socket was
    /// drained: `readable` is cleared).
    Data,
    /// Nothing more to read for now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
}

/// Requests still at workers when the connection goes are no longer its
/// address's: their answers, if they come, are dropped.
impl Drop for Connection {
    fn drop(&mut self) {
        self.ticket.jobs_done(self.inflight);
    }
}

impl Connection {
    pub fn new(accepted: Accepted, generation: u64) -> Self {
        let Accepted {
            socket,
            ticket,
            admin_port,
            peer,
        } = accepted;
        Connection {
            peer: Some(peer),
            socket,
            ticket,
            admin_port,
            generation,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            greeted: false,
            admin: false,
            version: 0,
            inflight: 0,
            last_read: Instant::now(),
            partial_since: None,
            closing: false,
            closing_seen: None,
            eof: false,
            shut_down_at: None,
            discarded: 0,
            draining: false,
            closed: false,
            // Bytes may have come before registration; one read finds out.
            readable: true,
            read_closed: false,
            writable: true,
            dirty: false,
            again: false,
            taken: 0,
            taken_in: 0,
            counted: 0,
            counted_input: 0,
            served: 0,
            bad_requests: 0,
            cut: 0,
            farewell: None,
        }
    }

    /// Reads one chunk through the reactor's `scratch` buffer and appends
    /// it to the read buffer. The caller decodes between chunks, which is
    /// what keeps the read buffer bounded however much a client pipelines.
    /// (Reading into the read buffer itself would mean zeroing a chunk of
    /// it before every read, which costs more than copying what arrived.)
    pub fn read_chunk(&mut self, scratch: &mut [u8]) -> io::Result<ReadOutcome> {
        let result = loop {
            match self.socket.read(scratch) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => {
                if n < scratch.len() && !self.read_closed {
                    self.readable = false;
                }
                // Past its spare capacity, the buffer moves what it holds
                // to the front of its allocation or to a new one: nothing
                // served is held before it any more.
                if n > self.rbuf.capacity() - self.rbuf.len() {
                    self.served = 0;
                }
                self.rbuf.extend_from_slice(&scratch[..n]);
                self.last_read = Instant::now();
                Ok(ReadOutcome::Data)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(ReadOutcome::WouldBlock)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads and drops what a closing peer still sends (a few chunks at a
    /// time). Closing a socket with unread input makes the kernel send a
    /// reset, which can destroy the error reply before the peer reads it.
    pub fn discard_input(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        for _ in 0..4 {
            if !self.readable {
                break;
            }
            match self.read_chunk(scratch)? {
                ReadOutcome::Data => {
                    self.discarded = self.discarded.saturating_add(self.rbuf.len());
                    self.rbuf.clear();
                }
                ReadOutcome::Eof => {
                    self.eof = true;
                    break;
                }
                ReadOutcome::WouldBlock => break,
            }
        }
        Ok(())
    }

    /// Writes as much of the write buffer as the socket takes, unless the
    /// socket said it is full and no writable event has come since.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() && self.writable {
            match self.socket.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.cut = if n == self.wbuf.len() {
                        0
                    } else {
                        rest_of_cut_frame(&self.wbuf, self.cut, n)
                    };
                    self.wbuf.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Drops the replies not yet sent but for the rest of a frame a write
    /// cut (the peer has its beginning: without its end, the peer would
    /// read whatever comes next as its end).
    pub fn drop_unsent(&mut self) {
        self.wbuf.truncate(self.cut);
    }

    /// Gives up the read buffer's allocation where it is well over what the
    /// buffer still holds, and returns the bytes given up. Advanced past
    /// what it served, a buffer keeps its whole allocation (a read chunk or
    /// more, a large frame's) for as long as it is not empty: a peer that
    /// leaves a byte of its next frame and goes quiet would hold that much
    /// on every connection, counted as a byte by the input budget. What is
    /// left moves to a buffer of its own. Called by the idle sweep, once a
    /// second. A frame trickled in grows its buffer by doubling only, and is
    /// never moved.
    pub fn compact_input(&mut self) -> usize {
        let held = self.served + self.rbuf.capacity();
        if self.rbuf.is_empty() || held < READ_CHUNK / 4 || held < 4 * self.rbuf.len() {
            return 0;
        }
        self.rbuf = BytesMut::from(&self.rbuf[..]);
        self.served = 0;
        held
    }

    /// Gives back empty buffers: an idle connection then holds no buffer
    /// memory, which is what lets a reactor hold many thousands of them.
    /// Returns the bytes freed.
    pub fn shrink(&mut self) -> usize {
        let mut freed = 0;
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            freed += self.rbuf.capacity();
            self.rbuf = BytesMut::new();
            self.served = 0;
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            freed += self.wbuf.capacity();
            self.wbuf = BytesMut::new();
        }
        freed
    }

    /// Gives up on the connection, saying why in the connection-level error
    /// frame (`0xff`, request id 0): nothing more is read for requests, and
    /// the frame goes after the replies to the requests in flight, as the
    /// last frame on the connection (PROTOCOL.md 7.1). A client takes it
    /// for the close, and would fail a reply that came after it as in
    /// doubt. The first reason given is the one sent.
    pub fn give_up(&mut self, why: Reply) {
        self.closing = true;
        self.farewell.get_or_insert(why);
        self.say_farewell_if_last();
    }

    /// Writes the frame [`give_up`](Self::give_up) left waiting once no
    /// request is in flight any more.
    pub fn say_farewell_if_last(&mut self) {
        if self.inflight == 0 {
            if let Some(why) = self.farewell.take() {
                why.for_version(self.version)
                    .encode(Opcode::Error as u8, 0, &mut self.wbuf);
            }
        }
    }

    /// A peer that does not read: replies wait, and the socket takes no more.
    pub fn not_reading(&self) -> bool {
        !self.writable && !self.wbuf.is_empty()
    }

    /// True when the connection should not take more requests for now.
    pub fn paused(&self, max_inflight: usize, write_high_water: usize) -> bool {
        self.closing || self.inflight >= max_inflight || self.wbuf.len() > write_high_water
    }

    /// No more bytes will be read from the socket for requests.
    pub fn input_ended(&self) -> bool {
        self.eof || self.draining
    }

    /// True when nothing more will happen on this connection.
    pub fn finished(&self) -> bool {
        self.closing && self.inflight == 0 && self.wbuf.is_empty()
    }

    /// Once [`finished`](Self::finished): whether to close the socket now.
    /// A socket closed with input unread makes the kernel send a reset,
    /// which throws away the replies the peer has not received yet (the
    /// error frame that says why, and those before it that a slow reader
    /// has not read); what the peer received stays readable there. So
    /// unless the peer has ended its side, has every byte sent to it (the
    /// usual case, and a flood's: closing then costs nothing more), or the
    /// server is stopping, the server's side is shut instead: a FIN after
    /// the last reply, while the input goes on being read and dropped
    /// until the peer's end, for [`LINGER_TIME`] and [`LINGER_BYTES`] at
    /// most (a peer that goes on sending after that is not reading
    /// either).
    pub fn close_now(&mut self) -> bool {
        if self.eof || self.draining {
            return true;
        }
        if self.shut_down_at.is_some() {
            return self.lingered_enough();
        }
        if unacknowledged(&self.socket) == Some(0) {
            return true;
        }
        // The input dropped before (while the last replies waited to be
        // written) does not count against the wait.
        self.shut_down_at = Some(Instant::now());
        self.discarded = 0;
        self.socket.shutdown(std::net::Shutdown::Write).is_err()
    }

    /// Whether a connection shut on its side has waited for its peer's end
    /// as long, or dropped as much of its input since, as it is given.
    pub fn lingered_enough(&self) -> bool {
        self.shut_down_at
            .is_some_and(|t| self.discarded > LINGER_BYTES || t.elapsed() >= LINGER_TIME)
    }
}

/// Where a write of `written` bytes from the start of `wbuf` ended, as the
/// bytes left of the frame it cut (0 at a boundary between frames), given
/// that the first `cut` bytes of `wbuf` were the rest of a frame cut
/// before. `wbuf` holds whole frames after those, each a 4-byte length and
/// that many bytes.
fn rest_of_cut_frame(wbuf: &[u8], cut: usize, written: usize) -> usize {
    if written <= cut {
        return cut - written;
    }
    let mut at = cut;
    while at < written {
        let Some(prefix) = wbuf.get(at..at + 4) else {
            // Not a whole frame: never written by this server.
            return 0;
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        at += 4 + len;
    }
    at - written
}

#[cfg(test)]
mod tests {
    use super::rest_of_cut_frame;

    /// Three frames of 4 + 9, 4 + 12 and 4 + 9 bytes.
    fn frames() -> Vec<u8> {
        let mut buf = Vec::new();
        for body in [9u32, 12, 9] {
            buf.extend_from_slice(&body.to_be_bytes());
            buf.extend(std::iter::repeat_n(0xaa, body as usize));
        }
        buf
    }

    #[test]
    fn a_write_that_ends_inside_a_frame_leaves_its_rest() {
        let buf = frames();
        // Ends 5 bytes into the first frame (13 long).
        assert_eq!(rest_of_cut_frame(&buf, 0, 5), 8);
        // Exactly the first frame, then the first two.
        assert_eq!(rest_of_cut_frame(&buf, 0, 13), 0);
        assert_eq!(rest_of_cut_frame(&buf, 0, 29), 0);
        // Into the second (13..29).
        assert_eq!(rest_of_cut_frame(&buf, 0, 20), 9);
    }

    #[test]
    fn a_write_after_a_cut_counts_from_the_rest() {
        let buf = frames();
        // The first 8 bytes are the rest of a frame cut before; then frames
        // of 16 and 13 bytes (8..24, 24..37).
        let after = &buf[5..];
        assert_eq!(rest_of_cut_frame(after, 8, 3), 5);
        assert_eq!(rest_of_cut_frame(after, 8, 8), 0);
        assert_eq!(rest_of_cut_frame(after, 8, 10), 14);
        assert_eq!(rest_of_cut_frame(after, 8, 24), 0);
        assert_eq!(rest_of_cut_frame(after, 8, 30), 7);
    }
}
