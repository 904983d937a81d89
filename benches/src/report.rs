//! The report of a run: built from what the engine measured, printed as
//! text for people or as one JSON object for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::attack::AttackReport;
use crate::engine::{Finished, Pace};
use crate::lifecycle::LifecycleReport;
use crate::stats::{Latency, Outcomes};
use crate::verify::Verification;

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    /// `server` or `redis-direct`.
    pub target: String,
    /// The servers, comma-separated.
    pub addr: String,
    pub connections: usize,
    /// Connections greeted that carried load.
    pub connected: usize,
    /// Each server, with its share of the connections and of the replies.
    pub servers: Vec<ServerShare>,
    pub threads: usize,
    pub pace: PaceInfo,
    pub seed: u64,
    /// Whether each BUY carried a client request id (`--request-ids`).
    pub request_ids: bool,
    /// From the start to the last reply.
    pub duration_s: f64,
    pub sent: u64,
    /// Requests answered, whatever the answer.
    pub answered: u64,
    /// Answered requests per second.
    pub throughput_rps: f64,
    /// `ok` replies per second: accepted orders/s for BUYs.
    pub ok_per_s: f64,
    pub outcomes: Outcomes,
    pub latency: Latency,
    /// The same by request (`buy`, `pay`, `cancel`, `get_goods`, ...).
    pub latency_by_request: BTreeMap<String, Latency>,
    pub per_second: Vec<Second>,
    /// The goods the run bought, if it bought.
    pub goods: Option<GoodsInfo>,
    pub verification: Option<Verification>,
    /// CPU time of the server and stores watched (`--server-pid`,
    /// `--store-pids`) over the run, and per request answered.
    pub cost: Vec<crate::cost::Cost>,
    /// What the servers' own metrics say of the run (`--metrics`).
    pub server_metrics: Option<crate::server_view::ServerMetrics>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaceInfo {
    /// `closed` or `open`.
    pub mode: String,
    /// Closed loop: requests in flight per connection; open loop: the most
    /// in flight per connection.
    pub pipeline: usize,
    /// Open loop: requests/s offered in all.
    pub rate: Option<f64>,
    /// What latency is counted from: `send` or `schedule`.
    pub latency_from: String,
}

impl PaceInfo {
    pub fn of(pace: Pace) -> PaceInfo {
        match pace {
            Pace::Closed { pipeline } => PaceInfo {
                mode: "closed".into(),
                pipeline,
                rate: None,
                latency_from: "send".into(),
            },
            Pace::Open {
                rate,
                max_in_flight,
            } => PaceInfo {
                mode: "open".into(),
                pipeline: max_in_flight,
                rate: Some(rate),
                latency_from: "schedule".into(),
            },
        }
    }
}

/// One second of the run, by when replies arrived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    pub second: u64,
    /// How much of this second the run covered (less than 1 for the last).
    pub span_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub p99_us: u64,
}

/// One server's share of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerShare {
    pub addr: String,
    /// Connections given to it (round robin).
    pub connections: usize,
    /// Of those, greeted and carrying load.
    pub connected: usize,
    /// Its connections that failed, in setup or under load.
    pub connection_failures: u64,
    /// Replies it sent.
    pub answered: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoodsInfo {
    pub id: u64,
    pub stock: u32,
}

/// What a run is, before it runs.
#[derive(Debug, Clone)]
pub struct Header {
    pub scenario: &'static str,
    pub target: &'static str,
    pub addr: String,
    pub connections: usize,
    pub threads: usize,
    pub pace: Pace,
    pub seed: u64,
    pub request_ids: bool,
}

