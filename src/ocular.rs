//! Multi-channel eye-artifact removal over whole recordings: finding the artifact references
//! in a montage and running the core's spatial regression ([`crate::core::RefRegression`]) on
//! a block of channels.
//!
//! References, in order of preference ([`find_references`]):
//! 1. EOG channels named with `--eog` or labelled `EOG...`, `VEOG`, `HEOG` (at most
//!    [`MAX_REFERENCES`]);
//! 2. otherwise a data-driven frontal pair: the vertical reference is the mean of the
//!    frontopolar channels (Fp1/Fpz/Fp2, or AF3/AF4/AFz/AF7/AF8 when there are none), the
//!    horizontal one `F7 - F8` (or `AF7 - AF8`, `FT7 - FT8`);
//! 3. otherwise none: the caller falls back to the single-channel model.
//!
//! Each reference is turned into an artifact waveform ([`Isolation`]): as recorded (classic
//! EOG regression), or with the SAE's view of the brain activity removed (`r - SAE(r)`): the
//! SAE passes EEG and removes blinks, so its residual is the blink alone and the regression
//! subtracts almost nothing between blinks. The regression then removes each waveform from
//! every channel with running gains. All of it is causal except the SAE's window: streamed,
//! the latency is the SAE's `d_in - 1` samples ([`Isolator::latency_s`]).
//!
//! Key types: [`ReferencePlan`], [`Reference`], [`Isolation`], [`BlockReport`], [`OcularError`].

use crate::core::{
    ArtifactGate, BlinkMwf, ChannelState, CoreError, DcBlocker, GateConfig, MwfChannel, MwfConfig,
    MwfEstimator, RefRegression, RegressionConfig, Sae, SpatialError,
};
use crate::denoise::microvolt_factor;
use crate::io::edf::{EdfError, Header, normalise_label};
use crate::io::resample::{ResampleError, Resampler};

/// Corner in Hz of the DC blocker applied to each reference before its gate.
pub const PRE_DC_CORNER_HZ: f64 = 0.02;

/// Most references one regression takes (EOG channels beyond this are an error).
pub const MAX_REFERENCES: usize = 4;

/// Vertical frontal candidates, by preference group: the first group with a channel present
/// is averaged.
const VERTICAL_GROUPS: &[&[&str]] = &[&["fp1", "fp2", "fpz"], &["af3", "af4", "afz", "af7", "af8"]];
/// Horizontal frontal pairs (left, right), by preference.
const HORIZONTAL_PAIRS: &[(&str, &str)] = &[("f7", "f8"), ("af7", "af8"), ("ft7", "ft8")];

/// Failures of the ocular stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OcularError {
    /// An `--eog` label matches no channel.
    #[error("EOG channel {label:?} not found; channels are: {}", .available.join(", "))]
    UnknownEog {
        /// The label asked for.
        label: String,
        /// The labels present.
        available: Vec<String>,
    },
    /// More reference channels than [`MAX_REFERENCES`].
    #[error("{got} EOG channels given, at most {MAX_REFERENCES} are used")]
    TooManyReferences {
        /// How many were named or found.
        got: usize,
    },
    /// Channels of one block must share a rate and a length.
    #[error("channel {index} has {got} samples, the block has {expected}")]
    Length {
        /// Index in the block (or reference list).
        index: usize,
        /// Samples expected.
        expected: usize,
        /// Samples found.
        got: usize,
    },
    /// The spatial stage (Wiener filter or regression) refused its input or settings.
    #[error("spatial stage: {0}")]
    Spatial(SpatialError),
    /// The SAE refused its input.
    #[error("inference core: {0}")]
    Core(CoreError),
    /// No resampling ratio between the channel and model rates.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// Reading reference channels failed.
    #[error(transparent)]
    Edf(#[from] EdfError),
}

impl From<SpatialError> for OcularError {
    fn from(e: SpatialError) -> Self {
        OcularError::Spatial(e)
    }
}

