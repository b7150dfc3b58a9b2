//! `mfr-eeg train-denoiser`: arguments, and progress lines on stderr.

use std::path::PathBuf;

use mfr_eeg::core::FrontShape;
use mfr_eeg::eval::train_denoiser::{DenoiserEvent, TrainDenoiserOptions, run as train_denoiser};
use mfr_eeg::train::TrainEvent;

use super::OlaArg;
use super::train::{BackendArg, GradPathArg, NormArg, SelectByArg, TrainBar};

fn opts() -> TrainDenoiserOptions {
    TrainDenoiserOptions::default()
}

/// Arguments of `mfr-eeg train-denoiser`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainDenoiserArgs {
    /// Output model file (safetensors); the card goes beside it as `.md`, all runs as `.runs.json`.
    #[arg(long, default_value_os_t = opts().out)]
    pub out: PathBuf,
    /// Sample rate of the model (Hz); recordings are resampled to it.
    #[arg(long, default_value_t = opts().sample_rate)]
    pub sample_rate: f64,
    /// Window length in samples (default: one second).
    #[arg(long)]
    pub d_in: Option<usize>,
    /// Latents per SAE.
    #[arg(long, default_value_t = opts().d_sae)]
    pub d_sae: usize,
    /// Latents kept per window.
    #[arg(long, default_value_t = opts().k)]
    pub k: usize,
    /// Hop candidates tried on validation (samples; default d_in/2 and d_in/4).
    #[arg(long, value_delimiter = ',')]
    pub hops: Vec<usize>,
    /// Overlap-add taper the hops are scored with; recorded in the model, so `denoise` and
    /// the streaming core use it.
    #[arg(long, value_enum, default_value_t = OlaArg::Hann, value_name = "hann|sine")]
    pub ola: OlaArg,
    /// SAEs trained side by side (MFR needs >= 2).
    #[arg(long, default_value_t = opts().n_saes)]
    pub n_saes: usize,
    /// MFR alphas to sweep (log scale, include 0); without it, `--mfr-alpha` alone.
    #[arg(long, value_delimiter = ',')]
    pub sweep_alpha: Vec<f64>,
    /// MFR alpha when not sweeping.
    #[arg(long, default_value_t = opts().mfr_alpha)]
    pub mfr_alpha: f64,
    /// Training seeds (each arm runs every seed).
    #[arg(long, value_delimiter = ',', default_values_t = opts().seeds)]
    pub seeds: Vec<u64>,
    /// Optimiser steps per run.
    #[arg(long, default_value_t = opts().steps)]
    pub steps: usize,
    /// Windows per batch.
    #[arg(long, default_value_t = opts().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = opts().lr)]
    pub lr: f64,
    /// Training windows cut from each training segment (fresh artifact each).
    #[arg(long, default_value_t = opts().per_segment)]
    pub per_segment: usize,
    /// Validation windows per validation segment (default: a quarter of `--per-segment`).
    /// Fix it when comparing runs with different `--per-segment`, so they share one
    /// validation set.
    #[arg(long)]
    pub val_per_segment: Option<usize>,
    /// Samples the artifact is mixed into at the drawn SNR before a `d_in` window is cut
    /// from them (default `d_in`: each window holds its SNR exactly). The benchmark defines
    /// SNR over 2 s segments, as EEGdenoiseNet does; a 1 s model sliding over them sees local
    /// SNRs spread around that, which `--mix-len` = two seconds of samples trains for.
    #[arg(long)]
    pub mix_len: Option<usize>,
    /// Fit a gated linear path beside each trained SAE (an FIR of `--skip-taps` taps,
    /// applied in windows whose high-frequency ratio is at most the gate) for each of these
    /// gates, and keep the gate the validation windows prefer, or none.
    #[arg(long, value_delimiter = ',')]
    pub skip_gates: Vec<f32>,
    /// Taps of the linear path (odd).
    #[arg(long, default_value_t = opts().skip_taps)]
    pub skip_taps: usize,
    /// Choose the shipped run by validation loss (1 s windows, all artifact kinds) or by the
    /// RRMSE_t of the validation EOG+EMG level windows through the model's overlap-add (what
    /// the benchmark measures; needs `--skip-gates`).
    #[arg(long, value_enum, default_value_t = opts().select_by.into())]
    pub select_by: SelectByArg,
    /// Validate every this many steps and keep each SAE's best weights (early stopping;
    /// the final weights compete too).
    #[arg(long)]
    pub select_every: Option<usize>,
    /// Real recordings for clean EEG (EDF/EDF+/BDF).
    #[arg(long, default_values_os_t = opts().edf)]
    pub edf: Vec<PathBuf>,
    /// Physiological-model segments added to the real ones.
    #[arg(long, default_value_t = opts().model_segments)]
    pub model_segments: usize,
    /// Use EEGdenoiseNet's own files from this directory instead of the generator.
    #[arg(long)]
    pub eegdenoisenet: Option<PathBuf>,
    /// A real-data set (`scripts/real_data.py`): its EEG recordings join the splits whole
    /// (train, validation or test as its manifest says) and its EMG recordings become the
    /// EMG artifacts of each split.
    #[arg(long, value_name = "DIR")]
    pub real: Option<PathBuf>,
    /// Seed of the corpus (split and artifacts), independent of the training seeds.
    #[arg(long, default_value_t = opts().data_seed)]
    pub data_seed: u64,
    /// Train on the relative (per-window) squared error instead of plain MSE, so low-SNR
    /// windows count as much as clean ones (what RRMSE_t measures).
    #[arg(long)]
    pub relative_loss: bool,
    /// Energy floor of the relative loss (larger: closer to plain MSE).
    #[arg(long, default_value_t = opts().relative_eps)]
    pub relative_eps: f64,
    /// Train residual SAEs: each predicts the correction to its input, which an always-open
    /// linear path (the identity, or an FIR fitted on every window) carries to the output.
    #[arg(long)]
    pub residual: bool,
    /// With `--residual`: only windows whose high-frequency ratio sum(dx^2)/sum(x^2) is at
    /// most this are corrections (the identity path opens there); the others are rebuilt
    /// whole, as by a plain SAE.
    #[arg(long, requires = "residual")]
    pub residual_gate: Option<f32>,
    /// Share of training and validation pairs with no artifact (target = input), so the
    /// model learns to pass clean EEG through.
    #[arg(long, default_value_t = opts().clean_fraction)]
    pub clean_fraction: f64,
    /// Per-window normalisation (recorded in the model).
    #[arg(long, value_enum, default_value_t = opts().normalisation.into())]
    pub normalisation: NormArg,
    /// Training backend.
    #[arg(long, value_enum, default_value_t = opts().backend.into())]
    pub backend: BackendArg,
    /// Gradient computation (default: sparse on flex/ndarray, autodiff on wgpu). Models
    /// trained before the sparse path existed regenerate with `--grad-path autodiff`.
    #[arg(long, value_enum)]
    pub grad_path: Option<GradPathArg>,
    /// Also quantise to int8 (the file at `--out` is then the int8 model).
    #[arg(long)]
    pub int8: bool,
    /// Put a convolutional front end before the encoder, `{width}x{depth}k{kernel}` (e.g.
    /// `16x3k7`): `depth` hidden conv layers of `width` channels, trained end to end with the
    /// SAE (one SAE: needs `--n-saes 1 --mfr-alpha 0 --relative-loss`).
    #[arg(long, value_parser = parse_front, value_name = "WxDkK")]
    pub front: Option<FrontShape>,
    /// With `--front`: weight each sample's error in the loss by the `--ola` taper, so a
    /// window's edges, which the overlap-add barely uses, count little.
    #[arg(long)]
    pub loss_taper: bool,
    /// With `--front`: start the SAE from this model file's SAE (same window and d_sae; its
    /// front, if any, is not used). The front starts at zero, so training starts from that
    /// model: a front added to a trained SAE.
    #[arg(long, value_name = "MODEL")]
    pub init_sae: Option<PathBuf>,
    /// With `--front`: the SAE's own peak learning rate, on `--lr`'s schedule (`--lr` then
    /// drives the front alone), e.g. so an `--init-sae` SAE moves slower than its new front.
    #[arg(long, value_name = "LR")]
    pub sae_lr: Option<f64>,
}

