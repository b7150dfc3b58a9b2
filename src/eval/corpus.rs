//! The benchmark corpus: clean segments from every source, split once, plus the windows
//! built from each split (training pairs in the model's normalised domain, validation and
//! test windows in EEGdenoiseNet's z-scored domain).
//!
//! Key types: [`CorpusConfig`] (everything that fixes the data) and [`Corpus`].

use super::EvalError;
use super::data::{
    ArtifactKind, ArtifactSource, Recording, SelectionReport, SelectionRule, SnrPlan, Splits,
    Window, make_windows, model_segments, recording_segments, split_segments,
};
use super::eegdenoisenet::{EegDenoiseNet, split_bank};
use crate::core::Normalisation;
use crate::rng::Rng;

/// What fixes the corpus; two equal configs give identical corpora.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CorpusConfig {
    /// Sample rate of all data (Hz).
    pub fs: f64,
    /// Source segment length in samples (2 s, as EEGdenoiseNet epochs).
    pub seg_len: usize,
    /// Physiological-model segments added to the real ones.
    pub n_model_segments: usize,
    /// Mains frequency notched out of real recordings.
    pub line_hz: f64,
    /// Seed of the split and of every artifact draw.
    pub seed: u64,
    /// Fractions of groups for (train, validation); test gets the rest.
    pub fractions: (f64, f64),
}

impl CorpusConfig {
    /// The default corpus at `fs`: 2 s segments, 600 model segments, 60 Hz mains (the
    /// shipped recording is from the US), seed 2026, 70/15/15 split.
    pub fn at_rate(fs: f64) -> Self {
        Self {
            fs,
            seg_len: (2.0 * fs).round() as usize,
            n_model_segments: 600,
            line_hz: 60.0,
            seed: 2026,
            fractions: (0.7, 0.15),
        }
    }
}

/// Recorded artifact epochs per split (EEGdenoiseNet), when available.
#[derive(Clone, Debug, Default)]
pub struct ArtifactBanks {
    /// EOG epochs for (train, val, test).
    pub eog: [Vec<Vec<f32>>; 3],
    /// EMG epochs for (train, val, test).
    pub emg: [Vec<Vec<f32>>; 3],
    /// Use the generator for a kind whose bank is empty in a split (recorded EMG but no
    /// recorded EOG, say); when `false` an empty bank is an error.
    pub generated_when_empty: bool,
}

/// Clean segments split three ways, with their provenance.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The configuration that built it.
    pub config: CorpusConfig,
    /// The splits.
    pub splits: Splits,
    /// Per recording: name and what the low-artifact rule kept.
    pub selection: Vec<(String, SelectionReport)>,
    /// Recorded artifacts (EEGdenoiseNet) or `None` for generated ones.
    pub banks: Option<ArtifactBanks>,
}

/// Which split to draw from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Training.
    Train,
    /// Validation.
    Val,
    /// Test.
    Test,
}

impl Split {
    fn index(self) -> usize {
        self as usize
    }

    /// All three, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// Lower-case name (`train`, `val`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Parses `train`, `val`/`validation` or `test`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "train" => Some(Split::Train),
            "val" | "validation" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

impl Corpus {
    /// Builds the corpus from real `recordings` (groups: one per recording time span) plus
    /// `config.n_model_segments` physiological-model segments (one group each).
    pub fn build(config: CorpusConfig, recordings: &[Recording]) -> Result<Self, EvalError> {
        let mut segs = Vec::new();
        let mut selection = Vec::new();
        for (r, rec) in recordings.iter().enumerate() {
            // Group ids: recording r owns [r << 32, (r + 1) << 32); model segments sit above.
            let (s, rep) = recording_segments(
                rec,
                config.fs,
                config.seg_len,
                config.line_hz,
                SelectionRule::default(),
                (r as u64) << 32,
            )?;
            segs.extend(s);
            selection.push((rec.name.clone(), rep));
        }
        segs.extend(model_segments(
            config.seed,
            config.n_model_segments,
            config.seg_len,
            config.fs,
            u64::MAX / 2,
        ));
        if segs.is_empty() {
            return Err(EvalError::Invalid(
                "no clean segments: give a recording or model segments".into(),
            ));
        }
        let splits = split_segments(segs, config.fractions, config.seed);
        Ok(Self {
            config,
            splits,
            selection,
            banks: None,
        })
    }

