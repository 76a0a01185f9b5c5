//! A Twilio Messages API double: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with
//! Basic auth (account SID, auth token), `GET /2010-04-01/Accounts/{AccountSid}.json` (Fetch an
//! Account: the account's `sid`, `friendly_name` and `status`), the documented form fields and
//! error shapes
//! (`{"code", "message", "more_info", "status"}`), and a client that calls our webhooks as Twilio
//! does: forms signed with `X-Twilio-Signature` over the public URL.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Form, Json, Router,
};
use base64::Engine as _;
use hmac::{Hmac, Mac};
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
            // `{AccountSid}.json`: one path segment, read whole.
            .route("/2010-04-01/Accounts/{file}", get(fetch_account))
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
            request = request.header("X-Twilio-Signature", signature(token, url, params));
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// `X-Twilio-Signature` as Twilio computes it, written here independently of the bridge: the
/// URL, then for each parameter name in sorted order, the name followed by each of its values,
/// the distinct values in sorted order (Twilio's libraries: `twilio-node`
/// `getExpectedTwilioSignature`, `twilio-python` `compute_signature`); HMAC-SHA1 keyed with the
/// auth token, base64.
pub fn signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for &(name, value) in params {
        by_name.entry(name).or_default().insert(value);
    }
    let mut data = url.to_owned();
    for (name, values) in by_name {
        for value in values {
            data.push_str(name);
            data.push_str(value);
        }
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code, "message": message, "status": status.as_u16(),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
    });
    (status, Json(body)).into_response()
}

/// Whether `headers` carry the account's Basic credentials.
fn authorized(headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

async fn fetch_account(Path(file): Path<String>, headers: HeaderMap) -> Response {
    if file != format!("{ACCOUNT_SID}.json") || !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    Json(json!({
        "sid": ACCOUNT_SID,
        "friendly_name": "Socialtjänsten",
        "status": "active",
        "type": "Full",
        "date_created": "Mon, 02 Nov 2026 08:00:00 +0000",
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}.json"),
    }))
    .into_response()
}

async fn create_message(
    State(sent): State<Sent>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if sid != ACCOUNT_SID || !authorized(&headers) {
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

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signs_as_twilio_documents_and_as_the_bridge_checks() {
        // The example in Twilio's webhook-security documentation.
        let documented = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ];
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            signature("12345", url, &documented),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // Repeated parameters, in any order: every value counts, once, sorted.
        let repeated = [("To", "+1"), ("A", "y"), ("A", "x"), ("A", "y")];
        let reordered = [("A", "x"), ("To", "+1"), ("A", "y")];
        assert_eq!(
            signature("t", url, &repeated),
            signature("t", url, &reordered)
        );
        assert_ne!(
            signature("t", url, &repeated),
            signature("t", url, &[("A", "y"), ("To", "+1")])
        );
        assert_eq!(
            signature("t", url, &repeated),
            casebridge_bridges::sms::twilio::signature("t", url, &repeated)
        );
    }
}
