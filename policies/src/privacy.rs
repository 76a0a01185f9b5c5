//! Nothing that leads to a worker's own account leaves the office: reply fallbacks, mentions and
//! `matrix.to` links of colleagues, workers' Matrix IDs and display names are taken out of a
//! reply, the office's signature goes in, and a reply that still carries a phone number or mail
//! address the office has not listed is held until a worker confirms it (`!send`).

use crate::outbound::escape_html as escape;
use std::collections::BTreeSet;

use phonenumber::{country, Mode};

use crate::outbound::{strip_reply_fallback, OutboundText};

/// A worker as the privacy rules know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Their Matrix ID, `@anna:office.example`.
    pub user_id: String,
    /// Display names they are known by (homeserver profile, room member events).
    pub names: Vec<String>,
}

/// The privacy rules of one team.
#[derive(Debug, Clone)]
pub struct Privacy {
    workers: Vec<Worker>,
    /// The server name of internal users: every `@…:server` there is internal.
    server_name: String,
    allowed_numbers: BTreeSet<String>,
    allowed_addresses: Vec<String>,
    region: country::Id,
    signature: Option<String>,
}

/// What may go to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Clean: send it.
    Send(OutboundText),
    /// It names contacts off the office's list: hold it until a worker confirms.
    Hold {
        /// The cleaned text, sent as it is on `!send`.
        text: OutboundText,
        /// The numbers and addresses found, as written.
        found: Vec<String>,
    },
}

impl Privacy {
    /// Rules for `workers` on `server_name`. Numbers are read in `region` when written without a
    /// country code; `allowed_addresses` may hold whole domains as `@kommun.example`.
    pub fn new(
        workers: Vec<Worker>,
        server_name: &str,
        allowed_numbers: &[String],
        allowed_addresses: &[String],
        region: &str,
        signature: Option<String>,
    ) -> Result<Self, String> {
        let region: country::Id = region
            .parse()
            .map_err(|_| format!("{region:?} is not a country code like SE"))?;
        let mut numbers = BTreeSet::new();
        for n in allowed_numbers {
            let found = numbers_in(n, region);
            if found.is_empty() {
                return Err(format!("{n:?} is not a phone number"));
            }
            numbers.extend(found.into_iter().map(|(_, e164)| e164));
        }
        Ok(Self {
            workers,
            server_name: server_name.to_owned(),
            allowed_numbers: numbers,
            allowed_addresses: allowed_addresses.iter().map(|a| a.to_lowercase()).collect(),
            region,
            signature,
        })
    }

    /// Adds numbers that are always fine (the emergency numbers a team gives out).
    pub fn allow_numbers_in(&mut self, text: &str) {
        let found = numbers_in(text, self.region);
        self.allowed_numbers
            .extend(found.into_iter().map(|(_, e164)| e164));
    }

    /// Prepares a worker's message for a client. `sender_name` is the worker's display name,
    /// for the signature's `{first_name}`.
    pub fn prepare(&self, body: &str, html: Option<&str>, sender_name: Option<&str>) -> Outcome {
        self.prepare_with(body, html, sender_name, &[])
    }

    /// As [`Privacy::prepare`], with more display names of workers than the rules were built
    /// with (the gateway learns them from the homeserver as they change).
    pub fn prepare_with(
        &self,
        body: &str,
        html: Option<&str>,
        sender_name: Option<&str>,
        known_names: &[String],
    ) -> Outcome {
        let stripped = strip_reply_fallback(body, html);
        let mut names: Vec<String> = self
            .workers
            .iter()
            .flat_map(|w| w.names.iter().cloned())
            .chain(known_names.iter().cloned())
            .filter(|n| n.trim().chars().count() >= 2)
            .collect();
        let html = stripped.html.map(|h| {
            let (h, pill_names) = remove_user_links(&h);
            names.extend(pill_names);
            h
        });
        // Longest first, so "Anna Berg" goes before "Anna".
        names.sort_by_key(|n| std::cmp::Reverse(n.chars().count()));
        names.dedup();
        let body = self.scrub(&stripped.body, &names);
        let html = html.map(|h| self.scrub(&h, &names));
        let mut text = OutboundText { body, html };
        if let Some(signature) = &self.signature {
            let first = sender_name
                .and_then(|n| n.split_whitespace().next())
                .unwrap_or_default();
            let signature = signature.replace("{first_name}", first).trim().to_owned();
            if !signature.is_empty() {
                text.body = format!("{}\n\n{signature}", text.body.trim_end());
                text.html = text
                    .html
                    .map(|h| format!("{h}<p>{}</p>", escape(&signature)));
            }
        }
        let found = self.off_the_list(&text.body);
        if found.is_empty() {
            Outcome::Send(text)
        } else {
            Outcome::Hold { text, found }
        }
    }

