//! `chart.png`: one row per strategy; left, JRuby utilisation per server
//! per minute (with the target); middle, runs started per server per
//! minute; right, the mean borrow queue wait per server per minute (what
//! per-minute averages hide: cron's bursts at second 0).
//! The outage and the converge window are shaded. Text is drawn with a TTF
//! read at run time (Debian's fonts-dejavu-core by default), so no system
//! font library is needed.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::config::Config;
use super::summary::Outcome;

/// Debian's `fonts-dejavu-core`.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const ROW_HEIGHT: u32 = 430;
const WIDTH: u32 = 2400;

const SERVER_COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Registers the font for plotters' "sans-serif" (once per process).
fn load_font(path: &Path) -> anyhow::Result<()> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("reading the font {}: {e}", path.display()))?;
            // plotters keeps fonts for the process's life.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a TrueType font", path.display()))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

pub fn draw(path: &Path, font: &Path, config: &Config, outcomes: &[Outcome]) -> anyhow::Result<()> {
    load_font(font)?;
    let height = ROW_HEIGHT * outcomes.len().max(1) as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let rows = root.split_evenly((outcomes.len().max(1), 3));
    let hours = config.hours;
    let shaded = windows(config);
    for (i, outcome) in outcomes.iter().enumerate() {
        let series = &outcome.series;
        let name = outcome.kind.as_str();
        let minutes = series.servers.first().map_or(0, |s| s.minutes.len());
        let x = |minute: usize| (minute as f64 + 0.5) / 60.0;

        // Utilisation.
        let max_util = series
            .servers
            .iter()
            .flat_map(|s| (0..minutes).map(move |m| s.utilization(m)))
            .fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(&rows[3 * i])
            .caption(
                format!("{name}: JRuby utilisation per server (%)"),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..hours, 0.0..(max_util * 100.0 * 1.05).ceil())
            .map_err(plot_error)?;
        mesh(&mut chart, hours, false)?;
        shade(&mut chart, &shaded, (max_util * 100.0 * 1.05).ceil())?;
        for (si, s) in series.servers.iter().enumerate() {
            let color = SERVER_COLORS[si % SERVER_COLORS.len()];
            // One line per stretch the server is up: no line across an outage.
            let mut first_segment = true;
            for segment in up_segments(s, minutes) {
                let drawn = chart
                    .draw_series(LineSeries::new(
                        segment.map(|m| (x(m), s.utilization(m) * 100.0)),
                        color.stroke_width(1),
                    ))
                    .map_err(plot_error)?;
                if first_segment {
                    drawn.label(s.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                    });
                    first_segment = false;
                }
            }
        }
        let target = config.target_utilization * 100.0;
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, target), (hours, target)],
                8,
                6,
                BLACK.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(format!("target {target:.0}%"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(1)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(plot_error)?;

        // Runs started per minute.
        let max_runs = series
            .servers
            .iter()
            .flat_map(|s| s.minutes.iter().map(|m| m.runs_started))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(&rows[3 * i + 1])
            .caption(
                format!("{name}: runs started per server per minute"),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..hours, 0.0..(max_runs * 1.05).ceil())
            .map_err(plot_error)?;
        mesh(&mut chart, hours, false)?;
        shade(&mut chart, &shaded, (max_runs * 1.05).ceil())?;
        for (si, s) in series.servers.iter().enumerate() {
            let color = SERVER_COLORS[si % SERVER_COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    (0..minutes).map(|m| (x(m), s.minutes[m].runs_started as f64)),
                    color.stroke_width(1),
                ))
                .map_err(plot_error)?;
        }

        // Borrow queue wait.
        let wait = |s: &super::summary::ServerSeries, m: usize| {
            let minute = &s.minutes[m];
            if minute.borrows > 0 {
                minute.wait_sum_ms as f64 / minute.borrows as f64 / 1000.0
            } else {
                0.0
            }
        };
        let max_wait = series
            .servers
            .iter()
            .flat_map(|s| (0..minutes).map(move |m| wait(s, m)))
            .fold(0.0f64, f64::max)
            .max(0.01);
        let mut chart = ChartBuilder::on(&rows[3 * i + 2])
            .caption(
                format!("{name}: mean borrow queue wait per server per minute (s)"),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..hours, 0.0..max_wait * 1.05)
            .map_err(plot_error)?;
        mesh(&mut chart, hours, max_wait < 10.0)?;
        shade(&mut chart, &shaded, max_wait * 1.05)?;
        for (si, s) in series.servers.iter().enumerate() {
            let color = SERVER_COLORS[si % SERVER_COLORS.len()];
            for segment in up_segments(s, minutes) {
                chart
                    .draw_series(LineSeries::new(
                        segment.map(|m| (x(m), wait(s, m))),
                        color.stroke_width(1),
                    ))
                    .map_err(plot_error)?;
            }
        }
    }
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The stretches of minutes in which the server was up at all.
fn up_segments(s: &super::summary::ServerSeries, minutes: usize) -> Vec<std::ops::Range<usize>> {
    let mut segments = Vec::new();
    let mut start = None;
    for m in 0..minutes {
        match (s.minutes[m].up_ms > 0, start) {
            (true, None) => start = Some(m),
            (false, Some(from)) => {
                segments.push(from..m);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        segments.push(from..minutes);
    }
    segments
}

/// Shaded windows in hours: the outage (red) and the converge deadline (blue).
fn windows(config: &Config) -> Vec<(f64, f64, RGBColor)> {
    let mut out = Vec::new();
    if let Some(o) = config.outage {
        out.push((
            o.start_s / 3600.0,
            (o.start_s + o.duration_s) / 3600.0,
            RGBColor(214, 39, 40),
        ));
    }
    if let Some(c) = config.converge {
        out.push((
            c.start_s / 3600.0,
            (c.start_s + c.within_s) / 3600.0,
            RGBColor(31, 119, 180),
        ));
    }
    if let Some(r) = config.restart {
        out.push((
            r.start_s / 3600.0,
            (r.start_s + r.over_s.max(60.0)) / 3600.0,
            RGBColor(120, 120, 120),
        ));
    }
    out
}

type Chart<'a> = ChartContext<
    'a,
    BitMapBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn mesh(chart: &mut Chart<'_>, hours: f64, fractional_y: bool) -> anyhow::Result<()> {
    let step = if hours <= 6.0 {
        0.5
    } else if hours <= 30.0 {
        2.0
    } else {
        12.0
    };
    chart
        .configure_mesh()
        .x_labels(((hours / step).round() as usize + 1).min(30))
        .x_label_formatter(&|h| {
            let minutes = (h * 60.0).round() as i64;
            format!("{:02}:{:02}", minutes / 60 % 24, minutes % 60)
        })
        .y_label_formatter(&|v| {
            if fractional_y {
                format!("{v:.2}")
            } else {
                format!("{v:.0}")
            }
        })
        .x_desc("simulated time of day")
        .label_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn shade(chart: &mut Chart<'_>, windows: &[(f64, f64, RGBColor)], top: f64) -> anyhow::Result<()> {
    chart
        .draw_series(windows.iter().map(|&(from, to, color)| {
            Rectangle::new([(from, 0.0), (to, top)], color.mix(0.12).filled())
        }))
        .map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {error:?}")
}