fn parse_front(s: &str) -> Result<FrontShape, String> {
    FrontShape::parse(s).ok_or_else(|| {
        format!(
            "`{s}`: expected WIDTHxDEPTHkKERNEL (e.g. 16x3k7): width 1..={}, depth 1..={}, odd kernel up to {}",
            mfr_eeg::core::MAX_FRONT_WIDTH,
            mfr_eeg::core::MAX_FRONT_DEPTH,
            mfr_eeg::core::MAX_FRONT_KERNEL
        )
    })
}

impl From<TrainDenoiserArgs> for TrainDenoiserOptions {
    fn from(a: TrainDenoiserArgs) -> Self {
        Self {
            out: a.out,
            sample_rate: a.sample_rate,
            d_in: a.d_in,
            d_sae: a.d_sae,
            k: a.k,
            hops: a.hops,
            ola: a.ola.into(),
            n_saes: a.n_saes,
            sweep_alpha: a.sweep_alpha,
            mfr_alpha: a.mfr_alpha,
            seeds: a.seeds,
            steps: a.steps,
            batch_size: a.batch_size,
            lr: a.lr,
            per_segment: a.per_segment,
            val_per_segment: a.val_per_segment,
            mix_len: a.mix_len,
            skip_gates: a.skip_gates,
            skip_taps: a.skip_taps,
            select_by: a.select_by.into(),
            select_every: a.select_every,
            edf: a.edf,
            model_segments: a.model_segments,
            eegdenoisenet: a.eegdenoisenet,
            real: a.real,
            data_seed: a.data_seed,
            relative_loss: a.relative_loss,
            residual: a.residual,
            residual_gate: a.residual_gate,
            clean_fraction: a.clean_fraction,
            relative_eps: a.relative_eps,
            normalisation: a.normalisation.into(),
            backend: a.backend.into(),
            grad_path: a.grad_path.map(Into::into),
            int8: a.int8,
            front: a.front,
            loss_taper: a.loss_taper,
            init_sae: a.init_sae,
            sae_lr: a.sae_lr,
        }
    }
}

