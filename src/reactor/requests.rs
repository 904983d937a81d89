//! What a reactor does with one decoded frame: answer it on the spot when no
//! store is needed, or hand it to the workers.
//!
//! Everything here is non-blocking: catalog reads, counters, and a
//! `try_send` that answers `busy` when the job channel is full.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use log::warn;
use seckill_proto::{
    Capabilities, Frame, Reply, Request, RequestId, ServerInfo, Status, MIN_VERSION, VERSION,
};

use super::connection::Connection;
use super::rate_limit::{address_key, RateLimiter};
use crate::admin_log::Peer;
use crate::config::{Config, Secret};
use crate::dispatch::{AdminJob, ConnRef, Job, Origin};
use crate::metrics::{self, Metrics};
use crate::sale::{now_ms, unknown_goods};
use crate::startup::SaleSlot;

/// Wrong admin tokens one client address may present at once, then one every
/// six seconds: an operator who mistyped it is not held up, and a guesser
/// gets ten guesses a minute per address (each wrong one logged).
const WRONG_TOKENS_BURST: u32 = 10;
const WRONG_TOKENS_PER_S: f64 = 1.0 / 6.0;

/// Wrong admin tokens from all addresses together: a hundred at once, then
/// one a second. An attacker with many addresses (a routed IPv6 /48 holds
/// 65,536 /64s) would otherwise guess that many times faster, and fill the
/// log with a line per guess. The price: while guesses come faster than
/// that, the admin's own HELLO on the same listener is refused too (the
/// admin listener, `--admin-listen`, keeps them apart).
const ALL_WRONG_TOKENS_BURST: u32 = 100;
const ALL_WRONG_TOKENS_PER_S: f64 = 1.0;

/// A reactor's way to the rest of the server; each reactor has a copy.
#[derive(Clone)]
pub struct Handler {
    /// Empty until start-up has loaded and reconciled the goods.
    sale: SaleSlot,
    pub(super) metrics: Arc<Metrics>,
    /// BUYs and the buyers' other store requests, for the worker pool.
    jobs: Sender<Job>,
    /// Admin requests, for the admin worker.
    admin_jobs: Sender<AdminJob>,
    admin_token: Option<Secret>,
    /// Admin rights are granted only on the admin listener.
    admin_listener: bool,
    /// Shared by every reactor: a user's rate does not depend on which
    /// connection they use.
    buy_limit: Arc<RateLimiter>,
    /// Wrong admin tokens per client address: past [`WRONG_TOKENS_BURST`],
    /// an address's HELLOs with a token are refused without a look at it,
    /// until its bucket refills.
    wrong_tokens: Arc<RateLimiter>,
    /// ... and from all addresses together, in one bucket (key 0).
    all_wrong_tokens: Arc<RateLimiter>,
    /// The limits HELLO tells a client of version 2 or more.
    max_frame: u32,
    max_inflight: usize,
    /// Requests answered `bad_request` before the connection is closed.
    bad_request_budget: u32,
}

impl Handler {
    pub fn new(
        config: &Config,
        sale: SaleSlot,
        metrics: Arc<Metrics>,
        jobs: Sender<Job>,
        admin_jobs: Sender<AdminJob>,
    ) -> Handler {
        Handler {
            sale,
            metrics,
            jobs,
            admin_jobs,
            admin_token: config.admin_token.clone(),
            admin_listener: config.admin_listen.is_some(),
            buy_limit: Arc::new(RateLimiter::new(config.buy_rate, config.buy_burst)),
            wrong_tokens: Arc::new(RateLimiter::new(WRONG_TOKENS_PER_S, WRONG_TOKENS_BURST)),
            all_wrong_tokens: Arc::new(RateLimiter::new(
                ALL_WRONG_TOKENS_PER_S,
                ALL_WRONG_TOKENS_BURST,
            )),
            max_frame: config.max_frame,
            // As the reactor applies it: never under 1.
            max_inflight: config.max_inflight.max(1),
            bad_request_budget: config.bad_request_budget.max(1),
        }
    }

