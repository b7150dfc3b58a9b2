//! `include/mfr_eeg.h` is what cbindgen generates from `src/lib.rs` now. After changing the
//! ABI, regenerate it with `MFR_BLESS=1 cargo test --release -p mfr-eeg-capi --test header`.

use std::path::Path;

#[test]
fn checked_in_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses src/lib.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let header = dir.join("../include/mfr_eeg.h");
    if std::env::var_os("MFR_BLESS").is_some() {
        std::fs::write(&header, &generated).unwrap();
    }
    let checked_in = std::fs::read(&header).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is stale; regenerate it with \
         MFR_BLESS=1 cargo test --release -p mfr-eeg-capi --test header",
        header.display()
    );
}
