//! EDF, EDF+ (C and D) and BDF/BDF+ (24-bit) reading and writing, in-house.
//!
//! - [`parse_header`]: pure, strict header parser over bytes -> [`Header`].
//! - [`EdfReader`]: streaming reader (one [`Record`] at a time; digital, physical,
//!   raw bytes, [`Tal`] annotations), plus whole-channel helpers such as
//!   [`read_channels_physical`].
//! - [`EdfWriter`], [`rewrite`], [`rewrite_with`]: atomic writers that copy the header and
//!   every untouched byte of the input and re-encode only the replaced channels (rounding,
//!   clipping and counting clipped samples).
//! - [`select_channels`]: the default EEG channel rule and label matching.
//!
//! Selected channels are read whole as f32 (64 channels x 1 h at 256 Hz = 236 MB), since
//! the denoiser needs long context and resampling; everything else streams record by record.
//!
//! ```
//! use mfr_eeg::io::edf::{ChannelData, EdfReader, rewrite, select_channels};
//! # fn main() -> Result<(), mfr_eeg::io::edf::EdfError> {
//! let input = std::path::Path::new(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/data/eegmmidb_S001R02_64ch_160Hz_61s.edf"
//! ));
//! let mut reader = EdfReader::open(input)?;
//! let eeg = select_channels(reader.header(), None)?; // the 64 EEG channels
//! let mut data = reader.read_channels_physical(&eeg)?; // whole channels, in uV
//! for x in &mut data {
//!     x.iter_mut().for_each(|v| *v *= 0.5); // stand-in for the denoiser
//! }
//! let reps: Vec<ChannelData> =
//!     eeg.iter().zip(&data).map(|(&channel, physical)| ChannelData { channel, physical }).collect();
//! let output = std::env::temp_dir().join(format!("mfr-eeg-doc-{}.edf", std::process::id()));
//! let summary = rewrite(input, &output, &reps)?; // header, annotations copied bit for bit
//! assert_eq!((summary.records, summary.total_clipped()), (61, 0));
//! # std::fs::remove_file(&output).ok();
//! # Ok(())
//! # }
//! ```
//!
//! Why in-house: edfplus 0.1.0 refuses plain EDF, EDF+D and BDF, drops annotations and
//! pads headers with NUL bytes; edf-rs 0.2.0 is early-stage. EDF is small, and we need
//! byte-exact copies, streaming and stricter validation than either.

mod error;
mod header;
mod reader;
mod select;
mod tal;
mod writer;

pub use error::{ChannelRef, EdfError, FormatError};
pub use header::{
    FIXED_HEADER_BYTES, Format, Header, HeaderSpec, Plus, SIGNAL_HEADER_BYTES, SignalHeader,
    format_number, parse_header,
};
pub use reader::{
    EdfReader, Record, read_annotations, read_channel_physical, read_channels_physical,
};
pub use select::{NON_EEG_PREFIXES, is_eeg, is_voltage, normalise_label, select_channels};
pub use tal::{Annotation, Tal, encode_tals, parse_tals};
pub use writer::{
    AtomicFile, ChannelData, ClipCount, EdfWriter, RewriteError, RewriteSummary,
    check_output_is_not_input, encode_physical, rewrite, rewrite_checked, rewrite_with,
};
