//! One engine thread: its connections, its poll loop, its measurements.

use std::collections::VecDeque;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::conn::{self, Conn};
use super::wire::Answer;
use super::{LostBuy, Next, Op, Pace, Plan, ServerCounts, Target, Workload};
use crate::schedule::Schedule;
use crate::stats::{Live, Outcome, Recorder};
use crate::users::{splitmix, Rng};
use crate::verify::{Ack, AckKind};

/// How long connecting and greeting may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a poll sleeps: how often deadlines are looked at.
const TICK: Duration = Duration::from_millis(100);
/// The pause before the first retry of a request answered `busy`; the n-th
/// waits n times this.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

pub struct ThreadResult {
    pub recorder: Recorder,
    pub acks: Vec<Ack>,
    pub lost_buys: Vec<LostBuy>,
    pub elapsed: Duration,
    pub connected: usize,
    pub sent: u64,
    /// By server of the target.
    pub servers: Vec<ServerCounts>,
}

/// What a thread is given.
pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub target: &'a Target,
    pub workload: &'a dyn Workload,
    pub barrier: &'a Barrier,
    /// The run's start: set by the first thread past the barrier.
    pub start: &'a OnceLock<Instant>,
    pub live: Arc<Live>,
    pub index: usize,
    pub threads: usize,
    /// The run-wide number of this thread's first connection: connection k
    /// goes to server k mod S.
    pub first_conn: usize,
}

/// One thread's connections and measurements.
struct Driver<'a> {
    ctx: &'a Ctx<'a>,
    conns: Vec<Conn>,
    recorder: Recorder,
    acks: Vec<Ack>,
    /// BUYs sent and never answered.
    lost_buys: Vec<LostBuy>,
    rng: Rng,
    sent: u64,
    /// The workload has no more requests.
    exhausted: bool,
    /// Past the barrier: connections may carry load.
    started: bool,
    /// Open loop: slots of connections that broke, to hand to others.
    orphans: VecDeque<Instant>,
    scratch: Box<[u8; conn::READ_CHUNK]>,
    last_reply: Option<Instant>,
    /// Closed loop with a timed workload or retries: when the next request
    /// is due, to top up every connection then.
    wake_at: Option<Instant>,
    /// Closed loop: requests answered `busy` to send again, each with when
    /// and how many tries it had.
    retries: Vec<(Instant, Op, u32)>,
    /// By server of the target.
    servers: Vec<ServerCounts>,
}

impl Ctx<'_> {
    /// Connects `share` connections, waits for the others, runs the load.
    pub fn run(&self, share: usize) -> ThreadResult {
        let mut driver = Driver {
            ctx: self,
            conns: Vec::with_capacity(share),
            recorder: Recorder::default(),
            acks: Vec::new(),
            lost_buys: Vec::new(),
            rng: Rng::new(splitmix(self.plan.seed ^ self.index as u64)),
            sent: 0,
            exhausted: false,
            started: false,
            orphans: VecDeque::new(),
            scratch: conn::scratch(),
            last_reply: None,
            wake_at: None,
            retries: Vec::new(),
            servers: vec![ServerCounts::default(); self.target.addrs().len()],
        };
        // A thread that cannot even poll still meets the others at the
        // barrier, with all its connections counted as failed.
        let poll = Poll::new();
        if let Ok(mut poll) = poll {
            driver.connect(&mut poll, share);
            self.barrier.wait();
            let start = *self.start.get_or_init(Instant::now);
            driver.started = true;
            driver.load(&mut poll, start);
            let elapsed = driver.last_reply.map_or(Duration::ZERO, |t| t - start);
            let connected = driver.conns.len();
            return ThreadResult {
                recorder: driver.recorder,
                acks: driver.acks,
                lost_buys: driver.lost_buys,
                elapsed,
                connected,
                sent: driver.sent,
                servers: driver.servers,
            };
        }
        driver.recorder.outcomes.connection_failures += share as u64;
        for k in 0..share {
            if let Some(server) = driver.server_of(k) {
                driver.servers[server].connections += 1;
                driver.servers[server].connection_failures += 1;
            }
        }
        self.barrier.wait();
        ThreadResult {
            recorder: driver.recorder,
            acks: Vec::new(),
            lost_buys: Vec::new(),
            elapsed: Duration::ZERO,
            connected: 0,
            sent: 0,
            servers: driver.servers,
        }
    }
}

