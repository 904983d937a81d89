//! The framed socket: requests out, reply frames in, nothing about matching.
//!
//! Any failure that leaves the byte stream in an unknown state (an I/O error,
//! a timeout, a frame that cannot be delimited) breaks the connection for
//! good: a late reply could otherwise be taken for the answer to a later
//! request. Later calls then fail fast with [`ErrorKind::Closed`].
//!
//! [`ErrorKind::Closed`]: crate::ErrorKind::Closed

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use seckill_proto::{BodyError, Frame, FrameError, Reply, Request};

use crate::error::{Error, Result};

/// How much is read from the socket at a time. Small enough that a hostile
/// peer can make us buffer only this much past a frame we have vetted.
const READ_CHUNK: usize = 16 * 1024;

/// One reply frame as it came off the wire. The body may not have decoded:
/// the frame was whole, so the stream is intact and the caller decides.
#[derive(Debug)]
pub(crate) struct ReplyFrame {
    pub(crate) opcode: u8,
    pub(crate) id: u64,
    pub(crate) reply: std::result::Result<Reply, BodyError>,
}

pub(crate) struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet taken as frames.
    inbound: BytesMut,
    /// Reused for every batch, so steady use allocates nothing.
    outbound: BytesMut,
    max_reply_frame: u32,
    /// How long a reply may take to arrive whole (the socket's own read
    /// timeout, which bounds one read, is shortened to what is left of it
    /// for the reads after the first).
    read_timeout: Option<Duration>,
    /// Why the connection can no longer be used, once it cannot.
    broken: Option<String>,
}

/// The start of what a peer sent, for people: printable ASCII as text, any
/// other byte as `\xNN`, cut after [`EXCERPT_LEN`] bytes.
fn excerpt(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(EXCERPT_LEN)
        .map(|&b| match b {
            b' '..=b'~' if b != b'"' && b != b'\\' => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    let more = if bytes.len() > EXCERPT_LEN { "..." } else { "" };
    format!("\"{shown}{more}\"")
}

/// How much of a foreign answer [`excerpt`] shows.
const EXCERPT_LEN: usize = 48;

/// Takes the next reply frame off the front of `inbound` if all of it has
/// arrived, `None` if not yet. Shared by the blocking connection and the
/// async one, which differ only in how they wait for bytes.
///
/// An error means the stream can no longer be delimited: the caller breaks
/// the connection.
pub(crate) fn take_reply_frame(
    inbound: &mut BytesMut,
    max_reply_frame: u32,
) -> Result<Option<ReplyFrame>> {
    match Frame::parse(inbound, max_reply_frame) {
        Ok((frame, used)) => {
            let reply = Reply::decode(&frame).map(|(_, reply)| reply);
            let (opcode, id) = (frame.opcode, frame.id);
            inbound.advance(used);
            Ok(Some(ReplyFrame { opcode, id, reply }))
        }
        Err(FrameError::Incomplete) => Ok(None),
        // The length prefix is checked before anything past it is
        // buffered, so a hostile length costs no allocation.
        // What came is shown: a length that cannot be is most often
        // another protocol's text ("HTTP" is a length of 1.2 GB).
        Err(e @ (FrameError::TooLarge { .. } | FrameError::TooShort { .. })) => {
            let sent = excerpt(inbound);
            Err(Error::protocol(format!(
                "bad reply frame: {e}; the peer sent {sent}: not a seckill server?"
            )))
        }
    }
}

impl Connection {
    /// A connection on `stream`, whose read timeout is `read_timeout`.
    pub(crate) fn new(
        stream: TcpStream,
        max_reply_frame: u32,
        read_timeout: Option<Duration>,
    ) -> Connection {
        Connection {
            stream,
            inbound: BytesMut::with_capacity(READ_CHUNK),
            outbound: BytesMut::new(),
            max_reply_frame,
            read_timeout,
            broken: None,
        }
    }

    /// Changes how long a reply may take to arrive whole.
    pub(crate) fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.read_timeout = timeout;
        self.stream
            .set_read_timeout(timeout)
            .map_err(|e| Error::io("setting the read timeout", e))
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Fails if an earlier error broke the connection.
    pub(crate) fn check_usable(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(Error::closed(format!(
                "connection unusable after an earlier error ({why}); connect again"
            ))),
        }
    }

    /// Marks the connection broken by `err` and hands `err` back.
    pub(crate) fn break_with(&mut self, err: Error) -> Error {
        if self.broken.is_none() {
            self.broken = Some(err.to_string());
        }
        err
    }

    /// Sends `requests` with consecutive ids from `first_id`, in one write.
    pub(crate) fn send(&mut self, first_id: u64, requests: &[Request]) -> Result<()> {
        self.check_usable()?;
        self.outbound.clear();
        let mut id = first_id;
        for request in requests {
            request.encode(id, &mut self.outbound);
            id = id.wrapping_add(1);
        }
        // write_all retries on Interrupted itself.
        let written = self.stream.write_all(&self.outbound);
        self.outbound.clear();
        written.map_err(|e| self.break_with(Error::io("sending requests", e)))
    }

    /// Reads the next reply frame, blocking until a whole one has arrived,
    /// for the read timeout at most. The first read waits for the socket's
    /// own timeout; one after it, for what is left (a frame that arrives in
    /// one read, the usual case, costs no change of the socket's timeout).
    pub(crate) fn read_frame(&mut self) -> Result<ReplyFrame> {
        self.check_usable()?;
        let mut deadline = None;
        let mut shortened = false;
        let read = loop {
            match take_reply_frame(&mut self.inbound, self.max_reply_frame) {
                Ok(Some(frame)) => break Ok(frame),
                Ok(None) => {}
                Err(e) => break Err(self.break_with(e)),
            }
            if let Some(timeout) = self.read_timeout {
                let now = Instant::now();
                let deadline = *deadline.get_or_insert(now + timeout);
                if shortened || deadline < now + timeout {
                    let left = deadline.saturating_duration_since(now);
                    if left.is_zero() {
                        let late = io::Error::from(io::ErrorKind::TimedOut);
                        break Err(self.break_with(Error::io("reading a reply", late)));
                    }
                    shortened = true;
                    if let Err(e) = self.stream.set_read_timeout(Some(left)) {
                        break Err(self.break_with(Error::io("setting the read timeout", e)));
                    }
                }
            }
            if let Err(e) = self.fill() {
                break Err(e);
            }
        };
        if shortened {
            let restored = self.stream.set_read_timeout(self.read_timeout);
            if let Err(e) = restored {
                return Err(self.break_with(Error::io("setting the read timeout", e)));
            }
        }
        read
    }

    /// Reads at most one chunk from the socket into `inbound`.
    fn fill(&mut self) -> Result<()> {
        let start = self.inbound.len();
        // Zeroing the chunk is cheap and keeps this free of unsafe code.
        self.inbound.resize(start + READ_CHUNK, 0);
        let read = loop {
            match self.stream.read(&mut self.inbound[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let got = *read.as_ref().unwrap_or(&0);
        self.inbound.truncate(start + got);
        match read {
            Ok(0) => {
                let what = if start == 0 {
                    "the server closed the connection"
                } else {
                    "the server closed the connection in the middle of a reply"
                };
                Err(self.break_with(Error::closed(what)))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(self.break_with(Error::io("reading a reply", e))),
        }
    }

    #[cfg(test)]
    pub(crate) fn inbound_capacity(&self) -> usize {
        self.inbound.capacity()
    }
}
