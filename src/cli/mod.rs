//! The CLI's subcommands, one file per area: arguments (clap), the call into the library,
//! and everything printed (results, progress lines and bars); plus the error-to-exit-code
//! rule. The library below never prints or parses arguments.

pub mod bench;
pub mod denoise;
pub mod eog_check;
pub mod fit_blend;
pub mod inspect;
pub mod plot;
pub mod quantize;
#[cfg(feature = "train")]
pub mod synth_features;
#[cfg(feature = "train")]
pub mod train;
#[cfg(feature = "train")]
pub mod train_denoiser;

use mfr_eeg::denoise::DenoiseError;

/// `--ola`: the overlap-add taper ([`mfr_eeg::core::OlaShape`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OlaArg {
    /// sin² taper.
    Hann,
    /// sin taper (flatter).
    Sine,
}

impl From<OlaArg> for mfr_eeg::core::OlaShape {
    fn from(a: OlaArg) -> Self {
        match a {
            OlaArg::Hann => Self::Hann,
            OlaArg::Sine => Self::Sine,
        }
    }
}

/// Exit code for a data error (bad file, unknown channel, failed write).
pub const EXIT_DATA: u8 = 1;
/// Exit code for a usage error (bad command line).
pub const EXIT_USAGE: u8 = 2;

/// Appends one formatted line to a `String` (output is collected, then written once by
/// [`write_stdout`]).
macro_rules! outln {
    ($o:expr) => {
        $o.push('\n')
    };
    ($o:expr, $($t:tt)*) => {{
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = writeln!($o, $($t)*);
    }};
}
pub(crate) use outln;

/// Writes `text` to stdout. A closed pipe (`mfr-eeg inspect f.edf | head`) ends output
/// quietly instead of panicking like `println!` would.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// A command-line problem found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A run stopped by SIGINT or SIGTERM (exit code 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted; outputs not finished were not written")]
pub struct Interrupted;

/// Exit code for a run stopped by a signal (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The error and its causes joined by ": ", each cause left out when the message before it
/// already ends with it (the library's errors name the file and then say why, and keep the
/// underlying error as their source too).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// 2 for usage errors (anywhere in the chain), 130 for interrupted runs, 1 for everything
/// else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let interrupted = e.chain().any(|c| {
        c.downcast_ref::<Interrupted>().is_some()
            || matches!(
                c.downcast_ref::<DenoiseError>(),
                Some(DenoiseError::Interrupted { .. })
            )
    });
    if interrupted {
        return EXIT_INTERRUPTED;
    }
    let usage = e.chain().any(|c| {
        c.downcast_ref::<UsageError>().is_some()
            || matches!(
                c.downcast_ref::<mfr_eeg::denoise::many::ManyError>(),
                Some(mfr_eeg::denoise::many::ManyError::Glob { .. })
            )
            || matches!(
                c.downcast_ref::<DenoiseError>(),
                Some(DenoiseError::Options(_))
            )
    });
    if usage { EXIT_USAGE } else { EXIT_DATA }
}

/// Parses `LO,HI` (Hz) for `--bandpass`.
pub fn parse_band(s: &str) -> Result<(f64, f64), String> {
    let (lo, hi) = s
        .split_once(',')
        .ok_or_else(|| format!("expected LO,HI in Hz (e.g. 1,40), got {s:?}"))?;
    let num = |t: &str| {
        t.trim()
            .parse::<f64>()
            .map_err(|_| format!("{t:?} is not a number"))
    };
    let (lo, hi) = (num(lo)?, num(hi)?);
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo < hi) {
        return Err(format!("need 0 < LO < HI, got {lo},{hi}"));
    }
    Ok((lo, hi))
}

/// Parses `--notch`: 50 or 60 (Hz).
pub fn parse_notch(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches("Hz").trim() {
        "50" => Ok(50.0),
        "60" => Ok(60.0),
        _ => Err(format!(
            "the power-line frequency is 50 or 60 (Hz), got {s:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone (os error 2)");
        let e = anyhow::Error::new(mfr_eeg::eval::EvalError::Io {
            path: "/data/x.edf".into(),
            source: io(),
        });
        assert_eq!(error_text(&e), "/data/x.edf: gone (os error 2)");
        // A context that does not hold its cause keeps it.
        let e = anyhow::Error::new(io()).context("cannot write to stdout");
        assert_eq!(error_text(&e), "cannot write to stdout: gone (os error 2)");
    }
}
