//! Table-driven policy tests: each file in `tests/cases/` describes a team and the messages its
//! clients send, with what the gateway must do about each. Admins can read (and add) them.

use std::{collections::HashSet, path::Path};

use casebridge_config::TeamConfig;
use casebridge_policies::{
    holidays::Holidays,
    inbound::{Incoming, TeamPolicy, Withheld},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    team: TeamConfig,
    /// An iCalendar file beside the table, for the team's holidays.
    holiday_calendar: Option<String>,
    message: Vec<Message>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    at: String,
    text: String,
    #[serde(default = "sms")]
    channel: String,
    #[serde(default = "client")]
    from: String,
    #[serde(default)]
    discreet: bool,
    #[serde(default)]
    automated: bool,
    #[serde(default)]
    blocked: bool,
    /// `none`, `auto-reply`, `acknowledgement`, `emergency-reply`, `withheld-discreet`,
    /// `withheld-automated`.
    expect: String,
    /// The emergency keyword that must match.
    emergency: Option<String>,
    /// Pieces the reply must contain.
    #[serde(default)]
    contains: Vec<String>,
}

fn sms() -> String {
    "sms".into()
}

fn client() -> String {
    "+46701234567".into()
}

#[test]
fn every_table_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "tables in {}", dir.display());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let table: Table = toml::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut holidays = Holidays::default();
        if let (Some(ics), Some(hours)) = (&table.holiday_calendar, &table.team.hours) {
            let text = std::fs::read_to_string(dir.join(ics)).unwrap();
            holidays = Holidays::from_ics(
                &text,
                hours.time_zone,
                "2026-01-01".parse().unwrap(),
                "2029-01-01".parse().unwrap(),
            )
            .unwrap_or_else(|e| panic!("{name}: {ics}: {e}"));
        }
        let policy = TeamPolicy::new("table", &table.team, &holidays)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut sent_keys = HashSet::new();
        for (i, m) in table.message.iter().enumerate() {
            let at: DateTime<Utc> = DateTime::parse_from_rfc3339(&m.at)
                .unwrap_or_else(|e| panic!("{name} message {}: at: {e}", i + 1))
                .with_timezone(&Utc);
            let decision = policy.decide(&Incoming {
                at,
                text: &m.text,
                channel: &m.channel,
                automated: m.automated,
                discreet: m.discreet,
                blocked: m.blocked,
                case_number: "2026-000042",
                contact: &m.from,
            });
            let reply = decision.reply.filter(|r| {
                r.once_key
                    .as_ref()
                    .is_none_or(|k| sent_keys.insert(k.clone()))
            });
            let got = match (&reply, decision.withheld) {
                (Some(r), _) => r.kind.as_str().to_owned(),
                (None, Some(Withheld::Discreet)) => "withheld-discreet".into(),
                (None, Some(Withheld::Automated)) => "withheld-automated".into(),
                (None, None) => "none".into(),
            };
            let here = format!("{name} message {} ({:?} at {})", i + 1, m.text, m.at);
            assert_eq!(got, m.expect, "{here}");
            assert_eq!(decision.emergency, m.emergency, "{here}");
            for piece in &m.contains {
                let text = reply.as_ref().map(|r| r.text.as_str()).unwrap_or_default();
                assert!(
                    text.contains(piece.as_str()),
                    "{here}: {piece:?} not in {text:?}"
                );
            }
        }
    }
}