impl Driver<'_> {
    /// The server of this thread's `k`-th connection: round robin over the
    /// target's servers, counted across every thread's connections so that
    /// the shares come out even.
    fn server_of(&self, k: usize) -> Option<usize> {
        let servers = self.ctx.target.addrs().len();
        (servers > 0).then(|| (self.ctx.first_conn + k) % servers)
    }

    /// Opens and greets this thread's connections; those that fail are
    /// counted and dropped.
    fn connect(&mut self, poll: &mut Poll, share: usize) {
        for k in 0..share {
            let Some(server) = self.server_of(k) else {
                self.recorder.outcomes.connection_failures += 1;
                continue;
            };
            let addr = self.ctx.target.addrs()[server];
            self.servers[server].connections += 1;
            let opened = std::net::TcpStream::connect_timeout(&addr, SETUP_TIMEOUT).and_then(|s| {
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                let mut stream = mio::net::TcpStream::from_std(s);
                let token = Token(self.conns.len());
                poll.registry().register(
                    &mut stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(stream)
            });
            match opened {
                Ok(stream) => self
                    .conns
                    .push(Conn::new(stream, self.ctx.target.codec(), server)),
                Err(_) => {
                    self.recorder.outcomes.connection_failures += 1;
                    self.servers[server].connection_failures += 1;
                }
            }
        }
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut events = Events::with_capacity(1024);
        for i in 0..self.conns.len() {
            if let Err(e) = self.conns[i].flush() {
                self.fail(i, &e);
            }
        }
        while self.conns.iter().any(|c| c.open && c.greeting > 0) && Instant::now() < deadline {
            if poll.poll(&mut events, Some(TICK)).is_err() {
                continue;
            }
            for event in &events {
                let now = Instant::now();
                self.on_event(event.token().0, now, now);
            }
        }
        for i in 0..self.conns.len() {
            if self.conns[i].open && self.conns[i].greeting > 0 {
                self.fail(i, "no greeting in time");
            }
        }
        // Keep only the connections that carry load, renumbered.
        let mut kept = Vec::new();
        for mut conn in self.conns.drain(..) {
            if conn.open {
                let token = Token(kept.len());
                match poll.registry().reregister(
                    &mut conn.stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    Ok(()) => {
                        self.servers[conn.server].connected += 1;
                        kept.push(conn);
                    }
                    Err(_) => {
                        self.recorder.outcomes.connection_failures += 1;
                        self.servers[conn.server].connection_failures += 1;
                    }
                }
            }
        }
        self.conns = kept;
    }

    /// The measured part: from the shared start until sending is over and
    /// the replies are in (or the drain deadline passes).
    fn load(&mut self, poll: &mut Poll, start: Instant) {
        let plan = self.ctx.plan;
        let mut events = Events::with_capacity(1024);
        let mut schedule = match plan.pace {
            Pace::Open { rate, .. } => {
                Some(Schedule::new(start, rate, self.ctx.index, self.ctx.threads))
            }
            Pace::Closed { .. } => None,
        };
        let mut next_conn = 0;
        let mut stop_at: Option<Instant> = None;
        let mut last_progress = start;
        for i in 0..self.conns.len() {
            self.fill(i, start, start);
        }
        loop {
            let now = Instant::now();
            if self.wake_at.is_some_and(|at| at <= now) {
                self.wake_at = None;
                for i in 0..self.conns.len() {
                    self.fill(i, now, start);
                }
            }
            // Open loop: slots already scheduled still go out after the
            // end; only new ones stop.
            let sending = !self.exhausted && plan.duration.is_none_or(|d| now - start < d);
            if let Some(schedule) = &mut schedule {
                // Slots of a connection that broke go to the others first,
                // then every slot now due, to the next connection in turn.
                // Every slot before the end goes out, even one found late.
                let horizon = plan
                    .duration
                    .map_or(now, |d| now.min(start + d - Duration::from_nanos(1)));
                let exhausted = self.exhausted;
                let due = std::iter::from_fn(|| {
                    self.orphans
                        .pop_front()
                        .or_else(|| schedule.take_due(horizon).filter(|_| !exhausted))
                });
                let due: Vec<Instant> = due.collect();
                for at in due {
                    let Some(i) = self.next_open(&mut next_conn).filter(|_| !self.exhausted) else {
                        break;
                    };
                    self.conns[i].backlog.push_back(at);
                    self.fill(i, now, start);
                }
            }
            if !sending && stop_at.is_none() {
                stop_at = Some(now + plan.drain);
            }
            let sent: usize = self
                .conns
                .iter()
                .filter(|c| c.open)
                .map(|c| c.window.len())
                .sum();
            let unsent: usize = self
                .conns
                .iter()
                .filter(|c| c.open)
                .map(|c| c.backlog.len())
                .sum::<usize>()
                + self.retries.len();
            let in_flight = sent + unsent;
            if self.conns.iter().all(|c| !c.open) || (!sending && in_flight == 0) {
                break;
            }
            if let Some(r) = self.last_reply {
                last_progress = last_progress.max(r);
            }
            // Only a wait with requests in flight is a stall, not one for
            // a timed workload's next request.
            if in_flight == 0 {
                last_progress = now;
            }
            let stalled = in_flight > 0 && now - last_progress > plan.stall;
            if stalled || stop_at.is_some_and(|t| now >= t) {
                for i in 0..self.conns.len() {
                    if self.conns[i].open {
                        self.lose_window(i);
                    }
                }
                self.recorder.outcomes.unsent += unsent as u64;
                break;
            }
            let mut timeout = TICK;
            if let Some(t) = stop_at {
                timeout = timeout.min(t.saturating_duration_since(now));
            } else if let Some(d) = plan.duration {
                timeout = timeout.min((start + d).saturating_duration_since(now));
            }
            if let (Some(s), true) = (&schedule, sending) {
                timeout = timeout.min(s.next_at().saturating_duration_since(now));
            }
            // A retry due but not sent waits for a reply to make room; one
            // to come needs the timer.
            let next_retry = self
                .retries
                .iter()
                .map(|r| r.0)
                .filter(|&at| at > now)
                .min();
            if let Some(at) = next_retry {
                self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
            }
            if let Some(at) = self.wake_at {
                timeout = timeout.min(at.saturating_duration_since(now));
            }
            if poll.poll(&mut events, Some(timeout)).is_err() {
                continue;
            }
            let now = Instant::now();
            for event in &events {
                self.on_event(event.token().0, now, start);
            }
        }
    }

    /// The next open connection in round-robin order.
    fn next_open(&self, cursor: &mut usize) -> Option<usize> {
        let n = self.conns.len();
        for _ in 0..n {
            let i = *cursor % n;
            *cursor = (*cursor + 1) % n;
            if self.conns[i].open {
                return Some(i);
            }
        }
        None
    }

    /// Tops up connection `i`'s window and writes.
    fn fill(&mut self, i: usize, now: Instant, start: Instant) {
        let plan = self.ctx.plan;
        if !self.conns[i].open {
            return;
        }
        if self.exhausted {
            // Nothing left to send: slots waiting will never go out.
            self.conns[i].backlog.clear();
        }
        let idle = self.exhausted && self.retries.is_empty();
        if !self.started || self.conns[i].greeting > 0 || idle {
            return self.flush(i);
        }
        let conn = &mut self.conns[i];
        match plan.pace {
            Pace::Closed { pipeline } => {
                if plan
                    .duration
                    .is_some_and(|d| now.saturating_duration_since(start) >= d)
                {
                    return self.flush(i);
                }
                while conn.window.len() < pipeline.max(1) {
                    if let Some(k) = self.retries.iter().position(|r| r.0 <= now) {
                        let (at, op, tries) = self.retries.swap_remove(k);
                        conn.send(op, at, tries);
                        self.sent += 1;
                        continue;
                    }
                    if self.exhausted {
                        break;
                    }
                    match self.ctx.workload.next_at(&mut self.rng, now) {
                        // Nothing is due before the run starts.
                        Next::Send { op, due } => {
                            conn.send(op, due.map_or(now, |at| at.max(start)), 0);
                            self.sent += 1;
                        }
                        Next::Wait(at) => {
                            self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
                            break;
                        }
                        Next::Done => {
                            self.exhausted = true;
                            break;
                        }
                    }
                }
            }
            Pace::Open { max_in_flight, .. } => {
                while conn.window.len() < max_in_flight.max(1) {
                    let Some(&at) = conn.backlog.front() else {
                        break;
                    };
                    let Some(op) = self.ctx.workload.next(&mut self.rng) else {
                        self.exhausted = true;
                        break;
                    };
                    conn.backlog.pop_front();
                    conn.send(op, at, 0);
                    self.sent += 1;
                }
            }
        }
        if self.exhausted {
            // Nothing left to send: the slots waiting will never go out.
            self.conns.iter_mut().for_each(|c| c.backlog.clear());
            self.orphans.clear();
        }
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        if let Err(e) = self.conns[i].flush() {
            self.fail(i, &e);
        }
    }

    /// Reads, decodes and records what connection `i` has, then tops it up
    /// and writes what it can (a writable event needs no more than that).
    fn on_event(&mut self, i: usize, now: Instant, start: Instant) {
        if i >= self.conns.len() || !self.conns[i].open {
            return;
        }
        let read = self.conns[i].read(&mut self.scratch);
        // Replies that arrived before a close still count.
        loop {
            match self.conns[i].next_answer() {
                Ok(Some(answer)) => self.on_answer(i, answer, now, start),
                Ok(None) => break,
                Err(e) => return self.fail(i, &e),
            }
            if !self.conns[i].open {
                return;
            }
        }
        if let Err(e) = read {
            return self.fail(i, &e);
        }
        self.fill(i, now, start);
    }

    fn on_answer(&mut self, i: usize, answer: Answer, now: Instant, start: Instant) {
        let conn = &mut self.conns[i];
        let (id, outcome, order_no) = match answer {
            Answer::Greeting(Ok(())) => {
                conn.greeting = conn.greeting.saturating_sub(1);
                return;
            }
            Answer::Greeting(Err(e)) => return self.fail(i, &e),
            Answer::Reply { .. } if conn.greeting > 0 => {
                return self.fail(i, "a reply before the greeting's")
            }
            Answer::Reply {
                id,
                outcome,
                order_no,
            } => (id, outcome, order_no),
        };
        // A reply to nothing in flight (a reused id) is ignored.
        let Some(pending) = conn.answered(id) else {
            return;
        };
        let latency = now.saturating_duration_since(pending.since);
        let at = now.saturating_duration_since(start);
        let op = pending.op;
        let server = conn.server;
        self.servers[server].answered += 1;
        self.recorder
            .record(op.name(), outcome, latency, at, &self.ctx.live);
        self.last_reply = Some(now);
        let closed = matches!(self.ctx.plan.pace, Pace::Closed { .. });
        if outcome == Outcome::Busy && closed && pending.retries < self.ctx.plan.retry_busy {
            let tries = pending.retries + 1;
            let again = now + RETRY_PAUSE * tries;
            self.retries.push((again, op, tries));
            self.wake_at = Some(self.wake_at.map_or(again, |w| w.min(again)));
        }
        if !self.ctx.plan.keep_acks {
            return;
        }
        let ack = match op {
            Op::Buy {
                user,
                order_no: proposed,
                ..
            } => AckKind::of_buy(outcome).map(|kind| Ack {
                user,
                // The server names its order; the baseline's is the one we
                // proposed.
                order_no: order_no.unwrap_or(proposed),
                kind,
                at: now,
                server,
            }),
            Op::Pay { user, order_no } => AckKind::of_pay(outcome).map(|kind| Ack {
                user,
                order_no,
                kind,
                at: now,
                server,
            }),
            Op::Cancel { user, order_no } => AckKind::of_cancel(outcome).map(|kind| Ack {
                user,
                order_no,
                kind,
                at: now,
                server,
            }),
            Op::GetGoods { .. } | Op::ListGoods => None,
        };
        self.acks.extend(ack);
    }

    /// Closes connection `i` after an error: counted as a connection
    /// failure, and its requests in flight as lost.
    fn fail(&mut self, i: usize, _why: &str) {
        let conn = &mut self.conns[i];
        if !conn.open {
            return;
        }
        conn.open = false;
        // Its scheduled slots go to the other connections.
        self.orphans.extend(conn.backlog.drain(..));
        self.recorder.outcomes.connection_failures += 1;
        self.servers[conn.server].connection_failures += 1;
        self.lose_window(i);
    }

    /// Counts the requests connection `i` has in flight as lost, and notes
    /// the BUYs among them, for the verification to ask what they did.
    fn lose_window(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        let server = conn.server;
        for pending in conn.window.clear() {
            self.recorder.outcomes.lost += 1;
            if let Op::Buy { user, .. } = pending.op {
                self.lost_buys.push(LostBuy { user, server });
            }
        }
    }
}
