//! A case journal as one self-contained HTML page: what a caseworker, a supervisor or an
//! archivist reads, with every message, automatic reply, note, notice and delivery state in
//! registration order, and the chain's hashes to check it against.

use casebridge_config::{Language, TeamConfig};
use casebridge_policies::outbound::escape_html as escape;
use chrono_tz::Tz;
use std::fmt::Write;

use crate::store::{case, direction, identity, is_automatic, message};

/// What kind of entry a record is, as the journal names it.
fn label(m: &message::Model, channel_of: &dyn Fn(&message::Model) -> String) -> String {
    let kind = m.kind.as_deref();
    match m.direction.as_str() {
        direction::INBOUND => format!("From the client ({})", channel_of(m)),
        direction::OUTBOUND if kind == Some("part") => {
            format!("Part of a reply ({})", channel_of(m))
        }
        direction::OUTBOUND if is_automatic(kind) => format!(
            "Automatic reply: {} ({})",
            kind.unwrap_or_default().replace('-', " "),
            channel_of(m)
        ),
        direction::OUTBOUND => format!("Reply to the client ({})", channel_of(m)),
        direction::INTERNAL if kind == Some("note") => "Internal note".to_owned(),
        direction::INTERNAL if kind == Some("incident") => "Incident report".to_owned(),
        direction::INTERNAL => "Command".to_owned(),
        direction::ALERT => "Alert to the on-call room".to_owned(),
        _ if kind == Some("emergency") => "Emergency escalation".to_owned(),
        _ => "Notice to the case team".to_owned(),
    }
}

/// Whom the journal is written for: a case's team, as its records officer knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team<'a> {
    /// The team's name (its key when it has none).
    pub name: &'a str,
    /// The language the journal is written in: the team's first.
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
            language: config
                .and_then(|t| t.languages.first().copied())
                .unwrap_or(Language::En),
            time_zone: config
                .and_then(|t| t.hours.as_ref())
                .map_or(chrono_tz::UTC, |h| h.time_zone),
        }
    }
}

/// Renders the journal of `case` for `team`.
pub fn render(
    case: &case::Model,
    _team: &Team<'_>,
    identities: &[identity::Model],
    messages: &[message::Model],
    generated_at: chrono::DateTime<chrono::Utc>,
) -> String {
    let contact = |id: Option<i64>| identities.iter().find(|i| Some(i.id) == id);
    let channel_of = |m: &message::Model| -> String {
        contact(m.identity_id).map_or_else(|| m.channel.clone(), |i| i.channel.clone())
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Case {number} — journal</title>\n<style>\
         body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         h1{{margin-bottom:.2rem}} .meta{{color:#555}} table{{border-collapse:collapse;width:100%}}\
         td,th{{border-bottom:1px solid #ddd;padding:.5rem;vertical-align:top;text-align:left}}\
         .no{{color:#777;white-space:nowrap}} .when{{white-space:nowrap}} .text{{white-space:pre-wrap}}\
         .inbound{{background:#f4f8ff}} .outbound{{background:#f6fff4}} .internal{{background:#fffbea}}\
         .alert,.emergency{{background:#fff0f0}} .hash{{font-family:monospace;font-size:.75rem;color:#888;word-break:break-all}}\
         @media print{{.hash{{font-size:.6rem}}}}</style></head><body>\n",
        number = escape(&case.number)
    );
    let _ = write!(
        out,
        "<h1>Case {}</h1>\n<p class=\"meta\">Team {} · status {} · opened {} UTC{}{}{}</p>\n",
        escape(&case.number),
        escape(&case.team),
        escape(&case.status),
        case.created_at.format("%Y-%m-%d %H:%M"),
        if case.discreet { " · discreet" } else { "" },
        case.assignee
            .as_deref()
            .map(|a| format!(" · assigned to {}", escape(a)))
            .unwrap_or_default(),
        case.merged_into
            .as_deref()
            .map(|m| format!(" · merged into case {}", escape(m)))
            .unwrap_or_default(),
    );
    out.push_str("<h2>Contacts</h2>\n<ul>\n");
    for i in identities {
        let moved = if i.case_id == case.id {
            String::new()
        } else {
            format!(
                ", now in case {}",
                escape(case.merged_into.as_deref().unwrap_or("another case"))
            )
        };
        let unreachable = i
            .unreachable
            .as_deref()
            .map(|why| format!(", unreachable: {}", escape(why)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<li>{} — {} ({}), first written {} UTC{moved}{unreachable}</li>",
            escape(&i.display_name),
            escape(&i.channel),
            escape(&i.instance),
            i.created_at.format("%Y-%m-%d %H:%M")
        );
    }
    out.push_str(
        "</ul>\n<h2>Records</h2>\n<table>\n<thead><tr><th>No.</th><th>When (UTC)</th>\
                  <th>Entry</th><th>Text</th><th>State</th></tr></thead>\n<tbody>\n",
    );
    for m in messages {
        let class = match (m.direction.as_str(), m.kind.as_deref()) {
            (_, Some("emergency")) => "emergency",
            (d, _) => d,
        };
        let actor = match (&m.sender, m.direction.as_str()) {
            (Some(worker), _) => format!("<br><small>by {}</small>", escape(worker)),
            (None, direction::INBOUND) => contact(m.identity_id)
                .map(|i| format!("<br><small>{}</small>", escape(&i.display_name)))
                .unwrap_or_default(),
            (None, _) => "<br><small>by the gateway</small>".to_owned(),
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
                            "<br><small>file: {} ({}, {} bytes)</small>",
                            escape(f["filename"].as_str().unwrap_or_default()),
                            escape(f["mime"].as_str().unwrap_or_default()),
                            f["size"]
                        )
                    })
                    .collect::<String>()
            })
            .unwrap_or_default();
        let text = if m.purged_at.is_some() {
            "<em>(content removed under the retention rules)</em>".to_owned()
        } else {
            // Mail shows its subject as the first line of the text already.
            let subject = m
                .subject
                .as_deref()
                .filter(|s| !m.body.starts_with(s))
                .map(|s| format!("<strong>{}</strong>\n", escape(s)))
                .unwrap_or_default();
            format!("{subject}{}", escape(&m.body))
        };
        let mut state = escape(&m.state);
        if let Some(at) = m.delivered_at {
            let _ = write!(state, "<br><small>{}</small>", at.format("%Y-%m-%d %H:%M"));
        }
        if let Some(error) = &m.error {
            let _ = write!(state, "<br><small>{}</small>", escape(error));
        }
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td class=\"no\">{}</td><td class=\"when\">{}</td><td>{}{actor}</td>\
             <td><div class=\"text\">{text}</div>{files}<div class=\"hash\">{}</div></td><td>{state}</td></tr>",
            m.seq.map_or_else(|| "–".to_owned(), |s| s.to_string()),
            m.received_at.format("%Y-%m-%d %H:%M:%S"),
            escape(&label(m, &channel_of)),
            m.hash.as_deref().unwrap_or_default(),
        );
    }
    let _ = write!(
        out,
        "</tbody></table>\n<p class=\"meta\">{} records. Generated {} UTC by casebridge. Each record's \
         hash covers its content and the record before it: <code>casebridge records verify --case {}</code> \
         checks them.</p>\n</body></html>\n",
        messages.len(),
        generated_at.format("%Y-%m-%d %H:%M"),
        escape(&case.number)
    );
    out
}
