//! Synthetic languages: each has its own lexicon (drawn from its own phonology), word order,
//! question syntax and script, so that cross-lingual retrieval has to be learned.

use std::collections::HashSet;

use crate::rng::SeededRng;

/// Order of subject, verb and object in a clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    /// Subject, verb, object.
    Svo,
    /// Subject, object, verb.
    Sov,
    /// Verb, subject, object.
    Vso,
    /// Verb, object, subject.
    Vos,
    /// Object, subject, verb.
    Osv,
}

/// How a language writes its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Latin letters.
    Latin,
    /// Cyrillic letters (a letter-by-letter transliteration).
    Cyrillic,
    /// Greek letters (a letter-by-letter transliteration).
    Greek,
}

/// The fixed typology of one synthetic language; its words come from the seed.
#[derive(Debug, Clone, Copy)]
pub struct LanguageProfile {
    /// ISO 639 local-use code.
    pub code: &'static str,
    /// A readable name.
    pub name: &'static str,
    /// Clause word order.
    pub order: WordOrder,
    /// Script of every word, names included.
    pub script: Script,
    /// Question word moved to the front (else it stays where the object would be).
    pub wh_front: bool,
    /// Question particle closing every question, if any.
    pub question_particle: Option<&'static str>,
    /// Case suffix glued to objects, if any.
    pub object_suffix: Option<&'static str>,
    /// Numbers come before their noun ("1987 year") rather than after.
    pub number_first: bool,
    /// Consonants of the phonology.
    pub consonants: &'static str,
    /// Vowels of the phonology.
    pub vowels: &'static str,
    /// Whether syllables may end in a consonant.
    pub closed_syllables: bool,
}

/// Profiles of the available synthetic languages, in the order `--languages N` takes them.
pub const PROFILES: [LanguageProfile; 8] = [
    LanguageProfile {
        code: "qaa",
        name: "Alvic",
        order: WordOrder::Svo,
        script: Script::Latin,
        wh_front: true,
        question_particle: None,
        object_suffix: None,
        number_first: true,
        consonants: "ptkbdgmnlrs",
        vowels: "aeiou",
        closed_syllables: true,
    },
    LanguageProfile {
        code: "qab",
        name: "Bekari",
        order: WordOrder::Sov,
        script: Script::Latin,
        wh_front: false,
        question_particle: Some("ka"),
        object_suffix: Some("o"),
        number_first: true,
        consonants: "kstnhmyrw",
        vowels: "aiueo",
        closed_syllables: false,
    },
    LanguageProfile {
        code: "qac",
        name: "Cyrenic",
        order: WordOrder::Vso,
        script: Script::Cyrillic,
        wh_front: true,
        question_particle: Some("li"),
        object_suffix: None,
        number_first: false,
        consonants: "bvgdzklmnprst",
        vowels: "aeiouy",
        closed_syllables: true,
    },
    LanguageProfile {
        code: "qad",
        name: "Dunmel",
        order: WordOrder::Svo,
        script: Script::Latin,
        wh_front: false,
        question_particle: None,
        object_suffix: Some("en"),
        number_first: false,
        consonants: "dfghjlmnrsvw",
        vowels: "aeiouy",
        closed_syllables: true,
    },
    LanguageProfile {
        code: "qae",
        name: "Ellanic",
        order: WordOrder::Sov,
        script: Script::Greek,
        wh_front: true,
        question_particle: Some("na"),
        object_suffix: Some("is"),
        number_first: true,
        consonants: "pkthmnlrsz",
        vowels: "aeio",
        closed_syllables: false,
    },
    LanguageProfile {
        code: "qaf",
        name: "Farroq",
        order: WordOrder::Vos,
        script: Script::Latin,
        wh_front: false,
        question_particle: Some("qo"),
        object_suffix: None,
        number_first: false,
        consonants: "qfrtzkxlmn",
        vowels: "aou",
        closed_syllables: true,
    },
    LanguageProfile {
        code: "qag",
        name: "Goruni",
        order: WordOrder::Osv,
        script: Script::Latin,
        wh_front: true,
        question_particle: None,
        object_suffix: Some("u"),
        number_first: true,
        consonants: "gbrntlsmk",
        vowels: "aiou",
        closed_syllables: false,
    },
    LanguageProfile {
        code: "qah",
        name: "Hestan",
        order: WordOrder::Svo,
        script: Script::Cyrillic,
        wh_front: false,
        question_particle: Some("to"),
        object_suffix: Some("am"),
        number_first: false,
        consonants: "hstvnmkpr",
        vowels: "aeiou",
        closed_syllables: true,
    },
];

/// A language's generated vocabulary: one word per concept index.
#[derive(Debug, Clone)]
pub struct Language {
    /// Its typology.
    pub profile: LanguageProfile,
    words: Vec<String>,
}

