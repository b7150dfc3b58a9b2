//! EDF I/O speed on the shipped 64-channel, 61 s, 160 Hz recording (1.3 MB): header parse,
//! reading every EEG channel as f32, and a full rewrite with every EEG channel replaced.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use mfr_eeg::io::edf::{ChannelData, EdfReader, parse_header, read_channels_physical, rewrite};

const EEGMMIDB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/eegmmidb_S001R02_64ch_160Hz_61s.edf"
);

fn bench(c: &mut Criterion) {
    let bytes = std::fs::read(EEGMMIDB).unwrap();
    let chans: Vec<usize> = (0..64).collect();
    c.bench_function("edf/parse_header_65_signals", |b| {
        b.iter(|| parse_header(black_box(&bytes)).unwrap())
    });
    c.bench_function("edf/read_64ch_61s_physical", |b| {
        b.iter(|| read_channels_physical(black_box(EEGMMIDB), &chans).unwrap())
    });
    c.bench_function("edf/stream_records_61", |b| {
        b.iter(|| {
            let mut r = EdfReader::open(EEGMMIDB).unwrap();
            let mut rec = r.new_record();
            let mut n = 0;
            while r.read_record_into(&mut rec).unwrap() {
                n += rec.bytes().len();
            }
            n
        })
    });
    let data = read_channels_physical(EEGMMIDB, &chans).unwrap();
    let reps: Vec<ChannelData> = chans
        .iter()
        .zip(&data)
        .map(|(&channel, v)| ChannelData {
            channel,
            physical: v,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.edf");
    c.bench_function("edf/rewrite_64ch_replaced", |b| {
        b.iter(|| rewrite(Path::new(EEGMMIDB), &out, &reps).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
