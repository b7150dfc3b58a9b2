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
    AtomicFile, ChannelData, ClipCount, EdfWriter, RewriteSummary, check_output_is_not_input,
    encode_physical, rewrite, rewrite_with,
};
