//! Every mistake in a configuration at once, each named by its key as written in the file
//! (`bridges.mail.imap.host`), with what is expected there and an example, and for a misspelt
//! key the nearest known one; never a Rust type or a source location.
//!
//! serde stops at the first error of a value, so [`crate::Config::load`] extracts each part of
//! the file on its own (a section, a team, a bridge instance) and gathers what each reports.

use std::fmt;

use figment::{
    error::{Actual, Kind},
    value::{Dict, Value},
};

/// One mistake: where, and what is wrong there and how to put it right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key as written in the file, e.g. `bridges.mail.imap.host`; empty for the
    /// file as a whole (a TOML syntax error).
    pub key: String,
    /// What is wrong and what is expected, with an example.
    pub message: String,
}

impl Problem {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// The problems of one figment error, which may chain several; `prefix` is the key of the
/// value that was extracted (`bridges.mail` for a bridge's own options), put before the
/// error's own path where figment does not already name it.
pub(crate) fn from_figment(error: figment::Error, prefix: &str) -> Vec<Problem> {
    let mut problems: Vec<Problem> = error
        .into_iter()
        .map(|e| {
            let relative = relative(
                &e.path,
                prefix,
                e.profile.as_ref().map(|p| p.as_str().as_str()),
            );
            let mut key = match (prefix.is_empty(), relative.is_empty()) {
                (true, _) => relative.join("."),
                (false, true) => prefix.to_owned(),
                (false, false) => format!("{prefix}.{}", relative.join(".")),
            };
            let message = match &e.kind {
                Kind::UnknownField(field, known) => {
                    key = join_once(&key, field);
                    unknown_key(field, known)
                }
                Kind::MissingField(field) => {
                    key = join_once(&key, field);
                    let mut m = "missing: this key is required".to_owned();
                    if let Some(example) = example(field) {
                        m.push_str(&format!(", e.g. {field} = {example}"));
                    }
                    m
                }
                Kind::UnknownVariant(given, known) => {
                    format!(
                        "{given:?} is not one of {}",
                        known
                            .iter()
                            .map(|k| format!("{k:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ) + &nearest(given, known.iter().copied())
                        .map(|n| format!("; did you mean {n:?}?"))
                        .unwrap_or_default()
                }
                Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                    expectation(&key, &plain(expected), Some(actual))
                }
                Kind::InvalidLength(_, expected) => expectation(&key, &plain(expected), None),
                Kind::DuplicateField(field) => {
                    key = join_once(&key, field);
                    "given twice: keep one".to_owned()
                }
                Kind::Message(message) => hinted(&key, message),
                other => other.to_string(),
            };
            Problem::new(key, message)
        })
        .collect();
    problems.dedup();
    problems
}

/// The part of a figment error's path below `prefix`. Figment reports the path of a value
/// extracted with `extract_inner` with the focus's own parts after the value's (and a
/// re-rooted value under its profile's name first): both are taken off.
fn relative<'a>(path: &'a [String], prefix: &str, profile: Option<&str>) -> Vec<&'a str> {
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    let focus: Vec<&str> = prefix.split('.').filter(|p| !p.is_empty()).collect();
    if focus.is_empty() {
        return parts;
    }
    if parts.starts_with(&focus) {
        parts.drain(..focus.len());
    } else if parts.ends_with(&focus) {
        parts.truncate(parts.len() - focus.len());
        if parts.first().is_some_and(|first| Some(*first) == profile) {
            parts.remove(0);
        }
    }
    parts
}

/// `key.field`, unless figment's path named the field already.
fn join_once(key: &str, field: &str) -> String {
    if key == field || key.ends_with(&format!(".{field}")) {
        key.to_owned()
    } else {
        join(key, field)
    }
}

fn join(key: &str, field: &str) -> String {
    if key.is_empty() {
        field.to_owned()
    } else {
        format!("{key}.{field}")
    }
}

/// The message for a key nobody knows: the nearest known one if there is a close one, else the
/// list of known keys.
pub fn unknown_key(given: &str, known: &[&str]) -> String {
    match nearest(given, known.iter().copied()) {
        Some(near) => format!("unknown key; did you mean {near:?}?"),
        None if known.is_empty() => "unknown key".to_owned(),
        None => format!("unknown key (known here: {})", known.join(", ")),
    }
}

/// The known name closest to `given` when it is close enough to be a slip: at most a third of
/// its letters differ (at least one), or one contains the other.
pub fn nearest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    known
        .into_iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&given_lower, &k.to_lowercase()),
                k,
            )
        })
        .filter(|(distance, k)| {
            *distance <= (k.chars().count() / 3).max(1)
                || (k.len() >= 4 && given_lower.contains(&k.to_lowercase()))
                || (given_lower.len() >= 4 && k.to_lowercase().contains(&given_lower))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// serde's and our own types' expectations, said for people.
fn plain(expected: &str) -> String {
    let e = expected.trim();
    let said = match e {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" | "isize" => "a whole number",
        "a nonzero usize" | "a nonzero u32" | "nonzero usize" => "a whole number of at least 1",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "string" => "text in quotes",
        "a sequence" => "a list in [ ]",
        "a map" => "a table",
        "a character" | "char" => "one character",
        _ if e.starts_with("struct ") || e.starts_with("a map of") => "a table",
        _ if e.starts_with("enum ") => "one of the words listed for this key",
        _ => e,
    };
    said.to_owned()
}

/// "expected X, e.g. KEY = EXAMPLE (found Y)", for the last part of `key`.
fn expectation(key: &str, expected: &str, found: Option<&Actual>) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let mut message = format!("expected {expected}");
    if let Some(example) = example(leaf) {
        message.push_str(&format!(", e.g. {leaf} = {example}"));
    }
    if let Some(found) = found {
        message.push_str(&format!(" (found {})", found_said(found)));
    }
    message
}

/// A parser's own message (a URL, an address, a time zone), with an example for the key, and
/// for a misspelt time zone the nearest real one.
fn hinted(key: &str, message: &str) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    if leaf == "time_zone" {
        let given = message.split('\'').nth(1).unwrap_or_default();
        let near = nearest(given, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()));
        return match near {
            Some(near) => format!("{given:?} is no IANA time zone; did you mean {near:?}?"),
            None => {
                format!("{given:?} is no IANA time zone, e.g. time_zone = \"Europe/Stockholm\"")
            }
        };
    }
    match example(leaf) {
        Some(example) => format!("{message}; e.g. {leaf} = {example}"),
        None => message.to_owned(),
    }
}