    /// Removes internal Matrix IDs, user links and names from text or HTML.
    fn scrub(&self, text: &str, names: &[String]) -> String {
        let mut out = remove_matrix_to_users(text);
        out = self.remove_internal_ids(&out);
        for name in names {
            out = remove_word(&out, name);
        }
        // Only where something was taken out: a worker's own layout stays as written.
        if out == text {
            out
        } else {
            tidy(&out)
        }
    }

    /// Every `@local:server` of the office's server, and of any configured worker.
    fn remove_internal_ids(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('@') {
            out.push_str(&rest[..at]);
            let candidate = &rest[at..];
            let end = candidate[1..]
                .find(|c: char| !(c.is_alphanumeric() || "._=-/:+".contains(c)))
                .map_or(candidate.len(), |e| e + 1);
            let id = candidate[..end].trim_end_matches(['.', ':', ',']);
            let internal = id.contains(':')
                && (id.ends_with(&format!(":{}", self.server_name))
                    || self.workers.iter().any(|w| w.user_id == id));
            if internal {
                rest = &candidate[id.len()..];
            } else {
                out.push('@');
                rest = &candidate[1..];
            }
        }
        out.push_str(rest);
        out
    }

    /// Phone numbers and addresses in `text` that are not on the office's list.
    pub fn off_the_list(&self, text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (written, e164) in numbers_in(text, self.region) {
            if !self.allowed_numbers.contains(&e164) {
                found.push(written);
            }
        }
        for address in addresses_in(text) {
            let lower = address.to_lowercase();
            let domain = lower.split('@').nth(1).unwrap_or_default();
            let allowed = self
                .allowed_addresses
                .iter()
                .any(|a| *a == lower || (a.starts_with('@') && a[1..] == *domain));
            if !allowed {
                found.push(address);
            }
        }
        found
    }
}