/// One progress line on stderr per event, and a bar over each run's steps when stderr is a
/// terminal.
fn show(bar: &mut Option<TrainBar>, e: DenoiserEvent<'_>) {
    if let DenoiserEvent::Train(t) = e {
        if matches!(t, TrainEvent::Start { .. }) {
            *bar = Some(TrainBar::default());
        }
        if let Some(b) = bar.as_mut() {
            b.event(t);
        }
        return;
    }
    match e {
        DenoiserEvent::BuildingCorpus { fs } => eprintln!("building corpus at {fs} Hz ..."),
        DenoiserEvent::CorpusReady {
            segments: [train, val, test],
            windows,
            d_in,
        } => eprintln!(
            "corpus: {train} train / {val} val / {test} test segments; {windows} training windows of {d_in}"
        ),
        DenoiserEvent::Training { alpha, seed } => {
            eprintln!("training alpha {alpha} seed {seed} ...");
        }
        DenoiserEvent::Gate {
            gate,
            rrmse_t,
            best_before,
        } => eprintln!(
            "  linear path gate {gate}: validation windows RRMSE_t {rrmse_t:.4} (best before: {best_before:.4})"
        ),
        DenoiserEvent::Trained(r) => {
            for step in &r.result.dead_at {
                eprintln!(
                    "  the SAE went dead at step {step} (fewer than 1/{} of its TopK slots fired for {} steps): restarted from a fresh initialisation",
                    mfr_eeg::eval::cnn::STARVED_FRACTION,
                    mfr_eeg::eval::cnn::DEAD_SAE_STEPS
                );
            }
            eprintln!(
                "  val loss {:.5}, validation windows (EOG+EMG levels) RRMSE_t {:.4}, clean {:.4}, test RRMSE_t {:.4}, CC {:.4}, clean {:.4}, hop {}, {:.1} s",
                r.result.val_loss,
                r.val_windows_rrmse_t,
                r.result.val_clean_rrmse_t.unwrap_or(f64::NAN),
                r.result.test_rrmse_t,
                r.result.test_cc,
                r.result.test_clean_rrmse_t.unwrap_or(f64::NAN),
                r.meta.hop,
                r.result.train_seconds
            )
        }
        DenoiserEvent::ModelWritten {
            path,
            bytes,
            fnv1a64,
        } => eprintln!(
            "wrote {} ({bytes} bytes, fnv1a64 {fnv1a64:016x})",
            path.display()
        ),
        _ => {}
    }
}

