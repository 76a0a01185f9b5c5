//! `[teams.KEY]`: who answers a team's cases, when the office is open, and what clients are told
//! automatically. The rules themselves live in `casebridge-policies`; this module only holds the
//! typed settings, so a wrong time or date is reported with its key when the file is read.

use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr};

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use ruma::{OwnedRoomOrAliasId, OwnedUserId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `[teams.KEY]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// A human name for the team, shown in summaries and in automatic replies as `{office}`.
    pub name: Option<String>,
    /// Matrix IDs of the workers who answer this team's cases; only they may send to clients.
    pub members: Vec<OwnedUserId>,
    /// Members on call, mentioned on escalations.
    #[serde(default)]
    pub on_call: Vec<OwnedUserId>,
    /// Languages of automatic replies, in order: each reply carries every language, except on
    /// SMS fitted to one part, which uses the first. The team itself reads casebridge's
    /// notices, command answers and journals in the first of these that they are written in
    /// (Swedish or English; English when none is).
    #[serde(default = "default_languages")]
    pub languages: Vec<Language>,
    /// When the office answers. Without it the team counts as always open.
    pub hours: Option<HoursConfig>,
    /// Automatic replies outside and inside office hours.
    #[serde(default)]
    pub auto_reply: AutoReplyConfig,
    /// Emergency words, numbers and the on-call room.
    #[serde(default)]
    pub emergency: EmergencyConfig,
    /// What a discreet case shows the client.
    #[serde(default)]
    pub discreet: DiscreetConfig,
    /// A room (id or alias) where `!incident` reports are posted; the emergency alert room
    /// when not set. Invite the bot there.
    pub incident_room: Option<OwnedRoomOrAliasId>,
    /// What may leave the office in a reply.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// The policies that run on a client's message, in order.
    #[serde(default = "default_pipeline")]
    pub pipeline: Vec<InboundStep>,
    /// Replacements of the built-in reply texts, per language (`[teams.KEY.templates.sv]`).
    #[serde(default)]
    pub templates: BTreeMap<Language, TemplateOverrides>,
}

fn default_pipeline() -> Vec<InboundStep> {
    vec![InboundStep::Emergency, InboundStep::AutoReply]
}

/// A policy that runs on every message from a client. The first step that answers the client
/// answers; escalation happens whenever `emergency` is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InboundStep {
    /// Emergency words: escalate, and answer with the emergency text.
    Emergency,
    /// Outside office hours, acknowledgements inside them, the neutral text to a blocked
    /// client.
    AutoReply,
}

fn default_languages() -> Vec<Language> {
    vec![Language::En]
}

/// A language automatic replies are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Swedish.
    Sv,
    /// English.
    En,
    /// Hungarian.
    Hu,
    /// Ukrainian.
    Uk,
}

impl Language {
    /// The ISO 639-1 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Sv => "sv",
            Self::En => "en",
            Self::Hu => "hu",
            Self::Uk => "uk",
        }
    }
}

/// `[teams.KEY.hours]`: opening hours in the office's own time zone.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    /// IANA time zone, e.g. `Europe/Stockholm`.
    pub time_zone: chrono_tz::Tz,
    /// Open intervals per weekday, `"08:00-12:00"`; a day left out is closed.
    #[serde(default)]
    pub monday: Vec<Interval>,
    /// As `monday`.
    #[serde(default)]
    pub tuesday: Vec<Interval>,
    /// As `monday`.
    #[serde(default)]
    pub wednesday: Vec<Interval>,
    /// As `monday`.
    #[serde(default)]
    pub thursday: Vec<Interval>,
    /// As `monday`.
    #[serde(default)]
    pub friday: Vec<Interval>,
    /// As `monday`.
    #[serde(default)]
    pub saturday: Vec<Interval>,
    /// As `monday`.
    #[serde(default)]
    pub sunday: Vec<Interval>,
    /// Closed all day, `"2026-12-24"`.
    #[serde(default)]
    pub holidays: Vec<Date>,
    /// iCalendar files whose events are closed days (a country's public holidays).
    #[serde(default)]
    pub holiday_calendars: Vec<PathBuf>,
    /// One-off closures, `{ from = "2026-12-23 12:00", to = "2026-12-23 17:00" }`.
    #[serde(default)]
    pub closed: Vec<Exception>,
    /// One-off openings outside the week's hours, even on a holiday.
    #[serde(default)]
    pub open: Vec<Exception>,
}

impl HoursConfig {
    /// The open intervals of each weekday, Monday first.
    pub fn week(&self) -> [&[Interval]; 7] {
        [
            &self.monday,
            &self.tuesday,
            &self.wednesday,
            &self.thursday,
            &self.friday,
            &self.saturday,
            &self.sunday,
        ]
    }
}

/// A span of a day in local wall-clock time, `"08:00-12:00"`; `"24:00"` ends at midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Seconds after midnight where it starts.
    pub start: u32,
    /// Seconds after midnight where it ends (up to 86 400), after `start`.
    pub end: u32,
}

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || format!("{s:?} is not a span like \"08:00-12:00\"");
        let (start, end) = s.split_once('-').ok_or_else(expected)?;
        let seconds = |t: &str| -> Result<u32, String> {
            let t = t.trim();
            if t == "24:00" {
                return Ok(86_400);
            }
            let time = NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| expected())?;
            Ok(time.num_seconds_from_midnight())
        };
        let (start, end) = (seconds(start)?, seconds(end)?);
        if end <= start || start >= 86_400 {
            return Err(format!("{s:?} ends before it starts"));
        }
        Ok(Self { start, end })
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |s: u32| format!("{:02}:{:02}", s / 3600, s % 3600 / 60);
        write!(f, "{}-{}", hm(self.start), hm(self.end))
    }
}

/// A calendar date, `"2026-12-24"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub NaiveDate);

