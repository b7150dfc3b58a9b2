//! The slow baseline the denoiser leaves alone: a running median, sampled on a grid and
//! interpolated linearly.
//!
//! Why a median: the models were trained on signals near zero mean, while DC-coupled
//! amplifiers (BioSemi, Neuromag, many research systems) put each channel on an offset of tens
//! to hundreds of microvolts. Subtracting the baseline before the model and adding it back after
//! keeps that offset exactly. A median over [`WINDOW_SECONDS`] ignores anything that occupies
//! less than half of its window (blinks, eye movements, pops, muscle bursts), so those still
//! reach the model and are removed, while a low-pass baseline would keep part of every blink.
//! It is shift-equivariant (`median(x + c) = median(x) + c`), so a constant offset passes
//! through to f32 rounding, and it has finite support, so blocks with a margin of
//! [`Baseline::margin`] samples reproduce the whole-signal result bit for bit.

/// Length of the median window in seconds (centred).
pub const WINDOW_SECONDS: f64 = 4.0;
/// Spacing of the grid the median is evaluated on, in seconds.
pub const STEP_SECONDS: f64 = 0.25;

/// Baseline parameters for one sampling rate, in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    /// Samples on each side of a grid point that its median covers.
    pub half: usize,
    /// Grid spacing (grid points at global sample indices `j * step`).
    pub step: usize,
}

impl Baseline {
    /// The default window and grid at `fs_hz`.
    pub fn at_rate(fs_hz: f64) -> Self {
        Self {
            half: ((WINDOW_SECONDS / 2.0 * fs_hz).round() as usize).max(1),
            step: ((STEP_SECONDS * fs_hz).round() as usize).max(1),
        }
    }

    /// Samples a block needs beyond each side of the range it computes, so that its grid
    /// points and their windows are the whole signal's.
    pub fn margin(&self) -> usize {
        self.half + self.step
    }

    /// Fills `out[i]` with the baseline at global sample `offset + start + i` from the samples
    /// `x` (global indices `offset .. offset + x.len()`), for `out.len()` samples.
    ///
    /// Medians use only samples inside `x`; grid points lie at multiples of `step` plus one at
    /// the last sample of `x`. So a point further than [`Baseline::margin`] from both ends of
    /// `x` (or whose window reaches an end of `x` that is an end of the recording) gets exactly
    /// the value the whole recording gives it.
    pub fn fill(
        &self,
        x: &[f32],
        offset: usize,
        start: usize,
        out: &mut [f32],
        tmp: &mut Vec<u32>,
    ) {
        let n = x.len();
        if n == 0 || out.is_empty() {
            return;
        }
        debug_assert!(start + out.len() <= n);
        let step = self.step;
        // Grid points (local indices) bracketing the requested range.
        let g_abs = |local: usize| -> usize { offset + local };
        let first_local = start;
        let last_local = start + out.len() - 1;
        // Largest grid point <= first_local (or the first sample when none).
        let lo_grid = |local: usize| -> usize {
            let abs = g_abs(local);
            let g = abs / step * step;
            g.saturating_sub(offset)
        };
        let mut median_at = |local: usize| -> f64 {
            let a = local.saturating_sub(self.half);
            let b = (local + self.half + 1).min(n);
            // Selected as integers in `f32::total_cmp`'s order: the same element, at about
            // half the cost of selecting the floats with that comparison (this median was a
            // tenth of `denoise`'s time).
            tmp.clear();
            tmp.extend(x[a..b].iter().map(|&v| total_order_key(v)));
            let m = tmp.len();
            let (_, hi, _) = tmp.select_nth_unstable(m / 2);
            let hi = f64::from(from_total_order_key(*hi));
            if m % 2 == 1 {
                hi
            } else {
                let lo = tmp[..m / 2].iter().copied().max().unwrap_or(0);
                0.5 * (f64::from(from_total_order_key(lo)) + hi)
            }
        };
        let mut left = lo_grid(first_local);
        let mut left_v = median_at(left);
        let next_grid = |g: usize| -> usize {
            let abs = g_abs(g);
            let nxt = (abs / step + 1) * step - offset;
            nxt.min(n - 1)
        };
        let mut right = next_grid(left);
        let mut right_v = if right == left {
            left_v
        } else {
            median_at(right)
        };
        for (i, o) in out.iter_mut().enumerate() {
            let t = first_local + i;
            while t > right && right < n - 1 {
                left = right;
                left_v = right_v;
                right = next_grid(left);
                right_v = median_at(right);
            }
            *o = if t <= left || right == left {
                left_v as f32
            } else {
                let w = (t - left) as f64 / (right - left) as f64;
                (left_v + w * (right_v - left_v)) as f32
            };
        }
        debug_assert!(last_local < n);
    }
}

