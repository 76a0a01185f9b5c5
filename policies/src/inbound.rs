//! What happens automatically when a client writes: the emergency check at any hour, then the
//! reply outside office hours (or the acknowledgement inside them), each at most as often as the
//! team allows, never to automated mail and never in a discreet case.

use casebridge_config::{
    team::{AutoReplyConfig, DiscreetConfig, InboundStep, Repeat},
    Language, TeamConfig,
};
use chrono::{DateTime, TimeZone, Utc};
use ruma::{OwnedRoomOrAliasId, OwnedUserId};

use crate::{
    emergency::{builtin_keywords, Matcher},
    holidays::Holidays,
    hours::OfficeHours,
    sms::Segments,
    templates::{self, Kind, Templates, Values},
};

/// A team's automatic behaviour, built from its configuration.
#[derive(Debug, Clone)]
pub struct TeamPolicy {
    /// The team's key.
    pub key: String,
    /// The name clients see as `{office}`.
    pub office: String,
    /// Reply languages, in order.
    pub languages: Vec<Language>,
    /// Opening hours; `None` is always open.
    pub hours: Option<OfficeHours>,
    /// Auto-reply settings.
    pub auto_reply: AutoReplyConfig,
    /// `{emergency_numbers}`.
    pub emergency_numbers: String,
    /// Whether an emergency word gets the emergency text back.
    pub emergency_reply: bool,
    /// Emergency words.
    pub matcher: Matcher,
    /// Reply texts.
    pub templates: Templates,
    /// Who is mentioned on an escalation.
    pub on_call: Vec<OwnedUserId>,
    /// Where alerts go.
    pub alert_room: Option<OwnedRoomOrAliasId>,
    /// Where incident reports go.
    pub incident_room: Option<OwnedRoomOrAliasId>,
    /// What a discreet case shows the client.
    pub discreet: DiscreetConfig,
    /// The steps, in order.
    pub pipeline: Vec<InboundStep>,
}

/// A team setting that cannot work, with its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PolicyError {
    /// Dotted key, e.g. `teams.social.templates.sv.closed`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// A client's message as the policies see it.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// Its text.
    pub text: &'a str,
    /// The channel (`sms`, `email`, `telegram`): SMS replies may be fitted to one part.
    pub channel: &'a str,
    /// Sent by a machine (an auto-reply, a bounce, a mailing list): never answered.
    pub automated: bool,
    /// The case is discreet: nothing automatic goes to the client.
    pub discreet: bool,
    /// The team blocked this client: only the neutral text, once a day.
    pub blocked: bool,
    /// The case number, for `{case_number}`.
    pub case_number: &'a str,
    /// A stable key of the client's address, for "once per client" rules.
    pub contact: &'a str,
}

/// What to do about one incoming message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The emergency word or phrase found: escalate.
    pub emergency: Option<String>,
    /// An automatic reply to send, if its `once_key` is new.
    pub reply: Option<AutoReply>,
    /// Why a reply that would have gone out did not.
    pub withheld: Option<Withheld>,
}

/// An automatic reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoReply {
    /// Which rule sent it.
    pub kind: ReplyKind,
    /// The text, rendered.
    pub text: String,
    /// Send only if no reply with this key was sent before; `None`: always send.
    pub once_key: Option<String>,
}

/// The rule behind an automatic reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// Outside office hours.
    OutsideHours,
    /// Inside office hours.
    Acknowledgement,
    /// After an emergency word.
    Emergency,
    /// To a blocked client.
    Blocked,
}

impl ReplyKind {
    /// As recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutsideHours => "auto-reply",
            Self::Acknowledgement => "acknowledgement",
            Self::Emergency => "emergency-reply",
            Self::Blocked => "blocked-reply",
        }
    }

    /// As the case team reads it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::OutsideHours => "outside office hours",
            Self::Acknowledgement => "acknowledgement",
            Self::Emergency => "emergency information",
            Self::Blocked => "blocked client",
        }
    }
}

