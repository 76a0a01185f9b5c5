//! A Telegram Bot API double: `/bot{token}/{method}` with method names matched
//! case-insensitively (as Telegram does), parameters as JSON, form, multipart or query, answers
//! as `{"ok": true, "result": …}` or `{"ok": false, "error_code": …, "description": …}` with the
//! documented codes (401 for a wrong token, 403 for a bot the user blocked, 409 for getUpdates
//! while a webhook is set, 413 for a file over the upload limit, 429 with
//! `parameters.retry_after`). Implements `getMe`, `getUpdates` (long polling; updates below
//! `offset` are confirmed and dropped), `setWebhook` / `deleteWebhook` (updates are then POSTed
//! to the URL with `X-Telegram-Bot-Api-Secret-Token`, again until answered 2xx), `sendMessage`,
//! `sendPhoto`, `sendDocument`, `getFile` (20 MB limit) and the file download path
//! `/file/bot{token}/{file_path}`.

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

/// A file the double holds: a client's upload, or one the bot sent.
#[derive(Clone)]
struct StoredFile {
    data: Vec<u8>,
    name: Option<String>,
}

#[derive(Default)]
struct Inner {
    next_update: i64,
    next_message: i64,
    pending: Vec<Value>,
    sent: Vec<Value>,
    blocked: HashSet<i64>,
    rate_limit_next: Option<u32>,
    refused: Vec<(String, u16)>,
    files: HashMap<String, StoredFile>,
    /// `setWebhook`: the URL and secret token.
    webhook: Option<(String, Option<String>)>,
    /// Answers of webhook calls: status codes, in order.
    webhook_answers: Vec<u16>,
}

/// A file the bot sent, as the double received it.
#[derive(Debug, Clone)]
pub struct SentFile {
    /// `sendPhoto` or `sendDocument`.
    pub method: String,
    /// The chat.
    pub chat_id: i64,
    /// The multipart file name.
    pub filename: Option<String>,
    /// The bytes.
    pub data: Vec<u8>,
    /// The caption, if any.
    pub caption: Option<String>,
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
            .route("/file/{bot}/{*path}", any(download))
            .layer(axum::extract::DefaultBodyLimit::max(60 * 1024 * 1024))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        tokio::spawn(push_to_webhook(inner.clone()));
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

    /// A client sends a photo (one size, as JPEG bytes) with an optional caption; returns the
    /// message id.
    pub fn client_sends_photo(
        &self,
        chat: i64,
        first_name: &str,
        data: &[u8],
        caption: &str,
    ) -> i64 {
        let file_id = self.store_file(data, None);
        let id = self.next_message_id();
        let mut m = self.message(chat, id, first_name, "", "");
        m.as_object_mut().unwrap().remove("text");
        m["photo"] = json!([
            { "file_id": format!("{file_id}-thumb"), "file_unique_id": "t", "width": 90, "height": 90, "file_size": 30_000_000 },
            { "file_id": file_id, "file_unique_id": "p", "width": 800, "height": 600, "file_size": data.len() },
        ]);
        if !caption.is_empty() {
            m["caption"] = json!(caption);
        }
        self.push("message", m);
        id
    }

    /// A client sends a document of `size` bytes (its content a repeated pattern); returns the
    /// message id.
    pub fn client_sends_document(
        &self,
        chat: i64,
        first_name: &str,
        name: &str,
        mime: &str,
        data: &[u8],
    ) -> i64 {
        let file_id = self.store_file(data, Some(name));
        let id = self.next_message_id();
        let mut m = self.message(chat, id, first_name, "", "");
        m.as_object_mut().unwrap().remove("text");
        m["document"] = json!({
            "file_id": file_id, "file_unique_id": format!("u{file_id}"),
            "file_name": name, "mime_type": mime, "file_size": data.len(),
        });
        self.push("message", m);
        id
    }

    fn store_file(&self, data: &[u8], name: Option<&str>) -> String {
        let mut inner = self.inner.lock().unwrap();
        let id = format!("AgAD{}", inner.files.len() + 1);
        inner.files.insert(
            id.clone(),
            StoredFile {
                data: data.to_vec(),
                name: name.map(str::to_owned),
            },
        );
        id
    }

    fn next_message_id(&self) -> i64 {
        let mut inner = self.inner.lock().unwrap();
        inner.next_message += 1;
        inner.next_message
    }

