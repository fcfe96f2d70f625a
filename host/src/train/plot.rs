//! A PNG of a run's progress: training loss per epoch on the left, accuracy per epoch on the right.
//!
//! Text needs a TrueType font read at run time (no fontconfig): the first of [`FONT_CANDIDATES`] that exists
//! (Debian's `fonts-dejavu-core` provides the first). Without one the plot is drawn without text.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use super::metrics::EpochMetrics;

/// The file name of the plot in a run directory.
pub const PLOT_FILE: &str = "training.png";

/// Fonts tried for the labels, in order.
pub const FONT_CANDIDATES: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// The font family name the labels are registered under.
pub(crate) const FAMILY: &str = "qfd-sans";
const SIZE: (u32, u32) = (1100, 450);

/// Why the plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing or encoding the image failed.
    #[error("cannot draw the plot {}: {message}", path.display())]
    Draw {
        /// The PNG file.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// Moving the finished image into place failed.
    #[error("cannot write the plot {}", path.display())]
    Io {
        /// The PNG file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// Draws `metrics` into the PNG file `out`, replacing it atomically (drawn to a temporary file in the same
/// directory, then renamed). Text is drawn when a font is found ([`font_available`]).
pub fn plot_training(metrics: &[EpochMetrics], out: &Path) -> Result<(), PlotError> {
    plot_with(metrics, out, font_available())
}

/// Whether a font for the labels was found (registered with plotters on the first call).
pub fn font_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        FONT_CANDIDATES.iter().any(|path| {
            let Ok(bytes) = fs::read(path) else { return false };
            // Registered once for the life of the process, which plotters requires ('static).
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok()
        })
    })
}

fn plot_with(metrics: &[EpochMetrics], out: &Path, text: bool) -> Result<(), PlotError> {
    write_png(out, |tmp| draw(metrics, tmp, text))
}

/// Runs `draw` on a temporary PNG beside `out`, then renames it over `out`: a reader never sees a
/// half-drawn image, and a failed drawing leaves nothing behind.
pub(crate) fn write_png(out: &Path, draw: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), PlotError> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = out.file_name().map_or("plot".into(), |n| n.to_string_lossy().into_owned());
    // The bitmap backend picks the encoder from the extension, so the temporary name ends in .png.
    let tmp = dir.join(format!(".{name}.{}.tmp.png", std::process::id()));
    let draw_err = |message: String| PlotError::Draw { path: out.into(), message };
    let result = draw(&tmp)
        .map_err(draw_err)
        .and_then(|()| fs::rename(&tmp, out).map_err(|source| PlotError::Io { path: out.into(), source }));
    if result.is_err() {
        // Nothing useful is in a half-drawn temporary file.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn draw(metrics: &[EpochMetrics], path: &Path, text: bool) -> Result<(), String> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let epoch = |m: &EpochMetrics| m.epoch as f64;
    let loss = [
        ("train loss", BLUE, series(metrics, |m| (epoch(m), m.train_loss))),
        ("test loss", RED, series(metrics, |m| (epoch(m), m.test_loss))),
    ];
    let acc = [
        ("test accuracy %", RED, series(metrics, |m| (epoch(m), 100.0 * m.test_acc))),
        ("train accuracy %", BLUE, series(metrics, |m| (epoch(m), 100.0 * m.train_acc))),
    ];
    let loss_max = loss.iter().flat_map(|s| s.2.iter().map(|p| p.1)).fold(0.0, f64::max);
    let acc_min = acc.iter().flat_map(|s| s.2.iter().map(|p| p.1)).fold(100.0, f64::min);
    panel(&left, text, "Loss per epoch", &loss, 0.0..(loss_max * 1.1).max(1e-3))?;
    let acc_low = ((acc_min - 2.0) / 5.0).floor().clamp(0.0, 19.0) * 5.0;
    panel(&right, text, "Accuracy per epoch", &acc, acc_low..100.0)?;
    root.present().map_err(|e| e.to_string())
}

/// Epochs are whole numbers: ticks between them stay unlabelled.
fn whole_epoch(x: &f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

fn series(metrics: &[EpochMetrics], f: impl Fn(&EpochMetrics) -> (f64, f64)) -> Vec<(f64, f64)> {
    metrics.iter().map(f).filter(|p| p.0.is_finite() && p.1.is_finite()).collect()
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    text: bool,
    title: &str,
    lines: &[Series],
    y: Range<f64>,
) -> Result<(), String> {
    let last = lines.iter().flat_map(|s| s.2.iter().map(|p| p.0)).fold(1.0, f64::max);
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder.caption(title, (FAMILY, 20)).x_label_area_size(40).y_label_area_size(55);
    }
    let mut chart = builder.build_cartesian_2d(0.5..last + 0.5, y).map_err(|e| e.to_string())?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("epoch").label_style((FAMILY, 14)).x_labels((last as usize + 1).min(11));
        mesh.x_label_formatter(&whole_epoch);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for (label, color, points) in lines {
        let style = color.stroke_width(2);
        let drawn =
            chart.draw_series(LineSeries::new(points.iter().copied(), style)).map_err(|e| e.to_string())?;
        if text {
            drawn.label(*label).legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        }
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    if text {
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(n: usize) -> Vec<EpochMetrics> {
        (1..=n)
            .map(|e| EpochMetrics {
                epoch: e,
                train_loss: 2.0 / e as f64,
                train_task_loss: 1.8 / e as f64,
                train_distill_loss: Some(0.2 / e as f64),
                train_path_loss: None,
                train_acc: 0.9 - 0.5 / e as f64,
                test_loss: 2.1 / e as f64,
                test_acc: 0.88 - 0.45 / e as f64,
                test_distill_loss: Some(0.1 / e as f64),
                lr: 0.05,
                images_per_sec: 1000.0,
                seconds: 10.0,
            })
            .collect()
    }

    fn assert_png(path: &Path) {
        let bytes = fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn plots_one_and_twenty_epochs_with_and_without_text() {
        let dir = tempfile::tempdir().unwrap();
        for n in [1, 20] {
            let out = dir.path().join(format!("plot{n}.png"));
            plot_training(&metrics(n), &out).unwrap();
            assert_png(&out);
            let out = dir.path().join(format!("plain{n}.png"));
            plot_with(&metrics(n), &out, false).unwrap();
            assert_png(&out);
        }
        // To look at the images: QFD_KEEP_PLOTS=DIR cargo test -p qfd-host --lib plot
        if let Some(keep) = std::env::var_os("QFD_KEEP_PLOTS") {
            for name in ["plot1.png", "plot20.png", "plain1.png", "plain20.png"] {
                fs::copy(dir.path().join(name), Path::new(&keep).join(name)).unwrap();
            }
        }
    }

    #[test]
    fn an_empty_run_and_a_bad_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(PLOT_FILE);
        plot_training(&[], &out).unwrap();
        assert_png(&out);
        let e = plot_training(&metrics(2), &dir.path().join("missing/plot.png")).unwrap_err();
        assert!(e.to_string().contains("missing/plot.png"), "{e}");
    }
}
