//! Checkpoints: the complete training state (weights, Adam moments and step, batch-order
//! position, dead-latent counters, configuration) in one safetensors file, written atomically
//! by [`crate::io::atomic`] (temporary file beside it, fsync, rename, directory fsync), so a
//! crash never leaves a torn file.

use super::TrainError;
use super::auxk::DeadCounter;
use super::config::TrainConfig;
use super::sae::SaeTensors;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

const FORMAT: &str = "mfr-eeg-checkpoint-1";

/// Everything needed to continue a run exactly where it stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The run's configuration (a resume must use the same).
    pub config: TrainConfig,
    /// Steps completed.
    pub step: usize,
    /// Batch-order epoch.
    pub sampler_epoch: u64,
    /// Position within the epoch.
    pub sampler_pos: usize,
    /// Weights per SAE.
    pub saes: Vec<SaeTensors>,
    /// Adam first moments, stacked, in parameter order.
    pub adam_m: Vec<Vec<f32>>,
    /// Adam second moments.
    pub adam_v: Vec<Vec<f32>>,
    /// Adam step count.
    pub adam_t: u64,
    /// Dead-latent counters.
    pub dead: DeadCounter,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `ck` to `path` atomically.
pub fn write(path: &Path, ck: &Checkpoint) -> Result<(), TrainError> {
    let mut named: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = Vec::new();
    for (i, s) in ck.saes.iter().enumerate() {
        for (name, v) in [
            ("w_enc", &s.w_enc),
            ("w_dec", &s.w_dec),
            ("b_enc", &s.b_enc),
            ("b_dec", &s.b_dec),
        ] {
            named.push((
                format!("sae{i}.{name}"),
                f32_bytes(v),
                Dtype::F32,
                vec![v.len()],
            ));
        }
    }
    for (kind, list) in [("m", &ck.adam_m), ("v", &ck.adam_v)] {
        for (i, v) in list.iter().enumerate() {
            named.push((
                format!("adam.{kind}{i}"),
                f32_bytes(v),
                Dtype::F32,
                vec![v.len()],
            ));
        }
    }
    let dead: Vec<u8> = ck.dead.since.iter().flat_map(|x| x.to_le_bytes()).collect();
    named.push((
        "dead.since".into(),
        dead,
        Dtype::U32,
        vec![ck.dead.since.len()],
    ));
    let views: Vec<(String, TensorView<'_>)> = named
        .iter()
        .map(|(n, b, d, s)| {
            (
                n.clone(),
                TensorView::new(*d, s.clone(), b).expect("sizes computed above"),
            )
        })
        .collect();
    let mut meta = HashMap::new();
    meta.insert("format".into(), FORMAT.into());
    meta.insert("config".into(), burn::config::config_to_json(&ck.config));
    meta.insert("step".into(), ck.step.to_string());
    meta.insert("sampler_epoch".into(), ck.sampler_epoch.to_string());
    meta.insert("sampler_pos".into(), ck.sampler_pos.to_string());
    meta.insert("adam_t".into(), ck.adam_t.to_string());
    meta.insert("n_saes".into(), ck.saes.len().to_string());
    meta.insert("n_adam".into(), ck.adam_m.len().to_string());
    meta.insert("d_sae".into(), ck.dead.d_sae.to_string());
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| TrainError::Checkpoint {
        path: path.into(),
        problem: e.to_string(),
    })?;
    atomic_write(path, &bytes)
}

/// Writes `bytes` to `path` with the crate's one atomic writer ([`crate::io::atomic`]).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    crate::io::atomic::write_atomic(path, bytes).map_err(|e| TrainError::io(path, e.into()))
}

/// Reads a checkpoint written by [`write()`].
pub fn read(path: &Path) -> Result<Checkpoint, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |problem: String| TrainError::Checkpoint {
        path: path.into(),
        problem,
    };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let (_, md) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta = md
        .metadata()
        .clone()
        .ok_or_else(|| bad("no metadata (not an mfr-eeg checkpoint)".into()))?;
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| bad(format!("metadata field '{k}' missing")))
    };
    if get("format")? != FORMAT {
        return Err(bad(format!("unknown format (expected {FORMAT})")));
    }
    let num = |k: &str| -> Result<u64, TrainError> {
        get(k)?
            .parse::<u64>()
            .map_err(|e| bad(format!("metadata field '{k}': {e}")))
    };
    let config: TrainConfig =
        serde_json::from_str(&get("config")?).map_err(|e| bad(format!("config: {e}")))?;
    let f32s = |name: &str| -> Result<Vec<f32>, TrainError> {
        let t = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
        if t.dtype() != Dtype::F32 {
            return Err(bad(format!("{name}: expected F32")));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let n_saes = num("n_saes")? as usize;
    let mut saes = Vec::with_capacity(n_saes);
    for i in 0..n_saes {
        saes.push(SaeTensors {
            w_enc: f32s(&format!("sae{i}.w_enc"))?,
            w_dec: f32s(&format!("sae{i}.w_dec"))?,
            b_enc: f32s(&format!("sae{i}.b_enc"))?,
            b_dec: f32s(&format!("sae{i}.b_dec"))?,
        });
    }
    let n_adam = num("n_adam")? as usize;
    let adam_m = (0..n_adam)
        .map(|i| f32s(&format!("adam.m{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let adam_v = (0..n_adam)
        .map(|i| f32s(&format!("adam.v{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let dead_t = st
        .tensor("dead.since")
        .map_err(|e| bad(format!("dead.since: {e}")))?;
    let since: Vec<u32> = dead_t
        .data()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let d_sae = num("d_sae")? as usize;
    if since.len() != n_saes * d_sae || d_sae != config.d_sae || n_saes != config.n_saes {
        return Err(bad("dead counters do not match the configuration".into()));
    }
    let sizes_ok = saes.iter().all(|s| {
        s.w_enc.len() == config.d_in * config.d_sae
            && s.w_dec.len() == config.d_in * config.d_sae
            && s.b_enc.len() == config.d_sae
            && s.b_dec.len() == config.d_in
    });
    if !sizes_ok {
        return Err(bad("weight sizes do not match the configuration".into()));
    }
    Ok(Checkpoint {
        config,
        step: num("step")? as usize,
        sampler_epoch: num("sampler_epoch")?,
        sampler_pos: num("sampler_pos")? as usize,
        saes,
        adam_m,
        adam_v,
        adam_t: num("adam_t")?,
        dead: DeadCounter {
            n: n_saes,
            d_sae,
            since,
        },
    })
}
