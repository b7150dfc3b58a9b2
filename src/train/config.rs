//! The training experiment: [`TrainConfig`] (burn `Config`, saved as JSON beside exports) and
//! its small enums.

use burn::config::Config;

/// Which latents a TopK SAE keeps and what it does to them (mirrors the core's `Activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    /// Keep the k largest pre-activations, then ReLU (a kept negative value becomes 0).
    TopkRelu,
    /// Keep the k largest pre-activations with their sign (no ReLU; the MFR paper's).
    TopkSigned,
}

/// How two decoder dictionaries are compared in the MFR penalty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MmcsKind {
    /// Mean over one dictionary's atoms of the max cosine to the other's, averaged over both
    /// directions (Marks et al. 2024, first version).
    Max,
    /// One-to-one matching of atoms by the Hungarian algorithm on the cosine matrix, mean of
    /// the matched cosines (the paper's later code).
    Hungarian,
}

/// Everything that fixes a training run, together with the seed.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Input window length (samples).
    pub d_in: usize,
    /// Number of latents per SAE.
    pub d_sae: usize,
    /// Latents kept per window.
    pub k: usize,
    /// Number of SAEs trained side by side (>= 1; MFR needs >= 2).
    #[config(default = 2)]
    pub n_saes: usize,
    /// Activation rule.
    #[config(default = "ActivationKind::TopkRelu")]
    pub activation: ActivationKind,
    /// Tied weights: decoder = row-normalised encoder transpose.
    #[config(default = false)]
    pub tied: bool,
    /// Scale of the initial encoder relative to the decoder transpose.
    #[config(default = 1.0)]
    pub enc_init_scale: f32,
    /// Optimiser steps.
    #[config(default = 2000)]
    pub steps: usize,
    /// Windows per batch.
    #[config(default = 256)]
    pub batch_size: usize,
    /// Peak learning rate (Adam).
    #[config(default = 1e-3)]
    pub lr: f64,
    /// Linear learning-rate warm-up steps.
    #[config(default = 100)]
    pub lr_warmup_steps: usize,
    /// Fraction of the run over which the learning rate decays linearly to 0 at the end.
    #[config(default = 0.2)]
    pub lr_decay_frac: f64,
    /// Adam beta1.
    #[config(default = 0.9)]
    pub beta1: f64,
    /// Adam beta2.
    #[config(default = 0.999)]
    pub beta2: f64,
    /// Adam epsilon.
    #[config(default = 1e-8)]
    pub adam_eps: f64,
    /// Per-SAE global gradient-norm clip (0 disables).
    #[config(default = 1.0)]
    pub grad_clip: f64,
    /// Weight of the AuxK loss (0 disables).
    #[config(default = 0.03125)]
    pub auxk_alpha: f64,
    /// Dead latents used by AuxK (Gao et al. use d_in / 2).
    #[config(default = 256)]
    pub k_aux: usize,
    /// A latent is dead when it has not fired for this many steps.
    #[config(default = 200)]
    pub dead_steps: usize,
    /// MFR weight alpha (0: the N SAEs train independently).
    #[config(default = 0.0)]
    pub mfr_alpha: f64,
    /// Steps of the cosine warm-up of the MFR weight.
    #[config(default = 200)]
    pub mfr_warmup: usize,
    /// MMCS variant used by the penalty.
    #[config(default = "MmcsKind::Max")]
    pub mmcs: MmcsKind,
    /// Recompute the Hungarian assignment every this many steps (reused in between).
    #[config(default = 1)]
    pub hungarian_every: usize,
    /// Seed of initialisation and batch order.
    #[config(default = 0)]
    pub seed: u64,
    /// Write a metrics line every this many steps.
    #[config(default = 10)]
    pub log_every: usize,
    /// Windows used for the validation loss at the end (0: all of the validation set).
    #[config(default = 0)]
    pub val_max: usize,
    /// Reconstruction loss (and validation loss) relative per window: each window's squared
    /// error over its target energy (see `loss::relative_mse_per_sae`), instead of plain MSE.
    #[config(default = false)]
    pub relative_loss: bool,
    /// Energy floor of the relative loss (`loss::RELATIVE_EPS` by default): windows whose mean
    /// squared target is far below it are weighted as if it were this.
    #[config(default = 1e-3)]
    pub relative_eps: f64,
    /// The SAE predicts the correction `target - input`, added to the input at inference (the
    /// model is exported with an identity linear path), so EEG unlike anything in training
    /// passes through instead of being rebuilt from the dictionary. The relative loss is still
    /// over the target's energy, so the objective's value is unchanged.
    #[config(default = false)]
    pub residual: bool,
    /// With `residual`: only windows whose high-frequency ratio (`core::Skip::opens`) is at
    /// most this are corrections; the others keep their target and are rebuilt whole, as by a
    /// plain SAE. The model is exported with the identity path gated the same way, so slow
    /// artifacts and clean EEG are corrected in place while broadband muscle noise, which a
    /// sparse code cannot reproduce to subtract it, is rebuilt from the dictionary.
    pub residual_gate: Option<f32>,
}

