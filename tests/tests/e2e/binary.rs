//! The shipped `casebridge` binary, configured as an admin would, against a real Synapse.

use std::{process::Stdio, time::Duration};

use casebridge_tests::{eventually, free_port, GatewaySetup, Spool, Synapse, AS_TOKEN};
use serde_json::{json, Value};

/// Runs the shipped `casebridge` with `config` and `args`: success, stdout, stderr.
pub(crate) fn casebridge_cli(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(casebridge_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shipped `casebridge` binary of this build.
pub(crate) fn casebridge_binary() -> std::path::PathBuf {
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
    // Its own check at start found the link working, and /health says so.
    eventually(Duration::from_secs(20), "the link in /health", || async {
        let health: Value = http
            .get(format!("{base}/health"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (health["status"] == "ok" && health["homeserver"]["link"] == "ok").then_some(())
    })
    .await;

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
    // At start it asked Synapse to ping it, and Synapse did.
    assert!(
        output.1.lines().any(|l| {
            let line: Value = serde_json::from_str(l).unwrap_or_default();
            line["level"] == "INFO"
                && line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("homeserver link checked"))
        }),
        "{}",
        output.1
    );

    // The same gateway with an as_token the homeserver does not know (its registration not
    // loaded, or another one): an ERROR at start that says which key and what to do.
    let wrong = std::fs::read_to_string(&config)
        .unwrap()
        .replace(AS_TOKEN, "an-as-token-synapse-does-not-know");
    std::fs::write(&config, wrong).unwrap();
    let mut child = std::process::Command::new(casebridge_binary())
        .args(["--config", config.to_str().unwrap(), "run"])
        .env("CASEBRIDGE__DATABASE__URL", &setup.database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let found = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("ERROR") || l.contains("homeserver link checked"))
    });
    let line = tokio::time::timeout(Duration::from_secs(30), found)
        .await
        .expect("the start check logged within 30 s")
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let line = line.expect("a line on the homeserver link");
    assert!(
        line.contains("ERROR")
            && line.contains("appservice.as_token: the homeserver at")
            && line.contains("does not know this token"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purge_redacts_rooms_and_keeps_the_chain() {
    use sea_orm::ConnectionTrait;

    let mut stack = crate::Stack::new(crate::Db::Sqlite, "retention").await;
    stack.setup.extra = "[[retention.rule]]\nstatus = \"closed\"\nafter_days = 730\n".to_owned();
    let gateway = stack.start_gateway().await;

    // Case 1: a conversation, a note, closed. Case 2: the same, but on legal hold.
    let mut rooms = Vec::new();
    for (i, hold) in [(1, false), (2, true)] {
        stack.spool.put_with_files(
            &format!("r{i}"),
            &format!("+4670111000{i}"),
            "Hemligt om min situation",
            &[("intyg.txt", "text/plain", b"lakarintyg")],
        );
        let room = stack.join_case_room().await;
        stack
            .ghost_messages(&room, 2, Duration::from_secs(20))
            .await;
        stack.worker.send_text(&room, "Vi hörs i morgon.").await;
        stack
            .worker
            .send_text(&room, "!note Klienten mår bättre")
            .await;
        if hold {
            stack.worker.send_text(&room, "!hold on").await;
            stack
                .wait_for_notice(&room, "hold", |n| n.starts_with("Legal hold on"))
                .await;
        }
        stack.worker.send_text(&room, "!close").await;
        stack
            .wait_for_notice(&room, "closed", |n| n.contains("closed by @anna:localhost"))
            .await;
        rooms.push(room);
    }
    eventually(
        Duration::from_secs(20),
        "both replies delivered",
        || async { (stack.spool.outbox().len() == 2).then_some(()) },
    )
    .await;
    // Closed three years ago.
    let db = gateway.store().connection().clone();
    let three_years_ago = (chrono::Utc::now() - chrono::Duration::days(3 * 365)).to_rfc3339();
    db.execute_unprepared(&format!("UPDATE cases SET closed_at = '{three_years_ago}'"))
        .await
        .unwrap();
    gateway.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("casebridge.toml");
    std::fs::write(&config, stack.setup.toml()).unwrap();
    let run = |args: &[&str]| casebridge_cli(&config, args);
    let (ok, out, err) = run(&["records", "purge", "--dry-run"]);
    assert!(ok, "{err}");
    let year = chrono::Utc::now().format("%Y");
    assert!(
        out.contains(&format!("case {year}-000001 record 1 (inbound")),
        "{out}"
    );
    assert!(
        !out.contains(&format!("case {year}-000002")),
        "legal hold: {out}"
    );
    assert!(
        out.contains("would be purged (dry run: nothing changed)"),
        "{out}"
    );

    // The client's file in case 1's room, in the media repository before the purge.
    let file_url = |room: String| {
        let worker = &stack.worker;
        async move {
            worker
                .messages(&room)
                .await
                .iter()
                .find(|e| e["content"]["body"] == "intyg.txt")
                .and_then(|e| e["content"]["url"].as_str().map(str::to_owned))
                .expect("the file event")
        }
    };
    let purged_file = file_url(rooms[0].clone()).await;
    let held_file = file_url(rooms[1].clone()).await;
    assert_eq!(stack.worker.download(&purged_file).await, b"lakarintyg");

    // A server admin's token lets the purge delete the files too.
    stack
        .synapse
        .register_admin("admin", "admin-password")
        .await;
    let admin =
        casebridge_tests::Worker::login(&stack.synapse.url, "admin", "admin-password").await;
    let purge = || {
        let out = std::process::Command::new(casebridge_binary())
            .arg("--config")
            .arg(&config)
            .args(["records", "purge"])
            .env("CASEBRIDGE__HOMESERVER__ADMIN_TOKEN", admin.access_token())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The homeserver is down during the purge: the records store forgets at once, and the
    // redactions and the file deletion stay queued.
    stack.synapse.stop().await;
    let (ok, out, err) = purge();
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("purged 6 record(s) in 1 case(s)")
            && out.contains("redacted 0 event(s); deleted 0 file(s)"),
        "{out}"
    );
    assert!(
        err.contains("8 redaction(s) or file deletion(s) failed")
            && err.contains("the next `casebridge records purge` tries them again"),
        "{err}"
    );
    let (_, export, _) = run(&["records", "export", "--case", &format!("{year}-000001")]);
    assert!(!export.contains("Hemligt"), "{export}");
    // The next run, with the homeserver back, does what was owed: nothing is purged twice.
    stack.synapse.restart().await;
    let (ok, out, err) = purge();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("purged 0 record(s) in 0 case(s)")
            && out.contains("redacted 7 event(s); deleted 1 file(s) from the media repository"),
        "{out}"
    );
    let (ok, out, err) = purge();
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("redacted 0 event(s); deleted 0 file(s)"),
        "each follow-up is done once: {out}"
    );
    assert_eq!(
        stack.worker.try_download(&purged_file).await,
        Err(404),
        "the purged file is gone from the media repository"
    );
    assert_eq!(stack.worker.download(&held_file).await, b"lakarintyg");
    let (ok, out, err) = run(&["records", "verify"]);
    assert!(ok, "the chain verifies after a purge: {out}{err}");

    // The room of case 1 no longer shows what was said; case 2 still does.
    let texts = |room: String| {
        let worker = &stack.worker;
        async move {
            worker
                .messages(&room)
                .await
                .iter()
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    let purged_room = texts(rooms[0].clone()).await;
    for gone in [
        "Hemligt om min situation",
        "intyg.txt",
        "Vi hörs i morgon.",
        "!note Klienten mår bättre",
    ] {
        assert!(
            !purged_room.iter().any(|t| t == gone),
            "{gone} in {purged_room:?}"
        );
    }
    let held_room = texts(rooms[1].clone()).await;
    assert!(
        held_room.iter().any(|t| t == "Hemligt om min situation"),
        "{held_room:?}"
    );
    assert!(held_room.iter().any(|t| t == "intyg.txt"), "{held_room:?}");
    let (_, out, _) = run(&[
        "records",
        "export",
        "--case",
        &format!("{year}-000001"),
        "--format",
        "json",
    ]);
    assert!(!out.contains("Hemligt"), "{out}");
    assert!(out.contains("Purged under retention rule 1"), "{out}");
}
