//! Opening a connection to one server of the list and greeting it.

use std::time::Duration;

use bytes::BytesMut;
use seckill_proto::{Opcode, Reply, Request, Status, MIN_VERSION, VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::aio::builder::Options;
use crate::aio::link::{Greeting, Limits, Link};
use crate::client::HELLO_ID;
use crate::connection::take_reply_frame;
use crate::error::{Error, Result};
use crate::outcome::unexpected;
use crate::pipeline::{check_reply, connection_error};

/// Connects to server `index` (`addr`), says HELLO, and starts its task.
/// The whole of it is bounded by `limit` ([`dial_limit`]).
pub(crate) async fn dial(
    index: usize,
    addr: &str,
    options: &Options,
    limit: Duration,
) -> Result<Link> {
    let greeted = tokio::time::timeout(limit, open_greeted(addr, options)).await;
    let (stream, inbound, greeting) = greeted
        .map_err(|_| Error::timeout(format!("timed out connecting to {addr} and greeting it")))??;
    let limits = Limits {
        max_in_flight: options.max_in_flight,
        max_reply_frame: seckill_proto::MAX_REPLY_FRAME,
        silence: options.request_timeout,
    };
    Ok(Link::spawn(stream, inbound, index, greeting, limits))
}

/// How long a dial of one of `servers` servers may take: the connect
/// timeout, and with several servers half the request timeout at most, so
/// that a server that accepts and never greets (hung, or overloaded) fails
/// its dial within the call, which has time left for the next server, and
/// counts towards the backoff (cut by the call's own deadline instead, it
/// would do neither). With one server there is no other to try, and a
/// greeting that comes late is still worth the wait; a dial the call's
/// deadline cuts then counts towards the backoff all the same (see
/// `Client::link`).
pub(crate) fn dial_limit(options: &Options, servers: usize) -> Duration {
    match servers {
        0 | 1 => options.connect_timeout,
        _ => options
            .connect_timeout
            .min(options.request_timeout / 2)
            .max(Duration::from_millis(1)),
    }
}

/// HELLO in the newest version this crate speaks, and in the oldest on a
/// new connection if the server speaks only older ones (PROTOCOL.md,
/// section 6), as the blocking client does.
async fn open_greeted(addr: &str, options: &Options) -> Result<(TcpStream, BytesMut, Greeting)> {
    let mut stream = open(addr).await?;
    let mut inbound = BytesMut::with_capacity(16 * 1024);
    match greet(&mut stream, &mut inbound, VERSION, &options.token).await {
        Err(e) if e.status() == Some(Status::UnsupportedVersion) && VERSION > MIN_VERSION => {
            let mut stream = open(addr).await?;
            inbound.clear();
            let greeting = greet(&mut stream, &mut inbound, MIN_VERSION, &options.token).await?;
            Ok((stream, inbound, greeting))
        }
        Err(e) => Err(e),
        Ok(greeting) => Ok((stream, inbound, greeting)),
    }
}

/// A TCP connection to the first address `addr` resolves to that accepts.
/// Names are resolved at every dial, so a server that moved is found.
async fn open(addr: &str) -> Result<TcpStream> {
    let resolved = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::io(format!("resolving {addr}"), e))?;
    let mut last_error = None;
    for socket_addr in resolved {
        match TcpStream::connect(socket_addr).await {
            Ok(stream) => {
                // Every request is a small frame that should leave at once.
                stream
                    .set_nodelay(true)
                    .map_err(|e| Error::io(format!("setting up {socket_addr}"), e))?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(Error::io(format!("connecting to {socket_addr}"), e)),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Error::io(
            format!("resolving {addr}"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "it resolved to no address"),
        )
    }))
}

async fn greet(
    stream: &mut TcpStream,
    inbound: &mut BytesMut,
    version: u16,
    token: &str,
) -> Result<Greeting> {
    let hello = Request::Hello {
        version,
        token: token.to_owned(),
    };
    crate::pipeline::check_request(&hello)?;
    let mut out = BytesMut::new();
    hello.encode(HELLO_ID, &mut out);
    stream
        .write_all(&out)
        .await
        .map_err(|e| Error::io("sending HELLO", e))?;
    let frame = loop {
        if let Some(frame) = take_reply_frame(inbound, seckill_proto::MAX_REPLY_FRAME)? {
            break frame;
        }
        let read = stream
            .read_buf(inbound)
            .await
            .map_err(|e| Error::io("reading the reply to HELLO", e))?;
        if read == 0 {
            return Err(Error::closed(
                "the server closed the connection after HELLO",
            ));
        }
    };
    if let Some(err) = connection_error(&frame) {
        return Err(err);
    }
    if frame.id != HELLO_ID {
        return Err(Error::protocol(format!(
            "reply for request id {}, which is not in flight",
            frame.id
        )));
    }
    match check_reply(frame, Opcode::Hello)? {
        Reply::Hello {
            version,
            admin,
            server,
        } => Ok(Greeting {
            version,
            admin,
            server,
        }),
        other => Err(unexpected(other, "HELLO")),
    }
}