/// Why no automatic reply went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// The case is discreet.
    Discreet,
    /// The message came from a machine.
    Automated,
}

impl TeamPolicy {
    /// Builds team `key`'s policy, with `holidays` read from its calendars, and checks what
    /// would fail only when a client writes: templates, SMS lengths.
    pub fn new(key: &str, config: &TeamConfig, holidays: &Holidays) -> Result<Self, PolicyError> {
        let fail = |suffix: &str, message: String| PolicyError {
            key: format!("teams.{key}.{suffix}"),
            message,
        };
        if config.languages.is_empty() {
            return Err(fail("languages", "needs at least one language".into()));
        }
        for (i, step) in config.pipeline.iter().enumerate() {
            if config.pipeline[..i].contains(step) {
                return Err(fail(
                    "pipeline",
                    format!("{step:?} is listed twice; list each step once"),
                ));
            }
        }
        let templates = Templates::new(config.templates.clone());
        templates
            .check()
            .map_err(|(at, e)| fail(&format!("templates.{at}"), e.to_string()))?;
        let mut keywords: Vec<String> = config.emergency.keywords.clone();
        if config.emergency.builtin_keywords {
            for language in &config.languages {
                keywords.extend(builtin_keywords(*language).iter().map(|k| k.to_string()));
            }
        }
        let policy = Self {
            key: key.to_owned(),
            office: config.name.clone().unwrap_or_else(|| key.to_owned()),
            languages: config.languages.clone(),
            hours: config.hours.as_ref().map(|h| OfficeHours::new(h, holidays)),
            auto_reply: config.auto_reply.clone(),
            emergency_numbers: config.emergency.numbers.clone(),
            emergency_reply: config.emergency.reply,
            matcher: Matcher::new(&keywords),
            templates,
            on_call: config.on_call.clone(),
            alert_room: config.emergency.alert_room.clone(),
            incident_room: config
                .incident_room
                .clone()
                .or_else(|| config.emergency.alert_room.clone()),
            discreet: config.discreet.clone(),
            pipeline: config.pipeline.clone(),
        };
        if config.auto_reply.fit_sms {
            let language = policy.languages[0];
            for kind in [Kind::ClosedSms, Kind::EmergencySms] {
                let longest = policy.longest(language, kind);
                let segments = Segments::of(&longest);
                if segments.parts > 1 {
                    return Err(fail(
                        &format!("templates.{}.{}", language.code(), kind.key()),
                        format!(
                            "takes {} SMS parts at its longest ({} characters, {}), but \
                             auto_reply.fit_sms needs one: shorten the text or \
                             emergency.numbers. Longest form: {longest:?}",
                            segments.parts,
                            segments.units,
                            match segments.encoding {
                                crate::sms::Encoding::Gsm7 => "GSM-7, 160 fit one part",
                                crate::sms::Encoding::Ucs2 => "UCS-2, 70 fit one part",
                            }
                        ),
                    ));
                }
            }
        }
        Ok(policy)
    }

    /// A text rendered with the longest values it can get (dates over a year).
    fn longest(&self, language: Language, kind: Kind) -> String {
        (0..366)
            .map(|day| {
                let at = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
                    + chrono::Duration::days(day);
                self.render(language, kind, "2026-000000", Some(at))
            })
            .max_by_key(|text| Segments::of(text).units)
            .unwrap_or_default()
    }

    fn render(
        &self,
        language: Language,
        kind: Kind,
        case_number: &str,
        next_open: Option<DateTime<Utc>>,
    ) -> String {
        let values = Values {
            office: &self.office,
            next_open,
            time_zone: self
                .hours
                .as_ref()
                .map_or(chrono_tz::UTC, OfficeHours::time_zone),
            emergency_numbers: &self.emergency_numbers,
            case_number,
        };
        // Templates are checked when the policy is built.
        templates::render(
            self.templates.get(language, kind),
            language,
            kind.is_short(),
            &values,
        )
        .unwrap_or_else(|e| format!("({e})"))
    }

