//! `--plot FILE.svg`: throughput and p99 latency per second, one line per
//! run (two with --compare, one per phase for attack).

use std::path::Path;

use plotters::coord::CoordTranslate;
use plotters::prelude::*;

use crate::error::Error;
use crate::report::{Report, Second};

/// Enough for the ten phases of an attack run.
const COLORS: [RGBColor; 10] = [
    BLUE,
    RED,
    GREEN,
    MAGENTA,
    CYAN,
    BLACK,
    RGBColor(255, 140, 0),
    RGBColor(128, 0, 128),
    RGBColor(139, 69, 19),
    RGBColor(128, 128, 128),
];
/// A last second the run covered less of than this is left out: its rate
/// would be noise.
const MIN_SPAN: f64 = 0.1;

/// A per-second series as rates, each point at the middle of the time it
/// covers (the last second is usually partial).
fn points(r: &Report, value: impl Fn(&Second) -> f64) -> Vec<(f64, f64)> {
    r.per_second
        .iter()
        .filter(|s| s.span_s >= MIN_SPAN)
        .map(|s| (s.second as f64 + s.span_s / 2.0, value(s) / s.span_s))
        .collect()
}

pub(crate) fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

/// Where the legend draws an entry, in the backend's pixels.
type Pixel = (i32, i32);

/// A series' entry in the legend: a short line in its `style`.
pub(crate) fn legend_line(style: ShapeStyle) -> impl Fn(Pixel) -> PathElement<Pixel> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)
}

/// Draws the legend of `chart`'s labelled series, boxed, at `position`.
pub(crate) fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), Error>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)
}

/// Draws the per-second series of `runs` into an SVG file at `path`.
pub fn draw(path: &Path, runs: &[&Report]) -> Result<(), Error> {
    let root = SVGBackend::new(path, (1000, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (top, bottom) = root.split_vertically(380);
    let seconds = runs.iter().map(|r| r.duration_s).fold(1.0, f64::max).ceil();
    let label = |r: &Report| format!("{} → {}", r.scenario, r.target);

    let max_rps = runs
        .iter()
        .flat_map(|r| points(r, |s| s.requests as f64))
        .map(|(_, y)| y)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "throughput per second (solid: answered, dashed: ok)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..seconds, 0f64..max_rps * 1.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("requests/s")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (i, r) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let answered = points(r, |s| s.requests as f64);
        chart
            .draw_series(LineSeries::new(answered, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(label(r))
            .legend(legend_line(color.stroke_width(2)));
        let ok = points(r, |s| s.ok as f64);
        chart
            .draw_series(DashedLineSeries::new(ok, 6, 4, color.stroke_width(1)))
            .map_err(plot_error)?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;

    let max_ms = runs
        .iter()
        .flat_map(|r| r.per_second.iter().map(|s| s.p99_us))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        / 1e3;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("p99 latency per second", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..seconds, 0f64..max_ms * 1.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("p99 (ms)")
        .draw()
        .map_err(plot_error)?;
    for (i, r) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let p99: Vec<(f64, f64)> = r
            .per_second
            .iter()
            .filter(|s| s.span_s >= MIN_SPAN && s.requests > 0)
            .map(|s| (s.second as f64 + s.span_s / 2.0, s.p99_us as f64 / 1e3))
            .collect();
        chart
            .draw_series(LineSeries::new(p99, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(label(r))
            .legend(legend_line(color.stroke_width(2)));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(plot_error)?;
    Ok(())
}
