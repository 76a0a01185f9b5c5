//! The shipped `casebridge` binary, configured as an admin would, against a real Synapse.

use std::{process::Stdio, time::Duration};

use casebridge_tests::{eventually, free_port, GatewaySetup, Spool, Synapse, AS_TOKEN};
use serde_json::{json, Value};

fn casebridge_binary() -> std::path::PathBuf {
    // target/debug/deps/e2e-HASH -> target/debug/casebridge
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("casebridge");
    assert!(
        path.exists(),
        "{} is missing: cargo build -p casebridge-gateway",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn casebridge_run_answers_the_homeservers_ping() {
    casebridge_tests::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(dir.path().join("spool"));
    let mut setup = GatewaySetup {
        homeserver_url: "http://127.0.0.1:1".into(),
        port: free_port(),
        database_url: format!("sqlite://{}", dir.path().join("casebridge.db").display()),
        spool: spool.root().to_owned(),
        members: vec!["@anna:localhost".into()],
        max_backoff_ms: 1000,
        extra: String::new(),
    };
    let synapse = Synapse::start(&[setup.registration_yaml()]).await;
    setup.homeserver_url = synapse.url.clone();
    // The shipped binary has no loopback bridge: run it with teams only, the token from a file
    // and the database URL from the environment, as an admin might.
    let toml = setup.toml();
    let toml = &toml[..toml.find("[bridges.loop]").unwrap()];
    let token_file = dir.path().join("hs_token");
    std::fs::write(&token_file, format!("{}\n", casebridge_tests::HS_TOKEN)).unwrap();
    let toml = toml
        .replace(
            &format!("hs_token = \"{}\"", casebridge_tests::HS_TOKEN),
            &format!("hs_token_file = {:?}", token_file.display().to_string()),
        )
        .replace(&format!("url = \"{}\"", setup.database_url), "");
    let config = dir.path().join("casebridge.toml");
    std::fs::write(&config, toml).unwrap();

    let mut child = std::process::Command::new(casebridge_binary())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
            "run",
        ])
        .env("CASEBRIDGE__DATABASE__URL", &setup.database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", setup.port);
    eventually(Duration::from_secs(20), "the gateway's /health", || async {
        let r = http.get(format!("{base}/health")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    // Synapse calls the gateway's /_matrix/app/v1/ping with the hs_token and reports back.
    let response = http
        .post(format!(
            "{}/_matrix/client/v1/appservice/casebridge/ping",
            synapse.url
        ))
        .bearer_auth(AS_TOKEN)
        .json(&json!({"transaction_id": "ping-1"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "ping through Synapse: {status} {body}");
    assert!(body["duration_ms"].is_number(), "{body}");

    // SIGTERM: a clean shutdown, with JSON logs on the way.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(output.0.success(), "exit: {:?}\n{}", output.0, output.1);
    let first: Value =
        serde_json::from_str(output.1.lines().next().unwrap()).expect("JSON log lines");
    assert_eq!(
        first["fields"]["message"], "gateway running",
        "{}",
        output.1
    );
}