impl From<CoreError> for OcularError {
    fn from(e: CoreError) -> Self {
        OcularError::Core(e)
    }
}

/// Where the references come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// Recorded EOG channels.
    Eog,
    /// A frontal average (and frontal difference) of EEG channels.
    Frontal,
}

/// One artifact reference: `mean(plus) - mean(minus)` of channels (indices into the label
/// list given to [`find_references`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// How the summary names it, e.g. `EOG`, `mean(Fp1,Fp2)`, `F7-F8`.
    pub name: String,
    /// Channels averaged with a plus sign.
    pub plus: Vec<usize>,
    /// Channels averaged with a minus sign (empty for most).
    pub minus: Vec<usize>,
}

impl Reference {
    /// The reference signal from `signal(index)` (all of one length).
    pub fn signal<'a>(&self, signal: impl Fn(usize) -> &'a [f32]) -> Vec<f32> {
        let n = signal(self.plus[0]).len();
        let mut out = vec![0.0f64; n];
        let mut add = |idx: &[usize], sign: f64| {
            let w = sign / idx.len() as f64;
            for &i in idx {
                for (o, &v) in out.iter_mut().zip(signal(i)) {
                    *o += w * f64::from(v);
                }
            }
        };
        add(&self.plus, 1.0);
        if !self.minus.is_empty() {
            add(&self.minus, -1.0);
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    /// Every channel the reference reads.
    pub fn channels(&self) -> impl Iterator<Item = usize> + '_ {
        self.plus.iter().chain(self.minus.iter()).copied()
    }
}

/// The references found in a montage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencePlan {
    /// EOG or frontal.
    pub kind: ReferenceKind,
    /// One to [`MAX_REFERENCES`] references.
    pub references: Vec<Reference>,
}

impl ReferencePlan {
    /// One line for a summary, e.g. `EOG channels VEOG, HEOG` or
    /// `frontal references mean(Fp1,Fp2), F7-F8 (no EOG channel)`.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.references.iter().map(|r| r.name.as_str()).collect();
        match self.kind {
            ReferenceKind::Eog => format!("EOG channels {}", names.join(", ")),
            ReferenceKind::Frontal => {
                format!("frontal references {} (no EOG channel)", names.join(", "))
            }
        }
    }
}

/// The electrode name inside a label: `"EEG Fp1-REF"` -> `"fp1"`, `"Fp1."` -> `"fp1"`.
pub fn electrode_name(label: &str) -> String {
    let n = normalise_label(label);
    let n = n
        .strip_prefix("eeg ")
        .or_else(|| n.strip_prefix("eeg-"))
        .unwrap_or(&n)
        .trim();
    n.split(['-', ' ']).next().unwrap_or("").to_string()
}

/// Whether a label names an EOG channel (`EOG...`, `VEOG`, `HEOG`, after an optional `EEG `).
pub fn is_eog_label(label: &str) -> bool {
    let n = normalise_label(label);
    let n = n.strip_prefix("eeg ").unwrap_or(&n);
    n.starts_with("eog") || n.starts_with("veog") || n.starts_with("heog")
}

