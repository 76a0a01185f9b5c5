//! What `casebridge run` checks once it serves, so that an admin learns of a broken link at
//! start rather than from the first client whose message never reaches a room: that the
//! homeserver answers and holds this appservice's registration, with the same tokens (the
//! appservice ping), and that each bridge started and its channel takes its credentials. A
//! failure is logged as an ERROR saying what to fix; the gateway keeps running, since
//! everything that arrives is recorded and queued until the homeserver or channel takes it.

use std::time::Duration;

use casebridge_bridges::CredentialCheck;
use casebridge_config::Config;
use serde_json::{json, Value};

use crate::matrix::{MatrixClient, MatrixError};

/// What the homeserver check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeserverCheck {
    /// The homeserver reached this gateway with the expected token and reported back.
    Linked {
        /// The homeserver's round trip to the gateway.
        round_trip: Duration,
    },
    /// The homeserver predates the ping (Matrix 1.7): nothing could be checked.
    Unchecked(String),
    /// Something is wrong; what to fix.
    Broken(String),
}

/// What is known of a bridge instance: whether it started, and what its channel said of its
/// credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeHealth {
    /// It started: its own loops run and its webhooks take calls.
    pub started: bool,
    /// Why its last start failed; it is started again, with a backoff.
    pub start_error: Option<String>,
    /// The last check of its credentials; `None`: not checked yet.
    pub credentials: Option<CredentialCheck>,
}

impl BridgeHealth {
    /// It runs, and its channel has not refused its credentials.
    pub fn up(&self) -> bool {
        self.started && !matches!(self.credentials, Some(CredentialCheck::Refused(_)))
    }

    /// As `/health` shows it.
    pub fn to_json(&self) -> Value {
        let mut shown = json!({
            "state": match (self.started, &self.start_error) {
                (true, _) => "running",
                (false, Some(_)) => "failed",
                (false, None) => "starting",
            },
        });
        if let Some(error) = &self.start_error {
            shown["error"] = json!(error);
        }
        if let Some(check) = &self.credentials {
            shown["credentials"] = json!(check.word());
            shown["detail"] = json!(check.detail());
        }
        shown
    }
}

/// Pings this appservice through its homeserver and says what the answer means.
pub async fn homeserver(matrix: &MatrixClient, config: &Config) -> HomeserverCheck {
    let id = &config.appservice.id;
    match matrix.ping(id, "casebridge-link-check").await {
        Ok(round_trip) => HomeserverCheck::Linked { round_trip },
        Err(e) => explain(&e, config),
    }
}

/// The meaning of a failed ping, for the admin (the answers of the Matrix specification's
/// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`).
pub fn explain(e: &MatrixError, config: &Config) -> HomeserverCheck {
    let hs = config.homeserver.url.as_str();
    let us = config.appservice.url.as_str();
    let id = &config.appservice.id;
    let reload = "print it again with `casebridge registration`, put it where the homeserver's \
                  app_service_config_files points, and restart the homeserver";
    let text = match (e.status, e.errcode.as_deref()) {
        (None, _) => format!(
            "homeserver.url: the homeserver at {hs} does not answer ({e}); check the address \
             and that the homeserver runs. Client messages are recorded meanwhile and reach \
             their rooms once it answers"
        ),
        (Some(401), _) | (_, Some("M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN")) => format!(
            "appservice.as_token: the homeserver at {hs} does not know this token, so it has \
             not loaded this gateway's registration, or loaded another one; {reload}"
        ),
        (Some(403), _) | (_, Some("M_FORBIDDEN")) => format!(
            "appservice.id: the registration the homeserver holds for this as_token is not \
             {id:?}; {reload}"
        ),
        (_, Some("M_CONNECTION_FAILED")) => format!(
            "appservice.url: the homeserver cannot connect to this gateway at {us}; that \
             address must reach appservice.listen from the homeserver's machine (firewall, \
             host name, port)"
        ),
        (_, Some("M_CONNECTION_TIMEOUT")) => format!(
            "appservice.url: the homeserver's call to this gateway at {us} timed out; check \
             that the address reaches this gateway and nothing in between holds the request"
        ),
        (_, Some("M_BAD_STATUS")) => format!(
            "appservice.hs_token: the homeserver reached this gateway at {us}, which refused \
             its token ({e}); the registration it loaded has another hs_token than this \
             configuration; {reload}"
        ),
        (Some(404 | 405), _) | (_, Some("M_UNRECOGNIZED")) => {
            return HomeserverCheck::Unchecked(format!(
                "the homeserver at {hs} has no appservice ping (Matrix 1.7, Synapse 1.84): the \
                 link to it was not checked at start"
            ))
        }
        _ => format!("the homeserver at {hs} refused the appservice ping: {e}"),
    };
    HomeserverCheck::Broken(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml_str(
            r#"
            [homeserver]
            url = "http://hs.example:8008"
            server_name = "example.org"
            [appservice]
            id = "casebridge"
            listen = "127.0.0.1:0"
            url = "http://gw.example:29330"
            as_token = "a"
            hs_token = "h"
            [teams.social]
            members = ["@anna:example.org"]
            "#,
        )
        .unwrap()
    }

    fn answer(status: Option<u16>, errcode: Option<&str>) -> HomeserverCheck {
        let mut e = MatrixError::local("appservice ping", "detail");
        e.status = status;
        e.errcode = errcode.map(str::to_owned);
        explain(&e, &config())
    }

    fn broken(check: HomeserverCheck) -> String {
        match check {
            HomeserverCheck::Broken(text) => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_answer_of_the_specification_names_the_key_to_fix() {
        for (status, errcode, key) in [
            (None, None, "homeserver.url"),
            (Some(401), Some("M_UNKNOWN_TOKEN"), "appservice.as_token"),
            (Some(403), Some("M_FORBIDDEN"), "appservice.id"),
            (Some(502), Some("M_CONNECTION_FAILED"), "appservice.url"),
            (Some(504), Some("M_CONNECTION_TIMEOUT"), "appservice.url"),
            (Some(502), Some("M_BAD_STATUS"), "appservice.hs_token"),
        ] {
            let text = broken(answer(status, errcode));
            assert!(text.starts_with(key), "{errcode:?}: {text}");
        }
        assert!(broken(answer(None, None)).contains("http://hs.example:8008"));
        assert!(broken(answer(Some(502), Some("M_CONNECTION_FAILED")))
            .contains("http://gw.example:29330"));
        assert!(matches!(
            answer(Some(404), Some("M_UNRECOGNIZED")),
            HomeserverCheck::Unchecked(_)
        ));
    }
}
