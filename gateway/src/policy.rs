//! The gateway's side of the policies: builds each team's [`TeamPolicy`] (reading its holiday
//! calendars) and says what the case team is told when a policy acts (worded in
//! [`crate::texts`]).

use std::collections::BTreeMap;

use casebridge_config::{Config, ConfigError, Language};
use casebridge_policies::{
    holidays::Holidays,
    inbound::{AutoReply, TeamPolicy},
    privacy::{Privacy, Worker},
};
use chrono::{Datelike, Duration, Utc};

use crate::texts::{Languages, Text};

/// Every team's policy, by team key.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    teams: BTreeMap<String, TeamPolicy>,
    privacy: BTreeMap<String, Privacy>,
    /// The language each team reads.
    languages: Languages,
    /// `#_cb_case_` and `:server`: a case room's alias is made of these and its number.
    alias: (String, String),
}

impl Policies {
    /// Builds every team's policy; holiday calendars are read from disk, over a window from a
    /// year ago to five years ahead.
    pub fn load(config: &Config) -> Result<Self, ConfigError> {
        let today = Utc::now().date_naive();
        let from = today.with_year(today.year() - 1).unwrap_or(today) - Duration::days(1);
        let to = today + Duration::days(5 * 366);
        let mut teams = BTreeMap::new();
        let mut privacy = BTreeMap::new();
        // Every configured worker, of every team: none may be named to any client.
        let workers: Vec<Worker> = config
            .teams
            .values()
            .flat_map(|t| t.members.iter().chain(&t.on_call))
            .map(|u| Worker {
                user_id: u.to_string(),
                names: Vec::new(),
            })
            .collect();
        for (key, team) in &config.teams {
            let mut holidays = Holidays::default();
            if let Some(hours) = &team.hours {
                for (i, path) in hours.holiday_calendars.iter().enumerate() {
                    let file = config.resolve_path(path);
                    let setting = format!("teams.{key}.hours.holiday_calendars[{i}]");
                    let text =
                        std::fs::read_to_string(&file).map_err(|e| ConfigError::Invalid {
                            key: setting.clone(),
                            message: format!("cannot read {}: {e}", file.display()),
                        })?;
                    let calendar =
                        Holidays::from_ics(&text, hours.time_zone, from, to).map_err(|e| {
                            ConfigError::Invalid {
                                key: setting.clone(),
                                message: format!("{}: {e}", file.display()),
                            }
                        })?;
                    holidays.extend(calendar);
                }
            }
            let policy =
                TeamPolicy::new(key, team, &holidays).map_err(|e| ConfigError::Invalid {
                    key: e.key,
                    message: e.message,
                })?;
            teams.insert(key.clone(), policy);
            let p = &team.privacy;
            let mut rules = Privacy::new(
                workers.clone(),
                config.homeserver.server_name.as_str(),
                &p.allowed_numbers,
                &p.allowed_addresses,
                &p.default_region,
                p.signature.clone(),
            )
            .map_err(|message| ConfigError::Invalid {
                key: format!("teams.{key}.privacy"),
                message,
            })?;
            rules.allow_numbers_in(&team.emergency.numbers);
            privacy.insert(key.clone(), rules);
        }
        Ok(Self {
            teams,
            privacy,
            languages: Languages::of(config),
            alias: (
                format!("#{}case_", config.appservice.ghost_prefix),
                format!(":{}", config.homeserver.server_name),
            ),
        })
    }

    /// The policy of team `key`.
    pub fn team(&self, key: &str) -> Option<&TeamPolicy> {
        self.teams.get(key)
    }

    /// The privacy rules of team `key`.
    pub fn privacy(&self, key: &str) -> Option<&Privacy> {
        self.privacy.get(key)
    }

    /// The language each team reads.
    pub fn languages(&self) -> &Languages {
        &self.languages
    }

