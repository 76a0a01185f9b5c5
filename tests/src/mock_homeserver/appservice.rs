//! The homeserver's side of the application service API: pushing transactions of room events
//! to the gateway (`PUT /_matrix/app/v1/transactions/{txnId}`) and pinging it, with the
//! `hs_token`, as Synapse does.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use serde_json::{json, Value};

/// The gateway's appservice API, called as the homeserver.
pub struct AppserviceApi {
    base: String,
    http: reqwest::Client,
    next_event: AtomicU64,
}

impl AppserviceApi {
    /// The API of the gateway listening at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            next_event: AtomicU64::new(0),
        }
    }

    /// Pushes transaction `txn_id` of `events`; the status and JSON body answered.
    pub async fn transaction(&self, txn_id: &str, events: &[Value]) -> (u16, Value) {
        let request = self
            .http
            .put(format!(
                "{}/_matrix/app/v1/transactions/{txn_id}",
                self.base
            ))
            .json(&json!({ "events": events }));
        self.call(request, Some(crate::HS_TOKEN)).await
    }

    /// `POST /_matrix/app/v1/ping` with `body`, as `token` (the `hs_token` if `None`).
    pub async fn ping(&self, body: &Value, token: Option<&str>) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}/_matrix/app/v1/ping", self.base))
            .json(body);
        self.call(request, Some(token.unwrap_or(crate::HS_TOKEN)))
            .await
    }

    async fn call(&self, request: reqwest::RequestBuilder, token: Option<&str>) -> (u16, Value) {
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A new `m.room.message` event of `msgtype` (`m.text`, `m.notice`, ...) by `sender` in
    /// `room`, with a unique event id.
    pub fn message(&self, room: &str, sender: &str, msgtype: &str, body: &str) -> Value {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed) + 1;
        json!({
            "type": "m.room.message",
            "event_id": format!("$pushed{n}"),
            "sender": sender,
            "room_id": room,
            "origin_server_ts": 1_700_000_000_000u64 + n,
            "content": { "msgtype": msgtype, "body": body },
        })
    }

    /// A new text message by `sender` in `room`: see [`AppserviceApi::message`].
    pub fn text(&self, room: &str, sender: &str, body: &str) -> Value {
        self.message(room, sender, "m.text", body)
    }
}
