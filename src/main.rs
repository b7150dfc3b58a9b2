//! `mfr-eeg`: the command-line interface. Deliberately thin: it parses arguments (clap), calls
//! library code, prints results and maps errors to exit codes (0 ok, 2 usage error, 1 data
//! error). Each subcommand's arguments and `run` live with their area.
//!
//! Adding a subcommand: a `src/cli/<area>.rs` with the `clap::Args` struct and a `run(args)`
//! that turns the arguments into the library's options, calls the library and prints its
//! report; then one variant in [`Command`] and one arm in [`run`].

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// EEG artifact removal with sparse autoencoders.
#[derive(Debug, Parser)]
#[command(name = "mfr-eeg", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Denoise the EEG channels of an EDF/EDF+/BDF file into a new file.
    Denoise(cli::denoise::DenoiseArgs),
    /// Eye-artifact leakage and blink-free change on real multi-channel recordings, per method.
    EogCheck(cli::eog_check::EogCheckArgs),
    /// Print a recording's header, channels, rates, duration and annotation count.
    Inspect(cli::inspect::InspectArgs),
    /// Draw one channel's raw and denoised traces and their spectra to a PNG.
    Plot(cli::plot::PlotArgs),
    /// Quantise an f32 model to int8 (per-latent scales) after checking its quality loss.
    Quantize(cli::quantize::QuantizeArgs),
    /// Fit a model's correction gate (how much of a small correction to apply) on validation
    /// windows and write the model with it.
    FitBlend(cli::fit_blend::FitBlendArgs),
    /// Benchmark quality vs band-pass and wavelet, MFR vs no MFR, speed and model sizes.
    Bench(cli::bench::BenchArgs),
    /// Train N TopK SAEs (optionally with Mutual Feature Regularization) and export a model.
    #[cfg(feature = "train")]
    Train(cli::train::TrainArgs),
    /// The MFR paper's known-feature experiment: an alpha sweep over seeds, printed as a table.
    #[cfg(feature = "train")]
    SynthFeatures(cli::synth_features::SynthArgs),
    /// Train denoising SAEs on the benchmark corpus (alpha sweep over seeds), export to models/.
    #[cfg(feature = "train")]
    TrainDenoiser(cli::train_denoiser::TrainDenoiserArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The CLI is a training process too: let the allocator keep its buffers between steps.
    #[cfg(feature = "train")]
    mfr_eeg::train::tune_allocator();
    match cli.command {
        Command::Denoise(a) => cli::denoise::run(a),
        Command::EogCheck(a) => cli::eog_check::run(a),
        Command::Inspect(a) => cli::inspect::run(a),
        Command::Plot(a) => cli::plot::run(a),
        Command::Quantize(a) => cli::quantize::run(a),
        Command::FitBlend(a) => cli::fit_blend::run(a),
        Command::Bench(a) => cli::bench::run(a),
        #[cfg(feature = "train")]
        Command::Train(a) => cli::train::run(a),
        #[cfg(feature = "train")]
        Command::SynthFeatures(a) => cli::synth_features::run(a),
        #[cfg(feature = "train")]
        Command::TrainDenoiser(a) => cli::train_denoiser::run(a),
    }
}

fn main() -> ExitCode {
    let parsed = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version also arrive here; they are not errors.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(cli::EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(parsed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfr-eeg: error: {}", cli::error_text(&e));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
