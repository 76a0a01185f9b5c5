//! Nothing that leads to a worker's own account leaves the office: reply fallbacks, mentions and
//! `matrix.to` links of colleagues, workers' Matrix IDs and display names are taken out of a
//! reply, the office's signature goes in, and a reply that still carries a phone number or mail
//! address the office has not listed is held until a worker confirms it (`!send`).

use crate::outbound::escape_html as escape;
use std::collections::BTreeSet;

use phonenumber::{country, Mode, PhoneNumber};

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
        let mut found = self.off_the_list(&text.body);
        // E-mail sends the HTML, and a client's HTML need not say what its body says.
        for more in text
            .html
            .iter()
            .flat_map(|h| self.off_the_list(&html_text(h)))
        {
            if !found.contains(&more) {
                found.push(more);
            }
        }
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

    /// Phone numbers and addresses in `text` that are not on the office's list. Fails closed:
    /// seven or more digits written together hold the reply unless they are the office's
    /// numbers, case numbers, dates or opening hours, whether or not they make a valid number.
    pub fn off_the_list(&self, text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for run in runs(text) {
            self.unexplained(&run, &mut found);
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

    /// Adds to `found` what of `run` is neither the office's number nor harmless. Every digit
    /// not taken up by something harmless counts: an office number next to a private one
    /// (`08-123 456 78 / 073-861 22 49`) leaves the private one standing.
    fn unexplained(&self, run: &Run, found: &mut Vec<String>) {
        let count = run.groups.len();
        let mut explained = vec![false; count];
        let mut i = 0;
        while i < count {
            match (i..count).rev().find(|&j| self.harmless(run, i, j)) {
                Some(j) => {
                    explained[i..=j].fill(true);
                    i = j + 1;
                }
                None => i += 1,
            }
        }
        let mut i = 0;
        while i < count {
            if explained[i] {
                i += 1;
                continue;
            }
            let mut j = i;
            while j + 1 < count && !explained[j + 1] {
                j += 1;
            }
            if run.digit_count(i, j) >= PRIVATE_DIGITS {
                // Name the numbers the library knows, and any other seven digits as written.
                let mut rest = i;
                for (a, b, _) in valid_numbers(run, i, j + 1, self.region)
                    .into_iter()
                    .chain([(j + 1, j, String::new())])
                {
                    if a > rest && run.digit_count(rest, a - 1) >= PRIVATE_DIGITS {
                        found.push(run.written(rest, a - 1).to_owned());
                    }
                    if a <= b {
                        found.push(run.written(a, b).to_owned());
                    }
                    rest = b + 1;
                }
            }
            i = j + 1;
        }
    }

    /// Whether groups `i..=j` of `run` may go to a client as they are: one of the office's
    /// numbers however written, a case number, a date, opening hours.
    fn harmless(&self, run: &Run, i: usize, j: usize) -> bool {
        let digits = run.digit_count(i, j);
        // Reading a number is slow; only a window that ends like an office number can be one.
        let ends_like_ours = || {
            let last = run.groups[j].ascii.as_deref().unwrap_or_default();
            let last = &last[last.len().saturating_sub(2)..];
            self.allowed_numbers.iter().any(|e164| e164.ends_with(last))
        };
        if (PRIVATE_DIGITS..=MAX_DIGITS).contains(&digits)
            && ends_like_ours()
            && run
                .read(i, j, self.region)
                .is_some_and(|(_, e164)| self.allowed_numbers.contains(&e164))
        {
            return true;
        }
        j <= i + 3
            && !run.after_country_code(i)
            && (run.is_case_number(i, j) || run.is_date(i, j) || run.is_time_range(i, j))
    }
}

/// Phone numbers written in `text` that the number library finds valid: (as written, E.164).
/// Numbers written side by side (`073-861 22 49 / 070-111 22 33`) are read one by one, and what
/// follows a number (`(17-19)`) is not read into it.
pub fn numbers_in(text: &str, region: country::Id) -> Vec<(String, String)> {
    runs(text)
        .iter()
        .flat_map(|run| {
            valid_numbers(run, 0, run.groups.len(), region)
                .into_iter()
                .map(|(i, j, e164)| (run.written(i, j).to_owned(), e164))
        })
        .collect()
}

/// The fewest digits that make a reply wait: fewer are times, amounts, street numbers.
const PRIVATE_DIGITS: usize = 7;

/// The most digits a number can be written with: 15 (E.164) after `00` and a `(0)`.
const MAX_DIGITS: usize = 18;

/// Digits written together.
struct Group {
    start: usize,
    end: usize,
    /// `None` when a digit has no ASCII form we know: such a group matches nothing allowed.
    ascii: Option<String>,
    len: usize,
}

/// Digit groups with nothing but [`joins`] characters between them: one number as written, or
/// several side by side, or a number with a time, a case number or a date next to it.
struct Run<'t> {
    text: &'t str,
    /// Where the run starts, with the joiners before its first digit (`+`, `(`).
    start: usize,
    groups: Vec<Group>,
}

