//! Language codes: ISO 639-1 two-letter codes, plus the ISO 639-2/3 local-use range
//! `qaa`–`qtz`, which Rosetta's synthetic languages use so they never pose as real ones, and
//! variants `base_Suffix` (an ISO 15924 script or ISO 3166 region after an ISO 639-1/-3 code:
//! `ben_Latn`, `zh_HK`) for releases that tell several forms of one language apart. Converters
//! map release codes (FLORES-200 `deu_Latn`, ISO 639-3 `deu`, MKQA `zh_cn`) to these with
//! [`normalise_language`]. Pool labels `q-c` name a cross-lingual sub-set (queries in q, corpus
//! in c) of a qrels benchmark.

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

/// ISO 639-3 (and 639-2/T) codes of languages with an ISO 639-1 code, with the script a
/// FLORES-200 code carries for the language's usual written form: (639-3, 639-1, script).
/// Sorted by the first column.
const ISO_639_3: &[(&str, &str, &str)] = &[
    ("afr", "af", "Latn"),
    ("als", "sq", "Latn"),
    ("amh", "am", "Ethi"),
    ("ara", "ar", "Arab"),
    ("arb", "ar", "Arab"),
    ("azj", "az", "Latn"),
    ("bel", "be", "Cyrl"),
    ("ben", "bn", "Beng"),
    ("bos", "bs", "Latn"),
    ("bul", "bg", "Cyrl"),
    ("cat", "ca", "Latn"),
    ("ces", "cs", "Latn"),
    ("ckb", "ku", "Arab"),
    ("cmn", "zh", "Hans"),
    ("cym", "cy", "Latn"),
    ("dan", "da", "Latn"),
    ("deu", "de", "Latn"),
    ("ell", "el", "Grek"),
    ("eng", "en", "Latn"),
    ("est", "et", "Latn"),
    ("eus", "eu", "Latn"),
    ("fas", "fa", "Arab"),
    ("fin", "fi", "Latn"),
    ("fra", "fr", "Latn"),
    ("gle", "ga", "Latn"),
    ("glg", "gl", "Latn"),
    ("guj", "gu", "Gujr"),
    ("hau", "ha", "Latn"),
    ("heb", "he", "Hebr"),
    ("hin", "hi", "Deva"),
    ("hrv", "hr", "Latn"),
    ("hun", "hu", "Latn"),
    ("hye", "hy", "Armn"),
    ("ibo", "ig", "Latn"),
    ("ind", "id", "Latn"),
    ("isl", "is", "Latn"),
    ("ita", "it", "Latn"),
    ("jav", "jv", "Latn"),
    ("jpn", "ja", "Jpan"),
    ("kan", "kn", "Knda"),
    ("kat", "ka", "Geor"),
    ("kaz", "kk", "Cyrl"),
    ("khk", "mn", "Cyrl"),
    ("khm", "km", "Khmr"),
    ("kin", "rw", "Latn"),
    ("kir", "ky", "Cyrl"),
    ("kor", "ko", "Hang"),
    ("lao", "lo", "Laoo"),
    ("lit", "lt", "Latn"),
    ("lvs", "lv", "Latn"),
    ("mal", "ml", "Mlym"),
    ("mar", "mr", "Deva"),
    ("mkd", "mk", "Cyrl"),
    ("mlt", "mt", "Latn"),
    ("mon", "mn", "Cyrl"),
    ("msa", "ms", "Latn"),
    ("mya", "my", "Mymr"),
    ("nld", "nl", "Latn"),
    ("nno", "nn", "Latn"),
    ("nob", "nb", "Latn"),
    ("nor", "no", "Latn"),
    ("npi", "ne", "Deva"),
    ("pan", "pa", "Guru"),
    ("pes", "fa", "Arab"),
    ("pol", "pl", "Latn"),
    ("por", "pt", "Latn"),
    ("ron", "ro", "Latn"),
    ("rus", "ru", "Cyrl"),
    ("sin", "si", "Sinh"),
    ("slk", "sk", "Latn"),
    ("slv", "sl", "Latn"),
    ("sna", "sn", "Latn"),
    ("som", "so", "Latn"),
    ("spa", "es", "Latn"),
    ("sqi", "sq", "Latn"),
    ("srp", "sr", "Cyrl"),
    ("swa", "sw", "Latn"),
    ("swe", "sv", "Latn"),
    ("swh", "sw", "Latn"),
    ("tam", "ta", "Taml"),
    ("tel", "te", "Telu"),
    ("tgk", "tg", "Cyrl"),
    ("tgl", "tl", "Latn"),
    ("tha", "th", "Thai"),
    ("tur", "tr", "Latn"),
    ("ukr", "uk", "Cyrl"),
    ("urd", "ur", "Arab"),
    ("uzn", "uz", "Latn"),
    ("vie", "vi", "Latn"),
    ("wol", "wo", "Latn"),
    ("xho", "xh", "Latn"),
    ("yor", "yo", "Latn"),
    ("zho", "zh", "Hans"),
    ("zsm", "ms", "Latn"),
    ("zul", "zu", "Latn"),
];