    /// The reply text of `kind` for a message on `channel`: every language, or on SMS with
    /// `fit_sms` the first language's short text.
    fn text(
        &self,
        kind: Kind,
        channel: &str,
        case_number: &str,
        next_open: Option<DateTime<Utc>>,
    ) -> String {
        let short = match kind {
            Kind::Closed => Some(Kind::ClosedSms),
            Kind::Emergency => Some(Kind::EmergencySms),
            _ => None,
        };
        if let (Some(short), true, "sms") = (short, self.auto_reply.fit_sms, channel) {
            return self.render(self.languages[0], short, case_number, next_open);
        }
        self.languages
            .iter()
            .map(|l| self.render(*l, kind, case_number, next_open))
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    /// What to do about `message`: the pipeline's steps in order; the first that answers the
    /// client answers.
    pub fn decide(&self, message: &Incoming<'_>) -> Decision {
        let mut decision = Decision::default();
        let next_open = self.hours.as_ref().and_then(|h| h.next_open(message.at));
        let mut reply = None;
        for step in &self.pipeline {
            let answer = match step {
                InboundStep::Emergency => {
                    decision.emergency = self.matcher.find(message.text).map(str::to_owned);
                    (decision.emergency.is_some() && self.emergency_reply).then(|| AutoReply {
                        kind: ReplyKind::Emergency,
                        text: self.text(
                            Kind::Emergency,
                            message.channel,
                            message.case_number,
                            next_open,
                        ),
                        once_key: None,
                    })
                }
                InboundStep::AutoReply if message.blocked => {
                    let day = self
                        .hours
                        .as_ref()
                        .map_or(chrono_tz::UTC, OfficeHours::time_zone)
                        .from_utc_datetime(&message.at.naive_utc())
                        .date_naive();
                    Some(AutoReply {
                        kind: ReplyKind::Blocked,
                        text: self.text(
                            Kind::Blocked,
                            message.channel,
                            message.case_number,
                            next_open,
                        ),
                        once_key: Some(format!("blocked-reply:{}:{day}", message.contact)),
                    })
                }
                InboundStep::AutoReply => self.routine_reply(message, next_open),
            };
            if reply.is_none() {
                reply = answer;
            }
        }
        match reply {
            Some(_) if message.discreet => decision.withheld = Some(Withheld::Discreet),
            Some(_) if message.automated => decision.withheld = Some(Withheld::Automated),
            reply => decision.reply = reply,
        }
        decision
    }

    /// The reply outside office hours, or the acknowledgement inside them.
    fn routine_reply(
        &self,
        message: &Incoming<'_>,
        next_open: Option<DateTime<Utc>>,
    ) -> Option<AutoReply> {
        let status = self.hours.as_ref().map(|h| h.status(message.at));
        let open = status.is_none_or(|s| s.open);
        let (kind, reply_kind) = if open {
            if !self.auto_reply.acknowledge {
                return None;
            }
            (Kind::Acknowledgement, ReplyKind::Acknowledgement)
        } else {
            if !self.auto_reply.outside_hours {
                return None;
            }
            (Kind::Closed, ReplyKind::OutsideHours)
        };
        // The period a reply covers: up to the next change, or the local day.
        let period = match self.auto_reply.repeat {
            Repeat::EveryMessage => None,
            Repeat::OncePerPeriod => Some(
                status
                    .and_then(|s| s.until)
                    .map_or_else(|| "ever".to_owned(), |t| t.to_rfc3339()),
            ),
            Repeat::OncePerDay => Some(
                self.hours
                    .as_ref()
                    .map_or(chrono_tz::UTC, OfficeHours::time_zone)
                    .from_utc_datetime(&message.at.naive_utc())
                    .date_naive()
                    .to_string(),
            ),
        };
        Some(AutoReply {
            kind: reply_kind,
            text: self.text(kind, message.channel, message.case_number, next_open),
            once_key: period.map(|p| format!("{}:{}:{p}", reply_kind.as_str(), message.contact)),
        })
    }
}

#[cfg(test)]
mod tests {
    use casebridge_config::TeamConfig;

