//! Nothing lost, nothing duplicated: a killed gateway, a stopped one, a homeserver outage, a
//! channel outage.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use casebridge_gateway::store::MessageState;
use casebridge_tests::{elks::ElksDouble, eventually};

use crate::{
    binary::casebridge_binary,
    sms::{sms_stack, OFFICE, SECRET},
    Db, Stack,
};

fn bodies(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

fn spawn_gateway(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_casebridge-testgw"))
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .expect("the test gateway binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_200_inbound_messages() {
    let mut stack = Stack::new(Db::Sqlite, "sigkill").await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("casebridge.toml");
    std::fs::write(&config, stack.setup.toml()).unwrap();
    let log = dir.path().join("gateway.log");

    let mut gateway = spawn_gateway(&config, &log);
    stack.spool.put("m-000", "+46700000001", "message 000");
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;

    let expected: Vec<String> = (0..200).map(|i| format!("message {i:03}")).collect();
    for (i, body) in expected.iter().enumerate().skip(1) {
        stack.spool.put(&format!("m-{i:03}"), "+46700000001", body);
    }
    // Kill it hard while the burst is half through the homeserver.
    eventually(
        Duration::from_secs(60),
        "part of the burst in the room",
        || async {
            let n = stack.worker.messages(&room).await.len();
            (n >= 40).then_some(())
        },
    )
    .await;
    gateway.kill().unwrap();
    gateway.wait().unwrap();
    let relayed_at_kill = stack.worker.messages(&room).await.len();
    assert!(
        relayed_at_kill < 200,
        "the burst finished before the kill; nothing was tested"
    );

    let mut gateway = spawn_gateway(&config, &log);
    let events = stack
        .ghost_messages(&room, 200, Duration::from_secs(120))
        .await;
    assert_eq!(bodies(&events), expected, "every message once, in order");
    assert_eq!(stack.spool.inbox_len(), 0);
    gateway.kill().unwrap();
    gateway.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn homeserver_down_for_30_seconds_during_a_burst() {
    let mut stack = Stack::new(Db::Sqlite, "hsdown").await;
    let gateway = stack.start_gateway().await;
    stack.spool.put("m-000", "+46700000002", "message 000");
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;

    let expected: Vec<String> = (0..100).map(|i| format!("message {i:03}")).collect();
    for (i, body) in expected.iter().enumerate().take(40).skip(1) {
        stack.spool.put(&format!("m-{i:03}"), "+46700000002", body);
    }
    stack.synapse.stop().await;
    let down = tokio::time::Instant::now();
    // The client keeps writing while the homeserver is away; every message is accepted.
    for (i, body) in expected.iter().enumerate().skip(40) {
        stack.spool.put(&format!("m-{i:03}"), "+46700000002", body);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    eventually(
        Duration::from_secs(10),
        "the inbox drained while the homeserver is down",
        || async { (stack.spool.inbox_len() == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    stack.synapse.restart().await;

    let events = stack
        .ghost_messages(&room, 100, Duration::from_secs(120))
        .await;
    assert_eq!(bodies(&events), expected, "every message once, in order");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_outage_and_permanent_refusal() {
    let mut stack = Stack::new(Db::Sqlite, "chdown").await;
    let gateway = stack.start_gateway().await;
    stack.spool.put("m-000", "+46700000003", "hello");
    let room = stack.join_case_room().await;
    stack
        .ghost_messages(&room, 1, Duration::from_secs(20))
        .await;

    stack.spool.set_failing(true);
    let replies: Vec<String> = (0..10).map(|i| format!("reply {i}")).collect();
    for reply in &replies {
        stack.worker.send_text(&room, reply).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stack.spool.outbox().is_empty(),
        "delivered while the channel was down"
    );
    stack.spool.set_failing(false);
    let delivered = eventually(
        Duration::from_secs(20),
        "every reply after the outage",
        || async {
            let outbox = stack.spool.outbox();
            (outbox.len() >= replies.len()).then_some(outbox)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered: Vec<String> = delivered.into_iter().map(|l| l.body).collect();
    assert_eq!(delivered, replies, "each reply once, in order");
    assert_eq!(stack.spool.outbox().len(), replies.len());

    // A reply the channel refuses for good: a notice in the room, recorded as failed.
    stack
        .worker
        .send_text(&room, "this one hits a PERMANENT-FAIL")
        .await;
    stack
        .wait_for_notice(&room, "a delivery failure notice", |n| {
            n.starts_with("Not delivered to the client")
        })
        .await;
    let case = gateway.store().cases().await.unwrap().remove(0);
    let failed: Vec<_> = gateway
        .store()
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.state == MessageState::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].error.as_deref(),
        Some("loopback upstream refused the message")
    );
    gateway.shutdown().await;
}

/// The shipped `casebridge run` with `config`, its log appended to `log`.
fn spawn_casebridge(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    std::process::Command::new(casebridge_binary())
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .expect("the casebridge binary runs")
}

/// Sends SIGTERM, as a service manager does, and waits for the exit: its status and how long
/// it took.
async fn sigterm(
    mut child: std::process::Child,
) -> (std::process::ExitStatus, std::time::Duration) {
    let at = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::task::spawn_blocking(move || {
        // Bounded, so a gateway that never stops fails the test instead of hanging it.
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, at.elapsed());
            }
            if at.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("the gateway still runs 60 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
}

/// The test configuration for the shipped binary: without the loopback bridge, which only the
/// test builds know.
fn without_loopback(toml: &str) -> String {
    let start = toml.find("[bridges.loop]").unwrap();
    let end = toml[start + 1..]
        .find("\n[")
        .map_or(toml.len(), |i| start + 2 + i);
    format!("{}{}", &toml[..start], &toml[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_40_slow_sms_deliveries() {
    let (mut stack, elks, base) = sms_stack("sigterm").await;
    // Each SMS is taken at once and answered 1.5 s later: a stop almost surely falls between
    // the provider's accept and the gateway's record of it.
    elks.answer_after(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("casebridge.toml");
    std::fs::write(&config, without_loopback(&stack.setup.toml())).unwrap();
    let log = dir.path().join("gateway.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let http = reqwest::Client::new();
    let health = format!("{base}/health");
    let running = || async {
        let r = http.get(&health).send().await.ok()?;
        r.status().is_success().then_some(())
    };

    let gateway = spawn_casebridge(&config, &log);
    eventually(Duration::from_secs(20), "the gateway's /health", running).await;

    // Four clients, four cases: the replies are spread over cases, as a team's are.
    let webhook = format!("{base}/webhook/sms?secret={SECRET}");
    let mut rooms = Vec::new();
    for client in 0..4 {
        let from = format!("+4670200000{client}");
        let id = format!("in{client}");
        assert_eq!(
            ElksDouble::incoming(&webhook, &id, &from, OFFICE, "Hej").await,
            204
        );
        let room = stack.join_case_room().await;
        stack
            .ghost_messages(&room, 1, Duration::from_secs(20))
            .await;
        rooms.push(room);
    }
    let mut replies = Vec::new();
    for n in 0..10 {
        for (client, room) in rooms.iter().enumerate() {
            let reply = format!("Svar {n} till klient {client}");
            stack.worker.send_text(room, &reply).await;
            replies.push(reply);
        }
    }

    // Stop it once a few have gone out, with more in flight and queued.
    eventually(
        Duration::from_secs(60),
        "the first replies at 46elks",
        || async { (elks.sent().len() >= 4).then_some(()) },
    )
    .await;
    let (status, took) = sigterm(gateway).await;
    let at_stop = elks.sent().len();
    println!("SIGTERM: exit {status:?} after {took:?}; {at_stop} of 40 at 46elks");
    assert!(status.success(), "exit: {status:?}\n{}", read_log());
    assert!(
        took < Duration::from_secs(10),
        "stopped after {took:?}\n{}",
        read_log()
    );
    assert!(
        at_stop < replies.len(),
        "every reply was out before the stop; nothing was tested"
    );

    // The next start delivers the rest, and nothing twice.
    let gateway = spawn_casebridge(&config, &log);
    let count = |sent: Vec<std::collections::HashMap<String, String>>| {
        let mut by_body = BTreeMap::<String, usize>::new();
        for sms in sent {
            *by_body.entry(sms["message"].clone()).or_default() += 1;
        }
        by_body
    };
    eventually(
        Duration::from_secs(120),
        "every reply at 46elks",
        || async { (count(elks.sent()).len() == replies.len()).then_some(()) },
    )
    .await;
    // A reply sent again would be its case's first after the restart: long out by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by_body = count(elks.sent());
    let twice: Vec<_> = by_body.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "sent more than once: {twice:?}\n{}",
        read_log()
    );
    assert_eq!(
        by_body.keys().collect::<Vec<_>>(),
        {
            let mut sorted: Vec<_> = replies.iter().collect();
            sorted.sort();
            sorted
        },
        "each reply, and no other"
    );
    assert_eq!(elks.sent().len(), replies.len());

    let (status, took) = sigterm(gateway).await;
    assert!(status.success(), "exit: {status:?}\n{}", read_log());
    assert!(took < Duration::from_secs(10), "idle stop took {took:?}");
}
