//! `mfr-eeg bench`: arguments, and the line saying where the report went.

use std::path::PathBuf;

use mfr_eeg::eval::bench::{BenchOptions, run_report};

use super::{outln, write_stdout};

/// Arguments of `mfr-eeg bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Small sizes for CI (< 2 minutes on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Output directory.
    #[arg(long, default_value_os_t = BenchOptions::default().out)]
    pub out: PathBuf,
    /// Models to benchmark (missing files are skipped with a note).
    #[arg(long, default_values_os_t = BenchOptions::default().model)]
    pub model: Vec<PathBuf>,
    /// Real recordings for clean EEG.
    #[arg(long, default_values_os_t = BenchOptions::default().edf)]
    pub edf: Vec<PathBuf>,
    /// Use EEGdenoiseNet's own files from this directory (256 Hz models only).
    #[arg(long)]
    pub eegdenoisenet: Option<PathBuf>,
    /// Seeds per arm in the MFR comparison.
    #[arg(long, default_value_t = BenchOptions::default().seeds)]
    pub seeds: u64,
    /// Skip training (no MFR comparison, no training throughput).
    #[arg(long)]
    pub no_train: bool,
    /// A real-data set (`scripts/real_data.py` builds it: EEG and EMG recordings, each in one
    /// split): adds quality per held-out recording, with recorded EMG.
    #[arg(long, value_name = "DIR")]
    pub real: Option<PathBuf>,
    /// Write the 256 Hz train/validation/test pairs as .npy plus export.json (splits,
    /// recordings, SNRs) into DIR, so an outside model can use exactly the same data.
    #[arg(long, value_name = "DIR")]
    pub export_data: Option<PathBuf>,
    /// Train the peers for N steps (batch 128, the default SAE's loss and schedule; feature
    /// `train`) and score them beside the SAE; 0 = off.
    #[arg(long, default_value_t = 0)]
    pub cnn_steps: usize,
    /// Which peers `--cnn-steps` trains: `unet` (a 5.5 K-parameter U-Net), `sae` (the default
    /// SAE's shape trained by the same loop), `conv-sae` (that SAE behind a small convolutional
    /// front end, 8 channels x 2 layers) or `conv-sae-WxD` (W channels, D layers).
    #[arg(long, value_delimiter = ',', default_value = "unet")]
    pub peers: Vec<String>,
    /// Which pairs the U-Net trains on: `default` (the main 256 Hz corpus, the shipped default
    /// model's pairs) or `real` (that corpus plus the `--real` training recordings and EMG).
    #[arg(long, default_value = "default", value_parser = ["default", "real"])]
    pub cnn_data: String,
    /// At most this many test segments per artifact kind (and per real recording); default:
    /// all (12 and 6 with `--quick`).
    #[arg(long)]
    pub test_segments: Option<usize>,
    /// Real multi-channel recordings with blinks scored as `mfr-eeg eog-check` does, with the
    /// first model (`--quick`: those up to 60 s).
    #[arg(long, value_name = "EDF", num_args = 1.., default_values_os_t = BenchOptions::default().eye)]
    pub eye: Vec<PathBuf>,
}

/// Runs the bench and prints where the report went.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let opts = BenchOptions {
        quick: a.quick,
        out: a.out,
        model: a.model,
        edf: a.edf,
        eegdenoisenet: a.eegdenoisenet,
        seeds: a.seeds,
        no_train: a.no_train,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        real: a.real,
        export_data: a.export_data,
        cnn_steps: a.cnn_steps,
        peers: a.peers,
        cnn_data: a.cnn_data,
        test_segments: a.test_segments,
        eye: a.eye,
    };
    let r = run_report(&opts)?;
    let mut out = String::new();
    outln!(
        out,
        "wrote {} ({} quality rows, {} figures)",
        opts.out.join("report.md").display(),
        r.quality.len(),
        r.figures.len()
    );
    write_stdout(&out)
}