/// Finds the references among `labels` (every signal of the file, in file order; annotation
/// signals may be included, they never match). `eog` names the EOG channels explicitly
/// (matched like `--channels`: case-insensitive, padding dots ignored, or by electrode name);
/// without it, channels labelled as EOG are used, else the frontal pair. `Ok(None)`: the
/// montage has neither.
pub fn find_references(
    labels: &[String],
    eog: Option<&[String]>,
) -> Result<Option<ReferencePlan>, OcularError> {
    let norm: Vec<String> = labels.iter().map(|l| normalise_label(l)).collect();
    let names: Vec<String> = labels.iter().map(|l| electrode_name(l)).collect();
    let trimmed = |i: usize| labels[i].trim().trim_end_matches('.').to_string();
    let eog_idx: Vec<usize> = match eog {
        Some(want) => {
            let mut v = Vec::new();
            for w in want {
                let wn = normalise_label(w);
                let hit = (0..labels.len())
                    .find(|&i| !wn.is_empty() && norm[i] == wn)
                    .or_else(|| (0..labels.len()).find(|&i| !wn.is_empty() && names[i] == wn));
                match hit {
                    Some(i) if !v.contains(&i) => v.push(i),
                    Some(_) => {}
                    None => {
                        return Err(OcularError::UnknownEog {
                            label: w.clone(),
                            available: labels.iter().map(|l| l.trim().to_string()).collect(),
                        });
                    }
                }
            }
            v
        }
        None => (0..labels.len())
            .filter(|&i| is_eog_label(&labels[i]))
            .collect(),
    };
    if eog_idx.len() > MAX_REFERENCES {
        return Err(OcularError::TooManyReferences { got: eog_idx.len() });
    }
    if !eog_idx.is_empty() {
        return Ok(Some(ReferencePlan {
            kind: ReferenceKind::Eog,
            references: eog_idx
                .iter()
                .map(|&i| Reference {
                    name: trimmed(i),
                    plus: vec![i],
                    minus: Vec::new(),
                })
                .collect(),
        }));
    }
    let find = |e: &str| (0..labels.len()).find(|&i| names[i] == e);
    let mut references = Vec::new();
    for group in VERTICAL_GROUPS {
        let present: Vec<usize> = group.iter().filter_map(|e| find(e)).collect();
        if !present.is_empty() {
            let list: Vec<String> = present.iter().map(|&i| trimmed(i)).collect();
            references.push(Reference {
                name: format!("mean({})", list.join(",")),
                plus: present,
                minus: Vec::new(),
            });
            break;
        }
    }
    for (l, r) in HORIZONTAL_PAIRS {
        if let (Some(a), Some(b)) = (find(l), find(r)) {
            references.push(Reference {
                name: format!("{}-{}", trimmed(a), trimmed(b)),
                plus: vec![a],
                minus: vec![b],
            });
            break;
        }
    }
    Ok((!references.is_empty()).then_some(ReferencePlan {
        kind: ReferenceKind::Frontal,
        references,
    }))
}

/// The SAE that isolates the artifact part of a reference, at its own rate.
#[derive(Debug, Clone, Copy)]
pub struct Isolator<'m> {
    /// The validated SAE.
    pub sae: Sae<'m>,
    /// Overlap-add hop in model samples.
    pub hop: usize,
    /// The model's rate in Hz.
    pub rate_hz: f64,
}

impl<'m> Isolator<'m> {
    /// The model's SAE at its own hop and rate.
    pub fn of_model(view: &crate::model::ModelView<'m>) -> Self {
        let meta = view.meta();
        Self {
            sae: view.sae(),
            hop: meta.hop,
            rate_hz: f64::from(meta.sample_rate_hz),
        }
    }

    /// Streaming latency of the isolation, in seconds: `(d_in - 1) / rate`.
    pub fn latency_s(&self) -> f64 {
        (self.sae.d_in() - 1) as f64 / self.rate_hz
    }

    /// `r - SAE(r)` for a reference at `fs_hz` (resampled to the model's rate and back when
    /// they differ).
    pub fn residual(&self, r: &[f32], fs_hz: f64) -> Result<Vec<f32>, OcularError> {
        let den = self.denoise(r, fs_hz)?;
        Ok(r.iter().zip(den.iter()).map(|(a, b)| a - b).collect())
    }

