//! The appservice registration the homeserver loads (`casebridge registration`).

use casebridge_config::{Config, ConfigError};
use ruma::api::appservice::{Namespace, Namespaces, Registration, RegistrationInit};

/// The registration for `config`, with exclusive namespaces for the bot, the ghosts and the
/// case-room aliases.
pub fn registration(config: &Config) -> Result<Registration, ConfigError> {
    let secrets = config.secrets()?;
    let server = regex_escape(config.homeserver.server_name.as_str());
    let prefix = regex_escape(&config.appservice.ghost_prefix);
    let bot = regex_escape(&config.appservice.bot_localpart);
    let mut namespaces = Namespaces::new();
    namespaces.users = vec![
        Namespace::new(true, format!("@{prefix}.*:{server}")),
        Namespace::new(true, format!("@{bot}:{server}")),
    ];
    namespaces.aliases = vec![Namespace::new(true, format!("#{prefix}.*:{server}"))];
    let mut registration: Registration = RegistrationInit {
        id: config.appservice.id.clone(),
        url: Some(
            config
                .appservice
                .url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
        ),
        as_token: secrets.as_token.expose().to_owned(),
        hs_token: secrets.hs_token.expose().to_owned(),
        sender_localpart: config.appservice.bot_localpart.clone(),
        namespaces,
        rate_limited: Some(false),
        protocols: None,
    }
    .into();
    registration.receive_ephemeral = false;
    Ok(registration)
}

/// The registration as YAML.
pub fn registration_yaml(config: &Config) -> Result<String, ConfigError> {
    let registration = registration(config)?;
    Ok(serde_yaml_ng::to_string(&registration).expect("a registration serialises"))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_round_trips_through_yaml() {
        let example = include_str!("../../casebridge.example.toml").replace("change-me", "s3cret");
        let config = Config::from_toml_str(&example).unwrap();
        let yaml = registration_yaml(&config).unwrap();
        let parsed: Registration = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(parsed.id, "casebridge");
        assert_eq!(parsed.sender_localpart, "casebridge");
        assert_eq!(parsed.namespaces.users[0].regex, "@_cb_.*:localhost");
        assert!(parsed.namespaces.users.iter().all(|n| n.exclusive));
        assert_eq!(parsed.rate_limited, Some(false));
        assert_eq!(parsed.hs_token, "s3cret-hs-token");
    }
}