/// Trains the sweep, ships the chosen run and writes its card.
pub fn run(a: TrainDenoiserArgs) -> anyhow::Result<()> {
    let mut bar = None;
    let report = train_denoiser(&a.into(), &mut |e| show(&mut bar, e))?;
    eprintln!("wrote {}", report.card.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use mfr_eeg::eval::train_denoiser::regen_command;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainDenoiserArgs,
    }

    /// Each shipped card's "regenerate" command parses as `train-denoiser` arguments, and
    /// printing those options back gives the same line: nothing the run used (the real-data
    /// set, say) is missing from it.
    #[test]
    fn shipped_cards_regenerate_commands_round_trip() {
        for card in [
            "models/general-256hz.md",
            "models/general-front-256hz.md",
            "models/fast-256hz.md",
            "models/tiny-128hz-int8.md",
        ] {
            let text = std::fs::read_to_string(card).unwrap();
            let (_, rest) = text.split_once("## Regenerate bit for bit").unwrap();
            let line = rest
                .lines()
                .find(|l| l.starts_with("cargo run"))
                .unwrap_or_else(|| panic!("{card}: no command"));
            let args = line.split_once(" train-denoiser ").unwrap().1;
            let cli = Cli::try_parse_from(
                std::iter::once("train-denoiser").chain(args.split_whitespace()),
            )
            .unwrap_or_else(|e| panic!("{card}: {e}"));
            let o = TrainDenoiserOptions::from(cli.args);
            let back = regen_command(&o, o.mfr_alpha, o.seeds[0]).unwrap();
            assert_eq!(back, line, "{card}");
        }
    }

    /// `--front` trains one SAE by the peer loop: settings it cannot honour are refused up
    /// front, and malformed shapes never reach the trainer.
    #[test]
    fn front_needs_one_sae_and_a_valid_shape() {
        let parse = |extra: &[&str]| {
            Cli::try_parse_from(
                ["train-denoiser", "--out", "/tmp/x.safetensors"]
                    .into_iter()
                    .chain(extra.iter().copied()),
            )
            .map(|c| TrainDenoiserOptions::from(c.args))
        };
        const FRONT: [&str; 7] = [
            "--front",
            "16x3k7",
            "--n-saes",
            "1",
            "--mfr-alpha",
            "0",
            "--relative-loss",
        ];
        let ok = parse(&FRONT).unwrap();
        assert_eq!(ok.front.map(|f| f.to_string()).as_deref(), Some("16x3k7"));
        assert!(
            regen_command(&ok, 0.0, 0)
                .unwrap()
                .contains(" --front 16x3k7")
        );
        let two = parse(&[
            "--front",
            "16x3k7",
            "--n-saes",
            "2",
            "--mfr-alpha",
            "0",
            "--relative-loss",
        ])
        .unwrap();
        let e = regen_command(&two, 0.0, 0).unwrap_err().to_string();
        assert!(e.contains("--front 16x3k7 trains one SAE"), "{e}");
        for bad in ["16x3k6", "16x3", "0x3k7"] {
            assert!(parse(&["--front", bad]).is_err(), "{bad}");
        }
        // The taper-weighted loss is the front trainer's; the card's command keeps it.
        let tapered = parse(&[&FRONT[..], &["--loss-taper"]].concat()).unwrap();
        assert!(tapered.loss_taper);
        assert!(
            regen_command(&tapered, 0.0, 0)
                .unwrap()
                .contains(" --front 16x3k7 --loss-taper ")
        );
        assert!(!regen_command(&ok, 0.0, 0).unwrap().contains("--loss-taper"));
        // Without --front, each front-only option is refused with a message naming it.
        let refused = |args: &[&str], message: &str| {
            let o = parse(args).unwrap();
            let e = regen_command(&o, o.mfr_alpha, 0).unwrap_err().to_string();
            assert!(e.contains(message), "{e}");
        };
        // With it, the card's command keeps each of them.
        let kept = |args: &[&str], part: &str| {
            let o = parse(&[&FRONT[..], args].concat()).unwrap();
            let command = regen_command(&o, 0.0, 0).unwrap();
            assert!(command.contains(part), "{command}");
        };
        refused(
            &["--loss-taper"],
            "--loss-taper weights the front-end trainer's loss",
        );
        // So is the warm start, and the SAE's own learning rate, which must be usable.
        kept(
            &["--init-sae", "m.safetensors"],
            " --front 16x3k7 --init-sae m.safetensors ",
        );
        refused(
            &["--init-sae", "m.safetensors"],
            "--init-sae starts the front-end trainer's SAE",
        );
        kept(
            &["--init-sae", "m.safetensors", "--sae-lr", "0.0005"],
            " --init-sae m.safetensors --sae-lr 0.0005 ",
        );
        refused(
            &["--sae-lr", "0.0005"],
            "--sae-lr sets the front-end trainer's SAE",
        );
        let negative = parse(&[&FRONT[..], &["--sae-lr=-1"]].concat()).unwrap();
        let e = regen_command(&negative, 0.0, 0).unwrap_err().to_string();
        assert!(e.contains("--sae-lr must be finite and >= 0"), "{e}");
    }
}