impl Default for TrainConfig {
    /// The standard configuration: 1 s windows at 256 Hz (`d_in` 256), `d_sae` 512, `k` 16,
    /// and every other field at its `#[config(default)]`. The CLI's defaults are read from
    /// here, so each default is written once.
    fn default() -> Self {
        Self::new(256, 512, 16)
    }
}

impl TrainConfig {
    /// Checks the internal consistency of the configuration.
    pub fn validate(&self) -> Result<(), super::TrainError> {
        let bad = |m: String| Err(super::TrainError::Config(m));
        if self.d_in == 0 || self.d_sae == 0 {
            return bad(format!(
                "d_in ({}) and d_sae ({}) must be > 0",
                self.d_in, self.d_sae
            ));
        }
        if self.k == 0 || self.k > self.d_sae {
            return bad(format!(
                "k ({}) must be in 1..=d_sae ({})",
                self.k, self.d_sae
            ));
        }
        if self.n_saes == 0 {
            return bad("n_saes must be >= 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be >= 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr ({}) must be positive", self.lr));
        }
        if !(0.0..=1.0).contains(&self.lr_decay_frac) {
            return bad(format!(
                "lr_decay_frac ({}) must be in [0, 1]",
                self.lr_decay_frac
            ));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("Adam betas must be in [0, 1)".into());
        }
        if self.mfr_alpha < 0.0 || self.auxk_alpha < 0.0 || self.grad_clip < 0.0 {
            return bad("mfr_alpha, auxk_alpha and grad_clip must be >= 0".into());
        }
        if self.mfr_alpha > 0.0 && self.n_saes < 2 {
            return bad("MFR (mfr_alpha > 0) needs n_saes >= 2".into());
        }
        if self.hungarian_every == 0 || self.log_every == 0 {
            return bad("hungarian_every and log_every must be >= 1".into());
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up, constant, linear decay to 0.
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = if self.lr_warmup_steps > 0 {
            ((step + 1) as f64 / self.lr_warmup_steps as f64).min(1.0)
        } else {
            1.0
        };
        let decay_steps = (self.lr_decay_frac * self.steps as f64).round() as usize;
        let decay_start = self.steps.saturating_sub(decay_steps);
        let decay = if decay_steps > 0 && step >= decay_start {
            1.0 - (step - decay_start) as f64 / decay_steps as f64
        } else {
            1.0
        };
        self.lr * warm * decay
    }

    /// MFR weight factor w(t) in [0, 1]: cosine warm-up over `mfr_warmup` steps.
    pub fn mfr_weight_at(&self, step: usize) -> f64 {
        if self.mfr_warmup == 0 {
            return 1.0;
        }
        let t = (step as f64 / self.mfr_warmup as f64).min(1.0);
        0.5 * (1.0 - (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_shapes() {
        let c = TrainConfig::new(8, 16, 2)
            .with_steps(100)
            .with_lr(1.0)
            .with_lr_warmup_steps(10)
            .with_lr_decay_frac(0.2);
        assert!((c.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(50) - 1.0).abs() < 1e-12);
        // Decay over the last 20 steps: step 90 is halfway down.
        assert!((c.lr_at(90) - 0.5).abs() < 1e-12);
        let c = c.with_mfr_warmup(10);
        assert_eq!(c.mfr_weight_at(0), 0.0);
        assert!((c.mfr_weight_at(5) - 0.5).abs() < 1e-12);
        assert_eq!(c.mfr_weight_at(10), 1.0);
    }

    #[test]
    fn json_round_trip() {
        let c = TrainConfig::new(8, 16, 2).with_mmcs(MmcsKind::Hungarian);
        let json = burn::config::config_to_json(&c);
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(c, back);
        assert!(json.contains("\"hungarian\""), "{json}");
    }

    #[test]
    fn default_is_the_standard_config() {
        let c = TrainConfig::default();
        assert_eq!((c.d_in, c.d_sae, c.k, c.n_saes), (256, 512, 16, 2));
        assert_eq!((c.steps, c.batch_size, c.lr), (2000, 256, 1e-3));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validation_rejects_k_above_d_sae() {
        assert!(TrainConfig::new(8, 16, 17).validate().is_err());
        assert!(TrainConfig::new(8, 16, 16).validate().is_ok());
    }
}
