//! Language codes: ISO 639-1 two-letter codes, plus the ISO 639-2/3 local-use range
//! `qaa`–`qtz`, which Rosetta's synthetic languages use so they never pose as real ones.

/// Every ISO 639-1 code (the 183 two-letter codes of the standard plus `sh`).
const ISO_639_1: &[&str] = &[
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bi", "bm", "bn", "bo",
    "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de", "dv", "dz", "ee", "el", "en", "eo",
    "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy", "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi",
    "ho", "hr", "ht", "hu", "hy", "hz", "ia", "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka",
    "kg", "ki", "kj", "kk", "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln",
    "lo", "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd", "ne", "ng",
    "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl", "ps", "pt", "qu", "rm", "rn",
    "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "sh", "si", "sk", "sl", "sm", "sn", "so", "sq", "sr", "ss", "st",
    "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk", "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk",
    "ur", "uz", "ve", "vi", "vo", "wa", "wo", "xh", "yi", "yo", "za", "zh", "zu",
];

/// True for an ISO 639-1 code or a local-use code `qaa`–`qtz` (lowercase only).
pub fn is_known_language(code: &str) -> bool {
    if ISO_639_1.binary_search(&code).is_ok() {
        return true;
    }
    let bytes = code.as_bytes();
    bytes.len() == 3 && bytes[0] == b'q' && (b'a'..=b't').contains(&bytes[1]) && bytes[2].is_ascii_lowercase()
}

/// The message used when a code is not known, so every reader words it the same way.
pub fn unknown_language_message(code: &str) -> String {
    format!("unknown language code {code:?}: expected an ISO 639-1 code (e.g. \"en\") or a local-use code qaa–qtz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(ISO_639_1.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn accepts_real_and_local_use_codes() {
        for code in ["en", "zh", "ar", "th", "el", "vi", "qaa", "qtz"] {
            assert!(is_known_language(code), "{code}");
        }
    }

    #[test]
    fn rejects_unknown_codes() {
        for code in ["xx", "EN", "eng", "qua", "", "e", "en-US"] {
            assert!(!is_known_language(code), "{code}");
        }
    }
}
