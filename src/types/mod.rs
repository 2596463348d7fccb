//! Value types shared across domains. Raw input becomes one of these at the edge (parse, don't
//! validate), so code behind the edge never re-checks it.

mod email;
mod trace;

pub use email::Email;
pub use trace::TraceParent;

/// Whether `c` should never appear in a name or address someone else will read: control
/// characters, and the invisible format characters that can disguise text (zero-width spaces
/// and joiners, bidirectional overrides such as U+202E, the soft hyphen, the byte-order mark).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Whether `name` is a plain GraphQL name of at most 64 characters (`[_A-Za-z][_0-9A-Za-z]*`):
/// safe to log and to use as a metric label.
pub fn is_plain_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic())
        && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_and_zero_width_characters_are_invisible_letters_are_not() {
        for c in ['\u{202E}', '\u{200B}', '\u{FEFF}', '\n', '\u{7}'] {
            assert!(is_invisible(c), "{c:?}");
        }
        for c in ['a', 'é', 'ß', '-', ' ', '日'] {
            assert!(!is_invisible(c), "{c:?}");
        }
    }
}
