//! Emergency words: a client's message that names danger is escalated at any hour.
//!
//! Words and phrases match whole words, ignoring case; a trailing `*` matches any ending, for
//! languages that inflect (`"hota*"` finds "hotar" and "hotade", while "hot" alone does not
//! find "hotell").

use casebridge_config::Language;

/// Built-in emergency words and phrases of a language.
pub fn builtin_keywords(language: Language) -> &'static [&'static str] {
    match language {
        Language::Sv => &[
            "självmord*",
            "ta livet av mig",
            "ta mitt liv",
            "vill inte leva",
            "vill dö",
            "hot",
            "hota*",
            "våld",
            "slår mig",
            "misshandla*",
            "våldta*",
            "rädd för mitt liv",
        ],
        Language::En => &[
            "suicide",
            "suicidal",
            "kill myself",
            "end my life",
            "want to die",
            "hurt myself",
            "violence",
            "threaten*",
            "hits me",
            "beats me",
            "abused",
            "rape*",
            "afraid for my life",
        ],
        Language::Hu => &[
            "öngyilkos*",
            "megölöm magam",
            "meg akarok halni",
            "nem akarok élni",
            "erőszak*",
            "bántalmaz*",
            "megver*",
            "fenyeget*",
            "veszélyben vagyok",
        ],
        Language::Uk => &[
            "самогубств*",
            "вбити себе",
            "покінчити з собою",
            "не хочу жити",
            "хочу померти",
            "насильств*",
            "б'є мене",
            "погрож*",
            "зґвалтув*",
            "в небезпеці",
        ],
    }
}

/// A compiled list of emergency words and phrases.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    keyword: String,
    words: Vec<String>,
    /// The last word matches any word it begins.
    prefix: bool,
}

impl Matcher {
    /// Compiles `keywords`; empty ones are skipped.
    pub fn new<S: AsRef<str>>(keywords: impl IntoIterator<Item = S>) -> Self {
        let patterns = keywords
            .into_iter()
            .filter_map(|keyword| {
                let keyword = keyword.as_ref().trim();
                let prefix = keyword.ends_with('*');
                let words = words(keyword.trim_end_matches('*'));
                (!words.is_empty()).then(|| Pattern {
                    keyword: keyword.to_owned(),
                    words,
                    prefix,
                })
            })
            .collect();
        Self { patterns }
    }

    /// The first keyword (as configured) that `text` contains, if any.
    pub fn find(&self, text: &str) -> Option<&str> {
        let text = words(text);
        self.patterns
            .iter()
            .find(|p| {
                text.windows(p.words.len()).any(|window| {
                    let last = p.words.len() - 1;
                    window.iter().zip(&p.words).enumerate().all(|(i, (w, k))| {
                        if i == last && p.prefix {
                            w.starts_with(k.as_str())
                        } else {
                            w == k
                        }
                    })
                })
            })
            .map(|p| p.keyword.as_str())
    }

    /// Whether no keyword is configured.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// The lower-case words of `text`: runs of letters and digits, with apostrophes inside a word
/// kept (Ukrainian "б'є", English "don't").
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        let c = if matches!(c, '’' | 'ʼ' | '`') {
            '\''
        } else {
            c
        };
        if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            word.push(c);
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word).trim_end_matches('\'').to_owned());
        }
    }
    if !word.is_empty() {
        out.push(word.trim_end_matches('\'').to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use casebridge_config::Language;
    use proptest::prelude::*;

    use super::{builtin_keywords, Matcher};

    fn all() -> Matcher {
        Matcher::new(
            [Language::Sv, Language::En, Language::Hu, Language::Uk]
                .into_iter()
                .flat_map(builtin_keywords),
        )
    }

    #[test]
    fn whole_words_any_case_any_language() {
        let m = all();
        assert_eq!(m.find("Jag tänker på SJÄLVMORD."), Some("självmord*"));
        assert_eq!(m.find("självmordstankar hela natten"), Some("självmord*"));
        assert_eq!(m.find("han hotade mig igår"), Some("hota*"));
        assert_eq!(m.find("Det är hot!"), Some("hot"));
        assert_eq!(m.find("I want to\nkill   myself"), Some("kill myself"));
        assert_eq!(m.find("Ma este öngyilkos leszek"), Some("öngyilkos*"));
        assert_eq!(m.find("Він б’є мене щодня"), Some("б'є мене"));
        assert_eq!(m.find("думки про САМОГУБСТВО"), Some("самогубств*"));
    }

    #[test]
    fn no_false_alarms_inside_words() {
        let m = all();
        for text in [
            "Vi bor på hotellet i helgen",
            "Tack för hjälpen med ansökan",
            "the photos are attached",
            "skill myself up",
            "Köszönöm a segítséget",
            "Дякую за допомогу",
        ] {
            assert_eq!(m.find(text), None, "{text}");
        }
    }

    proptest! {
        /// A keyword is found wherever it stands between other words.
        #[test]
        fn found_anywhere(before in "[a-z ]{0,30}", after in "[a-z ]{0,30}", k in 0usize..10) {
            let m = Matcher::new(builtin_keywords(Language::En));
            let keyword = builtin_keywords(Language::En)[k].trim_end_matches('*');
            let text = format!("{before} {} {after}", keyword.to_uppercase());
            prop_assert!(m.find(&text).is_some());
        }
    }
}
