//! The gateway's HTTP server: the application service API the homeserver calls
//! (`/_matrix/app/v1/...`), `GET /health` and `GET /metrics`.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{header::AUTHORIZATION, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post, put},
    Json, Router,
};
use ruma::{events::AnyTimelineEvent, serde::Raw};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tracing::{error, warn};

use crate::{relay::Core, store::target};

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

#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// Checks the homeserver's token (header, or the legacy query parameter) in constant time;
/// the refusal to answer when it is missing or wrong.
fn refusal(core: &Core, headers: &HeaderMap, query: &TokenQuery) -> Option<Response> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or(query.access_token.as_deref());
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

#[derive(Deserialize)]
struct TransactionBody {
    events: Vec<Raw<AnyTimelineEvent>>,
}

async fn put_transaction(
    State(core): State<Arc<Core>>,
    Path(txn_id): Path<String>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = refusal(&core, &headers, &query) {
        return refused;
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return matrix_error(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                format!("body is not JSON: {e}"),
            )
        }
    };
    let parsed: TransactionBody = match serde_json::from_value(value) {
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
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&core, &headers, &query) {
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
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&core, &headers, &query) {
        return refused;
    }
    // Case rooms are created with their alias; an unknown alias is no room of ours.
    matrix_error(
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
        "no such room alias in this appservice",
    )
}

async fn ping(
    State(core): State<Arc<Core>>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refusal(&core, &headers, &query) {
        return refused;
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
    let body = match axum::body::to_bytes(body, WEBHOOK_BODY_LIMIT).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body over the webhook limit\n",
            )
                .into_response()
        }
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
    match core.store.connection().ping().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "store": e.to_string() })),
        )
            .into_response(),
    }
}

async fn metrics(State(core): State<Arc<Core>>) -> Response {
    for t in [target::MATRIX, target::BRIDGE] {
        if let Ok(depth) = core.store.queue_depth(t).await {
            core.metrics
                .queue_depth
                .with_label_values(&[t])
                .set(depth as i64);
        }
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        core.metrics.render(),
    )
        .into_response()
}
