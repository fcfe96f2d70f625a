//! The report's PNGs: accuracy against bit-width per method (mean with the spread over seeds as error bars)
//! and test accuracy per epoch. Drawn like the training plot (same font handling, atomic write).

use std::path::Path;

use plotters::prelude::*;

use crate::train::plot::{font_available, write_png, PlotError, FAMILY};

/// One line of a chart: `(x, mean, spread)` points; the spread is drawn as an error bar of +-spread.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64, f64)>,
}

/// What a chart shows.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// Title above the chart.
    pub title: &'a str,
    /// X axis description.
    pub x_desc: &'a str,
    /// Y axis description.
    pub y_desc: &'a str,
    /// The x values that get a tick label (bit-widths, epochs).
    pub x_ticks: Vec<f64>,
    /// The lines.
    pub lines: Vec<Line>,
    /// A dashed horizontal reference line (the full-precision accuracy) and its label.
    pub reference: Option<(String, f64)>,
}

const SIZE: (u32, u32) = (900, 560);

/// Distinct colours for up to ten lines (then they repeat).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draws `chart` into the PNG file `out` (replaced atomically).
pub fn draw_chart(chart: &Chart<'_>, out: &Path) -> Result<(), PlotError> {
    write_png(out, |tmp| draw(chart, tmp, font_available()))
}

fn draw(chart: &Chart<'_>, path: &Path, text: bool) -> Result<(), String> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let xs = chart.x_ticks.iter().copied();
    let (x_lo, x_hi) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (x_lo, x_hi) = if x_lo > x_hi { (0.0, 1.0) } else { (x_lo, x_hi) };
    let ys = chart.lines.iter().flat_map(|l| l.points.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2]));
    let ys = ys.chain(chart.reference.iter().map(|r| r.1)).filter(|y| y.is_finite());
    let (y_lo, y_hi) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (y_lo, y_hi) = if y_lo > y_hi { (0.0, 100.0) } else { (y_lo, y_hi) };
    let pad = ((y_hi - y_lo) * 0.08).max(0.5);
    let mut builder = ChartBuilder::on(&root);
    builder.margin(16);
    if text {
        builder.caption(chart.title, (FAMILY, 22)).x_label_area_size(45).y_label_area_size(60);
    }
    let x_pad = ((x_hi - x_lo) * 0.06).max(0.2);
    let mut plot = builder
        .build_cartesian_2d(x_lo - x_pad..x_hi + x_pad, (y_lo - pad)..(y_hi + pad).min(100.5))
        .map_err(|e| e.to_string())?;
    let ticks = chart.x_ticks.clone();
    let label_x = move |x: &f64| {
        if ticks.iter().any(|t| (t - x).abs() < 1e-6) {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };
    let mut mesh = plot.configure_mesh();
    if text {
        mesh.x_desc(chart.x_desc).y_desc(chart.y_desc).label_style((FAMILY, 15));
        mesh.x_labels(((x_hi - x_lo) * 4.0) as usize + 2).x_label_formatter(&label_x);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    if let Some((label, y)) = &chart.reference {
        let style = BLACK.mix(0.6).stroke_width(2);
        let dashes = dashed(x_lo - x_pad, x_hi + x_pad, *y);
        let drawn = plot.draw_series(dashes.into_iter().map(|seg| PathElement::new(seg, style)));
        let drawn = drawn.map_err(|e| e.to_string())?;
        if text {
            drawn.label(label.as_str()).legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
    }
    for (i, line) in chart.lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = color.stroke_width(2);
        let points: Vec<(f64, f64)> =
            line.points.iter().map(|p| (p.0, p.1)).filter(|p| p.1.is_finite()).collect();
        let drawn =
            plot.draw_series(LineSeries::new(points.iter().copied(), style)).map_err(|e| e.to_string())?;
        if text {
            drawn
                .label(line.label.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        plot.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| e.to_string())?;
        let bars = line.points.iter().filter(|p| p.2 > 0.0 && p.1.is_finite());
        plot.draw_series(bars.map(|&(x, y, s)| ErrorBar::new_vertical(x, y - s, y, y + s, style, 8)))
            .map_err(|e| e.to_string())?;
    }
    if text {
        plot.configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// A dashed horizontal line as segments.
fn dashed(from: f64, to: f64, y: f64) -> Vec<Vec<(f64, f64)>> {
    let step = (to - from) / 60.0;
    (0..30)
        .map(|i| vec![(from + 2.0 * i as f64 * step, y), (from + (2.0 * i as f64 + 1.0) * step, y)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_chart_with_error_bars_a_reference_and_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let chart = Chart {
            title: "t",
            x_desc: "bits",
            y_desc: "accuracy %",
            x_ticks: vec![2.0, 3.0, 4.0],
            lines: vec![
                Line {
                    label: "qat".into(),
                    points: vec![(2.0, 80.0, 1.0), (3.0, 85.0, 0.5), (4.0, 88.0, 0.0)],
                },
                Line { label: "qfd".into(), points: vec![(2.0, 82.0, 0.7), (3.0, f64::NAN, 0.0)] },
            ],
            reference: Some(("fp".into(), 90.0)),
        };
        let out = dir.path().join("a.png");
        draw_chart(&chart, &out).unwrap();
        assert_eq!(&std::fs::read(&out).unwrap()[..4], b"\x89PNG");
        let empty = Chart { lines: vec![], reference: None, x_ticks: vec![], ..chart };
        draw_chart(&empty, &dir.path().join("b.png")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file is left");
    }
}
