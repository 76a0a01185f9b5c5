//! A case journal as one self-contained HTML page: what a caseworker, a supervisor or an
//! archivist reads, with every message, automatic reply, note, notice and delivery state in
//! registration order, and the chain's hashes to check it against.
//!
//! It is written for the team's records officer: in the team's language, with the
//! team's name, and every time in the office's time zone with its offset from UTC (a local
//! time alone is ambiguous in the hour the clocks go back). What was recorded is shown as it
//! was recorded: the gateway's notices keep their own words, only the journal's labels change.

use casebridge_config::{Language, TeamConfig};
use casebridge_policies::{
    commands::{self, Command},
    outbound::escape_html as escape,
};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::fmt::Write;

use crate::{
    store::{case, identity, message, Direction, IdentityId, MessageKind},
    texts::journal::{texts, Texts},
};

/// Whom the journal is written for: a case's team, as its records officer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team<'a> {
    /// The team's name (its key when it has none).
    pub name: &'a str,
    /// The language the journal is written in: the team's (see [`crate::texts`]).
    pub language: Language,
    /// The zone of every time: the office's (UTC for a team without office hours).
    pub time_zone: Tz,
}

impl<'a> Team<'a> {
    /// The team `key` as configured; a team no longer in the configuration is named by its key
    /// and gets English and UTC, so an old case still exports.
    pub fn of(key: &'a str, config: Option<&'a TeamConfig>) -> Self {
        Self {
            name: config.and_then(|t| t.name.as_deref()).unwrap_or(key),
            language: crate::texts::team_language(config),
            time_zone: config
                .and_then(|t| t.hours.as_ref())
                .map_or(chrono_tz::UTC, |h| h.time_zone),
        }
    }
}

/// `text`, escaped, with `values` (HTML already) for its `{}`s in order.
fn fill_html(text: &str, values: &[&str]) -> String {
    values
        .iter()
        .fold(escape(text), |text, value| text.replacen("{}", value, 1))
}

/// `text` with `value` for its `{}`, both escaped.
fn fill(text: &str, value: &str) -> String {
    fill_html(text, &[&escape(value)])
}

/// `at` in `zone` with its offset, e.g. `2026-10-25 02:30 +01:00`.
fn local(at: DateTime<Utc>, zone: Tz, seconds: bool) -> String {
    let format = if seconds {
        "%Y-%m-%d %H:%M:%S %:z"
    } else {
        "%Y-%m-%d %H:%M %:z"
    };
    at.with_timezone(&zone).format(format).to_string()
}

/// What kind of entry a record is, as the journal names it.
fn label(t: &Texts, m: &message::Model, channel: &str) -> String {
    let kind = m.kind;
    let on = |what: &str| format!("{what} ({channel})");
    match m.direction {
        Direction::Inbound => on(t.from_client),
        Direction::Outbound => {
            let automatic = match kind {
                Some(MessageKind::Part) => return on(t.part),
                Some(MessageKind::AutoReply) => t.outside_hours,
                Some(MessageKind::Acknowledgement) => t.acknowledgement,
                Some(MessageKind::EmergencyReply) => t.emergency_information,
                Some(MessageKind::BlockedReply) => t.blocked_client,
                _ => return on(t.reply),
            };
            on(&t.automatic.replace("{}", automatic))
        }
        Direction::Internal => match kind {
            Some(MessageKind::Note) => t.note,
            Some(MessageKind::Incident) => t.incident,
            Some(MessageKind::Purge) => t.purge,
            _ => t.command,
        }
        .to_owned(),
        Direction::Alert => t.alert.to_owned(),
        _ if kind == Some(MessageKind::Emergency) => t.emergency.to_owned(),
        _ => t.notice.to_owned(),
    }
}

/// The text of a worker's note or incident report: the record keeps the command as typed
/// (`!note ...`, which its hash covers); the reader wants what was noted.
fn noted_text(m: &message::Model) -> Option<String> {
    if m.direction != Direction::Internal {
        return None;
    }
    match commands::parse(&m.body)? {
        Ok(Command::Note(text)) if m.kind == Some(MessageKind::Note) => Some(text),
        Ok(Command::Incident(text)) if m.kind == Some(MessageKind::Incident) => Some(text),
        _ => None,
    }
}