impl FromStr for Date {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map(Self)
            .map_err(|_| format!("{s:?} is not a date like \"2026-12-24\""))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.format("%Y-%m-%d").fmt(f)
    }
}

/// A local date and time, `"2026-12-23 12:00"` (or `T` between); a date alone is its midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime(pub NaiveDateTime);

impl FromStr for LocalTime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        for format in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
            if let Ok(at) = NaiveDateTime::parse_from_str(t, format) {
                return Ok(Self(at));
            }
        }
        if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            return Ok(Self(date.and_time(NaiveTime::MIN)));
        }
        Err(format!(
            "{s:?} is not a local time like \"2026-12-23 12:00\" or a date like \"2026-12-23\""
        ))
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.format("%Y-%m-%d %H:%M").fmt(f)
    }
}

/// A one-off change to the opening hours, in local time: `from` up to `to`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// Where it starts.
    pub from: LocalTime,
    /// Where it ends (not included).
    pub to: LocalTime,
    /// Why, for the admin and `casebridge hours`.
    #[serde(default)]
    pub reason: String,
}

macro_rules! string_serde {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
string_serde!(Interval, Date, LocalTime);

/// `[teams.KEY.auto_reply]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoReplyConfig {
    /// Answer a client who writes while the office is closed (needs `hours`).
    #[serde(default = "yes")]
    pub outside_hours: bool,
    /// Also acknowledge a client who writes while it is open ("we answer within ...").
    #[serde(default)]
    pub acknowledge: bool,
    /// How often one client gets the same kind of automatic reply.
    #[serde(default)]
    pub repeat: Repeat,
    /// On SMS, send the first language's short text, which must fit one part.
    #[serde(default)]
    pub fit_sms: bool,
}

fn yes() -> bool {
    true
}

impl Default for AutoReplyConfig {
    fn default() -> Self {
        Self {
            outside_hours: true,
            acknowledge: false,
            repeat: Repeat::default(),
            fit_sms: false,
        }
    }
}

