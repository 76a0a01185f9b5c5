use casebridge_config::{Language, TeamConfig};
use casebridge_policies::{commands::CommandError, inbound::ReplyKind};
use chrono::{TimeZone, Utc};

use std::collections::HashSet;

use strum::IntoEnumIterator;

use super::{team_language, Contact, Kind, Summary, Text};
use crate::store::{CaseStatus, InvitationProblem};

fn team(languages: &[&str]) -> TeamConfig {
    serde_json::from_value(serde_json::json!({
        "members": ["@anna:localhost"],
        "languages": languages,
    }))
    .unwrap()
}

/// One of every text, with every fact filled in: a list as long as the texts are many.
fn every_text() -> Vec<Text> {
    let at = Utc.with_ymd_and_hms(2026, 11, 3, 8, 0, 0).unwrap();
    let s = |v: &str| v.to_owned();
    let summary = Summary {
        number: s("2026-000007"),
        status: CaseStatus::Open,
        team: s("social"),
        opened: at,
        contacts: vec![Contact {
            name: s("Klara"),
            label: s("SMS"),
            replies_here: true,
            unreachable: Some(s("blocked the bot")),
        }],
        from_client: 3,
        replies: 2,
        automatic: 1,
        notes: 1,
        assignee: Some(s("@anna:localhost")),
        discreet: true,
        blocked: true,
        merged_into: Some(s("2026-000001")),
    };
    let mut texts = vec![
        Text::CommandsOnlyForTeam { team: s("social") },
        Text::WritingOnlyForTeam { team: s("social") },
        Text::EditNotSent,
        Text::FileNotFetched,
        Text::MessageTypeNotSent {
            msgtype: s("m.location"),
        },
        Text::ChannelNotRunning { instance: s("sms") },
        Text::NoFilesOn { label: s("SMS") },
        Text::FileTypeNotCarried {
            label: s("WhatsApp"),
            mime: s("application/pdf"),
            filename: s("plan.pdf"),
        },
        Text::WindowClosed {
            label: s("WhatsApp"),
            since: Some(at),
            templates: true,
        },
        Text::WindowClosed {
            label: s("WhatsApp"),
            since: None,
            templates: false,
        },
        Text::Held {
            found: vec![s("070-123 45 67")],
        },
        Text::NotDelivered {
            label: s("SMS"),
            reason: s("number does not exist"),
            unreachable: true,
        },
        Text::DeliveryDelayed {
            label: s("SMS"),
            reason: s("503"),
        },
        Text::Delivered {
            label: s("SMS"),
            at,
        },
        Text::SentInParts {
            parts: 3,
            label: s("SMS"),
        },
        Text::ImageWithheld {
            filename: s("a.jpg"),
            mime: s("image/jpeg"),
            reason: s("truncated"),
        },
        Text::FileTooLarge {
            filename: s("a.mp4"),
            mime: s("video/mp4"),
            size: 90_000_000,
        },
        Text::JoinedByInvitation { name: s("Klara") },
        Text::JoinedByAnswer { name: s("Klara") },
        Text::CaseHintIgnored {
            name: s("Klara"),
            named: s("2026-000001"),
        },
        Text::PartUnreadable {
            name: s("Klara"),
            problem: s("bad charset"),
        },
        Text::Emergency {
            keyword: s("kniv"),
            replied: true,
            on_call: vec![s("@bo:localhost")],
        },
        Text::EmergencyAlert {
            case: s("2026-000007"),
            label: s("SMS"),
            keyword: s("kniv"),
            alias: s("#_cb_case_2026-000007:localhost"),
            on_call: vec![s("@bo:localhost")],
        },
        Text::Help,
        Text::Summary(summary),
        Text::Closed {
            case: s("2026-000007"),
            by: s("@anna:localhost"),
        },
        Text::Reopened {
            case: s("2026-000007"),
            by: s("@anna:localhost"),
        },
        Text::Hold {
            on: true,
            by: s("@anna:localhost"),
        },
        Text::Hold {
            on: false,
            by: s("@anna:localhost"),
        },
        Text::Blocked,
        Text::Unblocked,
        Text::NoteRecorded,
        Text::HeldReplySent {
            by: s("@anna:localhost"),
        },
        Text::NoHeldReply,
        Text::DiscreetOn {
            sender_name: s("Info"),
            subject: s("Message"),
        },
        Text::DiscreetOff,
        Text::ChannelRefused {
            channel: s("E-mail"),
            instance: s("mail"),
            what: s("bridges.mail.imap.password: the IMAP server refused the login"),
        },
        Text::ChannelWorksAgain {
            channel: s("E-mail"),
            instance: s("mail"),
        },
        Text::IncidentNowhere { team: s("social") },
        Text::IncidentPosted,
        Text::IncidentReport {
            case: s("2026-000007"),
            by: s("@anna:localhost"),
            text: s("threatened"),
            alias: s("#_cb_case_2026-000007:localhost"),
        },
        Text::NotOnTeam {
            user: s("@eve:localhost"),
            team: s("social"),
        },
        Text::Assigned {
            case: s("2026-000007"),
            user: s("@bo:localhost"),
            by: s("@anna:localhost"),
        },
        Text::NoAddressOn {
            channel: s("email"),
            known: vec![s("sms")],
        },
        Text::RepliesGoTo {
            name: s("Klara"),
            label: s("SMS"),
        },
        Text::NoBridgeFor {
            channel: s("viber"),
        },
        Text::Invitation {
            label: s("Telegram"),
            link: s("https://t.me/office_bot?start=abc"),
            case: s("2026-000007"),
            expires: at,
        },
        Text::NoInvitationLinks { label: s("SMS") },
        Text::MergeSelf {
            number: s("2026-000007"),
        },
        Text::MergeUnknown {
            number: s("2026-000009"),
        },
        Text::MergeOtherTeam {
            number: s("2026-000009"),
            theirs: s("family"),
            ours: s("social"),
        },
        Text::MergedAlready {
            number: s("2026-000009"),
            into: s("2026-000001"),
        },
        Text::MergedAway {
            into: s("2026-000007"),
            by: s("@anna:localhost"),
            names: vec![s("Klara (SMS)")],
        },
        Text::MergedHere {
            number: s("2026-000009"),
            by: s("@anna:localhost"),
            names: Vec::new(),
            replies_stay: true,
        },
        Text::RoomName {
            case: s("2026-000007"),
        },
        Text::RoomTopic {
            case: s("2026-000007"),
            label: s("SMS"),
            team: s("social"),
        },
        Text::Purged,
    ];
    for why in [
        InvitationProblem::Unknown,
        InvitationProblem::OtherChannel,
        InvitationProblem::Used,
        InvitationProblem::Expired,
        InvitationProblem::CaseGone,
    ] {
        texts.push(Text::InvitationRefused {
            name: s("Klara"),
            why,
        });
    }
    for kind in [
        ReplyKind::OutsideHours,
        ReplyKind::Acknowledgement,
        ReplyKind::Emergency,
        ReplyKind::Blocked,
    ] {
        texts.push(Text::AutoReplySent {
            label: s("SMS"),
            kind,
            text: s("We are closed."),
        });
    }
    for error in [
        CommandError::TakesNoArgument { word: s("close") },
        CommandError::NeedsText { word: s("note") },
        CommandError::NeedsUser,
        CommandError::ViaNeedsChannel,
        CommandError::InviteNeedsChannel,
        CommandError::NeedsCaseNumber,
        CommandError::NeedsOnOff { word: s("hold") },
        CommandError::Unknown { word: s("frob") },
    ] {
        texts.push(Text::CommandRefused(error));
    }
    texts
}

