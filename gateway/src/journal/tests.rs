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

fn record(seq: i32, direction: Direction, kind: Option<MessageKind>, body: &str) -> message::Model {
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
