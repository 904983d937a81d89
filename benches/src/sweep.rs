//! The rate sweep: the flash crowd, open loop, once per offered rate, to
//! find the highest rate whose p99 stays within a target.
//!
//! Latency is timed from each request's scheduled instant, not from when
//! it was sent, so a server that stalls cannot hide its tail by slowing the
//! bench down (coordinated omission). Each rate is a sale of its own: a new
//! goods, the same users, and the flash crowd's verification (nothing
//! oversold, every acknowledged order found; MySQL too with `--mysql`).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::cli::{Common, Sweep};
use crate::error::Error;
use crate::plot::{draw_legend, legend_line, plot_error};
use crate::report::{human_us, Report};
use crate::scenario::flash_crowd_server;

/// A line of the plot: its name, its colour, its value for a rate (the
/// median) and for each run.
type Series = (
    &'static str,
    RGBColor,
    fn(&RateSummary) -> u64,
    fn(&Report) -> u64,
);

/// What a sweep measured: one flash crowd per rate, in the order run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    pub scenario: String,
    /// What the plot and the text call this server (`--label`).
    pub label: Option<String>,
    pub p99_target_us: u64,
    /// Every run, in the order run: the rates in the order given, round
    /// after round.
    pub runs: Vec<Report>,
    /// Each rate, once, in the order given, with the medians of its rounds.
    pub rates: Vec<RateSummary>,
    /// The highest rate offered whose median p99 was within the target.
    pub highest_within_target: Option<f64>,
}

/// One offered rate over its rounds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateSummary {
    pub rate: f64,
    /// The medians of the rounds' p50s and p99s (of two rounds, the higher).
    pub p50_us: u64,
    pub p99_us: u64,
    /// Each round's p99, in the order run.
    pub p99_rounds_us: Vec<u64>,
}

/// Runs the flash crowd of `args` once at each of its rates.
pub fn run(common: &Common, args: &Sweep) -> Result<SweepReport, Error> {
    if args.crowd.goods.is_some() {
        return Err(Error::Setup(
            "sweep adds a goods for each rate: --goods cannot be given".into(),
        ));
    }
    if args.rates.is_empty() || args.rates.iter().any(|&r| !(r > 0.0 && r.is_finite())) {
        return Err(Error::Setup("--rates must be positive numbers".into()));
    }
    let p99_target_us = args.p99_target.as_micros() as u64;
    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        for &rate in &args.rates {
            let mut at_rate = common.clone();
            at_rate.rate = Some(rate);
            let report = flash_crowd_server(&at_rate, &args.crowd)?;
            eprintln!(
                "sweep: round {round}, {rate} req/s offered: p99 {}",
                human_us(report.latency.p99_us)
            );
            runs.push(report);
        }
    }
    let rates = summarize(&args.rates, &runs);
    Ok(SweepReport {
        scenario: "sweep".into(),
        label: args.label.clone(),
        p99_target_us,
        highest_within_target: highest_within(&rates, p99_target_us),
        rates,
        runs,
    })
}

/// Each of `rates` (once, in the order given) with the medians of its runs
/// among `runs`.
fn summarize(rates: &[f64], runs: &[Report]) -> Vec<RateSummary> {
    let mut distinct: Vec<f64> = Vec::new();
    for &rate in rates {
        if !distinct.contains(&rate) {
            distinct.push(rate);
        }
    }
    distinct
        .into_iter()
        .map(|rate| {
            let at: Vec<&Report> = runs.iter().filter(|r| r.pace.rate == Some(rate)).collect();
            let p99_rounds_us: Vec<u64> = at.iter().map(|r| r.latency.p99_us).collect();
            RateSummary {
                rate,
                p50_us: median(at.iter().map(|r| r.latency.p50_us).collect()),
                p99_us: median(p99_rounds_us.clone()),
                p99_rounds_us,
            }
        })
        .collect()
}

/// The median; of an even count, the higher of the middle two (a claim
/// that a rate is within the target should not rest on the better half).
fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// The highest offered rate whose median p99 is within `target_us`.
fn highest_within(rates: &[RateSummary], target_us: u64) -> Option<f64> {
    rates
        .iter()
        .filter(|r| r.p99_us <= target_us)
        .map(|r| r.rate)
        .fold(None, |best, rate| {
            Some(best.map_or(rate, |b: f64| b.max(rate)))
        })
}