#[test]
fn the_team_reads_its_first_language_that_has_team_texts() {
    assert_eq!(team_language(Some(&team(&["sv", "en"]))), Language::Sv);
    assert_eq!(team_language(Some(&team(&["en", "sv"]))), Language::En);
    assert_eq!(
        team_language(Some(&team(&["uk", "hu", "sv"]))),
        Language::Sv
    );
    assert_eq!(team_language(Some(&team(&["uk"]))), Language::En);
    assert_eq!(team_language(None), Language::En);
}

#[test]
fn every_text_is_written_in_swedish_and_english_with_its_facts() {
    let texts = every_text();
    let sampled: HashSet<Kind> = texts.iter().map(Kind::from).collect();
    for kind in Kind::iter() {
        assert!(sampled.contains(&kind), "no sample of {kind:?} above");
    }
    for text in &texts {
        let en = text.say(Language::En);
        let sv = text.say(Language::Sv);
        assert!(!en.is_empty() && !sv.is_empty(), "{text:?}");
        assert_ne!(en, sv, "{text:?} is not translated");
        // Every fact shown in English is shown in Swedish too (names, numbers, ids, times).
        for fact in [
            "2026-000007",
            "Klara",
            "@anna:localhost",
            "2026-11-03 08:00 UTC",
        ] {
            assert_eq!(
                en.contains(fact),
                sv.contains(fact),
                "{fact} in {text:?}:\n{en}\n{sv}"
            );
        }
        // Languages without team texts read English.
        assert_eq!(text.say(Language::Uk), en);
        assert_eq!(text.say(Language::Hu), en);
        assert!(!en.contains("{}") && !sv.contains("{}"), "{en}\n{sv}");
    }
}