/// Phone numbers written in `text`: (as written, E.164). A run of digits with the usual
/// separators counts when the number library finds it a valid number.
pub fn numbers_in(text: &str, region: country::Id) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        let starts = c == '+'
            || c.is_ascii_digit()
            || (c == '(' && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit()));
        // A number starts a word: not inside a case number or a longer token.
        let boundary = i == 0 || !chars[i - 1].1.is_alphanumeric() && chars[i - 1].1 != '-';
        if !starts || !boundary {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len()
            && (chars[j].1.is_ascii_digit() || " +-().\u{a0}/".contains(chars[j].1))
        {
            j += 1;
        }
        let end = if j < chars.len() {
            chars[j].0
        } else {
            text.len()
        };
        let written = text[start..end]
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .to_owned();
        let digits = written.chars().filter(char::is_ascii_digit).count();
        let followed_by_word = text[start + written.len()..]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric);
        if (7..=15).contains(&digits) && !followed_by_word && !is_case_or_date(&written) {
            if let Ok(n) = phonenumber::parse(Some(region), &written) {
                if phonenumber::is_valid(&n) {
                    out.push((written.clone(), n.format().mode(Mode::E164).to_string()));
                }
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// `2026-000123`, `2026-11-23`: case numbers and dates, never phone numbers.
fn is_case_or_date(written: &str) -> bool {
    let parts: Vec<&str> = written.split('-').collect();
    parts.len() >= 2
        && parts[0].len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Mail addresses written in `text`.
pub fn addresses_in(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "<>()[]{},;\"'".contains(c))
        .filter_map(|token| {
            let token = token.trim_matches(|c: char| ".:!?".contains(c));
            let token = token.strip_prefix("mailto:").unwrap_or(token);
            let (local, domain) = token.split_once('@')?;
            let ok = !local.is_empty()
                && !domain.contains(':')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
            ok.then(|| token.to_owned())
        })
        .collect()
}

/// Removes `<a href="https://matrix.to/#/@…">NAME</a>` links (mentions), returning the names
/// they showed.
fn remove_user_links(html: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(html.len());
    let mut names = Vec::new();
    let mut rest = html;
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(start) = lower.find("<a ") else {
            break;
        };
        let Some(open_end) = lower[start..].find('>').map(|e| start + e + 1) else {
            break;
        };
        let tag = &lower[start..open_end];
        let is_user = tag.contains("matrix.to/#/@") || tag.contains("matrix.to/#/%40");
        let close = lower[open_end..].find("</a>").map(|e| open_end + e);
        match (is_user, close) {
            (true, Some(close)) => {
                out.push_str(&rest[..start]);
                let name = strip_tags(&rest[open_end..close]);
                if !name.trim().is_empty() {
                    names.push(name.trim().trim_start_matches('@').to_owned());
                    names.push(name.trim().to_owned());
                }
                rest = &rest[close + 4..];
            }
            _ => {
                out.push_str(&rest[..open_end]);
                rest = &rest[open_end..];
            }
        }
    }
    out.push_str(rest);
    (out, names)
}

/// `https://matrix.to/#/@user:server` links in text.
fn remove_matrix_to_users(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("https://matrix.to/#/") {
        let after = &rest[at + "https://matrix.to/#/".len()..];
        let end = after
            .find(|c: char| c.is_whitespace() || "<>\"'".contains(c))
            .unwrap_or(after.len());
        let target = &after[..end];
        out.push_str(&rest[..at]);
        if target.starts_with('@') || target.starts_with("%40") {
            rest = &after[end..];
        } else {
            out.push_str(&rest[at..at + "https://matrix.to/#/".len() + end]);
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

/// `text` without `word` where it stands as a whole word, any case.
fn remove_word(text: &str, word: &str) -> String {
    let lower_text = text.to_lowercase();
    let lower_word = word.to_lowercase();
    if lower_word.is_empty() || lower_text.len() != text.len() {
        // Lower-casing changed byte lengths (rare scripts): match exactly instead.
        return remove_exact_word(text, word);
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(found) = lower_text[i..].find(&lower_word) {
        let at = i + found;
        let end = at + lower_word.len();
        let before_ok = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let after_ok = text[end..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric());
        out.push_str(&text[i..at]);
        if !(before_ok && after_ok) {
            out.push_str(&text[at..end]);
        }
        i = end;
    }
    out.push_str(&text[i..]);
    out
}

fn remove_exact_word(text: &str, word: &str) -> String {
    if word.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let end = at + word.len();
        let before_ok = out
            .chars()
            .next_back()
            .or_else(|| rest[..at].chars().next_back())
            .is_none_or(|c| !c.is_alphanumeric());
        let after_ok = rest[end..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric());
        out.push_str(&rest[..at]);
        if !(before_ok && after_ok) {
            out.push_str(word);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// What removing names leaves behind: `: ` at the start, doubled spaces, `, ,`.
fn tidy(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut l = line.to_owned();
            while l.contains("  ") {
                l = l.replace("  ", " ");
            }
            l = l.replace(" ,", ",").replace(" .", ".");
            let trimmed = l.trim_start_matches([':', ',', ' ']);
            if trimmed.len() != l.len() && l.trim_start().starts_with([':', ',']) {
                trimmed.to_owned()
            } else {
                l
            }
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn privacy() -> Privacy {
        let mut p = Privacy::new(
            vec![
                Worker {
                    user_id: "@anna:office.example".into(),
                    names: vec!["Anna Berg".into()],
                },
                Worker {
                    user_id: "@bo:office.example".into(),
                    names: vec!["Bo Ek".into()],
                },
            ],
            "office.example",
            &["08-123 456 78".into()],
            &[
                "mottagningen@kommun.example".into(),
                "@kommun.example".into(),
            ],
            "SE",
            Some("{first_name}, Socialtjänsten".into()),
        )
        .unwrap();
        p.allow_numbers_in("112 eller socialjouren 08-555 000 00");
        p
    }

    #[test]
    fn a_reply_that_quotes_and_mentions_leaves_without_either() {
        let out = privacy().prepare(
            "> <@anna:office.example> Är du trygg?\n\nBo Ek: kan du ringa henne? Hej! Vi ses kl. 10.",
            Some(
                "<mx-reply><blockquote><a href=\"https://matrix.to/#/@anna:office.example\">@anna:office.example</a> \
                 Är du trygg?</blockquote></mx-reply><a href=\"https://matrix.to/#/@bo:office.example\">Bo Ek</a>: \
                 kan du ringa henne? Hej! Vi ses kl. 10.",
            ),
            Some("Anna Berg"),
        );
        let Outcome::Send(text) = out else {
            panic!("{out:?}")
        };
        assert_eq!(
            text.body,
            "kan du ringa henne? Hej! Vi ses kl. 10.\n\nAnna, Socialtjänsten"
        );
        let html = text.html.unwrap();
        for bad in ["anna:", "@bo", "Bo Ek", "matrix.to", "mx-reply"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
    }

    #[test]
    fn private_numbers_and_addresses_hold_the_reply() {
        let p = privacy();
        let held = p.prepare(
            "Ring mig på 070-123 45 67 eller skriv till anna.berg@gmail.com",
            None,
            None,
        );
        let Outcome::Hold { found, .. } = held else {
            panic!("{held:?}")
        };
        assert_eq!(found, ["070-123 45 67", "anna.berg@gmail.com"]);
        // The office's own number and domain, the emergency numbers, case numbers and dates go.
        let ok = p.prepare(
            "Ring 08-123 456 78, socialjouren 08-555 000 00 eller 112. Skriv till info@kommun.example. \
             Ärende 2026-000042, möte 2026-11-24 kl. 10, 1 500 kr.",
            None,
            None,
        );
        assert!(matches!(ok, Outcome::Send(_)), "{ok:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever a worker writes, what may leave holds no worker's Matrix ID or name, and no
        /// number or address off the list; anything else is held.
        #[test]
        fn nothing_internal_leaves(
            words in proptest::collection::vec(prop_oneof![
                "[a-zåäö]{1,10}",
                Just("@anna:office.example".to_owned()),
                Just("@bo:office.example:".to_owned()),
                Just("Anna Berg".to_owned()),
                Just("bo ek".to_owned()),
                Just("https://matrix.to/#/@bo:office.example".to_owned()),
                Just("070-123 45 67".to_owned()),
                Just("+46 70 765 43 21".to_owned()),
                Just("privat@example.com".to_owned()),
                Just("08-123 456 78".to_owned()),
                Just("2026-000042".to_owned()),
            ], 0..30),
            mention in any::<bool>(),
        ) {
            let body = words.join(" ");
            let html = mention.then(|| format!(
                "<a href=\"https://matrix.to/#/@bo:office.example\">Bo Ek</a>: {}", body
            ));
            let p = privacy();
            let text = match p.prepare(&body, html.as_deref(), Some("Anna Berg")) {
                Outcome::Send(text) => {
                    prop_assert!(p.off_the_list(&text.body).is_empty());
                    text
                }
                Outcome::Hold { text, found } => {
                    prop_assert!(!found.is_empty());
                    text
                }
            };
            for payload in std::iter::once(text.body.as_str()).chain(text.html.as_deref()) {
                let lower = payload.to_lowercase();
                for bad in ["@anna:office.example", "@bo:office.example", "anna berg", "bo ek", "matrix.to"] {
                    prop_assert!(!lower.contains(bad), "{} in {:?}", bad, payload);
                }
            }
        }
    }
}