impl Report {
    pub fn new(header: Header, finished: &Finished) -> Report {
        let outcomes = finished.recorder.outcomes.clone();
        let secs = finished.elapsed.as_secs_f64();
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let per_second = finished
            .recorder
            .seconds
            .iter()
            .enumerate()
            .map(|(i, b)| Second {
                second: i as u64,
                span_s: (secs - i as f64).clamp(0.0, 1.0),
                requests: b.requests,
                ok: b.ok,
                errors: b.errors,
                p99_us: if b.latency.is_empty() {
                    0
                } else {
                    b.latency.value_at_quantile(0.99)
                },
            })
            .collect();
        Report {
            scenario: header.scenario.into(),
            target: header.target.into(),
            addr: header.addr,
            connections: header.connections,
            connected: finished.connected,
            servers: finished
                .servers
                .iter()
                .map(|(addr, c)| ServerShare {
                    addr: addr.to_string(),
                    connections: c.connections,
                    connected: c.connected,
                    connection_failures: c.connection_failures,
                    answered: c.answered,
                })
                .collect(),
            threads: header.threads,
            pace: PaceInfo::of(header.pace),
            seed: header.seed,
            request_ids: header.request_ids,
            duration_s: secs,
            sent: finished.sent,
            answered: outcomes.answered(),
            throughput_rps: per_s(outcomes.answered()),
            ok_per_s: per_s(outcomes.ok),
            latency: Latency::of(&finished.recorder.latency),
            latency_by_request: finished
                .recorder
                .by_request
                .iter()
                .map(|(request, h)| (request.to_string(), Latency::of(h)))
                .collect(),
            outcomes,
            per_second,
            goods: None,
            verification: None,
            cost: finished.cost.clone(),
            server_metrics: None,
        }
    }

    /// False if verification ran and failed.
    pub fn passed(&self) -> bool {
        self.verification.as_ref().is_none_or(|v| v.passed)
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let pace = match self.pace.rate {
            Some(rate) => format!(
                "open loop at {rate} req/s (at most {} in flight per connection, latency from the schedule)",
                self.pace.pipeline
            ),
            None => format!("closed loop, pipeline {}", self.pace.pipeline),
        };
        let ids = if self.request_ids {
            ", BUYs with request ids"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{} → {} {}: {} connections ({} up), {} threads, {pace}{ids}",
            self.scenario, self.target, self.addr, self.connections, self.connected, self.threads
        );
        // One server has said it all in the line above.
        if self.servers.len() > 1 {
            let each: Vec<String> = self
                .servers
                .iter()
                .map(|s| {
                    format!(
                        "{} {} connections ({} up, {} failed), {} answered",
                        s.addr, s.connections, s.connected, s.connection_failures, s.answered
                    )
                })
                .collect();
            let _ = writeln!(s, "  servers: {}", each.join("; "));
        }
        let _ = writeln!(
            s,
            "  {} answered in {:.2} s: {:.0} req/s, ok {:.0}/s",
            self.answered, self.duration_s, self.throughput_rps, self.ok_per_s
        );
        let o = &self.outcomes;
        let _ = write!(
            s,
            "  outcomes: ok {}, sold out {}, already bought {}, busy {}, other errors {}",
            o.ok, o.sold_out, o.already_bought, o.busy, o.other_errors
        );
        if !o.errors_by_kind.is_empty() {
            let kinds: Vec<String> = o
                .errors_by_kind
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = write!(s, " ({})", kinds.join(", "));
        }
        let _ = write!(
            s,
            ", connection failures {}, lost {}",
            o.connection_failures, o.lost
        );
        if o.unsent > 0 {
            let _ = write!(s, ", never sent {}", o.unsent);
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "  latency: {}", latency_line(&self.latency));
        if !self.cost.is_empty() {
            let _ = writeln!(s, "  cpu: {}", crate::cost::line(&self.cost));
        }
        // A run of one kind of request has said it all.
        if self.latency_by_request.len() > 1 {
            for (request, l) in &self.latency_by_request {
                let _ = writeln!(s, "    {request:<10} {}", latency_line(l));
            }
        }
        if let Some(m) = &self.server_metrics {
            s.push_str(&m.text());
        }
        if let Some(v) = &self.verification {
            let verdict = if v.passed { "passed" } else { "FAILED" };
            let _ = write!(
                s,
                "  verification {verdict}: {} sold of {} ({} left), {} ok replies, {} holders, {} unknown outcomes",
                v.sold, v.total, v.remaining, v.ok_replies, v.holders, v.unknown_outcomes
            );
            if let Some(found) = v.lost_orders {
                let _ = write!(s, " (which made {found} orders, asked)");
            }
            if self.target == "server" {
                let _ = write!(
                    s,
                    ", {} orders confirmed by ORDER_STATUS (in {} ms)",
                    v.orders_checked, v.order_status_ms
                );
            }
            if let Some(store) = &v.store {
                let _ = write!(
                    s,
                    "; {}: {} live orders (after {} ms)",
                    store.name, store.live_orders, store.waited_ms
                );
            }
            s.push('\n');
            for p in &v.problems {
                let _ = writeln!(s, "    - {p}");
            }
            if v.problem_count > v.problems.len() {
                let _ = writeln!(s, "    … and {} more", v.problem_count - v.problems.len());
            }
        }
        s
    }
}

