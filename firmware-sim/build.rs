//! Writes the models the simulator embeds with `include_bytes!` into OUT_DIR:
//! - `model_f32.safetensors`: d_in 256, d_sae 512, k 16, hop 128 (a mid-size f32 model for
//!   the static-memory and cost figures), deterministic seeded random dictionary;
//! - `model_int8.safetensors`: the shipped `models/tiny-128hz-int8.safetensors` if present,
//!   otherwise a deterministic int8 stand-in of the same size (d_in 128, d_sae 128, k 8).
//!
//! `dims.rs` gives both models' sizes and sampling rates as constants (the streamers' and the
//! eye stages' fixed array sizes).
//!
//! Hand-written safetensors (no dependencies, so the build stays small); the simulator parses
//! both with the core's validating parser, so a mistake here fails the run.

use std::path::Path;

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn sym(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
    }
}

struct Tensor {
    name: &'static str,
    dtype: &'static str,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn f32s(v: impl Iterator<Item = f32>) -> Vec<u8> {
    v.flat_map(f32::to_le_bytes).collect()
}

fn write(path: &Path, meta: &[(&str, String)], tensors: &[Tensor]) {
    let mut header = String::from("{\"__metadata__\":{");
    let m: Vec<String> = meta
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    header += &m.join(",");
    header += "}";
    let mut offset = 0;
    for t in tensors {
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        header += &format!(
            ",\"{}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            t.name,
            t.dtype,
            shape.join(","),
            offset,
            offset + t.data.len()
        );
        offset += t.data.len();
    }
    header += "}";
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    for t in tensors {
        out.extend(&t.data);
    }
    write_if_changed(path, &out);
}

/// Leaves an identical file untouched, so its mtime does not force a recompile.
fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return;
    }
    std::fs::write(path, bytes).expect("write build output");
}

fn meta(
    version: u32,
    d_in: usize,
    d_sae: usize,
    k: usize,
    hop: usize,
    rate: u32,
    prov: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("format_version", version.to_string()),
        ("d_in", d_in.to_string()),
        ("d_sae", d_sae.to_string()),
        ("k", k.to_string()),
        ("hop", hop.to_string()),
        ("activation", "topk_relu".into()),
        ("normalisation", "window_zscore".into()),
        ("sample_rate_hz", rate.to_string()),
        ("channel_type", "EEG".into()),
        ("provenance", prov.into()),
    ]
}

/// Reads a string value from a safetensors header's `__metadata__` (plain digits expected).
fn header_value(file: &[u8], key: &str) -> usize {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    let header = std::str::from_utf8(&file[8..8 + n]).expect("utf-8 header");
    let at = header
        .find(&format!("\"{key}\""))
        .unwrap_or_else(|| panic!("no {key} in shipped model"));
    let rest = &header[at + key.len() + 2..];
    let v = rest.split('"').nth(1).expect("quoted value");
    v.parse()
        .unwrap_or_else(|_| panic!("{key} = {v:?} is not an integer"))
}