impl Run<'_> {
    /// What stands between group `k - 1` and group `k`.
    fn gap(&self, k: usize) -> &str {
        &self.text[self.groups[k - 1].end..self.groups[k].start]
    }

    fn digit_count(&self, i: usize, j: usize) -> usize {
        self.groups[i..=j].iter().map(|g| g.len).sum()
    }

    fn ascii(&self, k: usize) -> Option<&str> {
        self.groups[k].ascii.as_deref()
    }

    /// Groups `i..=j` as written, with a `+` or an opening bracket just before them.
    fn written(&self, i: usize, j: usize) -> &str {
        let end = self.groups[j].end;
        let mut start = self.groups[i].start;
        let before = &self.text[self.start..start];
        if let Some(plus) = before.strip_suffix(['+', '\u{ff0b}']) {
            start = self.start + plus.len();
        }
        let before = &self.text[self.start..start];
        let inside = &self.text[start..end];
        if inside.matches(')').count() > inside.matches('(').count() {
            if let Some(open) = before.strip_suffix('(') {
                start = self.start + open.len();
            }
        }
        &self.text[start..end]
    }

    /// Groups `i..=j` read as one phone number, only when every digit written is part of it
    /// (the library would read `08-123 456 78 12` as the office's number and drop the rest).
    fn read(&self, i: usize, j: usize, region: country::Id) -> Option<(PhoneNumber, String)> {
        let digits: String = (i..=j).map(|k| self.ascii(k)).collect::<Option<_>>()?;
        let plus = self.text[self.start..self.groups[i].start].ends_with(['+', '\u{ff0b}']);
        let n = phonenumber::parse(
            Some(region),
            if plus {
                format!("+{digits}")
            } else {
                digits.clone()
            },
        )
        .ok()?;
        if n.extension().is_some() {
            return None;
        }
        let e164 = n.format().mode(Mode::E164).to_string();
        let code = n.code().value().to_string();
        let national = e164.strip_prefix('+')?.strip_prefix(code.as_str())?;
        let prefix = digits.strip_suffix(national)?;
        let whole = ["", "0"].contains(&prefix)
            || [
                code.clone(),
                format!("{code}0"),
                format!("00{code}"),
                format!("00{code}0"),
            ]
            .iter()
            .any(|p| p == prefix);
        whole.then_some((n, e164))
    }

    /// Whether groups `i..=j` stand apart from their neighbours: a date glued to more digits by
    /// its own separator (`070-2026-11-24`) is part of something else.
    fn stands_alone(&self, i: usize, j: usize, inner: &[char]) -> bool {
        let apart = |gap: &str| {
            let mut chars = gap.chars();
            !matches!((chars.next(), chars.next()), (Some(c), None) if inner.contains(&c))
        };
        (i == 0 || apart(self.gap(i))) && (j + 1 == self.groups.len() || apart(self.gap(j + 1)))
    }

    /// Whether a country code comes before group `i`: after `+46 ` or `0046 `, digits that look
    /// like a date or a case number are the rest of a phone number.
    fn after_country_code(&self, i: usize) -> bool {
        self.text[self.start..self.groups[i].start].contains(['+', '\u{ff0b}'])
            || (0..i).any(|k| {
                self.groups[k].len <= 5 && self.ascii(k).is_some_and(|d| d.starts_with("00"))
            })
    }

    /// `2026-000123`: a case number.
    fn is_case_number(&self, i: usize, j: usize) -> bool {
        if j != i + 1 {
            return false;
        }
        let Some(dash) = single(self.gap(j)) else {
            return false;
        };
        is_dash(dash)
            && self.ascii(i).is_some_and(is_year)
            && self.ascii(j).is_some_and(|d| d.len() == 6)
            && self.stands_alone(i, j, &[dash])
    }

    /// `2026-11-24`, `24.11.2026`, `24/11/2026`: a date that exists.
    fn is_date(&self, i: usize, j: usize) -> bool {
        if j != i + 2 {
            return false;
        }
        let (Some(sep), Some(second)) = (single(self.gap(i + 1)), single(self.gap(j))) else {
            return false;
        };
        let [Some(a), Some(b), Some(c)] = [i, i + 1, j].map(|k| self.ascii(k)) else {
            return false;
        };
        let number = |d: &str| d.parse::<u32>().ok();
        let date = if is_year(a) && b.len() == 2 && c.len() == 2 {
            (a, b, c)
        } else if is_year(c) && a.len() <= 2 && b.len() <= 2 {
            (c, b, a)
        } else {
            return false;
        };
        sep == second
            && (is_dash(sep) || "./".contains(sep))
            && matches!(
                (number(date.0), number(date.1), number(date.2)),
                (Some(y), Some(m), Some(d)) if chrono::NaiveDate::from_ymd_opt(y as i32, m, d).is_some()
            )
            && self.stands_alone(i, j, &[sep])
    }

    /// `08.00-16.30`, `8.00 – 12.00`: opening hours.
    fn is_time_range(&self, i: usize, j: usize) -> bool {
        if j != i + 3 || self.gap(i + 1) != "." || self.gap(j) != "." {
            return false;
        }
        let Some(dash) = single(self.gap(i + 2).trim()).filter(|c| is_dash(*c)) else {
            return false;
        };
        let time = |h: Option<&str>, m: Option<&str>| {
            let hour = h
                .filter(|h| h.len() <= 2)
                .and_then(|h| h.parse::<u32>().ok());
            let minute = m
                .filter(|m| m.len() == 2)
                .and_then(|m| m.parse::<u32>().ok());
            matches!((hour, minute), (Some(h), Some(m)) if h <= 24 && m <= 59)
        };
        time(self.ascii(i), self.ascii(i + 1))
            && time(self.ascii(i + 2), self.ascii(j))
            && self.stands_alone(i, j, &['.', dash])
    }
}