fn is_plain_code(code: &str) -> bool {
    if ISO_639_1.binary_search(&code).is_ok() {
        return true;
    }
    let bytes = code.as_bytes();
    bytes.len() == 3 && bytes[0] == b'q' && (b'a'..=b't').contains(&bytes[1]) && bytes[2].is_ascii_lowercase()
}

/// A variant `base_Suffix`: base an ISO 639-1 code or three lowercase letters (ISO 639-3),
/// suffix a script (`Latn`: one capital, three lowercase) or a region (`HK`: two capitals).
fn is_variant(code: &str) -> bool {
    let Some((base, suffix)) = code.split_once('_') else { return false };
    let base_ok = is_plain_code(base) || (base.len() == 3 && base.bytes().all(|b| b.is_ascii_lowercase()));
    let s = suffix.as_bytes();
    let script = s.len() == 4 && s[0].is_ascii_uppercase() && s[1..].iter().all(u8::is_ascii_lowercase);
    let region = s.len() == 2 && s.iter().all(u8::is_ascii_uppercase);
    base_ok && (script || region)
}

/// True for an ISO 639-1 code, a local-use code `qaa`–`qtz` (lowercase only), or a variant
/// `base_Suffix` (`ben_Latn`, `zh_HK`).
pub fn is_known_language(code: &str) -> bool {
    is_plain_code(code) || is_variant(code)
}

/// True for a language, or `q-c` of two languages: a cross-lingual qrels sub-set's pool label.
pub fn is_pool_label(label: &str) -> bool {
    is_known_language(label)
        || label.split_once('-').is_some_and(|(query, corpus)| is_known_language(query) && is_known_language(corpus))
}

/// A release's language code in Rosetta's form: ISO 639-1 where the language has one (`deu`,
/// `deu_Latn` → `de`; `zh_cn` → `zh`), a variant otherwise (`ben_Latn`, `zh_hk` → `zh_HK`);
/// `None` when it is neither.
pub fn normalise_language(code: &str) -> Option<String> {
    if is_plain_code(code) {
        return Some(code.to_string());
    }
    let lookup = |three: &str| ISO_639_3.binary_search_by(|(c, _, _)| c.cmp(&three)).ok().map(|i| ISO_639_3[i]);
    let (base, suffix) = match code.split_once(['_', '-']) {
        Some((base, suffix)) => (base.to_ascii_lowercase(), Some(suffix)),
        None => (code.to_ascii_lowercase(), None),
    };
    let (two, script) = match base.len() {
        2 if is_plain_code(&base) => (Some(base.clone()), None),
        3 => lookup(&base).map_or((None, None), |(_, two, script)| (Some(two.to_string()), Some(script))),
        _ => (None, None),
    };
    let Some(suffix) = suffix else { return two };
    let suffix = if suffix.len() == 2 {
        suffix.to_ascii_uppercase()
    } else {
        let mut chars = suffix.chars();
        chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase())
            .unwrap_or_default()
    };
    // The usual script, or mainland China's Chinese, is the plain language.
    if let Some(two) = &two
        && (script == Some(suffix.as_str()) || (two == "zh" && (suffix == "CN" || suffix == "Hans")))
    {
        return Some(two.clone());
    }
    let variant = format!("{}_{suffix}", two.unwrap_or(base));
    is_variant(&variant).then_some(variant)
}

/// The message used when a code is not known, so every reader words it the same way.
pub fn unknown_language_message(code: &str) -> String {
    format!(
        "unknown language code {code:?}: expected an ISO 639-1 code (e.g. \"en\"), a local-use code qaa–qtz, or a \
         variant such as \"ben_Latn\" or \"zh_HK\""
    )
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
        for code in ["xx", "EN", "eng", "qua", "", "e", "en-US", "en_us", "en_Latin", "_Latn", "de_"] {
            assert!(!is_known_language(code), "{code}");
        }
    }

    #[test]
    fn three_letter_table_is_sorted_and_maps_to_known_codes() {
        assert!(ISO_639_3.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(ISO_639_3.iter().all(|(_, two, _)| is_known_language(two)));
    }

    #[test]
    fn release_codes_normalise_to_iso_639_1_or_a_variant() {
        for (code, expected) in [
            ("de", Some("de")),
            ("deu", Some("de")),
            ("deu_Latn", Some("de")),
            ("arb_Arab", Some("ar")),
            ("zho_Hans", Some("zh")),
            ("zho_Hant", Some("zh_Hant")),
            ("ben_Latn", Some("bn_Latn")),
            ("zh_cn", Some("zh")),
            ("zh_hk", Some("zh_HK")),
            ("zh_tw", Some("zh_TW")),
            ("ace_Arab", Some("ace_Arab")),
            ("xyz", None),
            ("english", None),
        ] {
            assert_eq!(normalise_language(code).as_deref(), expected, "{code}");
            if let Some(label) = expected {
                assert!(is_known_language(label), "{label}");
            }
        }
    }

    #[test]
    fn pool_labels_are_languages_or_two_joined() {
        for label in ["de", "en-de", "zh_HK-en", "qaa-qab"] {
            assert!(is_pool_label(label), "{label}");
        }
        for label in ["en-", "-de", "en-de-fr", "eng-deu"] {
            assert!(!is_pool_label(label), "{label}");
        }
    }
}
