//! The mock homeserver itself: strict where a homeserver is, idempotent sends, overrides that
//! step aside after `times(n)`.

use std::time::Duration;

use serde_json::{json, Value};

use super::MockHomeserver;
use crate::AS_TOKEN;

async fn call(
    hs: &MockHomeserver,
    method: reqwest::Method,
    path: &str,
    user: Option<&str>,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", hs.url()))
        .json(&body);
    if let Some(user) = user {
        request = request.query(&[("user_id", user)]);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn mock_homeserver_answers_as_a_homeserver() {
    use reqwest::Method;
    let hs = MockHomeserver::start().await;
    let ghost = "@_cb_x:localhost";
    let token = Some(AS_TOKEN);
    let send = |txn: &str| {
        format!("/_matrix/client/v3/rooms/!mockroom1:localhost/send/m.room.message/{txn}")
    };
    let text = json!({"msgtype": "m.text", "body": "hej"});

    // Tokens are checked; an unregistered ghost cannot be used; a ghost registers once.
    let (status, body) = call(
        &hs,
        Method::PUT,
        &send("t0"),
        None,
        Some("nope"),
        text.clone(),
    )
    .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN"))
    );
    let (status, _) = call(
        &hs,
        Method::PUT,
        &send("t0"),
        Some(ghost),
        token,
        text.clone(),
    )
    .await;
    assert_eq!(status, 403);
    let register = json!({"type": "m.login.application_service", "username": "_cb_x"});
    let path = "/_matrix/client/v3/register";
    let (status, body) = call(&hs, Method::POST, path, None, token, register.clone()).await;
    assert_eq!((status, body), (200, json!({"user_id": ghost})));
    let (status, body) = call(&hs, Method::POST, path, None, token, register).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_USER_IN_USE"))
    );

    // A room with an alias; the ghost may send only once it has joined.
    let create = json!({"room_alias_name": "a", "invite": [ghost]});
    let path = "/_matrix/client/v3/createRoom";
    let (status, body) = call(&hs, Method::POST, path, None, token, create).await;
    assert_eq!(
        (status, body),
        (200, json!({"room_id": "!mockroom1:localhost"}))
    );
    let path = "/_matrix/client/v3/directory/room/%23a:localhost";
    let (status, body) = call(&hs, Method::GET, path, None, None, Value::Null).await;
    assert_eq!(
        (status, &body["room_id"]),
        (200, &json!("!mockroom1:localhost"))
    );
    let (status, _) = call(
        &hs,
        Method::PUT,
        &send("t0"),
        Some(ghost),
        token,
        text.clone(),
    )
    .await;
    assert_eq!(status, 403, "not joined yet");
    let path = "/_matrix/client/v3/rooms/!mockroom1:localhost/join";
    let (status, _) = call(&hs, Method::POST, path, Some(ghost), token, json!({})).await;
    assert_eq!(status, 200);

    // Rate limited once, then the send goes through; its retry is the same event.
    hs.room_send()
        .with_txn("t1")
        .rate_limited(Duration::from_millis(50))
        .times(1)
        .expect(1)
        .mount()
        .await;
    let (status, body) = call(
        &hs,
        Method::PUT,
        &send("t1"),
        Some(ghost),
        token,
        text.clone(),
    )
    .await;
    assert_eq!((status, &body["retry_after_ms"]), (429, &json!(50)));
    let (status, first) = call(
        &hs,
        Method::PUT,
        &send("t1"),
        Some(ghost),
        token,
        text.clone(),
    )
    .await;
    assert_eq!(status, 200);
    let (_, again) = call(&hs, Method::PUT, &send("t1"), Some(ghost), token, text).await;
    assert_eq!(first, again);
    let timeline = hs.timeline("!mockroom1:localhost");
    assert_eq!(timeline.len(), 1);
    assert_eq!(
        (timeline[0].sender.as_str(), timeline[0].body()),
        (ghost, "hej")
    );
    let statuses: Vec<u16> = hs.sends().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [401, 403, 403, 429, 200, 200]);
    hs.verify().await;
}
