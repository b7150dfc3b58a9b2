//! Before/after figures for `mfr-eeg plot`: one channel's raw and denoised traces over a time
//! span, and their Welch power spectral densities, so a user can see what the denoiser
//! removed. Drawn with plotters' bitmap backend; text uses the DejaVu Sans font embedded in
//! the binary (assets/fonts, licence beside it), so no system fonts are needed.
//!
//! Key items: [`Comparison`] (the data) and [`draw_comparison`] (writes a PNG atomically).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::eval::welch::Welch;

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Why a figure could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// The data cannot be plotted (too short, mismatched lengths, non-finite values).
    #[error("{0}")]
    Data(String),
    /// Drawing or writing the image failed.
    #[error("{}: cannot draw figure: {problem}", .path.display())]
    Draw {
        /// The figure path.
        path: PathBuf,
        /// The backend's message.
        problem: String,
    },
}

/// One channel before and after denoising, over the same span.
#[derive(Debug, Clone, Copy)]
pub struct Comparison<'a> {
    /// Channel label for the titles.
    pub label: &'a str,
    /// Physical dimension for the axis (e.g. "uV").
    pub unit: &'a str,
    /// Sampling rate in Hz.
    pub fs_hz: f64,
    /// Time of the first sample, seconds from the recording start.
    pub t0_s: f64,
    /// Raw samples.
    pub raw: &'a [f32],
    /// Denoised samples (same length).
    pub denoised: &'a [f32],
}

/// Welch segment length used for the PSD panel: 2 s of samples, or the whole span when it
/// is shorter (frequency resolution 0.5 Hz where the span allows).
pub fn psd_segment(n: usize, fs_hz: f64) -> usize {
    ((2.0 * fs_hz).round() as usize).clamp(2, n.max(2))
}

/// Draws the comparison (traces on top, PSDs below) into the PNG file `path`, `size` pixels,
/// via a temporary file beside it that is renamed at the end.
pub fn draw_comparison(c: &Comparison<'_>, path: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    let n = c.raw.len();
    if n != c.denoised.len() {
        return Err(PlotError::Data(format!(
            "raw has {n} samples but denoised has {}",
            c.denoised.len()
        )));
    }
    if n < 8 {
        return Err(PlotError::Data(format!(
            "only {n} samples in the span; need at least 8"
        )));
    }
    if !(c.fs_hz.is_finite() && c.fs_hz > 0.0) {
        return Err(PlotError::Data(format!("sampling rate {} Hz", c.fs_hz)));
    }
    if let Some(i) = c.raw.iter().chain(c.denoised).position(|v| !v.is_finite()) {
        return Err(PlotError::Data(format!("sample {} is not finite", i % n)));
    }
    let welch = Welch::new(psd_segment(n, c.fs_hz)).map_err(|e| PlotError::Data(e.to_string()))?;
    let freqs = welch.frequencies(c.fs_hz);
    let p_raw = welch
        .psd(c.raw, c.fs_hz)
        .map_err(|e| PlotError::Data(e.to_string()))?;
    let p_den = welch
        .psd(c.denoised, c.fs_hz)
        .map_err(|e| PlotError::Data(e.to_string()))?;

    REGISTER.call_once(|| {
        // The bytes are a valid TTF shipped with the crate; a failure would only lose text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });

    let draw_err = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.to_path_buf(),
        problem: e.to_string(),
    };
    // plotters picks the encoder from the extension, so the temporary name keeps ".png".
    match crate::io::atomic::write_atomic_with(path, ".png", |temp| {
        render(c, &freqs, &p_raw, &p_den, temp, size)
    }) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(draw_err(&e)),
        Err(crate::io::atomic::AtomicError::DirMissing { dir, .. }) => Err(draw_err(&format!(
            "directory {} does not exist",
            dir.display()
        ))),
        Err(crate::io::atomic::AtomicError::IsDirectory { .. }) => {
            Err(draw_err(&"not a file path"))
        }
        Err(e) => Err(draw_err(&e)),
    }
}

