//! Choosing channels: the default EEG rule and matching user-given labels.

use super::error::EdfError;
use super::header::{Header, SignalHeader};

/// Label prefixes (case-insensitive) of signal types that are not scalp EEG even when
/// they are recorded in volts. No 10-20/10-10/10-5 electrode name starts with any of them.
pub const NON_EEG_PREFIXES: &[&str] = &[
    "EOG", "ECG", "EKG", "EMG", "RESP", "TRIG", "STATUS", "EVENT", "SPO2", "SAO2", "PLETH",
    "PULSE", "PPG", "HR", "TEMP", "GSR", "EDA", "ACC", "GYRO", "BP", "PHOTIC", "LIGHT", "SNORE",
    "MIC", "POS", "BODY", "DC", "MARK",
];

/// Whether a physical dimension is a voltage: uV, µV, mV, nV or V (case-insensitive,
/// surrounding spaces ignored).
pub fn is_voltage(dimension: &str) -> bool {
    let d = dimension.trim().to_lowercase();
    matches!(d.as_str(), "uv" | "µv" | "μv" | "mv" | "nv" | "v")
}

/// The default EEG rule: not an annotation signal, physical dimension is a voltage
/// ([`is_voltage`]), and the label (after an optional leading "EEG " / "EEG-" type word,
/// which marks EEG explicitly) does not start with a non-EEG type in [`NON_EEG_PREFIXES`].
pub fn is_eeg(sig: &SignalHeader) -> bool {
    if sig.is_annotation() || !is_voltage(&sig.physical_dimension) {
        return false;
    }
    let l = sig.label.trim().to_uppercase();
    if l.starts_with("EEG") {
        return true;
    }
    !NON_EEG_PREFIXES.iter().any(|p| l.starts_with(p))
}

/// A label as compared with user input: spaces trimmed, trailing dots removed (EEGMMIDB
/// pads labels with dots: "Fp1." "Cz.."), lower case.
pub fn normalise_label(label: &str) -> String {
    label.trim().trim_end_matches('.').trim().to_lowercase()
}

/// The channels to process: with `names`, each name's channel in the order given;
/// without, every channel [`is_eeg`] accepts, in file order.
///
/// A name matches a label when they are equal after [`normalise_label`]; when no label
/// matches that way, a label of the form `EEG <name>` (or `EEG <name>-REF` etc. with the
/// name followed by '-') also matches. Unknown names and names matching several
/// channels are errors listing the labels; a channel named twice is an error.
pub fn select_channels(header: &Header, names: Option<&[String]>) -> Result<Vec<usize>, EdfError> {
    let sigs = header.signals();
    let Some(names) = names else {
        let v: Vec<usize> = (0..sigs.len()).filter(|&i| is_eeg(&sigs[i])).collect();
        if v.is_empty() {
            return Err(EdfError::NoEegChannels {
                file: None,
                available: sigs
                    .iter()
                    .map(|s| format!("{} [{}]", s.label.trim(), s.physical_dimension.trim()))
                    .collect(),
            });
        }
        return Ok(v);
    };
    let norm: Vec<String> = sigs.iter().map(|s| normalise_label(&s.label)).collect();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let n = normalise_label(name);
        let mut hits: Vec<usize> = (0..sigs.len())
            .filter(|&i| !n.is_empty() && norm[i] == n)
            .collect();
        if hits.is_empty() && !n.is_empty() {
            hits = (0..sigs.len())
                .filter(|&i| {
                    let l = &norm[i];
                    let rest = l.strip_prefix("eeg ").or_else(|| l.strip_prefix("eeg-"));
                    rest.is_some_and(|r| {
                        r == n
                            || r.strip_prefix(n.as_str())
                                .is_some_and(|t| t.starts_with('-'))
                    })
                })
                .collect();
        }
        match hits.len() {
            1 if out.contains(&hits[0]) => {
                return Err(EdfError::InvalidRequest {
                    file: None,
                    channel: header.channel_ref(hits[0]),
                    problem: format!("selected twice (by {name:?})"),
                });
            }
            1 => out.push(hits[0]),
            0 => {
                return Err(EdfError::UnknownChannel {
                    file: None,
                    label: name.clone(),
                    available: sigs.iter().map(|s| s.label.trim().to_string()).collect(),
                });
            }
            _ => {
                return Err(EdfError::AmbiguousChannel {
                    file: None,
                    label: name.clone(),
                    matches: hits
                        .iter()
                        .map(|&i| sigs[i].label.trim().to_string())
                        .collect(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(label: &str, dim: &str) -> SignalHeader {
        SignalHeader {
            label: label.into(),
            transducer: String::new(),
            physical_dimension: dim.into(),
            physical_min: -1.0,
            physical_max: 1.0,
            digital_min: -1,
            digital_max: 1,
            prefiltering: String::new(),
            samples_per_record: 1,
            reserved: String::new(),
        }
    }

    #[test]
    fn eeg_rule() {
        assert!(is_eeg(&sig("Fp1.", "uV")));
        assert!(is_eeg(&sig("EEG Fp1-REF", "uV")));
        assert!(is_eeg(&sig("C3", "mV")));
        assert!(is_eeg(&sig("PO3", "UV")));
        assert!(!is_eeg(&sig("EOG left", "uV")));
        assert!(!is_eeg(&sig("ECG", "mV")));
        assert!(!is_eeg(&sig("Status", "Boolean")));
        assert!(!is_eeg(&sig("Fp1", "degC")));
        assert!(!is_eeg(&sig("EDF Annotations", "")));
        assert!(!is_eeg(&sig("Resp chest", "uV")));
    }

    #[test]
    fn label_normalisation() {
        assert_eq!(normalise_label(" Fp1. "), "fp1");
        assert_eq!(normalise_label("Cz.."), "cz");
    }
}