fn main() {
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let out = Path::new(&out);
    println!("cargo:rerun-if-changed=build.rs");
    // The directory, so adding the shipped model later also triggers a rerun.
    println!("cargo:rerun-if-changed=../models");

    // f32, d_in 256, d_sae 512: weights uniform in +-1/sqrt(d_in) (unit-variance latents for
    // z-scored input), small biases.
    let (d_in, d_sae, k, rate) = (256, 512, 16, 256);
    let mut r = SplitMix(0x05EE_DF32);
    let s = 1.0 / (d_in as f32).sqrt();
    let tensors = [
        Tensor {
            name: "W_enc",
            dtype: "F32",
            shape: vec![d_in, d_sae],
            data: f32s((0..d_in * d_sae).map(|_| r.sym() * s)),
        },
        Tensor {
            name: "W_dec",
            dtype: "F32",
            shape: vec![d_sae, d_in],
            data: f32s((0..d_in * d_sae).map(|_| r.sym() * s)),
        },
        Tensor {
            name: "b_enc",
            dtype: "F32",
            shape: vec![d_sae],
            data: f32s((0..d_sae).map(|_| r.sym() * 0.1)),
        },
        Tensor {
            name: "b_dec",
            dtype: "F32",
            shape: vec![d_in],
            data: f32s((0..d_in).map(|_| r.sym() * 0.1)),
        },
    ];
    let prov =
        "firmware-sim build.rs: seeded random dictionary (cost and memory stand-in, not trained)";
    write(
        &out.join("model_f32.safetensors"),
        &meta(1, d_in, d_sae, k, d_in / 2, rate, prov),
        &tensors,
    );
    let mut dims = format!(
        "/// f32 model sizes.\npub const F32_D: usize = {d_in};\npub const F32_S: usize = {d_sae};\npub const F32_K: usize = {k};\n/// f32 model sampling rate (Hz).\npub const F32_RATE: usize = {rate};\n"
    );

    let shipped = Path::new("../models/tiny-128hz-int8.safetensors");
    let dst = out.join("model_int8.safetensors");
    if shipped.exists() {
        let bytes = std::fs::read(shipped).expect("read shipped int8 model");
        write_if_changed(&dst, &bytes);
        let (d_in, d_sae, k, rate) = (
            header_value(&bytes, "d_in"),
            header_value(&bytes, "d_sae"),
            header_value(&bytes, "k"),
            header_value(&bytes, "sample_rate_hz"),
        );
        dims += &format!(
            "/// int8 model sizes.\npub const I8_D: usize = {d_in};\npub const I8_S: usize = {d_sae};\npub const I8_K: usize = {k};\n/// int8 model sampling rate (Hz).\npub const I8_RATE: usize = {rate};\n"
        );
        println!("cargo:rustc-env=FIRMWARE_INT8_SOURCE=models/tiny-128hz-int8.safetensors");
    } else {
        let (d_in, d_sae, k, rate) = (128, 128, 8, 128);
        let mut r = SplitMix(0x5EED_0108);
        let i8s = |r: &mut SplitMix, n: usize| {
            (0..n)
                .map(|_| (r.sym() * 127.0) as i8 as u8)
                .collect::<Vec<u8>>()
        };
        // Scales chosen so the dequantised weights match the f32 stand-in's 1/sqrt(d_in) range.
        let scale = 1.0 / (d_in as f32).sqrt() / 127.0;
        let tensors = [
            Tensor {
                name: "W_enc",
                dtype: "I8",
                shape: vec![d_in, d_sae],
                data: i8s(&mut r, d_in * d_sae),
            },
            Tensor {
                name: "W_dec",
                dtype: "I8",
                shape: vec![d_sae, d_in],
                data: i8s(&mut r, d_in * d_sae),
            },
            Tensor {
                name: "W_enc_scale",
                dtype: "F32",
                shape: vec![d_sae],
                data: f32s((0..d_sae).map(|_| scale)),
            },
            Tensor {
                name: "W_dec_scale",
                dtype: "F32",
                shape: vec![d_sae],
                data: f32s((0..d_sae).map(|_| scale)),
            },
            Tensor {
                name: "b_enc",
                dtype: "F32",
                shape: vec![d_sae],
                data: f32s((0..d_sae).map(|_| r.sym() * 0.1)),
            },
            Tensor {
                name: "b_dec",
                dtype: "F32",
                shape: vec![d_in],
                data: f32s((0..d_in).map(|_| r.sym() * 0.1)),
            },
        ];
        let prov = "firmware-sim build.rs: seeded random int8 stand-in for models/tiny-128hz-int8 (not trained)";
        write(
            &dst,
            &meta(2, d_in, d_sae, k, d_in / 2, rate, prov),
            &tensors,
        );
        dims += &format!(
            "/// int8 model sizes.\npub const I8_D: usize = {d_in};\npub const I8_S: usize = {d_sae};\npub const I8_K: usize = {k};\n/// int8 model sampling rate (Hz).\npub const I8_RATE: usize = {rate};\n"
        );
        println!(
            "cargo:rustc-env=FIRMWARE_INT8_SOURCE=generated stand-in (models/tiny-128hz-int8.safetensors absent)"
        );
    }
    write_if_changed(&out.join("dims.rs"), dims.as_bytes());
}