    /// Handles one whole frame from `conn`, known to other threads as `me`,
    /// read in the turn that started `read_at`. A reply made here is noted
    /// in `answered`, which the reactor times at the end of the turn (one
    /// clock read for all of them: they are written then).
    pub fn handle(
        &self,
        conn: &mut Connection,
        me: ConnRef,
        frame: &Frame<'_>,
        read_at: Instant,
        answered: &mut Vec<(u8, Status)>,
    ) {
        metrics::add(&self.metrics.requests, 1);
        let origin = Origin {
            conn: me,
            id: frame.id,
            opcode: frame.opcode,
            started: read_at,
        };
        // Only a frame the server cannot read (PROTOCOL.md 7.2), or a
        // request before HELLO, counts against the connection's budget: a
        // well-formed request whose values are refused is one request's
        // fault, and a connection may carry many clients' requests (an app
        // server's, a gateway's), whom one buyer's refusals must not cut off.
        let (reply, unreadable) = match Request::decode(frame) {
            Ok(request) => {
                let before_hello = !conn.greeted && !matches!(request, Request::Hello { .. });
                (self.dispatch(conn, origin, request), before_hello)
            }
            Err(e) => (Some(Reply::error(Status::BadRequest, e.to_string())), true),
        };
        if let Some(reply) = reply {
            let status = reply.status();
            answered.push((origin.opcode, status));
            reply
                .for_version(conn.version)
                .encode(origin.opcode, origin.id, &mut conn.wbuf);
            if status == Status::BadRequest {
                metrics::add(&self.metrics.bad_requests, 1);
            }
            if unreadable {
                self.count_bad_request(conn);
            }
        }
    }

    /// A client that keeps sending what the server cannot read (a broken
    /// client, or a flood of unknown opcodes) is told why and closed once
    /// it has used its budget, instead of costing a reply each for ever.
    fn count_bad_request(&self, conn: &mut Connection) {
        conn.bad_requests = conn.bad_requests.saturating_add(1);
        if conn.bad_requests >= self.bad_request_budget && !conn.closing {
            metrics::add(&self.metrics.bad_request_closes, 1);
            conn.give_up(Reply::error(
                Status::BadRequest,
                format!(
                    "{} bad requests on this connection: closing it",
                    conn.bad_requests
                ),
            ));
        }
    }