impl SweepReport {
    /// Every run's verification passed.
    pub fn passed(&self) -> bool {
        self.runs.iter().all(Report::passed)
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let name = self.label.as_deref().unwrap_or("server");
        let _ = writeln!(
            s,
            "sweep ({name}): the flash crowd, open loop, latency from the schedule, p99 target {}",
            human_us(self.p99_target_us)
        );
        let _ = writeln!(
            s,
            "  {:>10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>12} {:>9}",
            "offered/s", "answered/s", "ok", "p50", "p99", "p99.9", "server µs/req", "verified"
        );
        for r in &self.runs {
            let server_cpu = r
                .cost
                .first()
                .map_or_else(|| "-".to_string(), |c| format!("{:.1}", c.us_per_request));
            let verified = match &r.verification {
                Some(v) if v.passed => "yes",
                Some(_) => "FAILED",
                None => "-",
            };
            let within = if r.latency.p99_us <= self.p99_target_us {
                " "
            } else {
                "✗"
            };
            let _ = writeln!(
                s,
                "  {:>10.0} {:>10.0} {:>8} {:>10} {:>9}{within} {:>10} {:>12} {:>9}",
                r.pace.rate.unwrap_or(0.0),
                r.throughput_rps,
                r.outcomes.ok,
                human_us(r.latency.p50_us),
                human_us(r.latency.p99_us),
                human_us(r.latency.p999_us),
                server_cpu,
                verified
            );
        }
        let rounds = self.runs.len() > self.rates.len();
        let what = if rounds { "a median p99" } else { "p99" };
        if rounds {
            let _ = writeln!(
                s,
                "  by rate, over the rounds (median; of two, the higher):"
            );
            for r in &self.rates {
                let each: Vec<String> = r.p99_rounds_us.iter().map(|&us| human_us(us)).collect();
                let _ = writeln!(
                    s,
                    "  {:>10.0}  p50 {:>9}  p99 {:>9}  (p99 of each round: {})",
                    r.rate,
                    human_us(r.p50_us),
                    human_us(r.p99_us),
                    each.join(", ")
                );
            }
        }
        match self.highest_within_target {
            Some(rate) => {
                let _ = writeln!(
                    s,
                    "  highest offered rate with {what} ≤ {}: {rate:.0} req/s",
                    human_us(self.p99_target_us)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "  no offered rate had {what} ≤ {}",
                    human_us(self.p99_target_us)
                );
            }
        }
        for (i, r) in self.runs.iter().enumerate() {
            if !r.passed() {
                let _ = writeln!(s, "  run {} FAILED verification:\n{}", i + 1, r.text());
            }
        }
        s
    }