impl Language {
    /// Generates `concepts` distinct words for `profile`, deterministic in `seed`.
    pub fn generate(profile: LanguageProfile, seed: u64, language_index: u64, concepts: usize) -> Self {
        let mut rng = SeededRng::from_parts(&[seed, 0x1E71C0, language_index]);
        let mut used = HashSet::new();
        let mut words = Vec::with_capacity(concepts);
        while words.len() < concepts {
            let syllables = 1 + rng.index(3);
            let word = make_word(&mut rng, profile.consonants, profile.vowels, profile.closed_syllables, syllables);
            if word.len() >= 2 && used.insert(word.clone()) {
                words.push(word);
            }
        }
        Self { profile, words }
    }

    /// The word for concept `index`, in this language's script.
    pub fn word(&self, index: usize) -> String {
        self.write(&self.words[index])
    }

    /// Writes Latin-letter text (a word or a name) in this language's script.
    pub fn write(&self, latin: &str) -> String {
        transliterate(latin, self.profile.script)
    }

    /// An object phrase with this language's case suffix.
    pub fn object(&self, latin_phrase_last: String) -> String {
        match self.profile.object_suffix {
            Some(suffix) => format!("{latin_phrase_last}{}", self.write(suffix)),
            None => latin_phrase_last,
        }
    }
}

/// A pseudo-word of `syllables` syllables drawn from the given phonology.
pub fn make_word(rng: &mut SeededRng, consonants: &str, vowels: &str, closed: bool, syllables: usize) -> String {
    let consonants: Vec<char> = consonants.chars().collect();
    let vowels: Vec<char> = vowels.chars().collect();
    let mut word = String::new();
    for _ in 0..syllables {
        word.push(consonants[rng.index(consonants.len())]);
        word.push(vowels[rng.index(vowels.len())]);
        if closed && rng.chance(0.3) {
            word.push(consonants[rng.index(consonants.len())]);
        }
    }
    word
}

/// Letter-by-letter transliteration of lowercase/uppercase Latin text; other characters pass.
pub fn transliterate(text: &str, script: Script) -> String {
    if script == Script::Latin {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        let lower = c.to_ascii_lowercase();
        let mapped = match script {
            Script::Cyrillic => cyrillic(lower),
            Script::Greek => greek(lower),
            Script::Latin => None,
        };
        match mapped {
            Some(m) if c.is_ascii_uppercase() => out.extend(m.chars().flat_map(char::to_uppercase)),
            Some(m) => out.push_str(m),
            None => out.push(c),
        }
    }
    out
}

fn cyrillic(c: char) -> Option<&'static str> {
    Some(match c {
        'a' => "а",
        'b' => "б",
        'c' => "ц",
        'd' => "д",
        'e' => "е",
        'f' => "ф",
        'g' => "г",
        'h' => "х",
        'i' => "и",
        'j' => "й",
        'k' => "к",
        'l' => "л",
        'm' => "м",
        'n' => "н",
        'o' => "о",
        'p' => "п",
        'q' => "къ",
        'r' => "р",
        's' => "с",
        't' => "т",
        'u' => "у",
        'v' => "в",
        'w' => "ў",
        'x' => "кс",
        'y' => "ы",
        'z' => "з",
        _ => return None,
    })
}

fn greek(c: char) -> Option<&'static str> {
    Some(match c {
        'a' => "α",
        'b' => "β",
        'c' => "κ",
        'd' => "δ",
        'e' => "ε",
        'f' => "φ",
        'g' => "γ",
        'h' => "η",
        'i' => "ι",
        'j' => "ϳ",
        'k' => "κ",
        'l' => "λ",
        'm' => "μ",
        'n' => "ν",
        'o' => "ο",
        'p' => "π",
        'q' => "ϙ",
        'r' => "ρ",
        's' => "σ",
        't' => "τ",
        'u' => "υ",
        'v' => "ϐ",
        'w' => "ω",
        'x' => "ξ",
        'y' => "ψ",
        'z' => "ζ",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicons_are_deterministic_and_differ_between_languages() {
        let a = Language::generate(PROFILES[0], 1, 0, 40);
        let a2 = Language::generate(PROFILES[0], 1, 0, 40);
        let b = Language::generate(PROFILES[1], 1, 1, 40);
        assert_eq!(a.words, a2.words);
        let shared = a.words.iter().filter(|w| b.words.contains(w)).count();
        assert!(shared < 5, "{shared} shared words");
    }

    #[test]
    fn other_scripts_share_no_letters_with_latin() {
        let cyr = transliterate("Kadoru Mesil 1987", Script::Cyrillic);
        assert_eq!(cyr, "Кадору Месил 1987");
        let greek = transliterate("Kadoru", Script::Greek);
        assert!(greek.chars().all(|c| !c.is_ascii_alphabetic()), "{greek}");
    }

    #[test]
    fn profile_codes_are_local_use_codes() {
        for p in PROFILES {
            assert!(crate::lang::is_known_language(p.code));
        }
    }
}