#[test]
fn words_that_workers_have_learnt_stay_as_they_were() {
    let at = Utc.with_ymd_and_hms(2026, 11, 3, 8, 0, 0).unwrap();
    let window = Text::WindowClosed {
        label: "WhatsApp".into(),
        since: Some(at),
        templates: true,
    };
    assert_eq!(
        window.say(Language::En),
        "WhatsApp's window for replies is closed at 2026-11-03 08:00 UTC. Only the office's \
         approved templates can be sent until the client writes again. Nothing was sent."
    );
    assert_eq!(
        window.say(Language::Sv),
        "Svarsfönstret för WhatsApp stängdes 2026-11-03 08:00 UTC. Bara kontorets godkända \
         mallar kan skickas tills klienten skriver igen. Inget skickades."
    );
    let held = Text::Held {
        found: vec!["070-123 45 67".into()],
    };
    let held = held.say(Language::En);
    assert!(
        held.starts_with("Held, not sent: this reply contains 070-123 45 67,")
            && held.contains("!send"),
        "{held}"
    );
    let refused = Text::CommandRefused(CommandError::Unknown {
        word: "hejsan".into(),
    });
    assert_eq!(
        refused.say(Language::En),
        "unknown command !hejsan; nothing was sent. !help lists the commands"
    );
    assert_eq!(
        refused.say(Language::Sv),
        "okänt kommando !hejsan; inget skickades. !help visar kommandona"
    );
}

#[test]
fn an_emergency_highlights_the_people_on_call_and_escapes_the_word() {
    let emergency = Text::Emergency {
        keyword: "<kniv>".into(),
        replied: false,
        on_call: vec!["@bo:localhost".into()],
    };
    for language in [Language::En, Language::Sv] {
        let notice = emergency.notice(language);
        assert_eq!(notice.mentions, ["@bo:localhost"]);
        let html = notice.html.expect("html");
        assert!(
            html.contains("<a href=\"https://matrix.to/#/@bo:localhost\">@bo:localhost</a>.")
                && html.contains("«&lt;kniv&gt;»"),
            "{html}"
        );
        assert!(notice.body.contains("«<kniv>»") && notice.body.contains("@bo:localhost"));
    }
    let quiet = Text::Emergency {
        keyword: "kniv".into(),
        replied: true,
        on_call: Vec::new(),
    }
    .notice(Language::En);
    assert_eq!(
        quiet.body,
        "⚠ Emergency: the client's message matches «kniv». The client was sent the emergency numbers."
    );
    assert!(quiet.mentions.is_empty());
    // Texts without people have no HTML.
    assert_eq!(Text::Blocked.notice(Language::Sv).html, None);
}

#[test]
fn a_summary_reads_line_by_line_in_each_language() {
    let summary = every_text()
        .into_iter()
        .find(|t| matches!(t, Text::Summary(_)))
        .unwrap();
    assert_eq!(
        summary.say(Language::En),
        "Case 2026-000007 · open · team social\n\
         Opened 2026-11-03 08:00 UTC\n\
         Contacts: Klara (SMS) ← replies go here ⚠ unreachable: blocked the bot\n\
         Messages: 3 from the client, 2 replies, 1 automatic replies, 1 notes\n\
         Assigned to @anna:localhost\n\
         Discreet mode is on\n\
         The client is blocked\n\
         Merged into case 2026-000001"
    );
    assert_eq!(
        summary.say(Language::Sv),
        "Ärende 2026-000007 · öppet · enhet social\n\
         Öppnat 2026-11-03 08:00 UTC\n\
         Kontaktvägar: Klara (SMS) ← svar går hit ⚠ nås inte: blocked the bot\n\
         Meddelanden: 3 från klienten, 2 svar, 1 automatiska svar, 1 anteckningar\n\
         Handläggare: @anna:localhost\n\
         Diskret läge är på\n\
         Klienten är blockerad\n\
         Sammanslaget med ärende 2026-000001"
    );
}
