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
        out.push_str(&contact_item(t, zone, case, i));
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
    for index in 0..messages.len() {
        out.push_str(&row(t, zone, identities, messages, index));
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

/// One of the case's contacts, as a list item.
fn contact_item(t: &Texts, zone: Tz, case: &case::Model, i: &identity::Model) -> String {
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
    format!(
        "<li>{} — {} ({}), {}{moved}{unreachable}</li>\n",
        escape(&i.display_name),
        escape(&i.channel),
        escape(&i.instance),
        fill(t.first_written, &local(i.created_at, zone, false)),
    )
}

/// Record `index` of `messages` as a table row.
fn row(
    t: &Texts,
    zone: Tz,
    identities: &[identity::Model],
    messages: &[message::Model],
    index: usize,
) -> String {
    let m = &messages[index];
    let contact = |id: Option<IdentityId>| identities.iter().find(|i| Some(i.id) == id);
    let channel_of = |m: &message::Model| -> String {
        contact(m.identity_id).map_or_else(|| m.channel.clone(), |i| i.channel.clone())
    };
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
    format!(
        "<tr class=\"{class}\"><td class=\"no\">{}</td><td class=\"when\">{}</td><td>{}{actor}</td>\
         <td><div class=\"text\">{text}</div>{files}<div class=\"hash\">{}</div></td><td>{state}</td></tr>\n",
        m.seq.map_or_else(|| "–".to_owned(), |s| s.to_string()),
        local(m.received_at, zone, true),
        escape(&label(t, m, &channel_of(m))),
        escape(m.hash.as_deref().unwrap_or_default()),
    )
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
mod tests;
