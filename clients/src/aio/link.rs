//! One multiplexed connection: a task that owns the socket, writes every
//! request it is handed under an id of its own, and gives each reply to the
//! caller whose request has that id.
//!
//! ```text
//!  callers ──Call{request, oneshot}──▶ mpsc ──▶ connection task ──frames──▶ server
//!     ▲                                            │  pending: id → (opcode, oneshot)
//!     └──────────── Result<Reply> ◀────────────────┘◀──replies, any order──
//! ```
//!
//! The task reads, writes and takes new calls in one `select!`, never
//! blocking one on another: a server that stops reading us while we wait to
//! write would otherwise deadlock with us on full TCP buffers. At most
//! `max_in_flight` requests are unanswered at once (under the server's
//! limit, so it never stops reading us); further calls wait in the channel.
//!
//! Any failure that leaves the byte stream in doubt ends the task and fails
//! every request in flight with it (after a failed write, once the replies
//! already received are given out); the requests still in the channel never
//! reached the server, and say so ([`Failure::sent`]), so the client may
//! send them anywhere.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use seckill_proto::{Opcode, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::connection::take_reply_frame;
use crate::error::{Error, Result};
use crate::pipeline::{check_reply, closed_in_flight};

/// How many calls may wait for the task before callers wait to queue.
const QUEUE: usize = 1024;

/// How much is read from the socket at a time (as the blocking client).
const READ_CHUNK: usize = 16 * 1024;

/// How long a connection whose write failed is still read for the replies
/// that came before the failure.
const LAST_READ: Duration = Duration::from_millis(100);

/// Why a call got no reply, and whether its request may have reached the
/// server.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    /// False when the request never left this process: sending it again,
    /// to any server, cannot do it twice.
    pub(crate) sent: bool,
}

type ReplySender = oneshot::Sender<std::result::Result<Reply, Failure>>;

/// A request for the task, and where its reply goes.
struct Call {
    request: Request,
    reply: ReplySender,
}

/// A request the server has (or may have) and has not answered.
struct Pending {
    opcode: Opcode,
    reply: ReplySender,
    sent_at: Instant,
}

/// What HELLO agreed on a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Greeting {
    pub(crate) version: u16,
    pub(crate) admin: bool,
    pub(crate) server: Option<seckill_proto::ServerInfo>,
}

/// The limits a connection task runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_in_flight: usize,
    pub(crate) max_reply_frame: u32,
    /// A server that has sent nothing for this long while a request waited
    /// is taken for dead.
    pub(crate) silence: Duration,
}

/// A handle on a live connection task; cheap to clone.
#[derive(Clone)]
pub(crate) struct Link {
    calls: mpsc::Sender<Call>,
    /// Which server of the client's list it is connected to.
    pub(crate) server: usize,
    pub(crate) greeting: Greeting,
}

impl Link {
    /// Starts the task for a greeted `stream`. `inbound` holds whatever
    /// came after HELLO's reply.
    pub(crate) fn spawn(
        stream: TcpStream,
        inbound: BytesMut,
        server: usize,
        greeting: Greeting,
        limits: Limits,
    ) -> Link {
        let (calls, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(stream, inbound, queue, limits));
        Link {
            calls,
            server,
            greeting,
        }
    }

    /// Whether the task still runs: it ends when its connection fails.
    pub(crate) fn is_alive(&self) -> bool {
        !self.calls.is_closed()
    }

    /// Hands `request` to the task, and returns where its reply will come.
    pub(crate) async fn queue(
        &self,
        request: Request,
    ) -> std::result::Result<oneshot::Receiver<std::result::Result<Reply, Failure>>, Failure> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call { request, reply })
            .await
            .map_err(|_| Failure {
                error: Error::closed("the connection to the server is closed"),
                sent: false,
            })?;
        Ok(answer)
    }

    /// Sends `request` and waits for its reply.
    pub(crate) async fn call(&self, request: Request) -> std::result::Result<Reply, Failure> {
        let answer = self.queue(request).await?;
        wait(answer).await
    }
}

/// The reply a queued request gets.
pub(crate) async fn wait(
    answer: oneshot::Receiver<std::result::Result<Reply, Failure>>,
) -> std::result::Result<Reply, Failure> {
    answer.await.unwrap_or_else(|_| {
        Err(Failure {
            error: Error::closed("the connection task ended"),
            sent: true,
        })
    })
}