    /// `SAE(r)`: one channel at `fs_hz` denoised offline by the single-channel model, by the
    /// batched path `denoise` uses (resampled to the model's rate and back when they differ).
    pub fn denoise(&self, r: &[f32], fs_hz: f64) -> Result<Vec<f32>, OcularError> {
        let same = (fs_hz - self.rate_hz).abs() <= 1e-9 * self.rate_hz;
        let x = if same {
            r.to_vec()
        } else {
            Resampler::from_rates(fs_hz, self.rate_hz)?.process(r)
        };
        let mut den = vec![0.0f32; x.len()];
        // The batched path, as `denoise` runs the model (the core's result up to rounding).
        let mut scratch = crate::batch::BatchScratch::default();
        crate::batch::denoise_batched_into(&self.sae, self.hop, &x, &mut den, &mut scratch)?;
        let den = if same {
            den
        } else {
            let back = Resampler::from_rates(self.rate_hz, fs_hz)?;
            let mut out = vec![0.0f32; r.len()];
            back.process_into(&den, &mut out);
            out
        };
        Ok(den)
    }
}

/// How a reference becomes the artifact waveform that is regressed out.
// One value per call, passed by copy: boxing the SAE view to shrink `Raw` would cost an
// allocation and the `Copy` callers rely on, for no memory saved.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum Isolation<'m> {
    /// The reference as recorded (classic EOG regression).
    Raw,
    /// The reference minus the SAE's denoised reference.
    Sae(Isolator<'m>),
}

/// What [`clean_block`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockReport {
    /// Final gains, `gains[c][r]`: channel `c` on reference `r`.
    pub gains: Vec<Vec<f64>>,
}

/// Removes the references' artifact waveforms from every channel of `channels` (all at
/// `fs_hz`, one length, µV), in place. `references` are the raw reference signals of the same
/// length (see [`Reference::signal`]); 1..=[`MAX_REFERENCES`] of them. With `gated`, each
/// waveform passes an [`ArtifactGate`] first.
pub fn clean_block(
    channels: &mut [Vec<f32>],
    references: &[Vec<f32>],
    fs_hz: f64,
    isolation: Isolation<'_>,
    gated: bool,
) -> Result<BlockReport, OcularError> {
    let n = channels.first().map_or(0, Vec::len);
    for (i, c) in channels.iter().enumerate() {
        if c.len() != n {
            return Err(OcularError::Length {
                index: i,
                expected: n,
                got: c.len(),
            });
        }
    }
    for (i, r) in references.iter().enumerate() {
        if r.len() != n {
            return Err(OcularError::Length {
                index: i,
                expected: n,
                got: r.len(),
            });
        }
    }
    let cfg = RegressionConfig::for_rate(fs_hz as f32);
    let waves = artifact_waves(references, fs_hz, isolation, gated)?;
    match waves.len() {
        1 => run::<1>(channels, &waves, cfg),
        2 => run::<2>(channels, &waves, cfg),
        3 => run::<3>(channels, &waves, cfg),
        4 => run::<4>(channels, &waves, cfg),
        got => Err(OcularError::TooManyReferences { got }),
    }
}

fn run<const R: usize>(
    channels: &mut [Vec<f32>],
    waves: &[Vec<f32>],
    cfg: RegressionConfig,
) -> Result<BlockReport, OcularError> {
    let states = vec![ChannelState::<R>::default(); channels.len()];
    let mut reg = RefRegression::<_, R>::new(cfg, states)?;
    let n = waves[0].len();
    let mut frame = vec![0.0f32; channels.len()];
    let mut a = [0.0f32; R];
    for t in 0..n {
        for (ai, w) in a.iter_mut().zip(waves) {
            *ai = w[t];
        }
        for (f, c) in frame.iter_mut().zip(channels.iter()) {
            *f = c[t];
        }
        reg.process_frame(&a, &mut frame)?;
        for (f, c) in frame.iter().zip(channels.iter_mut()) {
            c[t] = *f;
        }
    }
    let gains = (0..channels.len())
        .map(|c| reg.gains(c).map(|g| g.to_vec()).unwrap_or_default())
        .collect();
    Ok(BlockReport { gains })
}

