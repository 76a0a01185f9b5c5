//! The README's "Running it for an office", step by step with the shipped binary: `setup
//! --non-interactive`, the homeserver loads the registration it wrote, a channel is added from
//! the example, `config check`, `run`, and a client's SMS reaches a worker in its case room.

use std::{process::Stdio, time::Duration};

use casebridge_tests::{
    elks::{ElksDouble, API_PASSWORD, API_USERNAME},
    eventually, free_port, Synapse, Worker,
};

use crate::binary::casebridge_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_office_setup_brings_a_clients_sms_to_a_worker() {
    casebridge_tests::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let casebridge = |args: &[&str]| {
        let out = std::process::Command::new(casebridge_binary())
            .current_dir(dir.path())
            .args(args)
            .env_remove("CASEBRIDGE_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "casebridge {args:?}: {text}");
        text
    };
    // casebridge setup (the homeserver's URL is not known until it runs: given below by the
    // environment, as an admin may).
    casebridge(&[
        "setup",
        "--non-interactive",
        "--server-name",
        "localhost",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--members",
        "@anna:localhost",
        "--team-name",
        "Socialtjänsten",
    ]);
    // The homeserver loads the registration setup wrote.
    let registration =
        std::fs::read_to_string(dir.path().join("casebridge-registration.yaml")).unwrap();
    let synapse = Synapse::start(&[registration]).await;
    synapse.register_user("anna", "anna-password").await;
    // The office's channel, as the example has it.
    let elks = ElksDouble::start().await;
    let config = dir.path().join("casebridge.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[bridges.sms]
kind = "sms"
team = "social"
number = "+46766860000"
public_url = "http://127.0.0.1:{port}/"
webhook_secret = "a-webhook-secret-for-46elks"

[bridges.sms.provider]
kind = "46elks"
api_url = "{api}"
api_username = "{API_USERNAME}"
api_password = "{API_PASSWORD}"
"#,
        api = elks.url
    ));
    std::fs::write(&config, text).unwrap();
    let summary = casebridge(&["config", "check"]);
    assert!(summary.contains("sms"), "{summary}");

    let mut gateway = std::process::Command::new(casebridge_binary())
        .current_dir(dir.path())
        .args(["run"])
        .env_remove("CASEBRIDGE_CONFIG")
        .env("CASEBRIDGE__HOMESERVER__URL", &synapse.url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // Linked to the homeserver, and the SMS bridge's credentials accepted.
    eventually(Duration::from_secs(30), "a healthy gateway", || async {
        let health: serde_json::Value = http
            .get(format!("{base}/health"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (health["status"] == "ok"
            && health["homeserver"]["link"] == "ok"
            && health["bridges"]["sms"]["credentials"] == "accepted")
            .then_some(())
    })
    .await;

    let webhook = format!("{base}/webhook/sms?secret=a-webhook-secret-for-46elks");
    assert_eq!(
        ElksDouble::incoming(
            &webhook,
            "office-1",
            "+46701234567",
            "+46766860000",
            "Hej, jag behöver hjälp"
        )
        .await,
        204
    );
    let mut anna = Worker::login(&synapse.url, "anna", "anna-password").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let room = loop {
        if let Some(room) = anna.invites().await.into_iter().next() {
            break room;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no case room invite within 30 s"
        );
    };
    anna.join(&room).await;
    eventually(Duration::from_secs(30), "the SMS in the room", || async {
        anna.messages(&room)
            .await
            .iter()
            .any(|e| e["content"]["body"] == "Hej, jag behöver hjälp")
            .then_some(())
    })
    .await;
    gateway.kill().unwrap();
    gateway.wait().unwrap();
}