/// How often a client gets an automatic reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Repeat {
    /// Once per client per closed period (per open period for acknowledgements).
    #[default]
    OncePerPeriod,
    /// Once per client per calendar day in the office's time zone.
    OncePerDay,
    /// On every message.
    EveryMessage,
}

/// `[teams.KEY.emergency]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyConfig {
    /// Emergency contact information given to clients as `{emergency_numbers}`.
    #[serde(default = "default_numbers")]
    pub numbers: String,
    /// Words and phrases that escalate a message at any hour, matched whole-word and ignoring
    /// case; a trailing `*` matches any ending (`"hota*"`). Added to the built-in list of the
    /// team's languages unless `builtin_keywords = false`.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Whether the built-in keywords of the team's languages apply.
    #[serde(default = "yes")]
    pub builtin_keywords: bool,
    /// Answer the client at once with the emergency text.
    #[serde(default = "yes")]
    pub reply: bool,
    /// A room (id or alias) the bot posts alerts to; invite the bot there.
    pub alert_room: Option<OwnedRoomOrAliasId>,
}

fn default_numbers() -> String {
    "112".into()
}

impl Default for EmergencyConfig {
    fn default() -> Self {
        Self {
            numbers: default_numbers(),
            keywords: Vec::new(),
            builtin_keywords: true,
            reply: true,
            alert_room: None,
        }
    }
}

/// `[teams.KEY.discreet]`: what a client at risk sees (someone may read their phone).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscreetConfig {
    /// A neutral sender name (mail From name, SMS alphanumeric sender where allowed).
    #[serde(default = "default_neutral_name")]
    pub sender_name: String,
    /// A neutral mail subject.
    #[serde(default = "default_neutral_subject")]
    pub subject: String,
}

fn default_neutral_name() -> String {
    "Info".into()
}

fn default_neutral_subject() -> String {
    "Message".into()
}

impl Default for DiscreetConfig {
    fn default() -> Self {
        Self {
            sender_name: default_neutral_name(),
            subject: default_neutral_subject(),
        }
    }
}

/// `[teams.KEY.templates.LANG]`: the texts a team sends instead of the built-in ones.
/// Placeholders: `{office}`, `{next_open}`, `{emergency_numbers}`, `{case_number}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateOverrides {
    /// Outside office hours.
    pub closed: Option<String>,
    /// Outside office hours on SMS when `fit_sms` is on: must fit one SMS part.
    pub closed_sms: Option<String>,
    /// Inside office hours when `acknowledge` is on.
    pub acknowledgement: Option<String>,
    /// After an emergency word, at any hour.
    pub emergency: Option<String>,
    /// `emergency` for SMS when `fit_sms` is on: must fit one SMS part.
    pub emergency_sms: Option<String>,
    /// To a client the team blocked (`!block`), at most once a day.
    pub blocked: Option<String>,
}

/// `[teams.KEY.privacy]`: what of a reply may reach a client. Workers' Matrix IDs, names,
/// mentions and reply quotes never do; phone numbers and mail addresses only from this list
/// (and the emergency numbers) without a worker's `!send`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The office's own numbers, as written anywhere (`"08-123 456 78"`).
    #[serde(default)]
    pub allowed_numbers: Vec<String>,
    /// The office's addresses, or whole domains as `"@kommun.example"`.
    #[serde(default)]
    pub allowed_addresses: Vec<String>,
    /// Country for numbers written without a country code.
    #[serde(default = "default_region")]
    pub default_region: String,
    /// Appended to every reply; `{first_name}` is the worker's first name (leave it out to name
    /// no one), e.g. `"{first_name}, Socialtjänsten"`.
    pub signature: Option<String>,
}

fn default_region() -> String {
    "SE".into()
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            allowed_numbers: Vec::new(),
            allowed_addresses: Vec::new(),
            default_region: default_region(),
            signature: None,
        }
    }
}
