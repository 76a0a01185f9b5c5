//! Each bridge's start and credentials, on the mock homeserver and the providers' doubles: a
//! bridge that cannot start or whose channel refuses its credentials is named with the key to
//! fix, in `/health` and `/metrics` too, and the other bridges run.

use casebridge_bridges::CredentialCheck;
use casebridge_tests::{
    elks::{ElksDouble, API_PASSWORD, API_USERNAME},
    telegram::TelegramDouble,
    twilio::{TwilioDouble, ACCOUNT_SID},
};
use serde_json::Value;

use crate::mock_relay::MockStack;

const SECRET: &str = "elks-webhook-secret";

/// A 46elks SMS bridge `[bridges.KEY]` of team "social" on `number`, its API at `api_url`,
/// webhooks at the gateway `base`.
fn elks_bridge(key: &str, number: &str, base: &str, api_url: &str) -> String {
    format!(
        r#"[bridges.{key}]
kind = "sms"
team = "social"
number = "{number}"
public_url = "{base}/"
webhook_secret = "{SECRET}"

[bridges.{key}.provider]
kind = "46elks"
api_url = "{api_url}"
api_username = "{API_USERNAME}"
api_password = "{API_PASSWORD}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_bridges_with_wrong_credentials_are_named_and_the_others_run() {
    let mut stack = MockStack::new().await;
    let elks = ElksDouble::start().await;
    let broke = ElksDouble::start().await;
    broke.set_balance(0);
    let twilio = TwilioDouble::start().await;
    let telegram = TelegramDouble::start().await;
    let base = format!("http://127.0.0.1:{}", stack.setup.port);
    stack.setup.extra = format!(
        r#"
{elks_bridge}
{broke_bridge}
[bridges.tw]
kind = "sms"
team = "social"
number = "+14155550100"
default_region = "US"
public_url = "{base}"

[bridges.tw.provider]
kind = "twilio"
api_url = "{twilio}"
account_sid = "{ACCOUNT_SID}"
auth_token = "an-old-auth-token"

[bridges.tg]
kind = "telegram"
team = "social"
token = "123456:a-token-telegram-does-not-know"
api_url = "{telegram}"
"#,
        elks_bridge = elks_bridge("elks", "+46766860000", &base, &elks.url),
        broke_bridge = elks_bridge("broke", "+46766860001", &base, &broke.url),
        twilio = twilio.url,
        telegram = telegram.url,
    );
    // The Telegram bridge cannot start: the gateway starts all the same.
    let gateway = stack.start_gateway().await;

    let checks = gateway.check_bridges().await;
    assert_eq!(
        checks["elks"],
        CredentialCheck::Accepted("46elks account \"Socialtjänsten\", balance 967.05 SEK".into())
    );
    let refused = |instance: &str| match &checks[instance] {
        CredentialCheck::Refused(what) => what.clone(),
        other => panic!("{instance}: {other:?}"),
    };
    assert!(
        refused("broke").starts_with("bridges.broke.provider: the 46elks account")
            && refused("broke").contains("no credit left"),
        "{}",
        refused("broke")
    );
    assert!(
        refused("tw").starts_with(
            "bridges.tw.provider.auth_token: Twilio refused the credentials of account AC"
        ) && refused("tw").contains("error 20003"),
        "{}",
        refused("tw")
    );
    assert!(
        refused("tg").starts_with("bridges.tg.token: Telegram does not know this bot token"),
        "{}",
        refused("tg")
    );
    assert!(
        matches!(checks["loop"], CredentialCheck::Unchecked(_)),
        "{:?}",
        checks["loop"]
    );

    // /health names each bridge's state; the gateway is degraded, not down.
    let http = reqwest::Client::new();
    let response = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let bridges = &health["bridges"];
    assert_eq!(bridges["elks"]["state"], "running", "{health}");
    assert_eq!(bridges["elks"]["credentials"], "accepted", "{health}");
    assert_eq!(bridges["tw"]["state"], "running", "{health}");
    assert_eq!(bridges["tw"]["credentials"], "refused", "{health}");
    assert_eq!(bridges["tg"]["state"], "failed", "{health}");
    assert!(
        bridges["tg"]["error"]
            .as_str()
            .unwrap()
            .starts_with("bridges.tg.token: Telegram does not know this bot token"),
        "{health}"
    );
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (instance, up) in [("elks", 1), ("loop", 1), ("tw", 0), ("tg", 0), ("broke", 0)] {
        let line = format!("casebridge_bridge_up{{instance=\"{instance}\"}} {up}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }

    // The bridges that work take their channels' messages.
    let webhook = format!("{base}/webhook/elks?secret={SECRET}");
    assert_eq!(
        ElksDouble::incoming(&webhook, "s1", "+46701234567", "+46766860000", "Hej").await,
        204
    );
    stack
        .hs
        .wait_until(
            std::time::Duration::from_secs(10),
            "the SMS in its case room",
            |hs| {
                hs.events()
                    .into_iter()
                    .find(|e| e.sender.contains("_elks_") && e.content["body"] == "Hej")
            },
        )
        .await;
    gateway.shutdown().await;
}

/// A channel that stops taking the office's credentials while the gateway runs (here: the
/// 46elks account runs out of credit) is told to its team in the alert room once, not at
/// every check, and told again when it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_a_team_is_told_when_its_channel_refuses_and_when_it_works_again() {
    const ALERTS: &str = "!alerts:localhost";
    let mut stack = MockStack::new().await;
    let elks = ElksDouble::start().await;
    elks.set_balance(0);
    let base = format!("http://127.0.0.1:{}", stack.setup.port);
    stack.setup.extra = format!(
        r#"
[teams.social.emergency]
alert_room = "{ALERTS}"

{elks_bridge}"#,
        elks_bridge = elks_bridge("elks", "+46766860000", &base, &elks.url),
    );
    stack.hs.join().for_room(ALERTS).ok().mount().await;
    stack
        .hs
        .room_send()
        .for_room(ALERTS)
        .ok("$alert")
        .mount()
        .await;
    let gateway = stack.start_gateway().await;
    let alerts = |hs: &casebridge_tests::mock_homeserver::MockHomeserver| -> Vec<String> {
        hs.sends()
            .iter()
            .filter(|c| c.send_room() == Some(ALERTS))
            .filter_map(|c| c.text().map(str::to_owned))
            .collect()
    };
    let mut refused = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let checks = gateway.check_bridges().await;
        gateway.tell_teams(&checks, &mut refused).await;
    }
    let told = alerts(&stack.hs);
    assert_eq!(told.len(), 1, "told once: {told:?}");
    assert!(
        told[0].starts_with("The SMS channel (bridges.elks) cannot log in: bridges.elks.provider: the 46elks account")
            && told[0].contains("clients who write there are not read"),
        "{}",
        told[0]
    );
    elks.set_balance(100_000);
    let checks = gateway.check_bridges().await;
    gateway.tell_teams(&checks, &mut refused).await;
    let told = alerts(&stack.hs);
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[1].starts_with("The SMS channel (bridges.elks) works again"),
        "{}",
        told[1]
    );
    gateway.shutdown().await;
}