    /// The language team `key` reads (English for a team no longer configured).
    pub fn language(&self, key: &str) -> Language {
        self.languages.get(key)
    }

    /// `text` as team `key` reads it.
    pub fn say(&self, key: &str, text: &Text) -> String {
        self.languages.say(key, text)
    }

    /// Every team's policy.
    pub fn teams(&self) -> impl Iterator<Item = (&String, &TeamPolicy)> {
        self.teams.iter()
    }

    /// The alias of case `number`'s room.
    pub fn case_alias(&self, number: &str) -> String {
        format!("{}{number}{}", self.alias.0, self.alias.1)
    }
}

/// What the case team sees when an automatic reply went out.
pub fn auto_reply_notice(reply: &AutoReply, label: &str) -> Text {
    Text::AutoReplySent {
        label: label.to_owned(),
        kind: reply.kind,
        text: reply.text.clone(),
    }
}

/// The highlighted message in the case room after an emergency word: it mentions the on-call
/// members so their clients notify them.
pub fn emergency_notice(policy: &TeamPolicy, keyword: &str, replied: bool) -> Text {
    Text::Emergency {
        keyword: keyword.to_owned(),
        replied,
        on_call: policy.on_call.iter().map(ToString::to_string).collect(),
    }
}

/// The alert in the team's on-call room.
pub fn emergency_alert(
    policies: &Policies,
    policy: &TeamPolicy,
    case_number: &str,
    label: &str,
    keyword: &str,
) -> Text {
    Text::EmergencyAlert {
        case: case_number.to_owned(),
        label: label.to_owned(),
        keyword: keyword.to_owned(),
        alias: policies.case_alias(case_number),
        on_call: policy.on_call.iter().map(ToString::to_string).collect(),
    }
}

#[cfg(test)]
mod tests {
    use casebridge_config::Config;

    use super::*;

    const BASE: &str = r#"
        [homeserver]
        url = "http://127.0.0.1:8008"
        server_name = "example.org"
        [appservice]
        id = "cb"
        listen = "127.0.0.1:0"
        url = "http://127.0.0.1:1"
        as_token = "a"
        hs_token = "h"
    "#;

    #[test]
    fn calendars_are_read_from_the_config_folder_and_named_when_broken() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("holidays.ics"),
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Juldagen\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .unwrap();
        let path = dir.path().join("casebridge.toml");
        std::fs::write(
            &path,
            format!(
                "{BASE}\n[teams.soc]\nmembers = [\"@anna:example.org\"]\n\
                 hours = {{ time_zone = \"Europe/Stockholm\", holiday_calendars = [\"holidays.ics\"] }}\n"
            ),
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let err = Policies::load(&config).unwrap_err().to_string();
        assert!(
            err.starts_with("teams.soc.hours.holiday_calendars[0]: ")
                && err.ends_with("holidays.ics: event Juldagen: has no DTSTART"),
            "{err}"
        );
    }

    #[test]
    fn emergency_notices_mention_the_on_call_members() {
        let config = Config::from_toml_str(&format!(
            "{BASE}\n[teams.soc]\nname = \"Soc\"\nmembers = [\"@anna:example.org\", \"@bo:example.org\"]\n\
             on_call = [\"@bo:example.org\"]\n"
        ))
        .unwrap();
        let policies = Policies::load(&config).unwrap();
        let team = policies.team("soc").unwrap();
        let notice = emergency_notice(team, "kill myself", true).notice(Language::En);
        assert_eq!(notice.mentions, ["@bo:example.org"]);
        assert!(notice
            .html
            .unwrap()
            .contains("<a href=\"https://matrix.to/#/@bo:example.org\">"));
        let alert = emergency_alert(&policies, team, "2026-000007", "SMS", "kill myself")
            .notice(Language::En);
        assert!(
            alert
                .body
                .contains("https://matrix.to/#/#_cb_case_2026-000007:example.org"),
            "{}",
            alert.body
        );
    }
}
