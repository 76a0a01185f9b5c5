//! How many SMS parts a text takes: GSM 03.38 (7-bit) when every character is in its alphabet,
//! UCS-2 otherwise.

/// The GSM 03.38 basic alphabet (one septet each).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: an escape plus one septet each.
const EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// The encoding an SMS needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 03.38, 7 bits a character: 160 in one part, 153 per part when split.
    Gsm7,
    /// UCS-2 (UTF-16 code units): 70 in one part, 67 per part when split.
    Ucs2,
}

/// How a text is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// The encoding.
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Parts the text is sent in.
    pub parts: usize,
}

impl Segments {
    /// Counts the parts of `text`.
    pub fn of(text: &str) -> Self {
        let mut septets = 0;
        let mut gsm = true;
        for c in text.chars() {
            if BASIC.contains(c) {
                septets += 1;
            } else if EXTENSION.contains(c) {
                septets += 2;
            } else {
                gsm = false;
                break;
            }
        }
        let (encoding, units, single, multi) = if gsm {
            (Encoding::Gsm7, septets, 160, 153)
        } else {
            (Encoding::Ucs2, text.encode_utf16().count(), 70, 67)
        };
        let parts = match units {
            0 => 1,
            n if n <= single => 1,
            n => n.div_ceil(multi),
        };
        Self {
            encoding,
            units,
            parts,
        }
    }

    /// Units that fit in `parts` parts with this encoding.
    pub fn capacity(encoding: Encoding, parts: usize) -> usize {
        match (encoding, parts) {
            (_, 0) => 0,
            (Encoding::Gsm7, 1) => 160,
            (Encoding::Gsm7, n) => 153 * n,
            (Encoding::Ucs2, 1) => 70,
            (Encoding::Ucs2, n) => 67 * n,
        }
    }
}

/// Cuts `text` into numbered messages (`(1/3) …`) of at most `max_segments` parts each, at
/// word boundaries where it can; `None` if that takes more than `max_messages` messages.
pub fn split(text: &str, max_segments: usize, max_messages: usize) -> Option<Vec<String>> {
    let text = text.trim();
    // The numbering's length depends on how many messages there are: try one digit, then two.
    for placeholder in ["(9/9) ", "(99/99) ", "(999/999) "] {
        let chunks = chunk(text, max_segments, placeholder)?;
        let n = chunks.len();
        let digits = (placeholder.len() - 4) / 2;
        if n.to_string().len() > digits {
            continue;
        }
        if n > max_messages {
            return None;
        }
        return Some(
            chunks
                .into_iter()
                .enumerate()
                .map(|(i, c)| format!("({}/{n}) {c}", i + 1))
                .collect(),
        );
    }
    None
}

/// Greedy word-wise chunks that fit `max_segments` parts behind `prefix`.
fn chunk(text: &str, max_segments: usize, prefix: &str) -> Option<Vec<String>> {
    let fits = |s: &str| Segments::of(&format!("{prefix}{}", s.trim_end())).parts <= max_segments;
    let mut chunks = Vec::new();
    let mut current = String::new();
    for token in text.split_inclusive(char::is_whitespace) {
        if fits(&format!("{current}{token}")) {
            current.push_str(token);
            continue;
        }
        if !current.trim().is_empty() {
            chunks.push(std::mem::take(&mut current).trim_end().to_owned());
        }
        current.clear();
        if fits(token) {
            current.push_str(token);
        } else {
            // A word longer than a message: cut it by characters.
            for c in token.chars() {
                if !fits(&format!("{current}{c}")) {
                    if current.is_empty() {
                        return None;
                    }
                    chunks.push(std::mem::take(&mut current));
                }
                current.push(c);
            }
        }
    }
    if !current.trim().is_empty() {
        chunks.push(current.trim_end().to_owned());
    }
    Some(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swedish(len: usize) -> String {
        "Hej! Vi har läst ditt meddelande och återkommer på måndag. Ärendet är öppet. "
            .chars()
            .cycle()
            .take(len)
            .collect()
    }

    #[test]
    fn swedish_letters_are_gsm7() {
        let text = swedish(400);
        assert_eq!(text.chars().count(), 400);
        assert_eq!(
            Segments::of(&text),
            Segments {
                encoding: Encoding::Gsm7,
                units: 400,
                parts: 3
            }
        );
    }

    #[test]
    fn an_en_dash_or_an_emoji_makes_it_ucs2() {
        let dash: String = swedish(399) + "–";
        assert_eq!(Segments::of(&dash).encoding, Encoding::Ucs2);
        assert_eq!(Segments::of(&dash).parts, 6);
        let emoji: String = swedish(399) + "🙂";
        let segments = Segments::of(&emoji);
        assert_eq!(
            (segments.encoding, segments.units, segments.parts),
            (Encoding::Ucs2, 401, 6)
        );
    }

    #[test]
    fn boundaries() {
        assert_eq!(Segments::of("").parts, 1);
        assert_eq!(Segments::of(&"a".repeat(160)).parts, 1);
        assert_eq!(Segments::of(&"a".repeat(161)).parts, 2);
        assert_eq!(Segments::of(&"a".repeat(306)).parts, 2);
        assert_eq!(Segments::of(&"a".repeat(307)).parts, 3);
        // Extension characters take two septets.
        assert_eq!(Segments::of(&"€".repeat(80)).units, 160);
        assert_eq!(Segments::of(&"€".repeat(81)).parts, 2);
        assert_eq!(Segments::of(&"ж".repeat(70)).parts, 1);
        assert_eq!(Segments::of(&"ж".repeat(71)).parts, 2);
    }
}

#[cfg(test)]
mod split_tests {
    use proptest::prelude::*;

    use super::{split, Segments};

    #[test]
    fn a_long_swedish_reply_becomes_numbered_messages() {
        let text = "Hej! Vi har tittat på din ansökan om försörjningsstöd och behöver några fler \
                    uppgifter innan vi kan fatta beslut. "
            .repeat(6);
        let parts = split(&text, 1, 10).unwrap();
        assert!(parts.len() > 1);
        let n = parts.len();
        for (i, part) in parts.iter().enumerate() {
            assert!(part.starts_with(&format!("({}/{n}) ", i + 1)), "{part}");
            assert_eq!(Segments::of(part).parts, 1, "{part}");
        }
        assert!(split(&text, 1, 2).is_none(), "more messages than allowed");
    }

    proptest! {
        /// Every part fits, and the parts hold the whole text, in order, words intact.
        #[test]
        fn parts_fit_and_keep_the_text(
            words in proptest::collection::vec("[a-zåäö€]{1,12}|[😀ж]{1,3}", 1..120),
            max_segments in 1usize..4,
        ) {
            let text = words.join(" ");
            let Some(parts) = split(&text, max_segments, 1000) else {
                return Ok(());
            };
            let n = parts.len();
            let mut rebuilt = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                prop_assert!(Segments::of(part).parts <= max_segments, "{}", part);
                let prefix = format!("({}/{n}) ", i + 1);
                prop_assert!(part.starts_with(&prefix));
                rebuilt.push(part[prefix.len()..].to_owned());
            }
            let rebuilt = rebuilt.join(" ");
            prop_assert_eq!(rebuilt.split_whitespace().collect::<Vec<_>>(),
                            text.split_whitespace().collect::<Vec<_>>());
        }
    }
}