/// Renders the journal of `case` for `team`.
pub fn render(
    case: &case::Model,
    team: &Team<'_>,
    identities: &[identity::Model],
    messages: &[message::Model],
    generated_at: DateTime<Utc>,
) -> String {
    let t = texts(team.language);
    let zone = team.time_zone;
    let contact = |id: Option<IdentityId>| identities.iter().find(|i| Some(i.id) == id);
    let channel_of = |m: &message::Model| -> String {
        contact(m.identity_id).map_or_else(|| m.channel.clone(), |i| i.channel.clone())
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <title>{title}</title>\n<style>\
         body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         h1{{margin-bottom:.2rem}} .meta,.zone{{color:#555}} table{{border-collapse:collapse;width:100%}}\
         td,th{{border-bottom:1px solid #ddd;padding:.5rem;vertical-align:top;text-align:left}}\
         .no{{color:#777;white-space:nowrap}} .when{{white-space:nowrap}} .text{{white-space:pre-wrap}}\
         .inbound{{background:#f4f8ff}} .outbound{{background:#f6fff4}} .internal{{background:#fffbea}}\
         .alert,.emergency{{background:#fff0f0}} .hash{{font-family:monospace;font-size:.75rem;color:#888;word-break:break-all}}\
         @media print{{.hash{{font-size:.6rem}}}}</style></head><body>\n",
        lang = t.language.code(),
        title = fill(t.title, &case.number),
    );
    let mut meta = vec![
        fill(t.team, team.name),
        fill_html(t.status, &[&t.word(case.status.as_str())]),
        fill(t.opened, &local(case.created_at, zone, false)),
    ];
    if case.discreet {
        meta.push(escape(t.discreet));
    }
    if let Some(assignee) = &case.assignee {
        meta.push(fill(t.assigned_to, assignee));
    }
    if let Some(merged) = &case.merged_into {
        meta.push(fill(t.merged_into, merged));
    }
    let _ = write!(
        out,
        "<h1>{}</h1>\n<p class=\"meta\">{}</p>\n<p class=\"zone\">{}</p>\n",
        fill(t.case, &case.number),
        meta.join(" · "),
        fill(t.zone, zone.name()),
    );
    let _ = write!(out, "<h2>{}</h2>\n<ul>\n", escape(t.contacts));
    for i in identities {
        let moved = if i.case_id == case.id {
            String::new()
        } else {
            format!(
                ", {}",
                fill(
                    t.now_in_case,
                    case.merged_into.as_deref().unwrap_or(t.another_case)
                )
            )
        };
        let unreachable = i
            .unreachable
            .as_deref()
            .map(|why| format!(", {}", fill(t.unreachable, why)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<li>{} — {} ({}), {}{moved}{unreachable}</li>",
            escape(&i.display_name),
            escape(&i.channel),
            escape(&i.instance),
            fill(t.first_written, &local(i.created_at, zone, false)),
        );
    }
    let _ = write!(
        out,
        "</ul>\n<h2>{}</h2>\n<table>\n<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th></tr></thead>\n<tbody>\n",
        escape(t.records),
        escape(t.column_no),
        fill(t.column_when, zone.name()),
        escape(t.column_entry),
        escape(t.column_text),
        escape(t.column_state),
    );
    for (index, m) in messages.iter().enumerate() {
        let class = match m.kind {
            Some(MessageKind::Emergency) => MessageKind::Emergency.as_str(),
            _ => m.direction.as_str(),
        };
        let actor = match (&m.sender, m.direction) {
            (Some(worker), _) => format!("<br><small>{}</small>", fill(t.by, worker)),
            (None, Direction::Inbound) => contact(m.identity_id)
                .map(|i| format!("<br><small>{}</small>", escape(&i.display_name)))
                .unwrap_or_default(),
            (None, _) => format!("<br><small>{}</small>", escape(t.by_gateway)),
        };
        let files = m
            .attachments
            .as_ref()
            .and_then(|a| a.as_array().cloned())
            .map(|files| {
                files
                    .iter()
                    .map(|f| {
                        format!(
                            "<br><small>{}: {} ({}, {} {})</small>",
                            escape(t.file),
                            escape(f["filename"].as_str().unwrap_or_default()),
                            escape(f["mime"].as_str().unwrap_or_default()),
                            f["size"],
                            escape(t.bytes),
                        )
                    })
                    .collect::<String>()
            })
            .unwrap_or_default();
        let text = if m.purged_at.is_some() {
            format!("<em>{}</em>", escape(t.purged))
        } else if let Some(noted) = noted_text(m) {
            escape(&noted)
        } else {
            // Mail shows its subject as the first line of the text already.
            let subject = m
                .subject
                .as_deref()
                .filter(|s| !m.body.starts_with(s))
                .map(|s| format!("<strong>{}</strong>\n", escape(s)))
                .unwrap_or_default();
            // A reply's record has no subject: the bridge makes it when it sends (from the
            // client's latest subject, or the neutral one of a discreet case) and the record,
            // hashed when the worker wrote it, cannot take it afterwards. The thread it
            // answered is what the record does show.
            let thread = (m.direction == Direction::Outbound && m.subject.is_none())
                .then(|| thread_subject(&messages[..index], m.identity_id))
                .flatten()
                .map(|s| format!("<small>{}</small>\n", fill(t.thread, s)))
                .unwrap_or_default();
            format!("{subject}{thread}{}", escape(&m.body))
        };
        let mut state = t.word(m.state.as_str());
        if let Some(at) = m.delivered_at {
            let _ = write!(state, "<br><small>{}</small>", local(at, zone, false));
        }
        if let Some(error) = &m.error {
            let _ = write!(state, "<br><small>{}</small>", escape(error));
        }
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td class=\"no\">{}</td><td class=\"when\">{}</td><td>{}{actor}</td>\
             <td><div class=\"text\">{text}</div>{files}<div class=\"hash\">{}</div></td><td>{state}</td></tr>",
            m.seq.map_or_else(|| "–".to_owned(), |s| s.to_string()),
            local(m.received_at, zone, true),
            escape(&label(t, m, &channel_of(m))),
            escape(m.hash.as_deref().unwrap_or_default()),
        );
    }
    let _ = write!(
        out,
        "</tbody></table>\n<p class=\"meta\">{} <code>casebridge records verify --case {}</code> \
         {}</p>\n</body></html>\n",
        fill_html(
            t.footer,
            &[
                &messages.len().to_string(),
                &escape(&local(generated_at, zone, false))
            ]
        ),
        escape(&case.number),
        escape(t.footer_checks),
    );
    out
}

/// The subject of the client's latest message before a reply to `identity`: the thread the
/// reply answered.
fn thread_subject(before: &[message::Model], identity: Option<IdentityId>) -> Option<&str> {
    before
        .iter()
        .rev()
        .filter(|m| m.direction == Direction::Inbound && m.identity_id == identity)
        .find_map(|m| m.subject.as_deref().filter(|s| !s.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CaseId, CaseStatus, MessageId, MessageState};
    use chrono::{DateTime, TimeZone as _, Utc};

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn case() -> case::Model {
        case::Model {
            id: CaseId(1),
            number: "2026-000001".into(),
            year: 2026,
            seq: 1,
            team: "adult".into(),
            status: CaseStatus::Open,
            room_id: None,
            last_identity_id: Some(IdentityId(1)),
            // 00:00 in Stockholm, summer time.
            created_at: at(2026, 10, 24, 22, 0),
            discreet: false,
            blocked: false,
            assignee: None,
            closed_at: None,
            legal_hold: false,
            merged_into: None,
        }
    }

    fn contact() -> identity::Model {
        identity::Model {
            id: IdentityId(1),
            case_id: CaseId(1),
            instance: "mail".into(),
            channel: "email".into(),
            address: "klara@client.test".into(),
            display_name: "Klara Klient <klara@client.test>".into(),
            ghost_localpart: "mail_klara".into(),
            joined_at: None,
            created_at: at(2026, 10, 25, 0, 30),
            unreachable: None,
        }
    }

    fn record(
        seq: i32,
        direction: Direction,
        kind: Option<MessageKind>,
        body: &str,
    ) -> message::Model {
        message::Model {
            id: MessageId(seq.into()),
            case_id: CaseId(1),
            identity_id: None,
            direction,
            instance: String::new(),
            channel: String::new(),
            upstream_id: None,
            event_id: None,
            sender: None,
            body: body.into(),
            html: None,
            attachments: None,
            state: MessageState::Recorded,
            error: None,
            sent_at: None,
            received_at: at(2026, 10, 25, 2, 0),
            relayed_at: None,
            delivered_at: None,
            kind,
            mentions: None,
            subject: None,
            seq: Some(seq),
            prev_hash: None,
            content_hash: None,
            hash: Some(format!("hash{seq}")),
            replaces: None,
            purged_at: None,
        }
    }

    /// A mail and its answer either side of the autumn change (both at 02:30 on the clock),
    /// a note, an automatic reply, a notice, a purged message and the purge.
    fn records() -> Vec<message::Model> {
        let mail = message::Model {
            identity_id: Some(IdentityId(1)),
            instance: "mail".into(),
            channel: "email".into(),
            subject: Some("Tid hos er".into()),
            state: MessageState::Relayed,
            // 02:30 summer time, the first time round.
            received_at: at(2026, 10, 25, 0, 30),
            ..record(1, Direction::Inbound, None, "Hej, kan jag få en tid?")
        };
        let reply = message::Model {
            identity_id: Some(IdentityId(1)),
            instance: "mail".into(),
            channel: "email".into(),
            sender: Some("@anna:localhost".into()),
            state: MessageState::Delivered,
            // 02:30 winter time, the second time round.
            received_at: at(2026, 10, 25, 1, 30),
            delivered_at: Some(at(2026, 11, 23, 22, 1)),
            ..record(2, Direction::Outbound, None, "Passar torsdag kl. 10?")
        };
        let note = message::Model {
            sender: Some("@anna:localhost".into()),
            ..record(
                3,
                Direction::Internal,
                Some(MessageKind::Note),
                "!note Klara ringde <och> bad om sms",
            )
        };
        let auto = message::Model {
            identity_id: Some(IdentityId(1)),
            state: MessageState::Sent,
            ..record(
                4,
                Direction::Outbound,
                Some(MessageKind::AutoReply),
                "Vi har stängt.",
            )
        };
        let notice = record(
            5,
            Direction::Notice,
            None,
            "Case 2026-000002 merged into this case",
        );
        let purged = message::Model {
            identity_id: Some(IdentityId(1)),
            purged_at: Some(at(2028, 1, 1, 0, 0)),
            body: String::new(),
            ..record(6, Direction::Inbound, None, "")
        };
        let purge = record(
            7,
            Direction::Internal,
            Some(MessageKind::Purge),
            "Purged under retention rule 1",
        );
        vec![mail, reply, note, auto, notice, purged, purge]
    }

    fn swedish() -> String {
        let team = Team {
            name: "Socialtjänsten, vuxen & familj",
            language: Language::Sv,
            time_zone: chrono_tz::Europe::Stockholm,
        };
        render(
            &case(),
            &team,
            &[contact()],
            &records(),
            at(2026, 11, 29, 14, 0),
        )
    }

    /// The `<tr>` of record `seq`.
    fn row(html: &str, seq: i32) -> &str {
        let start = html
            .find(&format!("<td class=\"no\">{seq}</td>"))
            .unwrap_or_else(|| panic!("no record {seq} in {html}"));
        let end = start + html[start..].find("</tr>").unwrap();
        &html[start..end]
    }

    /// Every case status and record state the store can hold has a Swedish word.
    #[test]
    fn every_stored_word_has_its_swedish_word() {
        use sea_orm::Iterable;
        let stored = CaseStatus::iter()
            .map(CaseStatus::as_str)
            .chain(MessageState::iter().map(MessageState::as_str));
        for word in stored {
            assert!(
                texts(Language::Sv).words.iter().any(|(s, _)| *s == word),
                "no Swedish word for {word:?}"
            );
        }
    }

    #[test]
    fn a_swedish_team_reads_swedish_labels_and_its_own_name() {
        let html = swedish();
        assert!(html.contains("<html lang=\"sv\">"), "{html}");
        assert!(
            html.contains("<title>Ärende 2026-000001 — journal</title>"),
            "{html}"
        );
        assert!(html.contains("<h1>Ärende 2026-000001</h1>"), "{html}");
        assert!(
            html.contains("Enhet: Socialtjänsten, vuxen &amp; familj · status: öppet"),
            "{html}"
        );
        assert!(!html.contains("adult"), "the team's key: {html}");
        assert!(html.contains("<h2>Kontaktvägar</h2>"), "{html}");
        assert!(
            html.contains(
                "<th>Nr</th><th>Tid (Europe/Stockholm)</th><th>Post</th><th>Text</th>\
                 <th>Status</th>"
            ),
            "{html}"
        );
        assert!(row(&html, 1).contains("Från klienten (email)"));
        assert!(row(&html, 2).contains("Svar till klienten (email)<br><small>av @anna:localhost"));
        assert!(row(&html, 3).contains("Intern anteckning<br><small>av @anna:localhost"));
        assert!(row(&html, 4).contains("Automatiskt svar: utanför öppettid (email)"));
        assert!(row(&html, 4).contains("<small>av casebridge</small>"));
        assert!(row(&html, 5).contains("Meddelande till handläggarna"));
        // What the gateway recorded keeps its own words.
        assert!(row(&html, 5).contains("Case 2026-000002 merged into this case"));
        assert!(row(&html, 6).contains("(innehållet är gallrat enligt reglerna för gallring)"));
        assert!(row(&html, 7).contains("<td>Gallring<br>"));
        assert!(row(&html, 2).contains("<td>levererat<br>"));
        assert!(row(&html, 4).contains("<td>skickat</td>"));
        assert!(html.contains("7 poster. Skapad 2026-11-29 15:00 +01:00 av casebridge."));
        for english in [
            "<h1>Case",
            "From the client",
            "Reply to",
            "Internal note",
            "records.",
        ] {
            assert!(!html.contains(english), "{english:?} in {html}");
        }
    }

    #[test]
    fn times_are_the_offices_with_their_offset_across_the_autumn_change() {
        let html = swedish();
        assert!(
            html.contains("<p class=\"zone\">Tider i Europe/Stockholm, med skillnaden mot UTC"),
            "{html}"
        );
        assert!(html.contains("öppnat 2026-10-25 00:00 +02:00"), "{html}");
        assert!(
            html.contains("skrev först 2026-10-25 02:30 +02:00"),
            "{html}"
        );
        // The clock shows 02:30 twice that night; the offset says which.
        assert!(row(&html, 1).contains("<td class=\"when\">2026-10-25 02:30:00 +02:00</td>"));
        assert!(row(&html, 2).contains("<td class=\"when\">2026-10-25 02:30:00 +01:00</td>"));
        assert!(row(&html, 2).contains("<small>2026-11-23 23:01 +01:00</small>"));
        assert!(!html.contains(" UTC<"), "{html}");
    }

    #[test]
    fn a_note_is_its_text_and_a_mail_reply_names_its_thread() {
        let html = swedish();
        let note = row(&html, 3);
        assert!(
            note.contains("<div class=\"text\">Klara ringde &lt;och&gt; bad om sms</div>"),
            "{note}"
        );
        assert!(!html.contains("!note"), "{html}");
        let reply = row(&html, 2);
        assert!(
            reply.contains(
                "<div class=\"text\"><small>I tråden: Tid hos er</small>\nPassar torsdag kl. 10?"
            ),
            "{reply}"
        );
        // The automatic reply went out in the same thread.
        assert!(row(&html, 4).contains("I tråden: Tid hos er"));
        // A purged reply shows nothing of its content, nor of its thread.
        let mut purged = records();
        purged[1].purged_at = Some(at(2028, 1, 1, 0, 0));
        let team = Team::of("adult", None);
        let html = render(&case(), &team, &[contact()], &purged, at(2028, 1, 1, 0, 0));
        assert!(!row(&html, 2).contains("In the thread"), "{html}");
    }

    #[test]
    fn an_english_team_reads_english_in_utc_without_office_hours() {
        let config: TeamConfig = serde_json::from_value(serde_json::json!({
            "name": "Adult services",
            "members": ["@anna:localhost"],
            "languages": ["en", "sv"],
        }))
        .unwrap();
        let team = Team::of("adult", Some(&config));
        assert_eq!(
            team,
            Team {
                name: "Adult services",
                language: Language::En,
                time_zone: chrono_tz::UTC
            }
        );
        let html = render(
            &case(),
            &team,
            &[contact()],
            &records(),
            at(2026, 11, 29, 14, 0),
        );
        assert!(html.contains("<html lang=\"en\">"), "{html}");
        assert!(
            html.contains("<title>Case 2026-000001 — journal</title>"),
            "{html}"
        );
        assert!(
            html.contains("Team: Adult services · status: open"),
            "{html}"
        );
        assert!(html.contains("<th>When (UTC)</th>"), "{html}");
        assert!(row(&html, 1).contains("2026-10-25 00:30:00 +00:00"));
        assert!(row(&html, 1).contains("From the client (email)"));
        assert!(row(&html, 2).contains("Reply to the client (email)<br><small>by @anna:localhost"));
        assert!(row(&html, 2).contains("In the thread: Tid hos er"));
        assert!(row(&html, 3).contains("Internal note"));
        assert!(row(&html, 3).contains(">Klara ringde &lt;och&gt; bad om sms<"));
        assert!(row(&html, 4).contains("Automatic reply: outside office hours (email)"));
        assert!(row(&html, 7).contains("<td>Retention purge<br>"));
        assert!(row(&html, 2).contains("<td>delivered<br>"));
        assert!(html.contains("7 records. Generated 2026-11-29 14:00 +00:00 by casebridge."));
    }

    #[test]
    fn the_team_as_configured_in_its_first_language_with_texts() {
        let config: TeamConfig = serde_json::from_value(serde_json::json!({
            "members": ["@anna:localhost"],
            "languages": ["hu", "sv"],
            "hours": { "time_zone": "Europe/Budapest" },
        }))
        .unwrap();
        let team = Team::of("familj", Some(&config));
        assert_eq!(
            team,
            Team {
                name: "familj",
                language: Language::Sv,
                time_zone: chrono_tz::Europe::Budapest
            }
        );
        let html = render(&case(), &team, &[], &records(), at(2026, 11, 29, 14, 0));
        // Hungarian is a language of replies to clients only: the team reads Swedish.
        assert!(html.contains("<html lang=\"sv\">"), "{html}");
        assert!(html.contains("Enhet: familj"), "{html}");
        assert!(html.contains("<th>Tid (Europe/Budapest)</th>"), "{html}");
        // Only languages without team texts: English.
        let config: TeamConfig = serde_json::from_value(serde_json::json!({
            "members": ["@anna:localhost"],
            "languages": ["uk", "hu"],
        }))
        .unwrap();
        assert_eq!(Team::of("familj", Some(&config)).language, Language::En);
        // A team no longer configured: its key, English, UTC.
        assert_eq!(
            Team::of("gone", None),
            Team {
                name: "gone",
                language: Language::En,
                time_zone: chrono_tz::UTC
            }
        );
    }

    #[test]
    fn everything_recorded_is_escaped() {
        let mut records = records();
        records[0].body = "<script>alert(1)</script> & <img src=x>".into();
        records[0].subject = Some("<b>Ämne</b>".into());
        let team = Team {
            name: "<i>Team</i>",
            language: Language::Sv,
            time_zone: chrono_tz::Europe::Stockholm,
        };
        let html = render(
            &case(),
            &team,
            &[contact()],
            &records,
            at(2026, 11, 29, 14, 0),
        );
        for markup in ["<script", "<img", "<b>", "<i>"] {
            assert!(!html.contains(markup), "{markup} in {html}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x&gt;"));
        assert!(row(&html, 2).contains("I tråden: &lt;b&gt;Ämne&lt;/b&gt;"));
        assert!(html.contains("Enhet: &lt;i&gt;Team&lt;/i&gt;"));
    }
}