/// What [`mwf_block`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct MwfReport {
    /// Whether the filter acted at the end (a blink source was found).
    pub active: bool,
    /// The blink source's power ratio at the last update.
    pub lambda: f64,
    /// Filter updates.
    pub updates: u64,
    /// |corr(source, reference)| over blink samples at the last update.
    pub reference_corr: f64,
    /// The source's amplitude on the reference over its largest on any channel.
    pub reference_share: f64,
}

/// Runs the streaming multi-channel Wiener filter ([`BlinkMwf`]) over whole arrays, as a
/// device would receive them, and writes `channels` back cleaned, aligned (the delay
/// removed). `extra` channels (EOG) enter the filter and are not written; `detect` are the
/// detection references (raw reference signals). All at `cfg.fs_hz`, one length, µV.
pub fn mwf_block(
    channels: &mut [Vec<f32>],
    extra: &[Vec<f32>],
    detect: &[Vec<f32>],
    cfg: MwfConfig,
) -> Result<MwfReport, OcularError> {
    let n = channels.first().map_or(0, Vec::len);
    for (i, c) in channels.iter().chain(extra).chain(detect).enumerate() {
        if c.len() != n {
            return Err(OcularError::Length {
                index: i,
                expected: n,
                got: c.len(),
            });
        }
    }
    let (k, all) = (channels.len(), channels.len() + extra.len());
    let states = vec![MwfChannel::default(); all];
    let work = vec![0.0f64; MwfEstimator::<Vec<MwfChannel>, Vec<f64>>::workspace_len(all)];
    let line =
        vec![0.0f32; BlinkMwf::<Vec<MwfChannel>, Vec<f64>, Vec<f32>>::line_len(all, cfg.delay)];
    let mut mwf = BlinkMwf::new(cfg, states, work, line)?;
    let mut frame = vec![0.0f32; all];
    let mut out = vec![0.0f32; all];
    let mut r = vec![0.0f32; detect.len()];
    let mut u = 0usize;
    let put = |channels: &mut [Vec<f32>], out: &[f32], u: &mut usize| {
        for (c, &v) in channels.iter_mut().zip(&out[..k]) {
            c[*u] = v;
        }
        *u += 1;
    };
    for t in 0..n {
        for (f, x) in frame.iter_mut().zip(channels.iter().chain(extra)) {
            *f = x[t];
        }
        for (ri, d) in r.iter_mut().zip(detect) {
            *ri = d[t];
        }
        if mwf.push(&r, &frame, &mut out)? {
            put(channels, &out, &mut u);
        }
    }
    while mwf.drain(&mut out)? {
        put(channels, &out, &mut u);
    }
    let est = mwf.estimator();
    Ok(MwfReport {
        active: est.active(),
        lambda: est.lambda(),
        updates: est.version(),
        reference_corr: est.reference_corr(),
        reference_share: est.reference_share(),
    })
}

/// Gated artifact waveforms of `references` (all at `fs_hz`): isolated, DC-blocked at
/// [`PRE_DC_CORNER_HZ`], and, with `gated`, passed through an [`ArtifactGate`]. This is what
/// [`clean_block`] and [`SpatialStage`] subtract.
pub fn artifact_waves(
    references: &[Vec<f32>],
    fs_hz: f64,
    isolation: Isolation<'_>,
    gated: bool,
) -> Result<Vec<Vec<f32>>, OcularError> {
    // Offsets out with a corner well below the regression's (the gate's scale and the
    // subtraction need a zero baseline; a low corner keeps the undershoot after each blink
    // small), then the gate. (Blocking before the SAE as well was measured: it raised the
    // leakage on spkit's blink segment from 0.045 to 0.127.)
    let pre_pole = crate::core::dc_pole(PRE_DC_CORNER_HZ, fs_hz);
    let waves: Vec<Vec<f32>> = match isolation {
        Isolation::Raw => references.to_vec(),
        Isolation::Sae(iso) => references
            .iter()
            .map(|r| iso.residual(r, fs_hz))
            .collect::<Result<_, _>>()?,
    };
    Ok(waves
        .into_iter()
        .map(|w| {
            let mut dc = DcBlocker::default();
            let mut g = ArtifactGate::new(GateConfig::for_rate(fs_hz as f32));
            w.into_iter()
                .map(|v| {
                    let v = dc.step(f64::from(v), pre_pole) as f32;
                    if gated { g.step(v) } else { v }
                })
                .collect()
        })
        .collect())
}