/// A flash crowd against the server and the same against Redis directly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub server: Report,
    pub redis_direct: Report,
    /// Server throughput ÷ redis-direct throughput.
    pub ratio: f64,
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Single(Box<Report>),
    Compare(Box<Comparison>),
    Attack(Box<AttackReport>),
    Lifecycle(Box<LifecycleReport>),
    Storm(Box<crate::storm::StormReport>),
    Sweep(Box<crate::sweep::SweepReport>),
}

impl Output {
    pub fn reports(&self) -> Vec<&Report> {
        match self {
            Output::Single(r) => vec![r],
            Output::Compare(c) => vec![&c.server, &c.redis_direct],
            Output::Attack(a) => a.phases.iter().map(|p| &p.normal).collect(),
            Output::Lifecycle(l) => l.reports(),
            Output::Storm(_) => Vec::new(),
            Output::Sweep(s) => s.runs.iter().collect(),
        }
    }

    /// False if any verification failed, or the normal client of an attack
    /// run saw what a healthy server would not cause it.
    pub fn passed(&self) -> bool {
        match self {
            Output::Attack(a) => a.passed,
            Output::Lifecycle(l) => l.passed(),
            Output::Storm(s) => s.passed(),
            Output::Sweep(s) => s.passed(),
            _ => self.reports().iter().all(|r| r.passed()),
        }
    }

    /// Why the run failed, in a line.
    pub fn failure(&self) -> String {
        match self {
            Output::Attack(a) => format!(
                "the normal client saw what a healthy server would not cause it: {}",
                a.failures().join(" | ")
            ),
            Output::Storm(s) => format!(
                "{} of {} connections were not made and greeted",
                s.connects as u64 - s.ready.min(s.connects as u64),
                s.connects
            ),
            _ => "verification FAILED".into(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let value = match self {
            Output::Single(r) => serde_json::to_value(r),
            Output::Compare(c) => serde_json::to_value(c),
            Output::Attack(a) => serde_json::to_value(a),
            Output::Lifecycle(l) => serde_json::to_value(l),
            Output::Storm(s) => serde_json::to_value(s),
            Output::Sweep(s) => serde_json::to_value(s),
        };
        value.unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        match self {
            Output::Single(r) => r.text(),
            Output::Compare(c) => format!(
                "{}{}server ÷ redis-direct throughput: {:.3}\n",
                c.server.text(),
                c.redis_direct.text(),
                c.ratio
            ),
            Output::Attack(a) => a.text(),
            Output::Lifecycle(l) => l.text(),
            Output::Storm(s) => s.text(),
            Output::Sweep(s) => s.text(),
        }
    }
}

/// Percentiles for people, on one line.
pub fn latency_line(l: &Latency) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        human_us(l.p50_us),
        human_us(l.p90_us),
        human_us(l.p99_us),
        human_us(l.p999_us),
        human_us(l.max_us)
    )
}

