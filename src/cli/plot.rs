//! `mfr-eeg plot IN OUT --channel L --from S --to S -o fig.png`: one channel of a recording
//! and of its denoised copy, traces and spectra, via [`mfr_eeg::plot`].

use std::path::PathBuf;

use anyhow::Context;
use mfr_eeg::io::edf::{EdfReader, check_output_is_not_input, select_channels};
use mfr_eeg::plot::{Comparison, draw_comparison};

use super::{UsageError, write_stdout};

/// Arguments of `mfr-eeg plot`.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// The raw recording.
    pub input: PathBuf,
    /// The denoised recording (output of `mfr-eeg denoise`).
    pub denoised: PathBuf,
    /// Channel label to draw.
    #[arg(long)]
    pub channel: String,
    /// Start of the span, seconds from the recording start.
    #[arg(long, default_value_t = 0.0)]
    pub from: f64,
    /// End of the span in seconds (default: start + 10 s, clamped to the recording).
    #[arg(long)]
    pub to: Option<f64>,
    /// PNG file to write.
    #[arg(short = 'o', long = "output", value_name = "FIG.png")]
    pub output: PathBuf,
    /// Image width and height in pixels.
    #[arg(long, default_value = "1400,900", value_parser = parse_size)]
    pub size: (u32, u32),
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once([',', 'x'])
        .ok_or_else(|| format!("expected W,H in pixels, got {s:?}"))?;
    let p = |t: &str| {
        t.trim()
            .parse::<u32>()
            .map_err(|_| format!("{t:?} is not a size"))
    };
    let (w, h) = (p(w)?, p(h)?);
    if !(200..=8000).contains(&w) || !(200..=8000).contains(&h) {
        return Err(format!("size {w}x{h} outside 200..=8000 pixels"));
    }
    Ok((w, h))
}

/// One channel of a file: samples of [from, to), rate, label and unit.
fn read_span(
    path: &std::path::Path,
    channel: &str,
    from: f64,
    to: Option<f64>,
) -> anyhow::Result<(Vec<f32>, f64, String, String, f64)> {
    let mut r = EdfReader::open(path)?;
    let h = r.header().clone();
    let ch = select_channels(&h, Some(&[channel.to_string()])).map_err(|e| e.in_file(path))?[0];
    let sig = &h.signals()[ch];
    if sig.is_annotation() {
        anyhow::bail!("{}: {} is an annotation channel", path.display(), sig.label);
    }
    let fs = h.sample_rate(ch);
    let duration = r.num_records() as f64 * h.record_duration();
    let to = to.unwrap_or(from + 10.0).min(duration);
    if from >= duration {
        return Err(UsageError(format!(
            "--from {from} s is past the end of {} ({duration} s)",
            path.display()
        ))
        .into());
    }
    let x = r.read_channels_physical(&[ch])?.remove(0);
    let a = (from * fs).round() as usize;
    let b = ((to * fs).round() as usize).min(x.len());
    Ok((
        x[a..b].to_vec(),
        fs,
        sig.label.trim().to_string(),
        sig.physical_dimension.trim().to_string(),
        a as f64 / fs,
    ))
}

/// Runs `mfr-eeg plot`.
pub fn run(a: PlotArgs) -> anyhow::Result<()> {
    if !(a.from.is_finite() && a.from >= 0.0) {
        return Err(UsageError(format!("--from {} must be >= 0 seconds", a.from)).into());
    }
    if let Some(to) = a.to
        && !(to.is_finite() && to > a.from)
    {
        return Err(UsageError(format!("--to {to} must be after --from {}", a.from)).into());
    }
    check_output_is_not_input(&a.input, &a.output)?;
    check_output_is_not_input(&a.denoised, &a.output)?;
    let (raw, fs, label, unit, t0) = read_span(&a.input, &a.channel, a.from, a.to)?;
    let (den, fs2, _, _, _) = read_span(&a.denoised, &a.channel, a.from, a.to)?;
    if fs != fs2 || raw.len() != den.len() {
        anyhow::bail!(
            "{} and {}: channel {label} differs in rate or length ({fs} Hz/{} samples vs {fs2} Hz/{} samples); \
             is the second file a denoised copy of the first?",
            a.input.display(),
            a.denoised.display(),
            raw.len(),
            den.len()
        );
    }
    let c = Comparison {
        label: &label,
        unit: &unit,
        fs_hz: fs,
        t0_s: t0,
        raw: &raw,
        denoised: &den,
    };
    draw_comparison(&c, &a.output, a.size).with_context(|| format!("plotting channel {label}"))?;
    write_stdout(&format!(
        "wrote {} ({label}, {:.2}-{:.2} s)\n",
        a.output.display(),
        t0,
        t0 + raw.len() as f64 / fs
    ))
}