/// The spatial stage of `mfr-eeg denoise`: the streaming multi-channel Wiener filter
/// ([`BlinkMwf`]) over the cleaned channels and the EOG channels, applied record by record to
/// the channels as they are read (before the single-channel model).
///
/// The stage reads the file a second time with its own reader, running the filter just far
/// enough ahead of the records being denoised (its [`MwfConfig::delay`] plus a record), and
/// corrects each record in place with the frames the filter releases, so the result is the
/// streaming filter's output itself, whatever the block size. Memory is bounded: three C x C
/// matrices, the filter's delay line and the corrections of at most a record and a delay.
#[derive(Debug)]
pub struct SpatialStage {
    mwf: BlinkMwf<Vec<MwfChannel>, Vec<f64>, Vec<f32>>,
    reader: crate::io::edf::EdfReader,
    rec: crate::io::edf::Record,
    /// The filter's channels (file indices) and their µV factors.
    chans: Vec<usize>,
    factors: Vec<f64>,
    /// Each reference as weights over the filter's channels.
    weights: Vec<Vec<(usize, f64)>>,
    spr: usize,
    block: Vec<Vec<f32>>,
    frame: Vec<f32>,
    out: Vec<f32>,
    refs: Vec<f32>,
    /// The pattern in force (scaled), one per filter channel, and the version it is from.
    q: Vec<f64>,
    v: Vec<f64>,
    version: Option<u64>,
    /// Per released frame, the correction of each cleaned channel (`cleaned` values each).
    pending: std::collections::VecDeque<f64>,
    /// For each lane (selected channel): its position among the cleaned channels and its µV
    /// factor.
    lanes: Vec<Option<(usize, f64)>>,
    cleaned: usize,
    done_reading: bool,
}

/// What [`SpatialStage::prepare`] found.
#[derive(Debug)]
pub enum SpatialPlan {
    /// The stage runs; the line for the summary.
    Run(Box<SpatialStage>, String),
    /// The stage does not run; a note saying why.
    Skip(String),
}