/// Microseconds for people.
pub fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::{Live, Outcome, Recorder};

    /// A flash crowd's report: 100 BUYs over 2 s, 10 ok, verified.
    pub(crate) fn report() -> Report {
        let live = Live::default();
        let mut recorder = Recorder::default();
        for i in 0..100 {
            let outcome = if i < 10 {
                Outcome::Ok
            } else {
                Outcome::SoldOut
            };
            recorder.record(
                "buy",
                outcome,
                Duration::from_micros(100 + i),
                Duration::from_millis(i * 15),
                &live,
            );
        }
        let finished = Finished {
            recorder,
            acks: Vec::new(),
            lost_buys: Vec::new(),
            elapsed: Duration::from_secs(2),
            connected: 4,
            sent: 100,
            servers: Vec::new(),
            cost: Vec::new(),
        };
        let header = Header {
            scenario: "flash-crowd",
            target: "server",
            addr: "127.0.0.1:7700".into(),
            connections: 4,
            threads: 2,
            pace: Pace::Closed { pipeline: 1 },
            seed: 1,
            request_ids: false,
        };
        let mut r = Report::new(header, &finished);
        r.goods = Some(GoodsInfo { id: 3, stock: 10 });
        let mut v = Verification::default();
        v.conclude(Vec::new());
        r.verification = Some(v);
        r
    }

    #[test]
    fn the_json_report_has_every_figure() {
        let r = report();
        assert_eq!(r.throughput_rps, 50.0);
        assert_eq!(r.ok_per_s, 5.0);
        let json = Output::Single(Box::new(r.clone())).json();
        for key in [
            "scenario",
            "target",
            "addr",
            "connections",
            "connected",
            "threads",
            "pace",
            "seed",
            "duration_s",
            "sent",
            "answered",
            "throughput_rps",
            "ok_per_s",
            "outcomes",
            "latency",
            "latency_by_request",
            "per_second",
            "goods",
            "verification",
            "server_metrics",
        ] {
            assert!(json.get(key).is_some(), "no {key} in {json}");
        }
        for key in [
            "ok",
            "sold_out",
            "already_bought",
            "busy",
            "other_errors",
            "errors_by_kind",
            "connection_failures",
            "lost",
        ] {
            assert!(json["outcomes"].get(key).is_some(), "no outcomes.{key}");
        }
        for key in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"] {
            assert!(json["latency"][key].is_number(), "no latency.{key}");
        }
        assert_eq!(json["outcomes"]["ok"], 10);
        assert!(json["latency_by_request"]["buy"]["p99_us"].is_number());
        assert_eq!(json["outcomes"]["sold_out"], 90);
        assert_eq!(json["per_second"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["per_second"][0]["requests"], 67);
        assert_eq!(json["verification"]["passed"], true);
        assert_eq!(json["pace"]["latency_from"], "send");

        let compare = Output::Compare(Box::new(Comparison {
            server: r.clone(),
            redis_direct: r,
            ratio: 1.0,
        }));
        let json = compare.json();
        assert!(json["server"].is_object() && json["redis_direct"].is_object());
        assert_eq!(json["ratio"], 1.0);
        assert!(compare.passed());
    }

    #[test]
    fn a_failed_verification_fails_the_output() {
        let mut r = report();
        if let Some(v) = &mut r.verification {
            v.conclude(vec!["oversold".into()]);
        }
        let out = Output::Single(Box::new(r));
        assert!(!out.passed());
        assert!(out.text().contains("verification FAILED"));
        assert!(out.text().contains("- oversold"));
    }

    #[test]
    fn several_servers_show_their_shares() {
        let mut r = report();
        assert!(
            !r.text().contains("servers:"),
            "one server: no line of its own"
        );
        r.servers = ["127.0.0.1:7701", "127.0.0.1:7702"]
            .iter()
            .map(|addr| ServerShare {
                addr: addr.to_string(),
                connections: 2,
                connected: 2,
                connection_failures: 0,
                answered: 50,
            })
            .collect();
        let text = r.text();
        assert!(
            text.contains(
                "  servers: 127.0.0.1:7701 2 connections (2 up, 0 failed), 50 answered; \
                 127.0.0.1:7702 2 connections"
            ),
            "{text}"
        );
        let json = Output::Single(Box::new(r)).json();
        assert_eq!(json["servers"][1]["addr"], "127.0.0.1:7702");
        assert_eq!(json["servers"][0]["answered"], 50);
    }

    #[test]
    fn latencies_read_well() {
        assert_eq!(human_us(850), "850 µs");
        assert_eq!(human_us(1_234), "1.23 ms");
        assert_eq!(human_us(2_500_000), "2.50 s");
    }
}
