//! A 46elks API double: `POST /a1/sms` as documented (Basic auth with the API credentials, a
//! form with `from`, `to`, `message` and optional `whendelivered`, a JSON answer with the SMS
//! `id`), `GET /a1/me` (the account: `id`, `displayname`, `currency`, `balance` in
//! ten-thousandths of the currency), and a client that calls our webhooks the way 46elks does (forms, the secret in the URL).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Form, Json, Router,
};
use base64::Engine as _;
use serde_json::json;

/// The API credentials the double accepts.
pub const API_USERNAME: &str = "u0123456789abcdef";
/// See [`API_USERNAME`].
pub const API_PASSWORD: &str = "elks-api-password";

struct Inner {
    sent: Vec<HashMap<String, String>>,
    /// The account's balance, in ten-thousandths of a krona.
    balance: i64,
    down_until: Option<Instant>,
    answer_after: Duration,
}

/// A running double.
#[derive(Clone)]
pub struct ElksDouble {
    /// Base URL (`api_url` in the bridge config).
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl ElksDouble {
    /// Starts the double on a free port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            sent: Vec::new(),
            balance: 9_670_500,
            down_until: None,
            answer_after: Duration::ZERO,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/a1/sms", post(send_sms))
            .route("/a1/me", get(account))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// Every SMS the double accepted, as the forms it received.
    pub fn sent(&self) -> Vec<HashMap<String, String>> {
        self.inner.lock().unwrap().sent.clone()
    }

    /// Takes each SMS at once (it counts in [`ElksDouble::sent`]) but answers `delay` later: a
    /// slow provider, where a sender that stops in the wait has handed off an SMS without
    /// knowing it.
    pub fn answer_after(&self, delay: Duration) {
        self.inner.lock().unwrap().answer_after = delay;
    }

    /// Sets the account's balance (ten-thousandths of a krona): at 0, 46elks sends nothing.
    pub fn set_balance(&self, balance: i64) {
        self.inner.lock().unwrap().balance = balance;
    }

    /// Answers 503 to every request for `duration`.
    pub fn go_down_for(&self, duration: Duration) {
        self.inner.lock().unwrap().down_until = Some(Instant::now() + duration);
    }

    /// Posts an incoming SMS to `webhook` as 46elks does; returns the status.
    pub async fn incoming(webhook: &str, id: &str, from: &str, to: &str, message: &str) -> u16 {
        let form = [
            ("direction", "incoming"),
            ("id", id),
            ("from", from),
            ("to", to),
            ("created", "2026-11-23T21:57:23.741000"),
            ("message", message),
        ];
        reqwest::Client::new()
            .post(webhook)
            .form(&form)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Posts a delivery report to the `whendelivered` URL of an SMS.
    pub async fn report(whendelivered: &str, id: &str, status: &str) -> u16 {
        let mut form = vec![("id", id), ("status", status)];
        if status == "delivered" {
            form.push(("delivered", "2026-11-23T22:01:00.000000"));
        }
        reqwest::Client::new()
            .post(whendelivered)
            .form(&form)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, body.to_owned()).into_response()
}

/// Whether `headers` carry the API credentials as Basic auth.
fn authorized(headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{API_USERNAME}:{API_PASSWORD}"))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

async fn account(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return text(StatusCode::UNAUTHORIZED, "Authorization failed");
    }
    Json(json!({
        "id": API_USERNAME,
        "displayname": "Socialtjänsten",
        "mobilenumber": "+46700000000",
        "email": "it@kommun.example",
        "currency": "SEK",
        "balance": inner.lock().unwrap().balance,
    }))
    .into_response()
}

async fn send_sms(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if inner
        .lock()
        .unwrap()
        .down_until
        .is_some_and(|t| Instant::now() < t)
    {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
    }
    if !authorized(&headers) {
        return text(StatusCode::UNAUTHORIZED, "Authorization failed");
    }
    for key in ["from", "to", "message"] {
        if !form.contains_key(key) {
            return text(StatusCode::FORBIDDEN, &format!("Missing key {key}"));
        }
    }
    // "Either a text sender ID or a phone number in E.164 format" (46elks' send-sms docs);
    // the refusal's wording is ours, the status is the one 46elks gives invalid parameters.
    let from = &form["from"];
    let e164 =
        |n: &str| n.starts_with('+') && n.len() > 8 && n[1..].bytes().all(|b| b.is_ascii_digit());
    let text_id = (1..=11).contains(&from.len())
        && from.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && from.bytes().any(|b| b.is_ascii_alphabetic());
    if !(e164(from) || text_id) {
        return text(StatusCode::FORBIDDEN, "Invalid from");
    }
    let to = &form["to"];
    if !e164(to) {
        return text(StatusCode::FORBIDDEN, "Invalid to number");
    }
    let (id, delay) = {
        let mut inner = inner.lock().unwrap();
        let id = format!("s{:032x}", inner.sent.len() as u128 + 0x3633fa8e);
        inner.sent.push(form.clone());
        (id, inner.answer_after)
    };
    tokio::time::sleep(delay).await;
    Json(json!({
        "status": "created", "direction": "outgoing", "from": form["from"], "to": to,
        "message": form["message"], "created": "2026-11-23T21:58:00.000000", "parts": 1,
        "cost": 3500, "estimated_cost": 3500, "id": id,
    }))
    .into_response()
}