    /// Draws p50 and p99 (log scale) against the offered rate, with the
    /// target, into an SVG file at `path`.
    pub fn draw(&self, path: &Path) -> Result<(), Error> {
        let ms = |us: u64| (us.max(1) as f64) / 1e3;
        let mut medians: Vec<&RateSummary> = self.rates.iter().collect();
        medians.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let max_rate = medians.last().map_or(1.0, |r| r.rate) * 1.05;
        let target_ms = ms(self.p99_target_us);
        let max_ms = self
            .runs
            .iter()
            .map(|r| ms(r.latency.p99_us))
            .fold(target_ms, f64::max)
            * 2.0;
        let min_ms = self
            .runs
            .iter()
            .map(|r| ms(r.latency.p50_us))
            .fold(target_ms, f64::min)
            / 2.0;
        let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let name = self.label.as_deref().unwrap_or("server");
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{name}: latency from the schedule against the offered rate"),
                ("sans-serif", 18),
            )
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..max_rate, (min_ms..max_ms).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("offered BUYs/s")
            .y_desc("latency (ms, log scale)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v}"))
            .draw()
            .map_err(plot_error)?;
        // A line through each rate's median, a dot for each run.
        let series: [Series; 2] = [
            ("p99", RED, |r| r.p99_us, |r| r.latency.p99_us),
            ("p50", BLUE, |r| r.p50_us, |r| r.latency.p50_us),
        ];
        for (what, color, median, each) in series {
            let line: Vec<(f64, f64)> = medians.iter().map(|r| (r.rate, ms(median(r)))).collect();
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(plot_error)?
                .label(what)
                .legend(legend_line(color.stroke_width(2)));
            let dots = self
                .runs
                .iter()
                .filter_map(|r| r.pace.rate.map(|rate| (rate, ms(each(r)))));
            chart
                .draw_series(dots.map(|p| Circle::new(p, 3, color.filled())))
                .map_err(plot_error)?;
        }
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, target_ms), (max_rate, target_ms)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(format!("p99 target {}", human_us(self.p99_target_us)))
            .legend(legend_line(BLACK.stroke_width(1)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(plot_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report;

    fn at(rate: f64, p99_us: u64) -> Report {
        let mut r = report();
        r.pace.rate = Some(rate);
        r.latency.p99_us = p99_us;
        r
    }

    fn sweep(rates: &[f64], runs: Vec<Report>) -> SweepReport {
        let summary = summarize(rates, &runs);
        SweepReport {
            scenario: "sweep".into(),
            label: Some("durable".into()),
            p99_target_us: 10_000,
            highest_within_target: highest_within(&summary, 10_000),
            rates: summary,
            runs,
        }
    }

    #[test]
    fn the_highest_rate_within_the_target_is_found_whatever_the_order() {
        let rates = [40e3, 100e3, 70e3];
        let runs = vec![at(40e3, 9_400), at(100e3, 84_000), at(70e3, 57_000)];
        let summary = summarize(&rates, &runs);
        assert_eq!(highest_within(&summary, 10_000), Some(40e3));
        assert_eq!(highest_within(&summary, 60_000), Some(70e3));
        assert_eq!(highest_within(&summary, 1_000), None);
        // A rate past the target does not hide a higher one within it.
        let runs = vec![at(10e3, 12_000), at(20e3, 8_000)];
        let summary = summarize(&[10e3, 20e3], &runs);
        assert_eq!(highest_within(&summary, 10_000), Some(20e3));
    }

    #[test]
    fn over_rounds_a_rate_counts_by_its_median() {
        // Three rounds: 30k has one noisy round, 40k two over the target.
        let rates = [30e3, 40e3];
        let runs = vec![
            at(30e3, 5_000),
            at(40e3, 12_000),
            at(30e3, 60_000),
            at(40e3, 9_000),
            at(30e3, 6_000),
            at(40e3, 15_000),
        ];
        let s = sweep(&rates, runs);
        assert_eq!(s.rates[0].p99_rounds_us, vec![5_000, 60_000, 6_000]);
        assert_eq!(s.rates[0].p99_us, 6_000);
        assert_eq!(s.rates[1].p99_us, 12_000);
        assert_eq!(s.highest_within_target, Some(30e3));
        let text = s.text();
        assert!(text.contains("by rate, over the rounds"), "{text}");
        assert!(
            text.contains("with a median p99 ≤ 10.00 ms: 30000 req/s"),
            "{text}"
        );
        // Of two rounds, the higher.
        assert_eq!(median(vec![3, 9]), 9);
        assert_eq!(median(Vec::new()), 0);
    }

    #[test]
    fn the_text_marks_the_rates_past_the_target_and_a_failed_run() {
        let mut failed = at(70e3, 57_000);
        if let Some(v) = failed.verification.as_mut() {
            v.conclude(vec!["oversold".into()]);
        }
        let s = sweep(&[40e3, 70e3], vec![at(40e3, 9_400), failed]);
        assert!(!s.passed());
        let text = s.text();
        assert!(text.contains("sweep (durable)"), "{text}");
        assert!(text.contains("57.00 ms✗"), "{text}");
        assert!(!text.contains("9.40 ms✗"), "{text}");
        assert!(!text.contains("by rate, over the rounds"), "{text}");
        assert!(
            text.contains("highest offered rate with p99 ≤ 10.00 ms: 40000 req/s"),
            "{text}"
        );
        assert!(text.contains("run 2 FAILED verification"), "{text}");
    }

    #[test]
    fn the_plot_is_drawn() {
        let s = sweep(
            &[40e3, 70e3],
            vec![at(40e3, 9_400), at(70e3, 57_000), at(40e3, 8_000)],
        );
        let path = std::env::temp_dir().join(format!("sweep-{}.svg", std::process::id()));
        s.draw(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("p99 target"), "{svg}");
    }
}
