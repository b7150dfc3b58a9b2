//! TopK selection by bounded insertion: the k largest values' indices, written into a caller
//! buffer, in descending order of value, ties broken by the lower index.

/// Writes into `idx` the indices of the `idx.len()` largest entries of `values`, largest first;
/// among equal values the lower index comes first (and wins the last slot). Returns how many
/// indices were written: `min(idx.len(), values.len())`.
///
/// Partial selection: each candidate is compared with the current k-th best and only inserted
/// when strictly larger, so the cost is O(n) comparisons plus O(k) per insertion, with no
/// allocation and no extra buffer. Comparisons are IEEE `>`: `-0.0` and `0.0` tie, and a NaN
/// never displaces a number (callers sanitise inputs so NaN does not reach here in practice).
pub fn topk_into(values: &[f32], idx: &mut [usize]) -> usize {
    let k = idx.len().min(values.len());
    let mut filled = 0usize;
    for (j, &v) in values.iter().enumerate() {
        if filled == k {
            // Full: only a strictly larger value enters, so equal values keep the lower index.
            let worst = match idx.get(k.wrapping_sub(1)).and_then(|&w| values.get(w)) {
                Some(&w) => w,
                None => return filled, // k == 0
            };
            if v.partial_cmp(&worst) != Some(::core::cmp::Ordering::Greater) {
                continue;
            }
            filled -= 1; // the last slot is dropped
        }
        // First position whose value is strictly smaller: later equal values stay behind
        // earlier ones, which is the lower-index tie rule.
        let mut pos = filled;
        while pos > 0 {
            let prev = idx[pos - 1];
            if v > values[prev] {
                idx[pos] = prev;
                pos -= 1;
            } else {
                break;
            }
        }
        idx[pos] = j;
        filled += 1;
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_largest_in_order() {
        let v = [0.5, -1.0, 3.0, 2.0, 3.0, 0.0];
        let mut idx = [0usize; 3];
        assert_eq!(topk_into(&v, &mut idx), 3);
        assert_eq!(idx, [2, 4, 3]);
    }

    #[test]
    fn ties_go_to_lower_index() {
        let v = [1.0f32; 6];
        let mut idx = [9usize; 4];
        topk_into(&v, &mut idx);
        assert_eq!(idx, [0, 1, 2, 3]);
    }

    #[test]
    fn k_zero_and_k_larger_than_n() {
        let v = [1.0, 2.0];
        let mut none: [usize; 0] = [];
        assert_eq!(topk_into(&v, &mut none), 0);
        let mut idx = [7usize; 3];
        assert_eq!(topk_into(&v, &mut idx), 2);
        assert_eq!(&idx[..2], &[1, 0]);
    }
}
