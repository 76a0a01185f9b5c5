//! The gateway's HTTP server: the application service API the homeserver calls
//! (`/_matrix/app/v1/...`), `GET /health` and `GET /metrics`.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Path, RawQuery, State},
    http::{
        header::{AUTHORIZATION, CONTENT_TYPE},
        HeaderMap, StatusCode,
    },
    response::{IntoResponse, Response},
    routing::{any, get, post, put},
    Json, Router,
};
use ruma::{events::AnyTimelineEvent, serde::Raw};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tracing::{error, warn};

use crate::{relay::Core, server::read_body, store::Target};

/// The routes, ready to serve.
pub fn router(core: Arc<Core>) -> Router {
    let appservice = Router::new()
        .route(
            "/_matrix/app/v1/transactions/{txn_id}",
            put(put_transaction),
        )
        .route("/_matrix/app/v1/users/{user_id}", get(get_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(get_room_alias))
        .route("/_matrix/app/v1/ping", post(ping))
        .fallback(unknown_endpoint);
    Router::new()
        .route("/webhook/{instance}", any(webhook))
        .route("/webhook/{instance}/{*rest}", any(webhook))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(appservice)
        .with_state(core)
}

fn matrix_error(status: StatusCode, errcode: &str, error: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "errcode": errcode, "error": error.into() })),
    )
        .into_response()
}

