//! Training data: in-memory denoising pairs ([`Dataset`]), the [`BatchSource`] trait that file
//! sources (`.npy`, `.safetensors`) also implement, and the
//! seeded, resumable batch order ([`Sampler`]).

use super::TrainError;
use crate::rng::Rng;

/// In-memory windows: `inputs[i]` (noisy) should be mapped to `targets[i]` (clean). For plain
/// reconstruction the two are equal. Both are row-major `[n, dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Input windows, row-major `[n, dim]`.
    pub inputs: Vec<f32>,
    /// Target windows, row-major `[n, dim]` (same length as `inputs`).
    pub targets: Vec<f32>,
    /// Window length.
    pub dim: usize,
}

impl Dataset {
    /// A reconstruction dataset (targets = inputs).
    pub fn reconstruction(rows: Vec<f32>, dim: usize) -> Self {
        Self {
            targets: rows.clone(),
            inputs: rows,
            dim,
        }
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.inputs.len() / self.dim.max(1)
    }

    /// Whether there are no windows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks shapes and finiteness.
    pub fn validate(&self, what: &str) -> Result<(), TrainError> {
        if self.dim == 0 {
            return Err(TrainError::data(what, "window length (dim) is 0"));
        }
        if self.inputs.len() != self.targets.len() {
            return Err(TrainError::data(
                what,
                format!(
                    "inputs ({}) and targets ({}) differ in length",
                    self.inputs.len(),
                    self.targets.len()
                ),
            ));
        }
        if !self.inputs.len().is_multiple_of(self.dim) {
            return Err(TrainError::data(
                what,
                format!(
                    "{} values are not a whole number of windows of {}",
                    self.inputs.len(),
                    self.dim
                ),
            ));
        }
        if self.is_empty() {
            return Err(TrainError::data(what, "no windows"));
        }
        if let Some(i) = self
            .inputs
            .iter()
            .chain(&self.targets)
            .position(|v| !v.is_finite())
        {
            return Err(TrainError::data(
                what,
                format!(
                    "non-finite value in window {}",
                    (i % self.inputs.len()) / self.dim
                ),
            ));
        }
        Ok(())
    }
}

/// Random-access rows of a training set; implementations may read from disk on demand.
pub trait BatchSource {
    /// A name for error messages (file name or "in-memory dataset").
    fn name(&self) -> String;
    /// Window length.
    fn dim(&self) -> usize;
    /// Number of windows.
    fn len(&self) -> usize;
    /// Whether there are no windows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends rows `idx` to `inputs` and their targets to `targets` (both cleared first).
    fn read_rows(
        &mut self,
        idx: &[usize],
        inputs: &mut Vec<f32>,
        targets: &mut Vec<f32>,
    ) -> Result<(), TrainError>;
}

impl BatchSource for &Dataset {
    fn name(&self) -> String {
        "in-memory dataset".into()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn len(&self) -> usize {
        Dataset::len(self)
    }
    fn read_rows(
        &mut self,
        idx: &[usize],
        inputs: &mut Vec<f32>,
        targets: &mut Vec<f32>,
    ) -> Result<(), TrainError> {
        inputs.clear();
        targets.clear();
        let d = self.dim;
        for &i in idx {
            inputs.extend_from_slice(&self.inputs[i * d..(i + 1) * d]);
            targets.extend_from_slice(&self.targets[i * d..(i + 1) * d]);
        }
        Ok(())
    }
}

/// Seeded batch order: a fresh permutation of the rows each epoch (epoch `e` shuffled with
/// `Rng::derive(seed, e)`), so the position `(epoch, pos)` is the whole state to resume from.
#[derive(Clone, Debug)]
pub struct Sampler {
    n: usize,
    seed: u64,
    epoch: u64,
    pos: usize,
    perm: Vec<usize>,
}

impl Sampler {
    /// Sampler over `n > 0` rows.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut s = Self {
            n,
            seed,
            epoch: 0,
            pos: 0,
            perm: Vec::new(),
        };
        s.shuffle();
        s
    }

    fn shuffle(&mut self) {
        self.perm = (0..self.n).collect();
        Rng::derive(self.seed ^ 0x0BA7_C4E5, self.epoch).shuffle(&mut self.perm);
    }

    /// The next `batch` row indices (epochs wrap around).
    pub fn next_batch(&mut self, batch: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(batch);
        while out.len() < batch {
            if self.pos == self.n {
                self.epoch += 1;
                self.pos = 0;
                self.shuffle();
            }
            let take = (batch - out.len()).min(self.n - self.pos);
            out.extend_from_slice(&self.perm[self.pos..self.pos + take]);
            self.pos += take;
        }
        out
    }

    /// `(epoch, position in epoch)`, for checkpoints.
    pub fn position(&self) -> (u64, usize) {
        (self.epoch, self.pos)
    }

    /// Restores a position saved by [`Sampler::position`].
    pub fn restore(&mut self, epoch: u64, pos: usize) {
        self.epoch = epoch;
        self.pos = pos.min(self.n);
        self.shuffle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_covers_each_epoch_and_resumes() {
        let mut s = Sampler::new(10, 3);
        let mut first: Vec<usize> = s.next_batch(4);
        first.extend(s.next_batch(6));
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        let a = s.next_batch(7);
        let (e, p) = s.position();
        let b = s.next_batch(9);
        let mut r = Sampler::new(10, 3);
        r.restore(e, p);
        assert_eq!(r.next_batch(9), b);
        assert_ne!(
            a,
            first[..7].to_vec(),
            "second epoch uses a new permutation"
        );
    }
}
