//! A Telegram Bot API double: `/bot{token}/{method}` with method names matched
//! case-insensitively (as Telegram does), parameters as JSON, form or query, answers as
//! `{"ok": true, "result": …}` or `{"ok": false, "error_code": …, "description": …}` with the
//! documented codes (401 for a wrong token, 403 for a bot the user blocked, 429 with
//! `parameters.retry_after`). Implements `getMe`, `getUpdates` (long polling; updates below
//! `offset` are confirmed and dropped) and `sendMessage`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::any,
    Json, Router,
};
use serde_json::{json, Value};

/// The token the double accepts.
pub const TOKEN: &str = "123456:TEST-telegram-bot-token";

#[derive(Default)]
struct Inner {
    next_update: i64,
    next_message: i64,
    pending: Vec<Value>,
    sent: Vec<Value>,
    blocked: HashSet<i64>,
    rate_limit_next: Option<u32>,
    refused: Vec<(String, u16)>,
}

/// A running double.
#[derive(Clone)]
pub struct TelegramDouble {
    /// Base URL (`api_url` in the bridge config).
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl TelegramDouble {
    /// Starts the double on a free port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            next_update: 100_000,
            next_message: 1,
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{bot}/{method}", any(call))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    fn push(&self, kind: &str, message: Value) {
        let mut inner = self.inner.lock().unwrap();
        inner.next_update += 1;
        let update = json!({ "update_id": inner.next_update, kind: message });
        inner.pending.push(update);
    }

    fn message(
        &self,
        chat: i64,
        message_id: i64,
        first_name: &str,
        username: &str,
        text: &str,
    ) -> Value {
        json!({
            "message_id": message_id,
            "date": chrono::Utc::now().timestamp(),
            "chat": { "id": chat, "type": "private", "first_name": first_name, "username": username },
            "from": { "id": chat, "is_bot": false, "first_name": first_name, "username": username },
            "text": text,
        })
    }

    /// A client writes to the bot; returns the message id.
    pub fn client_writes(&self, chat: i64, first_name: &str, username: &str, text: &str) -> i64 {
        let id = {
            let mut inner = self.inner.lock().unwrap();
            inner.next_message += 1;
            inner.next_message
        };
        self.push(
            "message",
            self.message(chat, id, first_name, username, text),
        );
        id
    }

    /// A client edits an earlier message.
    pub fn client_edits(
        &self,
        chat: i64,
        message_id: i64,
        first_name: &str,
        username: &str,
        text: &str,
    ) {
        let mut m = self.message(chat, message_id, first_name, username, text);
        m["edit_date"] = json!(chrono::Utc::now().timestamp() + 1);
        self.push("edited_message", m);
    }

    /// The client blocks the bot: sends to them answer 403.
    pub fn block(&self, chat: i64) {
        self.inner.lock().unwrap().blocked.insert(chat);
    }

    /// The next `sendMessage` answers 429 with `retry_after`.
    pub fn rate_limit_next(&self, seconds: u32) {
        self.inner.lock().unwrap().rate_limit_next = Some(seconds);
    }

    /// Every message the bot sent, as `sendMessage` parameters.
    pub fn sent(&self) -> Vec<Value> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// Updates not yet confirmed by an `offset`.
    pub fn unconfirmed(&self) -> usize {
        self.inner.lock().unwrap().pending.len()
    }

    /// Refused calls: method and status.
    pub fn refused(&self) -> Vec<(String, u16)> {
        self.inner.lock().unwrap().refused.clone()
    }
}

fn error(status: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({ "ok": false, "error_code": status, "description": description });
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

fn params(headers: &HeaderMap, query: Option<String>, body: &Bytes) -> HashMap<String, Value> {
    let mut out: HashMap<String, Value> = HashMap::new();
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            out.insert(k.into_owned(), json!(v.into_owned()));
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            out.extend(map);
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in url::form_urlencoded::parse(body) {
            out.insert(k.into_owned(), json!(v.into_owned()));
        }
    }
    out
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn call(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((bot, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = method.to_ascii_lowercase();
    if bot != format!("bot{TOKEN}") {
        inner.lock().unwrap().refused.push((method, 401));
        return error(401, "Unauthorized", None);
    }
    let p = params(&headers, query, &body);
    match method.as_str() {
        "getme" => Json(json!({ "ok": true, "result": {
            "id": 123456, "is_bot": true, "first_name": "Socialtjänsten", "username": "office_bot",
            "can_join_groups": false, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false,
        }}))
        .into_response(),
        "getupdates" => {
            let offset = int(p.get("offset")).unwrap_or(0);
            let timeout = int(p.get("timeout")).unwrap_or(0).clamp(0, 2) as u64;
            let deadline = Instant::now() + Duration::from_secs(timeout);
            loop {
                let ready = {
                    let mut inner = inner.lock().unwrap();
                    if offset > 0 {
                        inner
                            .pending
                            .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    }
                    inner.pending.iter().take(100).cloned().collect::<Vec<_>>()
                };
                if !ready.is_empty() || Instant::now() >= deadline {
                    return Json(json!({ "ok": true, "result": ready })).into_response();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        "sendmessage" => {
            let Some(chat) = int(p.get("chat_id")) else {
                return error(400, "Bad Request: chat_id is empty", None);
            };
            let Some(text) = p.get("text").and_then(Value::as_str).map(str::to_owned) else {
                return error(400, "Bad Request: message text is empty", None);
            };
            let mut inner = inner.lock().unwrap();
            if let Some(seconds) = inner.rate_limit_next.take() {
                inner.refused.push((method, 429));
                return error(
                    429,
                    &format!("Too Many Requests: retry after {seconds}"),
                    Some(json!({ "retry_after": seconds })),
                );
            }
            if inner.blocked.contains(&chat) {
                inner.refused.push((method, 403));
                return error(403, "Forbidden: bot was blocked by the user", None);
            }
            inner.next_message += 1;
            let id = inner.next_message;
            inner.sent.push(json!({ "chat_id": chat, "text": text }));
            Json(json!({ "ok": true, "result": {
                "message_id": id,
                "date": chrono::Utc::now().timestamp(),
                "chat": { "id": chat, "type": "private", "first_name": "Client" },
                "from": { "id": 123456, "is_bot": true, "first_name": "Socialtjänsten", "username": "office_bot" },
                "text": text,
            }}))
            .into_response()
        }
        _ => error(404, "Not Found: method not found", None),
    }
}