fn render(
    c: &Comparison<'_>,
    freqs: &[f64],
    p_raw: &[f64],
    p_den: &[f64],
    file: &Path,
    size: (u32, u32),
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(file, size).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(size.1 * 11 / 20);
    let raw_colour = RGBColor(200, 60, 40);
    let den_colour = RGBColor(30, 90, 200);
    let n = c.raw.len();
    let t = |i: usize| c.t0_s + i as f64 / c.fs_hz;

    let (lo, hi) = c
        .raw
        .iter()
        .chain(c.denoised)
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{}: raw vs denoised", c.label), ("sans-serif", 26))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(t(0)..t(n - 1), f64::from(lo - pad)..f64::from(hi + pad))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(format!("amplitude ({})", c.unit))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            c.raw.iter().enumerate().map(|(i, &v)| (t(i), f64::from(v))),
            raw_colour.stroke_width(1),
        ))?
        .label("raw")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], raw_colour.stroke_width(3))
        });
    chart
        .draw_series(LineSeries::new(
            c.denoised
                .iter()
                .enumerate()
                .map(|(i, &v)| (t(i), f64::from(v))),
            den_colour.stroke_width(2),
        ))?
        .label("denoised")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], den_colour.stroke_width(3))
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Log-scale PSD; the DC bin (mean removed per segment) and exact zeros are left out.
    let floor = p_raw
        .iter()
        .chain(p_den)
        .skip(1)
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let top_p = p_raw.iter().chain(p_den).copied().fold(0.0, f64::max);
    let (ymin, ymax) = if floor.is_finite() && top_p > 0.0 {
        (floor.max(top_p * 1e-9) / 2.0, top_p * 2.0)
    } else {
        (1e-6, 1.0)
    };
    let nyq = c.fs_hz / 2.0;
    let mut psd = ChartBuilder::on(&bottom)
        .caption("power spectral density (Welch)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..nyq, (ymin..ymax).log_scale())?;
    psd.configure_mesh()
        .x_desc("frequency (Hz)")
        .y_desc(format!("{}²/Hz", c.unit))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let pts = |p: &[f64]| -> Vec<(f64, f64)> {
        freqs
            .iter()
            .zip(p)
            .skip(1)
            .map(|(&f, &v)| (f, v.max(ymin)))
            .collect()
    };
    psd.draw_series(LineSeries::new(pts(p_raw), raw_colour.stroke_width(2)))?
        .label("raw")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], raw_colour.stroke_width(3))
        });
    psd.draw_series(LineSeries::new(pts(p_den), den_colour.stroke_width(2)))?
        .label("denoised")
        .legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 24, y)], den_colour.stroke_width(3))
        });
    psd.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_and_refuses_bad_data() {
        let dir = tempfile::tempdir().unwrap();
        let fs = 160.0;
        let raw: Vec<f32> = (0..640)
            .map(|i| {
                let t = i as f64 / fs;
                (20.0 * (2.0 * std::f64::consts::PI * 10.0 * t).sin()
                    + 5.0 * (2.0 * std::f64::consts::PI * 60.0 * t).sin()) as f32
            })
            .collect();
        let den: Vec<f32> = (0..640)
            .map(|i| (20.0 * (2.0 * std::f64::consts::PI * 10.0 * i as f64 / fs).sin()) as f32)
            .collect();
        let c = Comparison {
            label: "Fp1",
            unit: "uV",
            fs_hz: fs,
            t0_s: 8.0,
            raw: &raw,
            denoised: &den,
        };
        let out = dir.path().join("fig.png");
        draw_comparison(&c, &out, (800, 600)).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // A blank 800x600 PNG compresses to well under 10 kB; curves and text make it larger.
        assert!(
            bytes.len() > 10_000,
            "suspiciously small PNG: {} bytes",
            bytes.len()
        );
        // Only the figure remains: no temporary file left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let short = Comparison {
            raw: &raw[..4],
            denoised: &den[..4],
            ..c
        };
        assert!(matches!(
            draw_comparison(&short, &dir.path().join("s.png"), (800, 600)),
            Err(PlotError::Data(_))
        ));
        let missing = dir.path().join("no/such/dir/fig.png");
        assert!(matches!(
            draw_comparison(&c, &missing, (800, 600)),
            Err(PlotError::Draw { .. })
        ));
        assert!(!dir.path().join("s.png").exists());
    }
}