/// `v`'s bits mapped so that unsigned order is [`f32::total_cmp`]'s order.
fn total_order_key(v: f32) -> u32 {
    let b = v.to_bits();
    b ^ ((((b as i32) >> 31) as u32) | 0x8000_0000)
}

/// The inverse of [`total_order_key`].
fn from_total_order_key(k: u32) -> f32 {
    let b = if k & 0x8000_0000 != 0 {
        k ^ 0x8000_0000
    } else {
        !k
    };
    f32::from_bits(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer keys order every float as `total_cmp` does, and map back bit for bit.
    #[test]
    fn order_keys_follow_total_cmp() {
        let mut v = vec![
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x8000_0001),
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            3.5e-20,
            -7.25e12,
        ];
        for &x in &v {
            assert_eq!(
                from_total_order_key(total_order_key(x)).to_bits(),
                x.to_bits()
            );
        }
        let mut by_key = v.clone();
        by_key.sort_by_key(|&x| total_order_key(x));
        v.sort_by(f32::total_cmp);
        let bits = |s: &[f32]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&by_key), bits(&v));
    }

    fn whole(b: &Baseline, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        b.fill(x, 0, 0, &mut out, &mut Vec::new());
        out
    }

    #[test]
    fn constant_offsets_and_ramps_are_the_baseline() {
        let b = Baseline { half: 50, step: 10 };
        let x = vec![-312.5f32; 1000];
        assert!(whole(&b, &x).iter().all(|&v| v == -312.5));
        // A ramp: the median of a centred window is the centre value, interpolation is exact
        // between grid points (away from the ends, where the windows are one-sided).
        let x: Vec<f32> = (0..1000).map(|i| 0.5 * i as f32).collect();
        let y = whole(&b, &x);
        for i in 60..940 {
            assert!((y[i] - x[i]).abs() < 1e-3, "{i}: {} vs {}", y[i], x[i]);
        }
    }

    #[test]
    fn a_blink_shorter_than_half_the_window_does_not_move_it() {
        let b = Baseline::at_rate(256.0);
        // 20 s of a 10 Hz tone on a 150 uV offset, with a 0.4 s, 200 uV blink at 10 s.
        let n = 256 * 20;
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f64 / 256.0;
                let blink = if (10.0..10.4).contains(&t) {
                    200.0 * (std::f64::consts::PI * (t - 10.0) / 0.4).sin()
                } else {
                    0.0
                };
                (150.0 + 20.0 * (2.0 * std::f64::consts::PI * 10.0 * t).sin() + blink) as f32
            })
            .collect();
        let y = whole(&b, &x);
        let worst = y.iter().map(|v| (v - 150.0).abs()).fold(0.0f32, f32::max);
        // The blink covers 10 % of each window: it shifts the median by at most a few uV of
        // the tone's spread, never by a visible fraction of its 200 uV.
        assert!(worst < 6.0, "baseline moved by {worst} uV");
    }

    #[test]
    fn blocks_with_the_margin_equal_the_whole_signal_bit_for_bit() {
        let b = Baseline { half: 37, step: 9 };
        let n = 2000;
        let x: Vec<f32> = (0..n)
            .map(|i| (i as f32 * 0.37).sin() * 40.0 + (i as f32 * 0.011).cos() * 90.0)
            .collect();
        let want = whole(&b, &x);
        let m = b.margin();
        for (s, e) in [
            (0usize, 333usize),
            (333, 1001),
            (1001, 1999),
            (1999, 2000),
            (5, 6),
        ] {
            let a = s.saturating_sub(m);
            let z = (e + m).min(n);
            let mut out = vec![0.0; e - s];
            b.fill(&x[a..z], a, s - a, &mut out, &mut Vec::new());
            assert_eq!(out, want[s..e], "block {s}..{e}");
        }
    }
}
