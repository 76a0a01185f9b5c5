//! The appservice API as the homeserver sees it: tokens, malformed bodies, replayed
//! transactions. No Synapse needed: these requests are what Synapse would send.

use std::time::Duration;

use casebridge_gateway::{store::Direction, Gateway};
use casebridge_tests::{
    eventually, free_port, init_logging, loopback::test_factories, GatewaySetup, Spool, HS_TOKEN,
    WEBHOOK_SECRET,
};
use serde_json::{json, Value};

async fn put(client: &reqwest::Client, url: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = client
        .put(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_bodies_and_replays() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::new(dir.path().join("spool"));
    let setup = GatewaySetup {
        // Nothing listens here: the homeserver is not needed to check the appservice API.
        homeserver_url: format!("http://127.0.0.1:{}", free_port()),
        port: free_port(),
        database_url: format!("sqlite://{}", dir.path().join("cb.db").display()),
        spool: spool.root().to_owned(),
        members: vec!["@anna:localhost".into()],
        max_backoff_ms: 1000,
        extra: String::new(),
    };
    let gateway = Gateway::start(setup.config(), &test_factories())
        .await
        .unwrap();
    let base = format!("http://{}", gateway.local_addr());
    let client = reqwest::Client::new();
    let txn_url = |id: &str| format!("{base}/_matrix/app/v1/transactions/{id}");

    // A case whose room is known, as if created earlier.
    let store = gateway.store().clone();
    spool.put("c1", "client", "hello");
    eventually(Duration::from_secs(10), "the client's case", || async {
        (!store.cases().await.unwrap().is_empty()).then_some(())
    })
    .await;
    let case = store.cases().await.unwrap().remove(0);
    store.set_room(case.id, "!case:localhost").await.unwrap();

    let event = |id: &str, sender: &str, body: &str| {
        json!({
            "type": "m.room.message", "event_id": id, "sender": sender, "room_id": "!case:localhost",
            "origin_server_ts": 1_700_000_000_000u64, "content": {"msgtype": "m.text", "body": body},
        })
    };
    let txn = json!({"events": [event("$e1", "@anna:localhost", "Vi ses på torsdag."),
                                event("$e2", "@_cb_loop_client:localhost", "echo of the client")]})
    .to_string();

    // Missing token: 401; wrong token: 403; both with an errcode, nothing processed.
    let (status, body) = put(&client, &txn_url("t1"), None, &txn).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN"))
    );
    let (status, body) = put(&client, &txn_url("t1"), Some("not-the-token"), &txn).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    let response = client
        .put(format!("{}?access_token=wrong", txn_url("t1")))
        .body(txn.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        403,
        "the legacy query token is checked too"
    );

    // Malformed bodies: 400 with an errcode.
    let (status, body) = put(&client, &txn_url("t2"), Some(HS_TOKEN), "{not json").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_NOT_JSON"))
    );
    let (status, body) = put(&client, &txn_url("t3"), Some(HS_TOKEN), r#"{"events": 5}"#).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_JSON"))
    );

    // The real transaction, then the same one replayed: one delivery; the ghost's echo is not sent.
    let (status, _) = put(&client, &txn_url("t1"), Some(HS_TOKEN), &txn).await;
    assert_eq!(status, 200);
    let (status, _) = put(&client, &txn_url("t1"), Some(HS_TOKEN), &txn).await;
    assert_eq!(status, 200);
    // The same event in another transaction is still one message.
    let again =
        json!({"events": [event("$e1", "@anna:localhost", "Vi ses på torsdag.")]}).to_string();
    let (status, _) = put(&client, &txn_url("t4"), Some(HS_TOKEN), &again).await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "the reply at the client",
        || async { (!spool.outbox().is_empty()).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outbox = spool.outbox();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    assert_eq!(outbox[0].body, "Vi ses på torsdag.");
    assert_eq!(outbox[0].to, "client");

    // A provider's webhook: refused without or with a wrong secret, 400 for a malformed body,
    // 200 once recorded, 200 again for a retry, which is not recorded twice.
    let hook = format!("{base}/webhook/loop");
    let post = |secret: Option<&str>, body: &str| {
        let mut r = client.post(&hook).body(body.to_owned());
        if let Some(secret) = secret {
            r = r.header("x-loopback-secret", secret);
        }
        r.send()
    };
    let sms = r#"{"id": "w1", "from": "client", "body": "via webhook"}"#;
    assert_eq!(post(None, sms).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        post(Some("guess"), sms).await.unwrap().status().as_u16(),
        403
    );
    let bad = post(Some(WEBHOOK_SECRET), r#"{"id": "w1"}"#).await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await.unwrap().contains("missing field `from`"));
    let first = post(Some(WEBHOOK_SECRET), sms).await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    assert!(first.text().await.unwrap().starts_with("recorded in "));
    let retry = post(Some(WEBHOOK_SECRET), sms).await.unwrap();
    assert_eq!(retry.status().as_u16(), 200);
    assert_eq!(retry.text().await.unwrap(), "duplicate\n");
    let inbound: Vec<_> = store
        .messages(case.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Inbound)
        .map(|m| m.body)
        .collect();
    assert_eq!(inbound, ["hello", "via webhook"]);
    let nowhere = client
        .post(format!("{base}/webhook/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status().as_u16(), 404);

    // Still serving: health, ping, user and alias queries.
    let health: Value = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ping = client
        .post(format!("{base}/_matrix/app/v1/ping"))
        .bearer_auth(HS_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status().as_u16(), 200);
    let bot = client
        .get(format!("{base}/_matrix/app/v1/users/@casebridge:localhost"))
        .bearer_auth(HS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bot.status().as_u16(), 200);
    let nobody = client
        .get(format!("{base}/_matrix/app/v1/users/@_cb_nobody:localhost"))
        .bearer_auth(HS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status().as_u16(), 404);
    let unauthorised = client
        .get(format!("{base}/_matrix/app/v1/users/@casebridge:localhost"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status().as_u16(), 401);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("casebridge_messages_in_total{channel=\"loopback\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("casebridge_messages_out_total{channel=\"loopback\"} 1"),
        "{metrics}"
    );

    gateway.shutdown().await;
}
