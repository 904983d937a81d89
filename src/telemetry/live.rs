//! What /metrics reads at scrape time rather than on the hot path: the
//! STATS counters, queue depths, store health, the goods on sale, and the
//! readiness /readyz reports.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use seckill_proto::GoodsState;

use super::timing::Store;
use crate::dispatch::Job;
use crate::metrics::Metrics;
use crate::sale::now_ms;
use crate::startup::SaleSlot;
use crate::stop::Stop;

/// STATS counters that /metrics serves under another name or as another
/// type; every other one is served as `seckill_<name>_total`.
enum Renamed {
    Gauge(&'static str, &'static str),
    Refusal(&'static str),
    Counter(&'static str, &'static str),
}

fn renamed(stat: &str) -> Option<Renamed> {
    use Renamed::*;
    Some(match stat {
        "connections_open" => Gauge("seckill_connections", "Connections open."),
        "requests_in_flight" => Gauge(
            "seckill_requests_in_flight",
            "Requests handed to workers and not yet answered.",
        ),
        "orders_awaiting_writer" => Gauge(
            "seckill_order_writer_backlog",
            "Reserved orders waiting for the order writer.",
        ),
        "unsent_reply_bytes" => Gauge(
            "seckill_unsent_reply_bytes",
            "Reply bytes encoded and not yet written, all connections.",
        ),
        "buffered_input_bytes" => Gauge(
            "seckill_buffered_input_bytes",
            "Input bytes read and not yet served, all connections.",
        ),
        "requests" => Counter(
            "seckill_frames_decoded_total",
            "Frames decoded, good or bad (answered requests: seckill_requests_total).",
        ),
        "buy_rate_limited" => Refusal("rate_limited"),
        "busy" => Refusal("busy"),
        "bad_requests" => Refusal("bad_request"),
        "connections_refused" => Refusal("connection_refused"),
        "addresses_blocked" => Counter(
            "seckill_addresses_blocked_total",
            "Addresses blocked in the kernel after being refused for --accept-rate-per-ip.",
        ),
        "frame_timeouts" => Refusal("frame_timeout"),
        "bad_request_closes" => Refusal("bad_request_close"),
        "wrong_admin_tokens" => Refusal("wrong_admin_token"),
        "reply_budget_closes" => Refusal("reply_budget_close"),
        "input_budget_closes" => Refusal("input_budget_close"),
        _ => return None,
    })
}

/// Where the scrape-time values come from.
pub struct Sources {
    pub metrics: Arc<Metrics>,
    pub sale: SaleSlot,
    /// Only for its length: holding a receiver keeps no worker alive
    /// (workers stop when the reactors' senders are gone), and a reactor
    /// never blocks on the queue. The order writer's queue is not held here
    /// (a dead writer must fail the workers' sends, not block them on a
    /// full queue): its depth is the `orders_awaiting_writer` gauge.
    pub jobs: Receiver<Job>,
    /// The front's stop: once triggered the server is draining.
    pub stop: Stop,
}

impl Sources {
    /// Ready for traffic: not shutting down, the goods loaded, and both
    /// stores answering; otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        if self.stop.is_triggered() {
            return Err("shutting down".into());
        }
        if self.sale.get().is_none() {
            return Err("starting: goods not loaded yet (a store may be down)".into());
        }
        for store in [Store::Stock, Store::Orders] {
            if !self.metrics.timing.store_up(store) {
                return Err(format!("the {} store is not answering", store.label()));
            }
        }
        Ok(())
    }

    pub fn families(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let mut refusals = Vec::new();
        for stat in self.metrics.snapshot() {
            let value = stat.value as f64;
            match renamed(&stat.name) {
                Some(Renamed::Gauge(name, help)) => out.push(gauge(name, help, value)),
                Some(Renamed::Counter(name, help)) => out.push(counter(name, help, value)),
                Some(Renamed::Refusal(reason)) => {
                    refusals.push((vec![("reason", reason.to_owned())], value))
                }
                None => out.push(counter(
                    &format!("seckill_{}_total", stat.name),
                    &format!("STATS counter {}.", stat.name),
                    value,
                )),
            }
        }
        out.push(family(
            "seckill_refusals_total",
            "Requests and connections refused, by reason.",
            MetricType::COUNTER,
            refusals,
        ));
        out.push(family(
            "seckill_build_info",
            "The server's version and the git commit it was built from.",
            MetricType::GAUGE,
            [(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_owned()),
                    ("commit", env!("SECKILL_GIT_COMMIT").to_owned()),
                ],
                1.0,
            )],
        ));
        out.push(gauge(
            "seckill_job_queue_depth",
            "Jobs waiting for a worker.",
            self.jobs.len() as f64,
        ));
        out.push(family(
            "seckill_store_up",
            "1 when the last call to the store reached it.",
            MetricType::GAUGE,
            [Store::Stock, Store::Orders].map(|s| {
                let up = self.metrics.timing.store_up(s);
                (
                    vec![("store", s.label().to_owned())],
                    f64::from(u8::from(up)),
                )
            }),
        ));
        if let Some(sale) = self.sale.get() {
            self.goods(sale, &mut out);
        }
        out
    }

    /// The goods not ended, and in the `queued` mode how far the writing of
    /// orders is behind.
    fn goods(&self, sale: &crate::sale::Sale, out: &mut Vec<MetricFamily>) {
        let now = now_ms();
        let live: Vec<_> = sale
            .catalog()
            .all()
            .into_iter()
            .filter(|e| e.view.state(now) != GoodsState::Ended)
            .collect();
        let per_goods = |f: &dyn Fn(&crate::sale::Entry) -> u32| {
            live.iter()
                .map(|e| (vec![("goods_id", e.id.to_string())], f64::from(f(e))))
                .collect::<Vec<_>>()
        };
        out.push(family(
            "seckill_goods_stock",
            "Units each goods not ended was stocked with.",
            MetricType::GAUGE,
            per_goods(&|e| e.view.total()),
        ));
        out.push(family(
            "seckill_goods_remaining",
            "Units left of each goods not ended, as this server last saw them.",
            MetricType::GAUGE,
            per_goods(&|e| e.view.remaining()),
        ));
        let Some(queue) = sale.queue() else {
            return;
        };
        // Every goods, ended or not: orders of a goods that ended are still
        // waiting to be written.
        let (mut entries, mut oldest) = (0, None::<u64>);
        for e in &sale.catalog().all() {
            // A queue that cannot be read now leaves the gauges out of
            // this scrape rather than report a wrong zero.
            let Ok(b) = queue.backlog(e.id) else {
                return;
            };
            entries += b.entries;
            oldest = match (oldest, b.oldest_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        out.push(gauge(
            "seckill_queued_drain_lag_entries",
            "Queued mode: orders acknowledged and not yet written to the order store.",
            entries as f64,
        ));
        let age_ms = oldest.map_or(0, |t| now.saturating_sub(t));
        out.push(gauge(
            "seckill_queued_drain_lag_seconds",
            "Queued mode: how long the oldest of them has waited.",
            age_ms as f64 / 1000.0,
        ));
    }
}

fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    family(name, help, MetricType::GAUGE, [(Vec::new(), value)])
}

fn counter(name: &str, help: &str, value: f64) -> MetricFamily {
    family(name, help, MetricType::COUNTER, [(Vec::new(), value)])
}

fn family(
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    for (labels, value) in samples {
        let mut m = Metric::default();
        m.set_label(
            labels
                .into_iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name(k.to_owned());
                    l.set_value(v);
                    l
                })
                .collect(),
        );
        if kind == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        f.mut_metric().push(m);
    }
    f
}