/// The one character of `text`, if it has exactly one.
fn single(text: &str) -> Option<char> {
    let mut chars = text.chars();
    chars.next().filter(|_| chars.next().is_none())
}

fn is_year(digits: &str) -> bool {
    digits.len() == 4 && (digits.starts_with("19") || digits.starts_with("20"))
}

/// Every run of digits in `text`.
fn runs(text: &str) -> Vec<Run<'_>> {
    let mut runs = Vec::new();
    let mut current: Option<Run> = None;
    // Whether only joiners came since the last group.
    let mut joined = false;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if !c.is_numeric() {
            joined &= joins(c);
            continue;
        }
        let mut group = Group {
            start: at,
            end: at,
            ascii: Some(String::new()),
            len: 0,
        };
        let mut next = Some((at, c));
        while let Some((k, d)) = next {
            group.len += 1;
            group.end = k + d.len_utf8();
            match (ascii_digit(d), group.ascii.as_mut()) {
                (Some(d), Some(ascii)) => ascii.push(d),
                _ => group.ascii = None,
            }
            next = chars.next_if(|(_, d)| d.is_numeric());
        }
        match current.as_mut() {
            Some(run) if joined => run.groups.push(group),
            _ => {
                runs.extend(current.take());
                let start = text[..at]
                    .char_indices()
                    .rev()
                    .take_while(|(_, c)| joins(*c))
                    .last()
                    .map_or(at, |(k, _)| k);
                current = Some(Run {
                    text,
                    start,
                    groups: vec![group],
                });
            }
        }
        joined = true;
    }
    runs.extend(current);
    runs
}