/// Checks the homeserver's token (header, or the legacy query parameter) in constant time;
/// the refusal to answer when it is missing, wrong or ambiguous.
///
/// A token given twice (two `Authorization` headers, two `access_token` parameters, or a
/// header and a parameter that differ) is refused rather than one of them picked: a proxy or
/// a log in front of the gateway may have read the other one.
fn refusal(core: &Core, headers: &HeaderMap, query: Option<&str>) -> Option<Response> {
    let ambiguous = |what: &str| {
        warn!("appservice request with {what} refused");
        Some(matrix_error(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            format!("ambiguous authentication: {what}"),
        ))
    };
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    let header = authorization.next();
    if authorization.next().is_some() {
        return ambiguous("two Authorization headers");
    }
    let header = match header {
        None => None,
        Some(value) => match value.to_str().ok().and_then(bearer_token) {
            Some(token) => Some(token),
            None => {
                return Some(matrix_error(
                    StatusCode::UNAUTHORIZED,
                    "M_MISSING_TOKEN",
                    "the Authorization header is not a Bearer token",
                ))
            }
        },
    };
    let mut tokens = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == "access_token")
        .map(|(_, value)| value);
    let parameter = tokens.next();
    if tokens.next().is_some() {
        return ambiguous("access_token given more than once");
    }
    let presented = match (header, parameter.as_deref()) {
        (Some(header), Some(parameter)) if header != parameter => {
            return ambiguous("an Authorization header and an access_token that differ")
        }
        (header, parameter) => header.or(parameter),
    };
    let Some(presented) = presented else {
        return Some(matrix_error(
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
            "missing hs_token",
        ));
    };
    let expected = core.secrets.hs_token.expose().as_bytes();
    if bool::from(presented.as_bytes().ct_eq(expected)) {
        None
    } else {
        warn!("appservice request with a wrong hs_token refused");
        Some(matrix_error(
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "wrong hs_token",
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The body of an appservice request as JSON, or the refusal to send: a body not sent as
/// `application/json` (see [`not_json_type`]), one over `limit` or too slow, or not JSON.
async fn json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<serde_json::Value, Response> {
    if let Some(refused) = not_json_type(headers) {
        return Err(refused);
    }
    let body = read_body(body, limit).await?;
    serde_json::from_slice(&body).map_err(|e| {
        matrix_error(
            StatusCode::BAD_REQUEST,
            "M_NOT_JSON",
            format!("body is not JSON: {e}"),
        )
    })
}

/// The refusal of a body that does not say it is JSON. The specification has the homeserver
/// send `application/json`; a body sent as a form or as text is not what it sends, and parsing
/// it as JSON anyway would take what a careless proxy or a forged request sends.
fn not_json_type(headers: &HeaderMap) -> Option<Response> {
    let is_json = headers.get(CONTENT_TYPE).is_some_and(|value| {
        value.to_str().is_ok_and(|value| {
            // `application/json`, with parameters (`; charset=utf-8`) or not.
            let essence = value.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
        })
    }) && headers.get_all(CONTENT_TYPE).iter().count() == 1;
    (!is_json).then(|| {
        matrix_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "M_NOT_JSON",
            "the body must be sent as Content-Type: application/json",
        )
    })
}

/// The longest transaction id taken, in bytes.
pub const TXN_ID_MAX_LEN: usize = 255;

/// Whether `txn_id` is a transaction id the gateway takes: 1 to [`TXN_ID_MAX_LEN`] bytes of
/// the URI's unreserved characters (`A-Z a-z 0-9 - . _ ~`), and not `.` or `..`.
///
/// The specification leaves transaction ids opaque; homeservers send short ASCII ones (Synapse
/// a counter). The id is stored, compared and logged, so the gateway takes no byte that could
/// end a line, a string or a path there: `%00`, `..%2F..` or ten thousand characters are not
/// a homeserver's.
pub fn valid_txn_id(txn_id: &str) -> bool {
    (1..=TXN_ID_MAX_LEN).contains(&txn_id.len())
        && txn_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        && txn_id != "."
        && txn_id != ".."
}

#[derive(Deserialize)]
struct TransactionBody {
    events: Vec<Raw<AnyTimelineEvent>>,
}

/// The largest transaction body the gateway reads. Synapse sends at most 100 events (each at
/// most 64 KiB) and 100 ephemeral events in one transaction; 16 MiB leaves room for both. The
/// body is only read once the token is checked, so only the homeserver can send one this big.
const TRANSACTION_BODY_LIMIT: usize = 16 << 20;

/// The largest ping body the gateway reads (`{"transaction_id": "..."}`).
const PING_BODY_LIMIT: usize = 64 << 10;

async fn put_transaction(
    State(core): State<Arc<Core>>,
    Path(txn_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = refusal(&core, &headers, query.as_deref()) {
        return refused;
    }
    if !valid_txn_id(&txn_id) {
        return matrix_error(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            format!(
                "a transaction id is 1 to {TXN_ID_MAX_LEN} of the characters A-Z a-z 0-9 - . _ ~"
            ),
        );
    }
    let value = match json_body(&headers, body, TRANSACTION_BODY_LIMIT).await {
        Ok(value) => value,
        Err(refused) => return refused,
    };
    // Only an object: serde would also take `[[...]]` for the struct.
    let parsed: Result<TransactionBody, _> = match value {
        serde_json::Value::Object(_) => serde_json::from_value(value),
        _ => Err(serde::de::Error::custom("the body is not an object")),
    };
    let parsed = match parsed {
        Ok(t) => t,
        Err(e) => {
            return matrix_error(
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                format!("not a transaction (expected {{\"events\": [...]}}): {e}"),
            )
        }
    };
    match core.handle_transaction(&txn_id, &parsed.events).await {
        Ok(()) => Json(json!({})).into_response(),
        Err(e) => {
            // The homeserver retries the transaction: nothing is lost.
            error!(txn_id, error = %e, "could not record a transaction");
            core.metrics.errors.with_label_values(&["store"]).inc();
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "records store unavailable",
            )
        }
    }
}

async fn get_user(
    State(core): State<Arc<Core>>,
    Path(user_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&core, &headers, query.as_deref()) {
        return refused;
    }
    // Ghosts are created when a client first writes; the bot at start. Nobody else is ours.
    let ours = ruma::UserId::parse(&user_id)
        .map(|u| u.localpart() == core.config.appservice.bot_localpart)
        .unwrap_or(false);
    if ours {
        Json(json!({})).into_response()
    } else {
        matrix_error(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "no such user in this appservice",
        )
    }
}

async fn get_room_alias(
    State(core): State<Arc<Core>>,
    Path(_alias): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&core, &headers, query.as_deref()) {
        return refused;
    }
    // Case rooms are created with their alias; an unknown alias is no room of ours.
    matrix_error(
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
        "no such room alias in this appservice",
    )
}

/// `POST /_matrix/app/v1/ping`: answers the homeserver's check that the gateway is reachable.
async fn ping(
    State(core): State<Arc<Core>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = refusal(&core, &headers, query.as_deref()) {
        return refused;
    }
    let value = match json_body(&headers, body, PING_BODY_LIMIT).await {
        Ok(value) => value,
        Err(refused) => return refused,
    };
    // A JSON object whose `transaction_id`, if there is one, is a string; other fields are
    // let through, for later versions of the specification.
    let is_ping = value
        .as_object()
        .is_some_and(|o| o.get("transaction_id").is_none_or(|id| id.is_string()));
    if !is_ping {
        return matrix_error(
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            "not a ping (expected an object, with an optional string \"transaction_id\")",
        );
    }
    Json(json!({})).into_response()
}

/// Hands a provider's request to the bridge instance it names, if that bridge takes webhooks.
async fn webhook(
    State(core): State<Arc<Core>>,
    Path(params): Path<Vec<(String, String)>>,
    request: axum::extract::Request,
) -> Response {
    let instance = params.first().map(|(_, v)| v.as_str()).unwrap_or_default();
    let Some(hook) = core.bridges.get(instance).and_then(|b| b.bridge.webhook()) else {
        return (StatusCode::NOT_FOUND, "no webhook here\n").into_response();
    };
    let (parts, body) = request.into_parts();
    let body = match read_body(body, WEBHOOK_BODY_LIMIT).await {
        Ok(b) => b.to_vec(),
        Err(refused) => return refused,
    };
    let response = hook.handle(http::Request::from_parts(parts, body)).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The largest webhook body the gateway reads (providers post small forms and JSON).
const WEBHOOK_BODY_LIMIT: usize = 1 << 20;

async fn unknown_endpoint() -> Response {
    matrix_error(
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
        "unrecognized endpoint",
    )
}

async fn health(State(core): State<Arc<Core>>) -> Response {
    use crate::preflight::HomeserverCheck;
    // The homeserver link does not decide the answer's status: a gateway whose homeserver is
    // away still takes and records every message, which a load balancer must keep sending.
    let link = core.homeserver_link.lock().expect("not poisoned").clone();
    let (degraded, homeserver) = match &link {
        None => (false, json!({ "link": "not checked" })),
        Some(HomeserverCheck::Linked { round_trip }) => (
            false,
            json!({ "link": "ok", "round_trip_ms": round_trip.as_millis() as u64 }),
        ),
        Some(HomeserverCheck::Unchecked(why)) => {
            (false, json!({ "link": "unchecked", "detail": why }))
        }
        Some(HomeserverCheck::Broken(what)) => (true, json!({ "link": "broken", "detail": what })),
    };
    // A bridge that is down (not started, or its credentials refused) degrades too: the
    // others still take their channels' messages.
    let mut bridges = serde_json::Map::new();
    let mut degraded = degraded;
    for (name, running) in &core.bridges {
        let health = running.health.lock().expect("not poisoned").clone();
        degraded |= !health.up();
        bridges.insert(name.clone(), health.to_json());
    }
    match core.store.connection().ping().await {
        Ok(()) => Json(json!({
            "status": if degraded { "degraded" } else { "ok" },
            "homeserver": homeserver,
            "bridges": bridges,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "store": e.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics(State(core): State<Arc<Core>>) -> Response {
    for t in [Target::Matrix, Target::Bridge] {
        if let Ok(depth) = core.store.queue_depth(t).await {
            core.metrics
                .queue_depth
                .with_label_values(&[t.as_str()])
                .set(depth as i64);
        }
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        core.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, valid_txn_id, TXN_ID_MAX_LEN};

    #[test]
    fn transaction_ids_are_short_and_plain() {
        for id in [
            "1",
            "1234",
            "m1700000000.1",
            "a-b_c.d~e",
            &"x".repeat(TXN_ID_MAX_LEN),
        ] {
            assert!(valid_txn_id(id), "{id}");
        }
        for id in [
            "",
            ".",
            "..",
            "../..",
            "a/b",
            "a\0b",
            "a b",
            "å",
            "a\nb",
            &"x".repeat(TXN_ID_MAX_LEN + 1),
        ] {
            assert!(!valid_txn_id(id), "{id:?}");
        }
    }

    #[test]
    fn only_bearer_tokens_are_read() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