    /// Files the bot sent, in order.
    pub fn sent_files(&self) -> Vec<SentFile> {
        let inner = self.inner.lock().unwrap();
        inner
            .sent
            .iter()
            .filter(|m| m.get("file").is_some())
            .map(|m| {
                let file = &inner.files[m["file"].as_str().unwrap()];
                SentFile {
                    method: m["method"].as_str().unwrap().to_owned(),
                    chat_id: m["chat_id"].as_i64().unwrap(),
                    filename: file.name.clone(),
                    data: file.data.clone(),
                    caption: m["caption"].as_str().map(str::to_owned),
                }
            })
            .collect()
    }

    /// The webhook `setWebhook` set: URL and secret token.
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        self.inner.lock().unwrap().webhook.clone()
    }

    /// Status codes the webhook answered, in order.
    pub fn webhook_answers(&self) -> Vec<u16> {
        self.inner.lock().unwrap().webhook_answers.clone()
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

    /// Every message the bot sent: `sendMessage` parameters (`chat_id`, `text`), and for files
    /// `method`, `chat_id`, `file` (an id) and `caption`.
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
    request: axum::extract::Request,
) -> Response {
    let method = method.to_ascii_lowercase();
    if bot != format!("bot{TOKEN}") {
        inner.lock().unwrap().refused.push((method, 401));
        return error(401, "Unauthorized", None);
    }
    let headers = request.headers().clone();
    let multipart = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (p, upload) = if multipart {
        match read_multipart(request).await {
            Ok(x) => x,
            Err(e) => return error(400, &format!("Bad Request: {e}"), None),
        }
    } else {
        let body = match axum::body::to_bytes(request.into_body(), 60 * 1024 * 1024).await {
            Ok(b) => b,
            Err(_) => return error(413, "Request Entity Too Large", None),
        };
        (params(&headers, query.clone(), &body), None)
    };
    match method.as_str() {
        "getme" => Json(json!({ "ok": true, "result": {
            "id": 123456, "is_bot": true, "first_name": "Socialtjänsten", "username": "office_bot",
            "can_join_groups": false, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false,
        }}))
        .into_response(),
        "getupdates" => {
            if inner.lock().unwrap().webhook.is_some() {
                return error(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                    None,
                );
            }
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
            // "Text of the message to be sent, 1-4096 characters after entities parsing".
            if text.chars().count() > 4096 {
                inner.refused.push((method, 400));
                return error(400, "Bad Request: message is too long", None);
            }
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
        "sendphoto" | "senddocument" => {
            let field = if method == "sendphoto" {
                "photo"
            } else {
                "document"
            };
            let Some(chat) = int(p.get("chat_id")) else {
                return error(400, "Bad Request: chat_id is empty", None);
            };
            let Some((name, data)) = upload
                .filter(|(f, _, _)| f == field)
                .map(|(_, n, d)| (n, d))
            else {
                return error(
                    400,
                    &format!("Bad Request: there is no {field} in the request"),
                    None,
                );
            };
            let limit = if method == "sendphoto" { 10 } else { 50 } * 1024 * 1024;
            if data.len() > limit {
                return error(413, "Request Entity Too Large", None);
            }
            let mut inner = inner.lock().unwrap();
            if inner.blocked.contains(&chat) {
                inner.refused.push((method, 403));
                return error(403, "Forbidden: bot was blocked by the user", None);
            }
            let file_id = format!("AgAD{}", inner.files.len() + 1);
            let size = data.len();
            inner
                .files
                .insert(file_id.clone(), StoredFile { data, name });
            inner.next_message += 1;
            let id = inner.next_message;
            let caption = p.get("caption").cloned();
            inner.sent.push(
                json!({ "method": method, "chat_id": chat, "file": file_id, "caption": caption }),
            );
            let meta = json!({ "file_id": file_id, "file_unique_id": format!("u{file_id}"), "file_size": size });
            let mut result = json!({
                "message_id": id,
                "date": chrono::Utc::now().timestamp(),
                "chat": { "id": chat, "type": "private", "first_name": "Client" },
                "from": { "id": 123456, "is_bot": true, "first_name": "Socialtjänsten", "username": "office_bot" },
            });
            if field == "photo" {
                let mut size = meta.clone();
                size["width"] = json!(800);
                size["height"] = json!(600);
                result["photo"] = json!([size]);
            } else {
                result["document"] = meta;
            }
            if let Some(c) = caption {
                result["caption"] = c;
            }
            Json(json!({ "ok": true, "result": result })).into_response()
        }
        "getfile" => {
            let Some(file_id) = p.get("file_id").and_then(Value::as_str) else {
                return error(400, "Bad Request: file_id is empty", None);
            };
            let inner = inner.lock().unwrap();
            let Some(file) = inner.files.get(file_id) else {
                return error(400, "Bad Request: invalid file_id", None);
            };
            if file.data.len() > 20 * 1024 * 1024 {
                return error(400, "Bad Request: file is too big", None);
            }
            Json(json!({ "ok": true, "result": {
                "file_id": file_id, "file_unique_id": format!("u{file_id}"),
                "file_size": file.data.len(), "file_path": format!("documents/{file_id}.bin"),
            }}))
            .into_response()
        }
        "setwebhook" => {
            let Some(url) = p
                .get("url")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
            else {
                inner.lock().unwrap().webhook = None;
                return Json(
                    json!({ "ok": true, "result": true, "description": "Webhook was deleted" }),
                )
                .into_response();
            };
            let secret = p
                .get("secret_token")
                .and_then(Value::as_str)
                .map(str::to_owned);
            inner.lock().unwrap().webhook = Some((url.to_owned(), secret));
            Json(json!({ "ok": true, "result": true, "description": "Webhook was set" }))
                .into_response()
        }
        "deletewebhook" => {
            inner.lock().unwrap().webhook = None;
            Json(json!({ "ok": true, "result": true, "description": "Webhook was deleted" }))
                .into_response()
        }
        _ => error(404, "Not Found: method not found", None),
    }
}

/// The fields of a multipart request, and its one file: field, file name, bytes.
async fn read_multipart(
    request: axum::extract::Request,
) -> Result<
    (
        HashMap<String, Value>,
        Option<(String, Option<String>, Vec<u8>)>,
    ),
    String,
> {
    use axum::extract::FromRequest;
    let mut form = axum::extract::Multipart::from_request(request, &())
        .await
        .map_err(|e| e.to_string())?;
    let mut fields = HashMap::new();
    let mut file = None;
    while let Some(field) = form.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or_default().to_owned();
        match field.file_name().map(str::to_owned) {
            Some(filename) => {
                let data = field.bytes().await.map_err(|e| e.to_string())?;
                file = Some((name, Some(filename), data.to_vec()));
            }
            None => {
                let text = field.text().await.map_err(|e| e.to_string())?;
                // teloxide attaches files as `attach://name` parts: the field names the part.
                fields.insert(name, json!(text));
            }
        }
    }
    // A file given as `attach://x` is sent under the part name `x`.
    if let Some((part, filename, data)) = file.take() {
        let field = fields
            .iter()
            .find(|(_, v)| v.as_str() == Some(&format!("attach://{part}")))
            .map(|(k, _)| k.clone())
            .unwrap_or(part);
        file = Some((field, filename, data));
    }
    Ok((fields, file))
}

/// The file download path: `/file/bot{token}/{file_path}`.
async fn download(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot != format!("bot{TOKEN}") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let id = path
        .trim_start_matches("documents/")
        .trim_end_matches(".bin");
    match inner.lock().unwrap().files.get(id) {
        Some(file) => file.data.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// While a webhook is set, POSTs each pending update to it in order, as Telegram does: an
/// update is dropped once answered 2xx, and sent again after a pause otherwise.
async fn push_to_webhook(inner: Arc<Mutex<Inner>>) {
    let client = reqwest::Client::new();
    loop {
        let next = {
            let inner = inner.lock().unwrap();
            inner
                .webhook
                .clone()
                .and_then(|hook| inner.pending.first().cloned().map(|u| (hook, u)))
        };
        let Some(((url, secret), update)) = next else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut request = client.post(&url).json(&update);
        if let Some(secret) = &secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        let status = match request.send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        let delivered = {
            let mut guard = inner.lock().unwrap();
            guard.webhook_answers.push(status);
            let delivered = (200..300).contains(&status);
            if delivered {
                let id = update["update_id"].clone();
                guard.pending.retain(|u| u["update_id"] != id);
            }
            delivered
        };
        if !delivered {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
