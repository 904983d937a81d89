//! A scripted stand-in for the server, for tests: it listens on
//! 127.0.0.1:0, accepts one connection, and runs a script that reads
//! requests and writes replies (or raw bytes) with `seckill-proto`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use bytes::{Buf, BytesMut};
use seckill_proto::{
    Frame, FrameError, Opcode, Reply, Request, Status, MAX_REQUEST_FRAME, VERSION,
};

/// A request as the fake received it.
pub(crate) struct Received {
    pub(crate) opcode: u8,
    pub(crate) id: u64,
    pub(crate) request: Request,
}

/// The server side of one accepted connection.
pub(crate) struct FakeConn {
    stream: TcpStream,
    inbound: BytesMut,
}

/// Runs `script` on the first connection to the returned address. Join the
/// handle to surface the script's panics.
pub(crate) fn serve(
    script: impl FnOnce(&mut FakeConn) + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut conn = FakeConn {
            stream,
            inbound: BytesMut::new(),
        };
        script(&mut conn);
    });
    (addr, handle)
}

/// Runs `script` on each of the first `n` connections to the returned
/// address, one after the other, with the connection's index.
pub(crate) fn serve_each(
    n: usize,
    script: impl Fn(usize, &mut FakeConn) + Send + 'static,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        for index in 0..n {
            let (stream, _) = listener.accept().unwrap();
            let mut conn = FakeConn {
                stream,
                inbound: BytesMut::new(),
            };
            script(index, &mut conn);
        }
    });
    (addr, handle)
}

impl FakeConn {
    /// The next request, or `None` once the client has closed.
    pub(crate) fn next(&mut self) -> Option<Received> {
        loop {
            if let Some(received) = self.buffered() {
                return Some(received);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.inbound.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A request already in the buffer, without reading the socket.
    fn buffered(&mut self) -> Option<Received> {
        match Frame::parse(&self.inbound, MAX_REQUEST_FRAME) {
            Ok((frame, used)) => {
                let received = Received {
                    opcode: frame.opcode,
                    id: frame.id,
                    request: Request::decode(&frame).unwrap(),
                };
                self.inbound.advance(used);
                Some(received)
            }
            Err(FrameError::Incomplete) => None,
            Err(e) => panic!("client sent a bad frame: {e}"),
        }
    }

    /// Reads exactly `n` requests.
    pub(crate) fn take(&mut self, n: usize) -> Vec<Received> {
        (0..n)
            .map(|_| self.next().expect("client closed"))
            .collect()
    }

    /// Answers `received` with `reply`.
    pub(crate) fn reply(&mut self, received: &Received, reply: &Reply) {
        let mut out = BytesMut::new();
        reply.encode(received.opcode, received.id, &mut out);
        self.raw(&out);
    }

    /// Sends the server's connection-level error frame (request id 0), as
    /// a server that gives up on the connection, or refuses it, does.
    pub(crate) fn give_up(&mut self, status: Status, message: &str) {
        let mut out = BytesMut::new();
        Reply::error(status, message).encode(Opcode::Error as u8, 0, &mut out);
        self.raw(&out);
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Expects HELLO with this crate's version, and greets it.
    pub(crate) fn greet(&mut self, admin: bool) -> String {
        let hello = self.next().expect("no HELLO");
        let Request::Hello { version, token } = &hello.request else {
            panic!("first request was {:?}", hello.request);
        };
        assert_eq!(*version, VERSION);
        let token = token.clone();
        self.reply(
            &hello,
            &Reply::Hello {
                version: VERSION,
                admin,
                server: None,
            },
        );
        token
    }

    /// Until the client closes: takes every request that has arrived and
    /// answers them newest first, so replies always come back out of order.
    /// Returns the largest batch seen: a bound on the client's requests in
    /// flight, since each batch is answered before the next is read.
    pub(crate) fn answer_reversed(&mut self, answer: impl Fn(&Request) -> Reply) -> usize {
        let mut largest = 0;
        while let Some(first) = self.next() {
            let mut batch = vec![first];
            while let Some(more) = self.buffered() {
                batch.push(more);
            }
            largest = largest.max(batch.len());
            for received in batch.iter().rev() {
                self.reply(received, &answer(&received.request));
            }
        }
        largest
    }
}