    /// Returns the reply to send now, or `None` when a worker will answer.
    fn dispatch(&self, conn: &mut Connection, origin: Origin, request: Request) -> Option<Reply> {
        match &request {
            Request::Hello { version, token } => return Some(self.hello(conn, *version, token)),
            _ if !conn.greeted => {
                return Some(Reply::error(Status::BadRequest, "HELLO first"));
            }
            request if request.opcode().is_admin() && !conn.admin => {
                return Some(Reply::error(
                    Status::Unauthorized,
                    "admin command on a connection without the admin token",
                ));
            }
            Request::Ping => return Some(Reply::Pong),
            Request::Stats => return Some(Reply::Stats(self.metrics.snapshot())),
            _ => {}
        }
        let Some(sale) = self.sale.get() else {
            return Some(self.starting(&request));
        };
        match &request {
            Request::ListGoods => {
                let now = now_ms();
                let catalog = sale.catalog().all();
                return Some(Reply::GoodsList(
                    catalog.iter().map(|e| e.view.to_goods(now)).collect(),
                ));
            }
            Request::GetGoods { goods_id } => {
                return Some(match sale.catalog().get(*goods_id) {
                    Some(entry) => Reply::Goods(entry.view.to_goods(now_ms())),
                    None => unknown_goods(*goods_id),
                })
            }
            // The client request id is the stock store's to honour; the
            // quick answers here are the same with or without one.
            &Request::Buy {
                user_id,
                goods_id,
                token,
                request_id,
            } => {
                if let Some(refused) = self.over_rate(user_id, "BUYs") {
                    return Some(refused);
                }
                let Some(entry) = sale.catalog().get(goods_id) else {
                    return Some(unknown_goods(goods_id));
                };
                // A repeat gets its first answer, which only the stock
                // store knows: no quick answer from this cache.
                let repeat = request_id.is_some_and(RequestId::is_repeat);
                if let Some(reply) = entry
                    .quick_buy_answer(user_id, token, now_ms())
                    .filter(|_| !repeat)
                {
                    self.count_quick_buy(&reply);
                    return Some(reply);
                }
            }
            &Request::Token { user_id, goods_id } => {
                // Tokens cost the store a write each: one bucket with BUY,
                // so that a bot cannot hoard them either.
                if let Some(refused) = self.over_rate(user_id, "requests") {
                    return Some(refused);
                }
                let Some(entry) = sale.catalog().get(goods_id) else {
                    return Some(unknown_goods(goods_id));
                };
                if let Some(reply) = entry.view.quick_token_answer(now_ms()) {
                    return Some(reply);
                }
            }
            // The rest need a store.
            _ => {}
        }
        // One address may not fill the job queue (`--max-inflight-per-ip`).
        if !conn.ticket.take_job() {
            metrics::add(&self.metrics.busy, 1);
            return Some(Reply::error(
                Status::Busy,
                "too many requests in flight from your address, retry later",
            ));
        }
        // Admin work has a worker of its own, so that it never holds up BUYs,
        // and goes with its peer's address, which the admin log names.
        let job = Job { origin, request };
        let sent = if job.request.opcode().is_admin() {
            let peer = Peer(conn.peer);
            self.admin_jobs
                .try_send(AdminJob { job, peer })
                .map_err(Unsent::from)
        } else {
            self.jobs.try_send(job).map_err(Unsent::from)
        };
        match sent {
            Ok(()) => {
                conn.inflight += 1;
                metrics::add(&self.metrics.requests_in_flight, 1);
                None
            }
            Err(Unsent::Full) => {
                conn.ticket.jobs_done(1);
                metrics::add(&self.metrics.busy, 1);
                Some(Reply::error(Status::Busy, "server busy, retry later"))
            }
            Err(Unsent::Closed) => {
                conn.ticket.jobs_done(1);
                Some(Reply::error(Status::Busy, "server shutting down"))
            }
        }
    }

    /// The answer while start-up has not loaded the goods (a store is not
    /// up yet): no goods are listed, and whatever needs a store or the
    /// catalog is `busy`, never "unknown goods" or "sold out".
    fn starting(&self, request: &Request) -> Reply {
        if let Request::ListGoods = request {
            return Reply::GoodsList(Vec::new());
        }
        metrics::add(&self.metrics.busy, 1);
        Reply::error(
            Status::Busy,
            "the server is starting: its stores are not up yet, retry later",
        )
    }