impl SpatialStage {
    /// Finds the references of `header`'s montage ([`find_references`]) for the `selected`
    /// channels of `input` and sets up the filter. The EOG channels themselves are not
    /// changed. Mixed rates, units that are not voltages and montages without EOG or frontal
    /// channels give [`SpatialPlan::Skip`] with a note. The summary line is final only after
    /// the last record: see [`SpatialStage::summary`].
    pub fn prepare(
        input: &std::path::Path,
        header: &Header,
        selected: &[usize],
        eog: Option<&[String]>,
    ) -> Result<SpatialPlan, OcularError> {
        let sigs = header.signals();
        let labels: Vec<String> = sigs.iter().map(|s| s.label.clone()).collect();
        let Some(plan) = find_references(&labels, eog)? else {
            return Ok(SpatialPlan::Skip(
                "no EOG channel and no frontal channels (Fp1/Fp2/Fpz, AF*, F7-F8): eye \
                 artifacts are left to the single-channel model"
                    .into(),
            ));
        };
        let ref_chans: Vec<usize> = plan.references.iter().flat_map(|r| r.channels()).collect();
        let clean: Vec<usize> = (0..selected.len())
            .filter(|&k| plan.kind == ReferenceKind::Frontal || !ref_chans.contains(&selected[k]))
            .collect();
        if clean.is_empty() {
            return Ok(SpatialPlan::Skip(
                "only EOG channels selected: spatial stage skipped".into(),
            ));
        }
        // The filter's channels: the cleaned ones, then EOG channels not among them.
        let mut chans: Vec<usize> = clean.iter().map(|&k| selected[k]).collect();
        for &c in &ref_chans {
            if !chans.contains(&c) {
                chans.push(c);
            }
        }
        let fs = header.sample_rate(chans[0]);
        let mut factors = Vec::with_capacity(chans.len());
        for &c in &chans {
            if header.sample_rate(c) != fs {
                return Ok(SpatialPlan::Skip(format!(
                    "spatial stage skipped: {} is {} Hz, other channels {fs} Hz (it needs one \
                     rate)",
                    sigs[c].label.trim(),
                    header.sample_rate(c)
                )));
            }
            let Some(f) = microvolt_factor(&sigs[c].physical_dimension) else {
                return Ok(SpatialPlan::Skip(format!(
                    "spatial stage skipped: {} is in {:?}, not a voltage",
                    sigs[c].label.trim(),
                    sigs[c].physical_dimension.trim()
                )));
            };
            factors.push(f);
        }
        let cfg = MwfConfig::for_rate(fs);
        let all = chans.len();
        let mwf = match BlinkMwf::new(
            cfg,
            vec![MwfChannel::default(); all],
            vec![0.0f64; MwfEstimator::<Vec<MwfChannel>, Vec<f64>>::workspace_len(all)],
            vec![0.0f32; BlinkMwf::<Vec<MwfChannel>, Vec<f64>, Vec<f32>>::line_len(all, cfg.delay)],
        ) {
            Ok(m) => m,
            // Only the rate can make the defaults invalid (the 1-8 Hz band needs over 2.5 Hz).
            Err(SpatialError::BadConfig { .. }) => {
                return Ok(SpatialPlan::Skip(format!(
                    "spatial stage skipped: {fs} Hz is too slow for its 1-8 Hz blink band"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let at = |c: &usize| chans.iter().position(|x| x == c).expect("listed above");
        let weights: Vec<Vec<(usize, f64)>> = plan
            .references
            .iter()
            .map(|r| {
                let p = 1.0 / r.plus.len() as f64;
                let mut w: Vec<(usize, f64)> = r.plus.iter().map(|c| (at(c), p)).collect();
                if !r.minus.is_empty() {
                    let m = -1.0 / r.minus.len() as f64;
                    w.extend(r.minus.iter().map(|c| (at(c), m)));
                }
                w
            })
            .collect();
        let spr = sigs[chans[0]].samples_per_record;
        let reader = crate::io::edf::EdfReader::open(input)?;
        let rec = reader.new_record();
        let mut lanes = vec![None; selected.len()];
        for (pos, &k) in clean.iter().enumerate() {
            lanes[k] = Some((pos, factors[pos]));
        }
        let line = format!(
            "{}: {} channels through a multi-channel Wiener filter that learns the blink \
             pattern as the recording streams (latency {:.2} s)",
            plan.describe(),
            clean.len(),
            cfg.delay as f64 / fs
        );
        Ok(SpatialPlan::Run(
            Box::new(SpatialStage {
                mwf,
                reader,
                rec,
                block: vec![vec![0.0f32; spr]; all],
                frame: vec![0.0f32; all],
                out: vec![0.0f32; all],
                refs: vec![0.0f32; weights.len()],
                q: vec![0.0; all],
                v: vec![0.0; all],
                version: None,
                pending: std::collections::VecDeque::new(),
                cleaned: clean.len(),
                lanes,
                chans,
                factors,
                weights,
                spr,
                done_reading: false,
            }),
            line,
        ))
    }

    /// What the filter found so far, for the summary: `Some` with the blink source's power
    /// ratio and correlation with the reference once it acts.
    pub fn summary(&self) -> String {
        let est = self.mwf.estimator();
        if est.active() {
            format!(
                "blink source found ({:.1}x the background, corr {:.2} with the reference)",
                est.lambda(),
                est.reference_corr()
            )
        } else {
            "no blink source found (too few blinks, or none the reference explains): channels \
             left as they were"
                .into()
        }
    }

    /// Queues the corrections of the frame the filter just released.
    fn keep(&mut self) {
        let version = self.mwf.estimator().version();
        if self.version != Some(version) {
            self.mwf.estimator().filter_into(&mut self.v, &mut self.q);
            self.version = Some(version);
        }
        let proj = self.mwf.projection();
        for &q in &self.q[..self.cleaned] {
            self.pending.push_back(q * proj);
        }
    }

    /// Runs the filter until `frames` corrections are queued or the file ends.
    fn fill(&mut self, frames: usize) -> Result<(), OcularError> {
        while self.pending.len() < frames * self.cleaned {
            if self.done_reading {
                if !self.mwf.drain(&mut self.out)? {
                    break;
                }
                self.keep();
                continue;
            }
            if !self.reader.read_record_into(&mut self.rec)? {
                self.done_reading = true;
                continue;
            }
            for ((x, &c), &f) in self.block.iter_mut().zip(&self.chans).zip(&self.factors) {
                self.rec.physical_into(c, x);
                if f != 1.0 {
                    x.iter_mut().for_each(|v| *v = (f64::from(*v) * f) as f32);
                }
            }
            for t in 0..self.spr {
                for (fr, x) in self.frame.iter_mut().zip(&self.block) {
                    *fr = x[t];
                }
                for (r, w) in self.refs.iter_mut().zip(&self.weights) {
                    *r = w
                        .iter()
                        .map(|&(i, wi)| wi * f64::from(self.frame[i]))
                        .sum::<f64>() as f32;
                }
                if self.mwf.push(&self.refs, &self.frame, &mut self.out)? {
                    self.keep();
                }
            }
        }
        Ok(())
    }

    /// Whether the stage cleans selected channel `k` (EOG channels it only reads are left).
    pub fn cleans(&self, k: usize) -> bool {
        self.lanes.get(k).is_some_and(Option::is_some)
    }

    /// Cleans the next samples of every lane in place (physical units): `lanes[k]` holds the
    /// new samples of selected channel `k`, the same count for every lane the stage cleans,
    /// following those of the previous call.
    pub fn apply(&mut self, lanes: &mut [&mut [f32]]) -> Result<(), OcularError> {
        let n = self
            .lanes
            .iter()
            .zip(lanes.iter())
            .find_map(|(m, l)| m.map(|_| l.len()))
            .unwrap_or(0);
        for (k, (m, l)) in self.lanes.iter().zip(lanes.iter()).enumerate() {
            if m.is_some() && l.len() != n {
                return Err(OcularError::Length {
                    index: k,
                    expected: n,
                    got: l.len(),
                });
            }
        }
        self.fill(n)?;
        let have = self.pending.len() / self.cleaned;
        if have < n {
            return Err(OcularError::Length {
                index: 0,
                expected: n,
                got: have,
            });
        }
        let k = self.cleaned;
        for i in 0..n {
            // Only the correction goes back, in the lane's unit, so samples the filter leaves
            // alone keep their bits.
            for (m, l) in self.lanes.iter().zip(lanes.iter_mut()) {
                if let Some((pos, f)) = *m {
                    let d = self.pending[i * k + pos];
                    if d != 0.0 {
                        l[i] = if f == 1.0 {
                            (f64::from(l[i]) - d) as f32
                        } else {
                            (f64::from(l[i]) - d / f) as f32
                        };
                    }
                }
            }
        }
        self.pending.drain(..n * k);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn electrode_names() {
        assert_eq!(electrode_name("EEG Fp1-REF"), "fp1");
        assert_eq!(electrode_name("Fp1."), "fp1");
        assert_eq!(electrode_name(" AF3 "), "af3");
        assert!(is_eog_label("EOG left") && is_eog_label("VEOG") && !is_eog_label("Fp1"));
    }
}
