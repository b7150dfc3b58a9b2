//! `mfr-eeg inspect FILE`: header, channels, rates, duration and annotation count.

use std::path::PathBuf;

use mfr_eeg::io::edf::{EdfReader, Format, Plus, is_eeg};

use super::{outln, write_stdout};

/// Arguments of `mfr-eeg inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// EDF, EDF+ or BDF file.
    pub file: PathBuf,
}

/// Runs `mfr-eeg inspect`.
pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let mut r = EdfReader::open(&a.file)?;
    let h = r.header().clone();
    let records = r.num_records();
    let annotations = r.read_annotations()?.len();
    let kind = match (h.format(), h.plus()) {
        (Format::Edf, Plus::No) => "EDF",
        (Format::Edf, Plus::Continuous) => "EDF+C",
        (Format::Edf, Plus::Discontinuous) => "EDF+D",
        (Format::Bdf, Plus::No) => "BDF",
        (Format::Bdf, Plus::Continuous) => "BDF+C",
        (Format::Bdf, Plus::Discontinuous) => "BDF+D",
    };
    let duration = records as f64 * h.record_duration();
    let mut out = String::new();
    outln!(out, "file          {}", a.file.display());
    outln!(out, "format        {kind}");
    outln!(out, "patient       {}", h.patient());
    outln!(out, "recording     {}", h.recording());
    outln!(out, "start         {} {}", h.start_date(), h.start_time());
    outln!(
        out,
        "records       {records} x {} s = {duration} s ({})",
        h.record_duration(),
        hms(duration)
    );
    let signals = h.signals();
    let n_ann = h.annotation_channels().len();
    let n_eeg = signals.iter().filter(|s| is_eeg(s)).count();
    outln!(
        out,
        "signals       {} ({n_eeg} EEG by the default rule, {n_ann} annotation)",
        signals.len()
    );
    outln!(out, "annotations   {annotations}");
    outln!(out);
    outln!(
        out,
        "{:>3}  {:<16} {:>9} {:>5} {:>24} {:>18}  {:<4} prefilter",
        "#",
        "label",
        "rate Hz",
        "unit",
        "physical min..max",
        "digital min..max",
        "EEG"
    );
    for (i, s) in signals.iter().enumerate() {
        if s.is_annotation() {
            outln!(
                out,
                "{i:>3}  {:<16} {:>9} {:>5} {:>24} {:>18}  {:<4}",
                s.label,
                "-",
                "-",
                "-",
                "-",
                "-"
            );
            continue;
        }
        outln!(
            out,
            "{i:>3}  {:<16} {:>9} {:>5} {:>24} {:>18}  {:<4} {}",
            s.label,
            trim_float(h.sample_rate(i)),
            s.physical_dimension,
            format!("{}..{}", s.physical_min, s.physical_max),
            format!("{}..{}", s.digital_min, s.digital_max),
            if is_eeg(s) { "yes" } else { "no" },
            s.prefiltering
        );
    }
    write_stdout(&out)
}

fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn hms(s: f64) -> String {
    let t = s.round() as u64;
    format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}
