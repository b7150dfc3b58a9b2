//! EDF+ time-stamped annotation lists (TALs), the content of "EDF Annotations" signals.
//!
//! Each TAL is `+onset[0x15 duration]0x14[text 0x14]* 0x00`; a record's annotation bytes
//! hold TALs back to back, then 0x00 padding. The first TAL of each record's first
//! annotation signal is "time-keeping": its onset is the record's start time (seconds
//! from the file start) and its text is empty.

/// One time-stamped annotation list as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Tal {
    /// Onset in seconds relative to the file start.
    pub onset: f64,
    /// The onset exactly as written (e.g. "+12.3456789"), for lossless comparison.
    pub onset_text: String,
    /// Duration in seconds, when given.
    pub duration: Option<f64>,
    /// The annotation texts (UTF-8; invalid bytes replaced by U+FFFD). Empty strings
    /// are kept (a time-keeping TAL has exactly one, empty, text).
    pub texts: Vec<String>,
}

impl Tal {
    /// Whether this TAL carries no text (only a time stamp).
    pub fn is_time_keeping(&self) -> bool {
        self.texts.iter().all(|t| t.is_empty())
    }
}

/// One annotation: an onset, an optional duration and one text.
#[derive(Clone, Debug, PartialEq)]
pub struct Annotation {
    /// Onset in seconds from the file start.
    pub onset: f64,
    /// Duration in seconds, when given.
    pub duration: Option<f64>,
    /// The text.
    pub text: String,
}

fn is_decimal(b: &[u8]) -> bool {
    // digits, optionally one '.' followed by digits; at least one digit before the dot.
    let mut parts = b.splitn(2, |&c| c == b'.');
    let int = parts.next().unwrap_or(&[]);
    let frac = parts.next();
    !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

fn parse_decimal(b: &[u8]) -> Option<f64> {
    if !is_decimal(b) {
        return None;
    }
    std::str::from_utf8(b)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// Parse every TAL in one annotation signal's bytes of one record. Errors are plain
/// messages; the caller adds the record and channel.
pub fn parse_tals(bytes: &[u8]) -> Result<Vec<Tal>, String> {
    let mut out = Vec::new();
    for tal in bytes.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Some(first) = tal.iter().position(|&b| b == 0x14) else {
            return Err(format!(
                "TAL {:?} has no 0x14 after its onset",
                String::from_utf8_lossy(tal)
            ));
        };
        let stamp = &tal[..first];
        let (onset_b, dur_b) = match stamp.iter().position(|&b| b == 0x15) {
            Some(p) => (&stamp[..p], Some(&stamp[p + 1..])),
            None => (stamp, None),
        };
        let sign = match onset_b.first() {
            Some(b'+') => 1.0,
            Some(b'-') => -1.0,
            _ => {
                return Err(format!(
                    "onset {:?} does not start with '+' or '-'",
                    String::from_utf8_lossy(onset_b)
                ));
            }
        };
        let onset = parse_decimal(&onset_b[1..]).ok_or_else(|| {
            format!(
                "onset {:?} is not a decimal number",
                String::from_utf8_lossy(onset_b)
            )
        })? * sign;
        let duration = match dur_b {
            Some(d) => Some(parse_decimal(d).ok_or_else(|| {
                format!(
                    "duration {:?} is not a decimal number",
                    String::from_utf8_lossy(d)
                )
            })?),
            None => None,
        };
        let rest = &tal[first + 1..];
        if rest.last() != Some(&0x14) {
            return Err(format!(
                "TAL {:?} does not end with 0x14",
                String::from_utf8_lossy(tal)
            ));
        }
        let texts = rest[..rest.len() - 1]
            .split(|&b| b == 0x14)
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        out.push(Tal {
            onset,
            onset_text: String::from_utf8_lossy(onset_b).into_owned(),
            duration,
            texts,
        });
    }
    Ok(out)
}

/// Encode TALs into `width` bytes (0x00 padded), for writing annotation signals.
/// Returns None when they do not fit.
pub fn encode_tals(tals: &[Tal], width: usize) -> Option<Vec<u8>> {
    let mut b = Vec::with_capacity(width);
    for t in tals {
        b.extend_from_slice(t.onset_text.as_bytes());
        if let Some(d) = t.duration {
            b.push(0x15);
            b.extend_from_slice(format!("{d}").as_bytes());
        }
        b.push(0x14);
        for text in &t.texts {
            b.extend_from_slice(text.as_bytes());
            b.push(0x14);
        }
        b.push(0);
    }
    if b.len() > width {
        return None;
    }
    b.resize(width, 0);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_time_keeping_and_events() {
        let bytes =
            b"+0\x14\x14\x00+1.5\x1530\x14Eyes closed\x14T0\x14\x00-0.25\x14x\x14\x00\x00\x00";
        let t = parse_tals(bytes).unwrap();
        assert_eq!(t.len(), 3);
        assert!(t[0].is_time_keeping());
        assert_eq!(t[0].onset, 0.0);
        assert_eq!((t[1].onset, t[1].duration), (1.5, Some(30.0)));
        assert_eq!(t[1].texts, vec!["Eyes closed", "T0"]);
        assert_eq!((t[2].onset, t[2].onset_text.as_str()), (-0.25, "-0.25"));
        assert_eq!(encode_tals(&t, bytes.len()).unwrap(), bytes.to_vec());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"0\x14\x14\x00"[..],
            b"+\x14\x14",
            b"+1e3\x14\x14",
            b"+1",
            b"+1\x14x",
            b"+1\x15\x14\x14",
            b"+.5\x14\x14",
        ] {
            assert!(
                parse_tals(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
