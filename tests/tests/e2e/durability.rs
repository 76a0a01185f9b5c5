//! Nothing lost, nothing duplicated: a killed gateway, a homeserver outage, a channel outage.

use std::{process::Stdio, time::Duration};

use casebridge_tests::eventually;

use crate::{Db, Stack};

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
        .filter(|m| m.state == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].error.as_deref(),
        Some("loopback upstream refused the message")
    );
    gateway.shutdown().await;
}
