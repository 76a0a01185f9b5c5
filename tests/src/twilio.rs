//! A Twilio Messages API double: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with
//! Basic auth (account SID, auth token), the documented form fields and error shapes
//! (`{"code", "message", "more_info", "status"}`), and a client that calls our webhooks as Twilio
//! does: forms signed with `X-Twilio-Signature` over the public URL.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Form, Json, Router,
};
use base64::Engine as _;
use casebridge_bridges::sms::twilio::signature;
use serde_json::json;

/// The forms the double accepted.
type Sent = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// The account the double serves.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// Its auth token.
pub const AUTH_TOKEN: &str = "twilio-auth-token-0123456789";

/// A running double.
#[derive(Clone)]
pub struct TwilioDouble {
    /// Base URL (`api_url` in the bridge config).
    pub url: String,
    sent: Sent,
}

impl TwilioDouble {
    /// Starts the double on a free port.
    pub async fn start() -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{sid}/Messages.json",
                post(create_message),
            )
            .with_state(sent.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, sent }
    }

    /// Every message the double accepted, as the forms it received.
    pub fn sent(&self) -> Vec<HashMap<String, String>> {
        self.sent.lock().unwrap().clone()
    }

    /// Posts `params` to `url` signed as Twilio signs with `token` (`None`: unsigned).
    pub async fn post_signed(
        url: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
    ) -> (u16, String) {
        let mut request = reqwest::Client::new().post(url).form(params);
        if let Some(token) = token {
            let sorted: BTreeMap<String, String> = params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            request = request.header("X-Twilio-Signature", signature(token, url, &sorted));
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code, "message": message, "status": status.as_u16(),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
    });
    (status, Json(body)).into_response()
}

async fn create_message(
    State(sent): State<Sent>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    if sid != ACCOUNT_SID
        || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
    {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let Some(to) = form.get("To") else {
        return error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    if !form.contains_key("From") {
        return error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' phone number is required.",
        );
    }
    if !form.contains_key("Body") {
        return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    }
    if !(to.starts_with('+') && to[1..].bytes().all(|b| b.is_ascii_digit())) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    let mut sent = sent.lock().unwrap();
    let message_sid = format!("SM{:032x}", sent.len() as u128 + 1);
    sent.push(form.clone());
    let body = json!({
        "sid": message_sid, "account_sid": ACCOUNT_SID, "status": "queued", "to": to,
        "from": form["From"], "body": form["Body"], "num_segments": "1", "direction": "outbound-api",
        "api_version": "2010-04-01", "error_code": null, "error_message": null,
    });
    (StatusCode::CREATED, Json(body)).into_response()
}