fn found_said(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("{s:?}"),
        Actual::Signed(n) => n.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Float(n) => n.to_string(),
        Actual::Bool(b) => b.to_string(),
        Actual::Map => "a table".to_owned(),
        Actual::Seq => "a list".to_owned(),
        other => other.to_string(),
    }
}

/// An example value for keys whose name says what they hold, as written in TOML.
pub(crate) fn example(leaf: &str) -> Option<&'static str> {
    Some(match leaf {
        "url" | "homeserver_url" => "\"https://matrix.example.org\"",
        "api_url" => "\"https://api.example.com\"",
        "public_url" | "webhook_url" => "\"https://casebridge.example.org/webhook/sms\"",
        "server_name" => "\"example.org\"",
        "listen" => "\"127.0.0.1:29330\"",
        "time_zone" => "\"Europe/Stockholm\"",
        "number" | "from_number" => "\"+46701234567\"",
        "members" | "on_call" => "[\"@anna:example.org\"]",
        "address" | "from" => "\"office@example.org\"",
        "host" => "\"mail.example.org\"",
        "port" => "993",
        "kind" => "\"email\"",
        "team" => "\"social\"",
        "languages" => "[\"sv\", \"en\"]",
        "after_days" => "365",
        "max_connections" => "10",
        "relay_concurrency" => "8",
        "initial_backoff_ms" | "max_backoff_ms" | "header_timeout_ms" | "body_timeout_ms"
        | "send_timeout_ms" => "1000",
        _ => return None,
    })
}

/// The example's placeholder secrets left in place: every string under a key that names a
/// secret (`*token`, `*secret`, `*password`) that still says `change-me`.
pub(crate) fn placeholders(dict: &Dict, prefix: &str, out: &mut Vec<Problem>) {
    for (key, value) in dict {
        let path = join(prefix, key);
        match value {
            Value::Dict(_, inner) => placeholders(inner, &path, out),
            Value::String(_, s) if is_secret_key(key) && s.to_lowercase().contains("change-me") => {
                out.push(Problem::new(
                    path,
                    format!(
                        "still the example's placeholder; put the real secret here, or in \
                         {key}_file (a file only the gateway's user can read)"
                    ),
                ));
            }
            _ => {}
        }
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_lowercase();
    ["token", "secret", "password"]
        .iter()
        .any(|s| key.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slips_find_the_nearest_key_and_strangers_do_not() {
        let known = ["mailbox", "host", "port", "username", "password"];
        assert_eq!(nearest("mail_box", known), Some("mailbox"));
        assert_eq!(nearest("Mailbox", known), Some("mailbox"));
        assert_eq!(nearest("pasword", known), Some("password"));
        assert_eq!(nearest("hots", known), Some("host"));
        assert_eq!(nearest("colour", known), None);
        assert_eq!(
            unknown_key("colour", &known),
            "unknown key (known here: mailbox, host, port, username, password)"
        );
    }

    #[test]
    fn rust_types_are_said_for_people() {
        assert_eq!(plain("u64"), "a whole number");
        assert_eq!(plain("struct HomeserverConfig"), "a table");
        assert_eq!(plain("a string"), "text in quotes");
        let said = expectation(
            "queue.max_backoff_ms",
            &plain("u64"),
            Some(&Actual::Str("soon".into())),
        );
        assert_eq!(
            said,
            "expected a whole number, e.g. max_backoff_ms = 1000 (found \"soon\")"
        );
    }
}
