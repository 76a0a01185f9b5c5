//! A generic JSON SMS gateway double: accepts `POST /send` only with a valid HMAC-SHA256
//! signature over the body, answers `{"id": ...}`; and a client that posts signed JSON to our
//! webhooks as such a gateway would.

use std::sync::{Arc, Mutex};

use axum::{
    body::Bytes, extract::State, http::HeaderMap, http::StatusCode, response::IntoResponse,
    routing::post, Json, Router,
};
use casebridge_bridges::sms::generic::sign;
use serde_json::{json, Value};

/// The shared signing secret.
pub const SECRET: &str = "generic-gateway-signing-secret";

/// A running double.
#[derive(Clone)]
pub struct GatewayDouble {
    /// The `send_url`.
    pub send_url: String,
    sent: Arc<Mutex<Vec<Value>>>,
}

impl GatewayDouble {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let send_url = format!("http://{}/send", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/send", post(send))
            .with_state(sent.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { send_url, sent }
    }

    /// Every accepted request body.
    pub fn sent(&self) -> Vec<Value> {
        self.sent.lock().unwrap().clone()
    }

    /// Posts `body` to `url`, signed with `secret` (`None`: unsigned).
    pub async fn post(url: &str, body: &Value, secret: Option<&str>) -> u16 {
        let bytes = serde_json::to_vec(body).unwrap();
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json");
        if let Some(secret) = secret {
            request = request.header("X-Signature", format!("sha256={}", sign(secret, &bytes)));
        }
        request.body(bytes).send().await.unwrap().status().as_u16()
    }
}

async fn send(
    State(sent): State<Arc<Mutex<Vec<Value>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let signed = headers.get("x-signature").and_then(|v| v.to_str().ok())
        == Some(sign(SECRET, &body).as_str());
    let token =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer gateway-token");
    if !signed || !token {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "bad signature or token"})),
        );
    }
    let value: Value = serde_json::from_slice(&body).unwrap();
    let mut sent = sent.lock().unwrap();
    sent.push(value);
    (
        StatusCode::OK,
        Json(json!({"id": format!("g-{}", sent.len())})),
    )
}