    /// The corpus of EEGdenoiseNet's own files: their clean EEG epochs, and their EOG/EMG
    /// epochs as artifact banks split with the same fractions (no epoch in two splits).
    pub fn from_eegdenoisenet(config: CorpusConfig, d: &EegDenoiseNet) -> Result<Self, EvalError> {
        if (config.fs - super::eegdenoisenet::FS).abs() > 1e-9
            || config.seg_len != super::eegdenoisenet::EPOCH_LEN
        {
            return Err(EvalError::Invalid(
                "EEGdenoiseNet data is 2 s epochs at 256 Hz".into(),
            ));
        }
        let splits = split_segments(d.clean_segments(0), config.fractions, config.seed);
        let banks = ArtifactBanks {
            eog: split_bank(&d.eog, config.fractions, config.seed),
            emg: split_bank(&d.emg, config.fractions, config.seed ^ 1),
            generated_when_empty: false,
        };
        Ok(Self {
            config,
            splits,
            selection: Vec::new(),
            banks: Some(banks),
        })
    }

    /// Segments of one split.
    pub fn segments(&self, split: Split) -> &[super::data::Segment] {
        match split {
            Split::Train => &self.splits.train,
            Split::Val => &self.splits.val,
            Split::Test => &self.splits.test,
        }
    }

    /// Where `kind`'s artifacts for `split` come from: the recorded bank when the corpus has
    /// one with epochs for that split, else the generator.
    pub fn source(&self, split: Split, kind: ArtifactKind) -> ArtifactSource<'_> {
        let (bank, fallback) = match (&self.banks, kind) {
            (Some(b), ArtifactKind::Eog) => (Some(&b.eog[split.index()]), b.generated_when_empty),
            (Some(b), ArtifactKind::Emg) => (Some(&b.emg[split.index()]), b.generated_when_empty),
            _ => (None, true),
        };
        match bank {
            Some(epochs) if !(epochs.is_empty() && fallback) => ArtifactSource::Bank(epochs),
            _ => ArtifactSource::Generated,
        }
    }

    /// Test-protocol windows: every segment of `split` at each of the kind's 10 fixed SNR
    /// levels, `win_len` samples (the whole 2 s segment when equal to `seg_len`).
    pub fn level_windows(
        &self,
        split: Split,
        kind: ArtifactKind,
        win_len: usize,
        max_segments: usize,
    ) -> Result<Vec<Window>, EvalError> {
        self.windows_at(
            split,
            kind,
            &kind.test_snr_levels_db(),
            win_len,
            max_segments,
            0x7E57,
        )
    }

    /// Artifact-free windows of `split`: one per segment (at most `max_segments`), `win_len`
    /// samples, z-scored like the level windows (input and target equal). Their `kind` is
    /// [`ArtifactKind::Eog`] at +infinity dB.
    pub fn clean_windows(
        &self,
        split: Split,
        win_len: usize,
        max_segments: usize,
    ) -> Result<Vec<Window>, EvalError> {
        self.windows_at(
            split,
            ArtifactKind::Eog,
            &[f64::INFINITY],
            win_len,
            max_segments,
            0xC1EA,
        )
    }

    /// One window per (segment, level) of the first `max_segments` segments of `split`, with
    /// `kind`'s artifact from that split's source, seeded by `salt` and the split.
    fn windows_at(
        &self,
        split: Split,
        kind: ArtifactKind,
        levels: &[f64],
        win_len: usize,
        max_segments: usize,
        salt: u64,
    ) -> Result<Vec<Window>, EvalError> {
        let segs = self.segments(split);
        let segs = &segs[..segs.len().min(max_segments)];
        make_windows(
            segs,
            kind,
            self.source(split, kind),
            &SnrPlan::Levels(levels.to_vec()),
            win_len,
            self.config.fs,
            self.config.seed ^ (salt + split.index() as u64),
        )
    }