/// What may stand between the digits of one number as people write it: any space but a line
/// break, any dash, brackets, dots, slashes, `+`, and what markup or a paste leaves inside a
/// number (`**`, soft hyphens, zero-width spaces). A line break ends a run: lists of times or
/// amounts are written one a line.
fn joins(c: char) -> bool {
    const MARKS: &str = "()[]{}\u{ff08}\u{ff09}\u{ff3b}\u{ff3d}.\u{b7}\u{2024}\u{ff0e}/\\\u{2044}\
                         \u{2215}\u{ff0f}+\u{ff0b}*_~`\u{ad}\u{180e}\u{200b}\u{200c}\u{200d}\u{2060}\
                         \u{feff}";
    const LINE_BREAKS: &str = "\n\r\u{b}\u{c}\u{85}\u{2028}\u{2029}";
    (c.is_whitespace() && !LINE_BREAKS.contains(c)) || is_dash(c) || MARKS.contains(c)
}

/// Unicode's dashes (general category Pd) and the minus sign.
fn is_dash(c: char) -> bool {
    const DASHES: &str = "-\u{58a}\u{5be}\u{1400}\u{1806}\u{2010}\u{2011}\u{2012}\u{2013}\u{2014}\
                          \u{2015}\u{2212}\u{2e17}\u{2e1a}\u{2e3a}\u{2e3b}\u{2e40}\u{2e5d}\u{301c}\
                          \u{3030}\u{30a0}\u{fe31}\u{fe32}\u{fe58}\u{fe63}\u{ff0d}\u{10ead}";
    DASHES.contains(c)
}

/// `c` as an ASCII digit: ASCII and full-width digits.
fn ascii_digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '\u{ff10}'..='\u{ff19}' => char::from_u32(c as u32 - 0xff10 + u32::from(b'0')),
        _ => None,
    }
}

/// Valid numbers among groups `from..to`, leftmost and longest first: (first group, last
/// group, E.164).
fn valid_numbers(
    run: &Run,
    from: usize,
    to: usize,
    region: country::Id,
) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        let found = (i..to)
            .rev()
            .filter(|&j| (PRIVATE_DIGITS..=MAX_DIGITS).contains(&run.digit_count(i, j)))
            .find_map(|j| {
                let (n, e164) = run.read(i, j, region)?;
                phonenumber::is_valid(&n).then_some((j, e164))
            });
        match found {
            Some((j, e164)) => {
                out.push((i, j, e164));
                i = j + 1;
            }
            None => i += 1,
        }
    }
    out
}

/// Mail addresses written in `text`, wherever they end: `anna@x.se.`, `(anna@x.se)`,
/// `anna@x.se…`, `**anna@x.se**`.
pub fn addresses_in(text: &str) -> Vec<String> {
    let local_char = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let domain_char = |c: char| c.is_alphanumeric() || ".-".contains(c);
    text.match_indices('@')
        .filter_map(|(at, _)| {
            let local = text[..at]
                .char_indices()
                .rev()
                .take_while(|(_, c)| local_char(*c))
                .last()
                .map_or("", |(k, _)| &text[k..at])
                .trim_start_matches(|c: char| !c.is_alphanumeric());
            let rest = &text[at + 1..];
            let domain = rest[..rest.find(|c: char| !domain_char(c)).unwrap_or(rest.len())]
                .trim_end_matches(['.', '-']);
            let ok = !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with(['.', '-'])
                && !domain.contains("..");
            ok.then(|| text[at - local.len()..at + 1 + domain.len()].to_owned())
        })
        .collect()
}

