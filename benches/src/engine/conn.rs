//! One load connection: a non-blocking socket, a buffer each way, the
//! requests in flight, and (open loop) the slots due but not yet sent.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use mio::net::TcpStream;

use super::window::{Pending, Window};
use super::wire::{Answer, Codec, HELLO_ID};
use super::Op;

/// Bytes read from a socket per call.
pub const READ_CHUNK: usize = 64 * 1024;

pub struct Conn {
    pub stream: TcpStream,
    codec: Codec,
    input: BytesMut,
    output: BytesMut,
    pub window: Window,
    /// Greeting replies still expected; the connection carries load once
    /// this is 0.
    pub greeting: usize,
    /// Open loop: instants of slots given to this connection that wait for
    /// room in its window.
    pub backlog: VecDeque<Instant>,
    pub open: bool,
    /// Which server of the target it talks to.
    pub server: usize,
}

impl Conn {
    pub fn new(stream: TcpStream, codec: Codec, server: usize) -> Conn {
        let mut output = BytesMut::new();
        let greeting = codec.greet(&mut output);
        Conn {
            stream,
            codec,
            input: BytesMut::new(),
            output,
            window: Window::new(HELLO_ID + 1),
            greeting,
            backlog: VecDeque::new(),
            open: true,
            server,
        }
    }

    /// Queues one request, after `retries` tries answered `busy`;
    /// [`Conn::flush`] sends it.
    pub fn send(&mut self, op: Op, since: Instant, retries: u32) {
        let id = self.window.next_id();
        self.codec.encode(&op, id, &mut self.output);
        self.window.push(Pending { op, since, retries });
    }

    /// Writes what it can of the output buffer. An error closes the
    /// connection.
    pub fn flush(&mut self) -> Result<(), String> {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err("the socket takes no more bytes".into()),
                Ok(n) => self.output.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    /// Reads everything the socket has (edge-triggered polling: until it
    /// would block). An error means the connection is closed or broken.
    pub fn read(&mut self, scratch: &mut [u8; READ_CHUNK]) -> Result<(), String> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Err("closed by the peer".into()),
                Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The next whole reply read, if any.
    pub fn next_answer(&mut self) -> Result<Option<Answer>, String> {
        self.codec.decode(&mut self.input, self.greeting > 0)
    }

    /// The request a reply answers: by id, or the oldest in flight.
    pub fn answered(&mut self, id: Option<u64>) -> Option<Pending> {
        match id {
            Some(id) => self.window.take(id),
            None => self.window.take_oldest(),
        }
    }
}

/// A scratch buffer for [`Conn::read`], one per thread.
pub fn scratch() -> Box<[u8; READ_CHUNK]> {
    Box::new([0; READ_CHUNK])
}