    /// Training pairs for a denoiser of width `d_in`: `per_segment` random crops per segment
    /// of `split`, each mixed with one artifact whose kind is drawn from `mix` (weights) at an
    /// SNR uniform in that kind's range, then normalised exactly as the core does at
    /// inference ([`Normalisation::normalise_pair`] with the noisy window's statistics). Returns
    /// (inputs, targets), row-major `[n, d_in]`, in a seeded random order.
    ///
    /// The artifact is mixed into `mix_len >= d_in` samples at the drawn SNR and a random
    /// `d_in` window is then cut from the pair. With `mix_len == d_in` every window holds its
    /// SNR exactly and its clean part has zero mean; with `mix_len` = the 2 s segment (the
    /// EEGdenoiseNet convention the benchmark tests on), windows see what a 1 s model sees
    /// when it slides over a 2 s test segment: local SNRs spread around the segment's (a blink
    /// in one half) and clean windows with their own offset.
    ///
    /// A share `clean_fraction` of the windows (drawn per window) gets no artifact, so the
    /// model also learns to pass artifact-free EEG through, as most of a real recording is;
    /// 0 keeps every draw as it was before the option existed.
    #[allow(clippy::too_many_arguments)]
    pub fn training_pairs(
        &self,
        split: Split,
        d_in: usize,
        mix_len: usize,
        per_segment: usize,
        mix: &[(ArtifactKind, f64)],
        clean_fraction: f64,
        normalisation: Normalisation,
        seed: u64,
    ) -> Result<(Vec<f32>, Vec<f32>), EvalError> {
        let total: f64 = mix.iter().map(|m| m.1).sum();
        if mix.is_empty() || total <= 0.0 {
            return Err(EvalError::Invalid("empty artifact mix".into()));
        }
        if !(0.0..=1.0).contains(&clean_fraction) {
            return Err(EvalError::Invalid(format!(
                "clean fraction {clean_fraction} is not in [0, 1]"
            )));
        }
        if mix_len < d_in {
            return Err(EvalError::Invalid(format!(
                "mix length {mix_len} is shorter than the window {d_in}"
            )));
        }
        let mut rng = Rng::derive(seed, 0x7EA1 + split.index() as u64);
        let mut windows = Vec::new();
        for (s, seg) in self.segments(split).iter().enumerate() {
            for j in 0..per_segment {
                let mut u = rng.uniform(0.0, total);
                let kind = mix
                    .iter()
                    .find(|m| {
                        u -= m.1;
                        u < 0.0
                    })
                    .map_or(mix[0].0, |m| m.0);
                let (lo, hi) = kind.snr_range_db();
                let plan = if clean_fraction > 0.0 && rng.uniform(0.0, 1.0) < clean_fraction {
                    SnrPlan::Levels(vec![f64::INFINITY])
                } else {
                    SnrPlan::Uniform {
                        lo,
                        hi,
                        per_segment: 1,
                    }
                };
                let wseed = rng.next_u64() ^ ((s as u64) << 20) ^ j as u64;
                let mut w = make_windows(
                    std::slice::from_ref(seg),
                    kind,
                    self.source(split, kind),
                    &plan,
                    mix_len,
                    self.config.fs,
                    wseed,
                )?;
                if mix_len > d_in {
                    // A stream of its own, so mix_len == d_in keeps the historical draws.
                    let mut crop_rng = Rng::derive(wseed, 0xC209);
                    for x in &mut w {
                        let off = crop_rng.below((mix_len - d_in + 1) as u64) as usize;
                        x.noisy.copy_within(off..off + d_in, 0);
                        x.noisy.truncate(d_in);
                        x.clean.copy_within(off..off + d_in, 0);
                        x.clean.truncate(d_in);
                    }
                }
                windows.extend(w);
            }
        }
        rng.shuffle(&mut windows);
        let mut inputs = Vec::with_capacity(windows.len() * d_in);
        let mut targets = Vec::with_capacity(windows.len() * d_in);
        for w in &mut windows {
            normalisation.normalise_pair(&mut w.noisy, &mut w.clean);
            inputs.extend_from_slice(&w.noisy);
            targets.extend_from_slice(&w.clean);
        }
        Ok((inputs, targets))
    }
}

/// The training mixture used for shipped models: mostly EOG and EMG (the benchmark's
/// artifacts), with line noise, pops, drift and mixtures so the model handles them too.
pub const DEFAULT_MIX: [(ArtifactKind, f64); 6] = [
    (ArtifactKind::Eog, 0.3),
    (ArtifactKind::Emg, 0.3),
    (ArtifactKind::Mixed, 0.16),
    (ArtifactKind::Line, 0.08),
    (ArtifactKind::Pop, 0.08),
    (ArtifactKind::Drift, 0.08),
];
