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
use crate::report::{human_us, Report};
use crate::scenario::flash_crowd_server;

/// A line of the plot: its name, its colour, and its value for a run.
type Series = (&'static str, RGBColor, fn(&Report) -> u64);

/// What a sweep measured: one flash crowd per rate, in the order run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    pub scenario: String,
    /// What the plot and the text call this server (`--label`).
    pub label: Option<String>,
    pub p99_target_us: u64,
    pub runs: Vec<Report>,
    /// The highest rate offered whose p99 was within the target.
    pub highest_within_target: Option<f64>,
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
    let mut runs = Vec::with_capacity(args.rates.len());
    for &rate in &args.rates {
        let mut at_rate = common.clone();
        at_rate.rate = Some(rate);
        let report = flash_crowd_server(&at_rate, &args.crowd)?;
        eprintln!(
            "sweep: {rate} req/s offered: p99 {}",
            human_us(report.latency.p99_us)
        );
        runs.push(report);
    }
    Ok(SweepReport {
        scenario: "sweep".into(),
        label: args.label.clone(),
        p99_target_us,
        highest_within_target: highest_within(&runs, p99_target_us),
        runs,
    })
}

/// The highest offered rate whose p99 is within `target_us`.
fn highest_within(runs: &[Report], target_us: u64) -> Option<f64> {
    runs.iter()
        .filter(|r| r.latency.p99_us <= target_us)
        .filter_map(|r| r.pace.rate)
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
        match self.highest_within_target {
            Some(rate) => {
                let _ = writeln!(
                    s,
                    "  highest offered rate with p99 ≤ {}: {rate:.0} req/s",
                    human_us(self.p99_target_us)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "  no offered rate had p99 ≤ {}",
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
        let plot_error = |e: &dyn std::fmt::Display| Error::Plot(e.to_string());
        let mut points: Vec<(f64, &Report)> = self
            .runs
            .iter()
            .filter_map(|r| r.pace.rate.map(|rate| (rate, r)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ms = |us: u64| (us.max(1) as f64) / 1e3;
        let max_rate = points.last().map_or(1.0, |p| p.0) * 1.05;
        let target_ms = ms(self.p99_target_us);
        let max_ms = points
            .iter()
            .map(|(_, r)| ms(r.latency.p99_us))
            .fold(target_ms, f64::max)
            * 2.0;
        let min_ms = points
            .iter()
            .map(|(_, r)| ms(r.latency.p50_us))
            .fold(target_ms, f64::min)
            / 2.0;
        let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(&e))?;
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
            .map_err(|e| plot_error(&e))?;
        chart
            .configure_mesh()
            .x_desc("offered BUYs/s")
            .y_desc("latency (ms, log scale)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v}"))
            .draw()
            .map_err(|e| plot_error(&e))?;
        let series: [Series; 2] = [
            ("p99", RED, |r| r.latency.p99_us),
            ("p50", BLUE, |r| r.latency.p50_us),
        ];
        for (what, color, value) in series {
            let line: Vec<(f64, f64)> = points.iter().map(|(x, r)| (*x, ms(value(r)))).collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(|e| plot_error(&e))?
                .label(what)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| plot_error(&e))?;
        }
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, target_ms), (max_rate, target_ms)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(|e| plot_error(&e))?
            .label(format!("p99 target {}", human_us(self.p99_target_us)))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| plot_error(&e))?;
        root.present().map_err(|e| plot_error(&e))?;
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

    #[test]
    fn the_highest_rate_within_the_target_is_found_whatever_the_order() {
        let runs = [at(40e3, 9_400), at(100e3, 84_000), at(70e3, 57_000)];
        assert_eq!(highest_within(&runs, 10_000), Some(40e3));
        assert_eq!(highest_within(&runs, 60_000), Some(70e3));
        assert_eq!(highest_within(&runs, 1_000), None);
        // A rate past the target does not hide a higher one within it.
        let runs = [at(10e3, 12_000), at(20e3, 8_000)];
        assert_eq!(highest_within(&runs, 10_000), Some(20e3));
    }

    #[test]
    fn the_text_marks_the_rates_past_the_target_and_a_failed_run() {
        let mut failed = at(70e3, 57_000);
        if let Some(v) = failed.verification.as_mut() {
            v.conclude(vec!["oversold".into()]);
        }
        let sweep = SweepReport {
            scenario: "sweep".into(),
            label: Some("durable".into()),
            p99_target_us: 10_000,
            highest_within_target: Some(40e3),
            runs: vec![at(40e3, 9_400), failed],
        };
        assert!(!sweep.passed());
        let text = sweep.text();
        assert!(text.contains("sweep (durable)"), "{text}");
        assert!(text.contains("57.00 ms✗"), "{text}");
        assert!(!text.contains("9.40 ms✗"), "{text}");
        assert!(
            text.contains("highest offered rate with p99 ≤ 10.00 ms: 40000 req/s"),
            "{text}"
        );
        assert!(text.contains("run 2 FAILED verification"), "{text}");
    }

    #[test]
    fn the_plot_is_drawn() {
        let sweep = SweepReport {
            scenario: "sweep".into(),
            label: None,
            p99_target_us: 10_000,
            highest_within_target: Some(40e3),
            runs: vec![at(40e3, 9_400), at(70e3, 57_000)],
        };
        let path = std::env::temp_dir().join(format!("sweep-{}.svg", std::process::id()));
        sweep.draw(&path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.contains("<svg") && svg.contains("p99 target"), "{svg}");
    }
}