/// What of `html` may reach a reader: the text as shown, then each tag on a line of its own
/// (a `tel:` or `mailto:` link dials what its text does not show).
fn html_text(html: &str) -> String {
    const BLOCKS: [&str; 16] = [
        "p",
        "br",
        "div",
        "li",
        "ul",
        "ol",
        "tr",
        "td",
        "th",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
    ];
    let mut shown = String::with_capacity(html.len());
    let mut tags = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else {
            break;
        };
        shown.push_str(&rest[..open]);
        let tag = &rest[open + 1..close];
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        // Markup inside a number (`070-<b>123</b>`) joins; a new line or paragraph separates.
        if BLOCKS.contains(&name.as_str()) || name == "hr" || name == "pre" {
            shown.push('\n');
        }
        tags.push_str(tag);
        tags.push('\n');
        rest = &rest[close + 1..];
    }
    shown.push_str(rest);
    format!("{}\n{}", decode_entities(&shown), decode_entities(&tags))
}

/// `text` with HTML character references replaced: a client may write `&nbsp;` or `&#8209;`
/// inside a number.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after.find(';').filter(|&e| e <= 12).and_then(|e| {
            let name = &after[..e];
            let c = match name {
                "nbsp" => Some('\u{a0}'),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "ndash" => Some('\u{2013}'),
                "mdash" => Some('\u{2014}'),
                "minus" => Some('\u{2212}'),
                "hyphen" | "dash" => Some('\u{2010}'),
                "shy" => Some('\u{ad}'),
                "thinsp" => Some('\u{2009}'),
                "ensp" => Some('\u{2002}'),
                "emsp" => Some('\u{2003}'),
                "period" => Some('.'),
                "sol" => Some('/'),
                "lpar" => Some('('),
                "rpar" => Some(')'),
                "plus" => Some('+'),
                "commat" => Some('@'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
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

    fn held(p: &Privacy, body: &str) -> Vec<String> {
        match p.prepare(body, None, None) {
            Outcome::Hold { found, .. } => found,
            Outcome::Send(text) => panic!("sent: {:?}", text.body),
        }
    }

    fn sent(p: &Privacy, body: &str) {
        let out = p.prepare(body, None, None);
        assert!(matches!(out, Outcome::Send(_)), "{body:?}: {out:?}");
    }

    /// Issue 12: the bracket after the number made the scan read "073-861 22 49 (17-19", which
    /// is no valid number, and the reply went out.
    #[test]
    fn a_private_number_followed_by_brackets_is_held() {
        let found = held(&privacy(), "Ring mig på 073-861 22 49 (17-19) i kväll");
        assert_eq!(found, ["073-861 22 49"]);
    }

    /// Issue 12: two numbers with a slash between them read as one invalid number.
    #[test]
    fn two_private_numbers_with_a_slash_between_are_both_held() {
        let found = held(&privacy(), "073-861 22 49 / 070-111 22 33");
        assert_eq!(found, ["073-861 22 49", "070-111 22 33"]);
    }

    #[test]
    fn the_office_number_next_to_a_private_one_lets_nothing_through() {
        let p = privacy();
        for body in [
            "Ring 08-123 456 78 / 073-861 22 49",
            "Ring 073-861 22 49 / 08-123 456 78",
            "Ring 08-123 456 78 073-861 22 49",
            "Ring 08-123 456 78 (073-861 22 49)",
            "Ring 08-123 456 78, 073-861 22 49.",
        ] {
            assert_eq!(held(&p, body), ["073-861 22 49"], "{body}");
        }
    }

    #[test]
    fn the_office_number_passes_however_it_is_written() {
        let p = privacy();
        for number in [
            "08-123 456 78",
            "08-12345678",
            "0812345678",
            "(08) 123 456 78",
            "08/123 456 78",
            "08.123.456.78",
            "08\u{2011}123\u{a0}456\u{a0}78",
            "+46 8 123 456 78",
            "+46 (0)8-123 456 78",
            "+46812345678",
            "0046 8 123 456 78",
            "0046-8-123 456 78",
        ] {
            sent(
                &p,
                &format!("Ring oss på {number} (kl. 8-17) eller {number}."),
            );
        }
    }

    #[test]
    fn short_numbers_times_amounts_dates_and_case_numbers_pass() {
        let p = privacy();
        for body in [
            "Vi ses 17-19 i kväll (17-19).",
            "Du får 1 500 kr, sedan 12 000 kr.",
            "Storgatan 12, 123 45 Stad.",
            "Kom kl. 10.30 eller 13.00.",
            "Telefontid 08.00-16.30, fredag 8.00 – 12.00.",
            "Mötet är 2026-11-24 kl. 10 eller 24.11.2026 eller 24/11/2026.",
            "Stängt 2026-12-24–2027-01-06.",
            "Ärende 2026-000042 (2026-000043).",
            "Ring 112 eller 1177.",
        ] {
            sent(&p, body);
        }
    }

    /// A case number is YYYY-NNNNNN with a plausible year: "0731-861224" is a mobile number.
    #[test]
    fn numbers_shaped_like_case_numbers_are_held() {
        let p = privacy();
        assert_eq!(held(&p, "Ring 0731-861224."), ["0731-861224"]);
        assert_eq!(held(&p, "Ring 0046-70-1234567."), ["0046-70-1234567"]);
    }

    /// Seven digits the number library does not know are held all the same.
    #[test]
    fn any_run_of_seven_digits_is_held() {
        let p = privacy();
        assert_eq!(held(&p, "Koden är 123 45 67."), ["123 45 67"]);
        assert_eq!(held(&p, "ring070 1234567nu"), ["070 1234567"]);
    }

    #[test]
    fn addresses_followed_by_punctuation_are_held() {
        let p = privacy();
        for (body, address) in [
            ("mejla anna.privat@gmail.com.", "anna.privat@gmail.com"),
            ("(anna@x.se)", "anna@x.se"),
            ("skriv till anna@x.se…", "anna@x.se"),
            ("skriv till ”anna@x.se”", "anna@x.se"),
            ("skriv till **anna@x.se**", "anna@x.se"),
            ("anna@x.se—eller ring", "anna@x.se"),
            ("anna@x.se/bo@y.se", "anna@x.se"),
        ] {
            let found = held(&p, body);
            assert_eq!(found.first().map(String::as_str), Some(address), "{body}");
        }
        sent(
            &p,
            "Skriv till mottagningen@kommun.example. Eller (info@kommun.example)!",
        );
    }

    /// A client's HTML (what e-mail sends) may carry what the plain body does not.
    #[test]
    fn a_number_only_in_the_html_is_held() {
        let out = privacy().prepare(
            "Ring mig",
            Some(
                "Ring mig på 070-<b>123</b>&nbsp;45&#8209;67 <a href=\"tel:+46701112233\">här</a>",
            ),
            None,
        );
        let Outcome::Hold { found, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(found, ["070-123\u{a0}45\u{2011}67", "+46701112233"]);
    }

    /// The channels a reply can leave on, as the worker's client hands the reply over: SMS and
    /// Telegram send the plain body, e-mail the HTML as well. The privacy rules do not depend
    /// on the channel; each goes through the same [`Privacy::prepare_with`].
    #[derive(Debug, Clone, Copy)]
    enum Channel {
        Sms,
        Telegram,
        Email,
    }

    /// A Swedish number (never the office's) as a worker might write it.
    fn written_number() -> impl Strategy<Value = String> {
        let mobile = ("7[02369]", "[0-9]{7}").prop_map(|(a, b)| (a.to_owned(), b, vec![3, 2, 2]));
        let stockholm = ("8", "[2-9][0-9]{6,7}").prop_map(|(a, b)| {
            let groups = if b.len() == 8 {
                vec![3, 3, 2]
            } else {
                vec![3, 2, 2]
            };
            (a, b, groups)
        });
        let other = ("[1-6][0-9]{1,2}", "[2-9][0-9]{5,6}").prop_map(|(a, b)| {
            let groups = if b.len() == 7 {
                vec![3, 2, 2]
            } else {
                vec![2, 2, 2]
            };
            (a, b, groups)
        });
        let separator = prop_oneof![
            Just(" "),
            Just("-"),
            Just("\u{2011}"),
            Just("\u{2013}"),
            Just("\u{a0}"),
            Just("\u{202f}"),
            Just("."),
            Just("/"),
            Just(""),
        ];
        (
            prop_oneof![mobile, stockholm, other],
            prop_oneof![
                Just("0{area}"),
                Just("(0{area})"),
                Just("+46 {area}"),
                Just("+46{area}"),
                Just("+46 (0){area}"),
                Just("0046 {area}"),
                Just("0046-{area}"),
                Just("0046{area}"),
            ],
            proptest::collection::vec(separator, 4),
        )
            .prop_filter("not the office's", |((area, subscriber, _), _, _)| {
                !["812345678", "855500000"].contains(&format!("{area}{subscriber}").as_str())
            })
            .prop_map(|((area, subscriber, groups), prefix, seps)| {
                let mut out = prefix.replace("{area}", &area);
                out.push_str(if prefix.ends_with(')') { " " } else { seps[0] });
                let mut at = 0;
                for (k, len) in groups.iter().enumerate() {
                    if k > 0 {
                        out.push_str(seps[k]);
                    }
                    let end = if k + 1 == groups.len() {
                        subscriber.len()
                    } else {
                        at + len
                    };
                    out.push_str(&subscriber[at..end]);
                    at = end;
                }
                out
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A private number, however written and whatever follows it, is never sent without a
        /// worker's `!send`, on any channel.
        #[test]
        fn no_private_number_leaves_on_any_channel(
            number in written_number(),
            before in prop_oneof![
                Just("Ring mig på "), Just("("), Just("Nr: "), Just("ring "), Just("\""),
                Just("Ring 08-123 456 78 eller "), Just("Ärende 2026-000042, "), Just("kl 17-19 "),
            ],
            after in prop_oneof![
                Just(""), Just("."), Just(","), Just("!"), Just("?"), Just(")"), Just("…"),
                Just(" (17-19)"), Just(" (kl. 17-19)"), Just("(17-19)"), Just(" i kväll"),
                Just("i kväll"), Just(" / 08-123 456 78"), Just("/08-123 456 78"),
                Just(" 08-123 456 78"), Just(" / 073-861 22 49"), Just(" 2026-11-24"),
                Just(" 2026-000042"), Just(" 1 500 kr"), Just("-"), Just(":"), Just("\""),
                Just(" [17.00-19.00]"),
            ],
            channel in prop_oneof![Just(Channel::Sms), Just(Channel::Telegram), Just(Channel::Email)],
        ) {
            let body = format!("Hej! {before}{number}{after} Vi hörs.");
            let html = match channel {
                Channel::Sms | Channel::Telegram => None,
                Channel::Email => Some(format!("<p>{}</p>", escape(&body))),
            };
            let out = privacy().prepare_with(&body, html.as_deref(), Some("Anna Berg"), &[]);
            let Outcome::Hold { found, .. } = out else {
                return Err(TestCaseError::fail(format!("sent on {channel:?}: {body:?}")));
            };
            prop_assert!(!found.is_empty());
        }

        /// The office's own number, however written, does not stop a reply.
        #[test]
        fn the_office_number_passes_on_any_channel(
            number in prop_oneof![
                Just("08-123 456 78"), Just("+46 8 123 456 78"), Just("0046 8 123 456 78"),
                Just("(08) 123 456 78"), Just("08\u{2011}123\u{a0}456\u{a0}78"),
                Just("08-555 000 00"), Just("+46 (0)8-555 000 00"),
            ],
            after in prop_oneof![
                Just(""), Just("."), Just(")"), Just(" (8-17)"), Just(" i kväll"), Just("…"),
            ],
            channel in prop_oneof![Just(Channel::Sms), Just(Channel::Telegram), Just(Channel::Email)],
        ) {
            let body = format!("Hej! Ring ({number}{after}) eller mejla info@kommun.example.");
            let html = match channel {
                Channel::Sms | Channel::Telegram => None,
                Channel::Email => Some(format!("<p>{}</p>", escape(&body))),
            };
            let out = privacy().prepare_with(&body, html.as_deref(), None, &[]);
            prop_assert!(matches!(out, Outcome::Send(_)), "{:?} on {:?}", out, channel);
        }
    }
}
