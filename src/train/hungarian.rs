//! Optimal one-to-one assignment (Hungarian algorithm, Jonker-Volgenant style shortest
//! augmenting paths with potentials), O(rows^2 * cols).
//!
//! Used by the `hungarian` MMCS: decoder atoms of two SAEs are matched one to one so that the
//! summed cosine is maximal. Written by hand because no maintained crate offers a dense f64
//! assignment without pulling in a linear-algebra stack.

/// Assigns each row to a distinct column minimising the summed cost.
///
/// `cost` is row-major `[rows, cols]` with `rows <= cols`; returns `col_of_row`. Non-finite
/// costs are treated as prohibitively large.
///
/// # Panics
/// If `rows > cols` or `cost.len() != rows * cols`.
pub fn assign_min(cost: &[f64], rows: usize, cols: usize) -> Vec<usize> {
    assert!(
        rows <= cols,
        "assignment needs rows ({rows}) <= cols ({cols})"
    );
    assert_eq!(cost.len(), rows * cols, "cost matrix size");
    if rows == 0 {
        return Vec::new();
    }
    let big = cost
        .iter()
        .filter(|c| c.is_finite())
        .fold(0f64, |m, c| m.max(c.abs()))
        * 4.0
        + 1.0;
    let at = |r: usize, c: usize| {
        let v = cost[r * cols + c];
        if v.is_finite() { v } else { big }
    };
    // 1-based arrays with a virtual column 0 (e-maxx formulation).
    let mut u = vec![0f64; rows + 1];
    let mut v = vec![0f64; cols + 1];
    let mut row_of_col = vec![0usize; cols + 1];
    let mut way = vec![0usize; cols + 1];
    let mut minv = vec![0f64; cols + 1];
    let mut used = vec![false; cols + 1];
    for i in 1..=rows {
        row_of_col[0] = i;
        let mut j0 = 0usize;
        minv.iter_mut().for_each(|m| *m = f64::INFINITY);
        used.iter_mut().for_each(|u| *u = false);
        loop {
            used[j0] = true;
            let i0 = row_of_col[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=cols {
                if !used[j] {
                    let cur = at(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=cols {
                if used[j] {
                    u[row_of_col[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if row_of_col[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of_col[j0] = row_of_col[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col_of_row = vec![0usize; rows];
    for j in 1..=cols {
        if row_of_col[j] != 0 {
            col_of_row[row_of_col[j] - 1] = j - 1;
        }
    }
    col_of_row
}

/// Assigns each row to a distinct column maximising the summed weight (`rows <= cols`).
pub fn assign_max(weight: &[f32], rows: usize, cols: usize) -> Vec<usize> {
    let cost: Vec<f64> = weight.iter().map(|&w| -(w as f64)).collect();
    assign_min(&cost, rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn brute_min(cost: &[f64], n: usize, m: usize) -> f64 {
        fn rec(cost: &[f64], n: usize, m: usize, r: usize, used: &mut [bool]) -> f64 {
            if r == n {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for c in 0..m {
                if !used[c] {
                    used[c] = true;
                    best = best.min(cost[r * m + c] + rec(cost, n, m, r + 1, used));
                    used[c] = false;
                }
            }
            best
        }
        rec(cost, n, m, 0, &mut vec![false; m])
    }

    #[test]
    fn matches_brute_force_on_random_rectangular() {
        let mut rng = Rng::new(11);
        for trial in 0..200 {
            let n = 1 + (trial % 6);
            let m = n + (trial / 6) % 3;
            // Integer-valued costs create many ties, the hard case for bookkeeping.
            let cost: Vec<f64> = (0..n * m).map(|_| rng.below(7) as f64 - 3.0).collect();
            let a = assign_min(&cost, n, m);
            let mut seen = vec![false; m];
            for &c in &a {
                assert!(!seen[c], "column used twice");
                seen[c] = true;
            }
            let got: f64 = a.iter().enumerate().map(|(r, &c)| cost[r * m + c]).sum();
            // Exact: integer sums are exact in f64.
            assert_eq!(got, brute_min(&cost, n, m), "trial {trial} n {n} m {m}");
        }
    }
}