/// The task: runs until the connection fails or every handle is dropped
/// and nothing is left in flight.
async fn run(
    mut stream: TcpStream,
    mut inbound: BytesMut,
    mut queue: mpsc::Receiver<Call>,
    limits: Limits,
) {
    let (mut reader, mut writer) = stream.split();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut outbound = BytesMut::new();
    let mut next_id: u64 = 1;
    let mut last_heard = Instant::now();
    let mut open = true;
    // Checking for silence a few times per allowed silence is cheap and
    // bounds how late a dead server is noticed.
    let mut watch = tokio::time::interval((limits.silence / 4).max(Duration::from_millis(10)));
    // Frames may have come right behind HELLO's reply.
    let failure = 'conn: loop {
        if let Err(e) = deliver(&mut inbound, &mut pending, limits.max_reply_frame) {
            break 'conn e;
        }
        if !open && pending.is_empty() && outbound.is_empty() {
            return;
        }
        tokio::select! {
            call = queue.recv(), if open && pending.len() < limits.max_in_flight => match call {
                Some(call) => {
                    // A caller that gave up (its deadline passed while it
                    // waited to queue) needs nothing sent.
                    if call.reply.is_closed() {
                        continue;
                    }
                    let id = next_id;
                    // 0 is the id of the server's connection-level error.
                    next_id = next_id.checked_add(1).unwrap_or(1);
                    call.request.encode(id, &mut outbound);
                    pending.insert(id, Pending {
                        opcode: call.request.opcode(),
                        reply: call.reply,
                        sent_at: Instant::now(),
                    });
                }
                // Every handle dropped: finish what is in flight, then end.
                None => open = false,
            },
            written = writer.write_buf(&mut outbound), if !outbound.is_empty() => {
                if let Err(e) = written {
                    // A server that closed (reset) the connection may have
                    // answered calls first: their replies, and its reason
                    // for closing, wait in our receive buffer, and those
                    // calls are not in doubt.
                    let max = limits.max_reply_frame;
                    break 'conn match read_the_rest(&mut reader, &mut inbound, &mut pending, max).await {
                        Err(why) => why,
                        Ok(()) => Error::io("sending requests", e),
                    };
                }
            }
            read = reader.read_buf(&mut inbound) => match read {
                Ok(0) => break 'conn Error::closed("the server closed the connection"),
                Ok(_) => last_heard = Instant::now(),
                Err(e) => break 'conn Error::io("reading a reply", e),
            },
            _ = watch.tick() => {
                let waited_since = pending.values().map(|p| p.sent_at).min();
                if let Some(since) = waited_since {
                    let heard = last_heard.max(since);
                    if heard.elapsed() >= limits.silence {
                        break 'conn Error::timeout(format!(
                            "the server sent nothing for {:?} with requests in flight",
                            limits.silence
                        ));
                    }
                }
            }
        }
        if inbound.capacity() - inbound.len() < READ_CHUNK / 4 {
            inbound.reserve(READ_CHUNK);
        }
    };
    // Closed first, so that a caller told of the failure below already
    // sees this link dead and dials a new one, rather than queue on it.
    queue.close();
    for (_, p) in pending.drain() {
        let _ = p.reply.send(Err(Failure {
            error: failure.duplicate(),
            sent: true,
        }));
    }
    // What is still queued never reached the server.
    while let Ok(call) = queue.try_recv() {
        let _ = call.reply.send(Err(Failure {
            error: Error::closed(format!("not sent: {failure}")),
            sent: false,
        }));
    }
}

/// After a failed write: reads what the server sent before the connection
/// failed and gives each reply to its caller, for [`LAST_READ`] at most
/// (what a connection reset leaves is readable at once, then the end). An
/// error is the stream's own (the server's connection-level error frame,
/// say), which says more than the failed write.
async fn read_the_rest(
    reader: &mut tokio::net::tcp::ReadHalf<'_>,
    inbound: &mut BytesMut,
    pending: &mut HashMap<u64, Pending>,
    max_reply_frame: u32,
) -> Result<()> {
    let until = Instant::now() + LAST_READ;
    loop {
        deliver(inbound, pending, max_reply_frame)?;
        inbound.reserve(READ_CHUNK);
        match tokio::time::timeout_at(until, reader.read_buf(inbound)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Ok(()),
        }
    }
}

/// Gives every whole reply frame in `inbound` to its caller. An error means
/// the stream cannot be trusted any more.
fn deliver(
    inbound: &mut BytesMut,
    pending: &mut HashMap<u64, Pending>,
    max_reply_frame: u32,
) -> Result<()> {
    while let Some(frame) = take_reply_frame(inbound, max_reply_frame)? {
        if let Some(err) = closed_in_flight(&frame) {
            return Err(err);
        }
        let Some(p) = pending.remove(&frame.id) else {
            return Err(Error::protocol(format!(
                "reply for request id {}, which is not in flight",
                frame.id
            )));
        };
        // A caller that timed out has dropped its receiver: the reply is
        // simply not wanted any more, and the stream stays in step.
        let _ = p
            .reply
            .send(check_reply(frame, p.opcode).map_err(|error| Failure { error, sent: true }));
    }
    Ok(())
}