    use super::TeamPolicy;
    use crate::holidays::Holidays;

    fn team(extra: &str) -> TeamConfig {
        toml::from_str(&format!("members = [\"@a:example.org\"]\n{extra}")).unwrap()
    }

    #[test]
    fn sms_texts_that_cannot_fit_one_part_are_refused_at_start() {
        let err = TeamPolicy::new(
            "kyiv",
            &team(
                "languages = [\"uk\"]\nauto_reply.fit_sms = true\n\
                 emergency.numbers = \"112, гаряча лінія 0 800 500 335, поліція 102\"\n\
                 hours = { time_zone = \"Europe/Kyiv\", monday = [\"09:00-17:00\"] }",
            ),
            &Holidays::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "teams.kyiv.templates.uk.closed_sms");
        assert!(
            err.message.contains("UCS-2, 70 fit one part"),
            "{}",
            err.message
        );
        // The same numbers fit in English (GSM-7).
        TeamPolicy::new(
            "kyiv",
            &team(
                "languages = [\"en\", \"uk\"]\nauto_reply.fit_sms = true\n\
                 emergency.numbers = \"112, hotline 0 800 500 335\"",
            ),
            &Holidays::default(),
        )
        .unwrap();
    }

    #[test]
    fn unknown_placeholders_are_named() {
        let err = TeamPolicy::new(
            "sv",
            &team("[templates.sv]\nclosed = \"Stängt till {next_opening}\""),
            &Holidays::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "teams.sv.templates.sv.closed");
    }
}

#[cfg(test)]
mod once_per_period {
    use std::collections::{BTreeSet, HashSet};

    use casebridge_config::TeamConfig;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    use super::{Incoming, ReplyKind, TeamPolicy};
    use crate::holidays::Holidays;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Over any sequence of messages from one client, exactly one auto-reply goes out per
        /// closed period the client writes in, and it answers the first message of that period.
        #[test]
        fn one_reply_per_closed_period(mut offsets in proptest::collection::vec(0i64..14 * 24 * 60, 1..60)) {
            offsets.sort_unstable();
            let team: TeamConfig = toml::from_str(
                "members = [\"@a:example.org\"]\nlanguages = [\"sv\"]\n\
                 [hours]\ntime_zone = \"Europe/Stockholm\"\n\
                 monday = [\"08:00-12:00\", \"13:00-16:00\"]\nwednesday = [\"10:00-14:00\"]\n\
                 friday = [\"08:00-15:00\"]\nholidays = [\"2026-12-04\"]",
            )
            .unwrap();
            let policy = TeamPolicy::new("t", &team, &Holidays::default()).unwrap();
            let hours = policy.hours.clone().unwrap();
            let start = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
            let mut marks = HashSet::new();
            let mut periods = BTreeSet::new();
            let mut replies = 0;
            for minutes in offsets {
                let at = start + chrono::Duration::minutes(minutes);
                let decision = policy.decide(&Incoming {
                    at,
                    text: "hej",
                    channel: "sms",
                    automated: false,
                    discreet: false,
                    blocked: false,
                    case_number: "2026-000001",
                    contact: "7",
                });
                let open = hours.is_open(at);
                let sent = decision.reply.filter(|r| r.once_key.clone().is_none_or(|k| marks.insert(k)));
                if open {
                    prop_assert!(sent.is_none());
                    continue;
                }
                // A closed period is named by the instant it ends.
                let first_in_period = periods.insert(hours.next_change(at));
                prop_assert_eq!(sent.is_some(), first_in_period, "at {}", at);
                if let Some(reply) = sent {
                    prop_assert_eq!(reply.kind, ReplyKind::OutsideHours);
                    replies += 1;
                }
            }
            prop_assert_eq!(replies, periods.len());
        }
    }
}