    /// HELLO, first or again: a later HELLO is handled like the first and
    /// replaces what it agreed (version, admin rights); one refused leaves
    /// the connection not greeted.
    fn hello(&self, conn: &mut Connection, version: u16, token: &str) -> Reply {
        if !(MIN_VERSION..=VERSION).contains(&version) {
            // Nothing else this peer says can be understood: answer, then close.
            conn.closing = true;
            return Reply::error(
                Status::UnsupportedVersion,
                format!(
                    "this server speaks protocol versions {MIN_VERSION} to {VERSION}, not {version}"
                ),
            );
        }
        let refuse = |conn: &mut Connection, why: &str| {
            conn.greeted = false;
            conn.admin = false;
            Reply::error(Status::Unauthorized, why)
        };
        let address = conn.peer.map(|p| address_key(p.ip()));
        let admin = match (&self.admin_token, token.is_empty()) {
            (_, true) => false,
            (_, false) if self.admin_listener && !conn.admin_port => {
                return refuse(conn, "admin commands are served on the admin listener only");
            }
            // A guess is charged before it is looked at, and given back if
            // right: guesses racing on several reactors cannot all see the
            // last one left.
            (_, false) if address.is_some_and(|a| !self.wrong_tokens.allow(a)) => {
                metrics::add(&self.metrics.wrong_admin_tokens, 1);
                return refuse(
                    conn,
                    "too many wrong admin tokens from this address: try again in a minute",
                );
            }
            (_, false) if !self.all_wrong_tokens.allow(0) => {
                if let Some(a) = address {
                    self.wrong_tokens.give_back(a);
                }
                metrics::add(&self.metrics.wrong_admin_tokens, 1);
                return refuse(conn, "too many wrong admin tokens: try again in a minute");
            }
            // Constant time, so that the comparison does not leak how much
            // of a guess was right, nor the token's length.
            (Some(expected), false) if expected.matches(token) => {
                if let Some(a) = address {
                    self.wrong_tokens.give_back(a);
                }
                self.all_wrong_tokens.give_back(0);
                true
            }
            (_, false) => {
                metrics::add(&self.metrics.wrong_admin_tokens, 1);
                warn!(
                    "wrong admin token in HELLO from {}",
                    conn.peer
                        .map_or("an unknown address".into(), |p| p.to_string())
                );
                return refuse(conn, "wrong admin token");
            }
        };
        conn.greeted = true;
        conn.admin = admin;
        // The connection speaks the version the client asked for: it may be
        // an older one than ours, whose replies it reads.
        conn.version = version;
        Reply::Hello {
            version,
            admin,
            server: (version >= 2).then(|| self.server_info(conn)),
        }
    }

    /// What HELLO of version 2 or more tells about this server.
    fn server_info(&self, conn: &Connection) -> ServerInfo {
        let mut capabilities = Capabilities::BUY_REQUEST_ID
            .with(Capabilities::ADD_GOODS_REQUEST_ID)
            .with(Capabilities::ADD_GOODS_BUCKETS)
            .with(Capabilities::STOCK);
        if self.admin_listener && !conn.admin_port {
            capabilities = capabilities.with(Capabilities::ADMIN_LISTENER_ONLY);
        }
        ServerInfo {
            min_version: MIN_VERSION,
            max_version: VERSION,
            max_request_frame: self.max_frame,
            max_in_flight: u32::try_from(self.max_inflight).unwrap_or(u32::MAX),
            server_time_ms: now_ms(),
            capabilities,
        }
    }

    /// `rate_limited` if this user has used up their bucket (shared by BUY
    /// and TOKEN); `what` names the requests in the message.
    fn over_rate(&self, user_id: u64, what: &str) -> Option<Reply> {
        if self.buy_limit.allow(user_id) {
            return None;
        }
        metrics::add(&self.metrics.buy_rate_limited, 1);
        Some(Reply::error(
            Status::RateLimited,
            format!("too many {what} for this user, slow down"),
        ))
    }

    fn count_quick_buy(&self, reply: &Reply) {
        let m = &self.metrics;
        metrics::add(&m.buy_fast_path, 1);
        match reply.status() {
            Status::AlreadyBought => metrics::add(&m.buy_already_bought, 1),
            Status::SoldOut => metrics::add(&m.buy_sold_out, 1),
            Status::NotStarted | Status::Ended | Status::Paused => {
                metrics::add(&m.buy_outside_window, 1)
            }
            _ => {}
        }
    }
}

/// Why a job was not queued, whichever queue it was for.
enum Unsent {
    Full,
    /// The workers are gone: the server is stopping.
    Closed,
}

impl<T> From<TrySendError<T>> for Unsent {
    fn from(e: TrySendError<T>) -> Unsent {
        match e {
            TrySendError::Full(_) => Unsent::Full,
            TrySendError::Disconnected(_) => Unsent::Closed,
        }
    }
}
