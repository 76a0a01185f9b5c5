//! An OAuth 2.0 authorization server double, shaped as Microsoft's identity platform: the token
//! endpoint `POST /{tenant}/oauth2/v2.0/token` (RFC 6749: the client credentials grant of 4.4
//! and the refresh token grant of section 6, client authentication in the body, answers as in
//! 5.1 and errors as in 5.2), and a token introspection endpoint `POST /introspect` (RFC 7662)
//! that the test's Dovecot asks whether a token is active and for whom, so that IMAP and SMTP
//! logins with its tokens are checked by the real servers.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Form, Json, Router,
};
use serde_json::json;

/// The tenant the double serves.
pub const TENANT: &str = "socialtjanst.onmicrosoft.com";
/// The application registered with it.
pub const CLIENT_ID: &str = "7d3e6c1a-0000-4000-8000-casebridge01";
/// Its secret.
pub const CLIENT_SECRET: &str = "app-secret-from-the-portal";
/// A refresh token from the mailbox owner's consent.
pub const REFRESH_TOKEN: &str = "refresh-token-of-the-office-mailbox";
/// Microsoft 365's app-only scope, which the client credentials grant must ask for.
pub const APP_SCOPE: &str = "https://outlook.office365.com/.default";

#[derive(Default)]
struct Inner {
    /// Active access tokens and the mailbox each opens.
    tokens: HashMap<String, String>,
    /// Token requests answered, by grant.
    issued: Vec<String>,
    /// Refresh tokens that work.
    refresh: Vec<String>,
    next: u32,
    /// The lifetime the answers give their tokens, in seconds.
    expires_in: u64,
}

/// A running double.
#[derive(Clone)]
pub struct OauthDouble {
    /// Base URL.
    pub url: String,
    /// The mailbox its tokens open.
    mailbox: String,
    inner: Arc<Mutex<Inner>>,
}

impl OauthDouble {
    /// Starts the double on a free port; its tokens open `mailbox`.
    pub async fn start(mailbox: &str) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            refresh: vec![REFRESH_TOKEN.to_owned()],
            expires_in: 3599,
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let double = Self {
            url,
            mailbox: mailbox.to_owned(),
            inner,
        };
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/introspect", post(introspect))
            .with_state(double.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        double
    }

    /// The token endpoint of the tenant.
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.url)
    }

    /// The introspection endpoint (for Dovecot).
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.url)
    }

    /// The grants of the tokens it issued, in order.
    pub fn issued(&self) -> Vec<String> {
        self.inner.lock().unwrap().issued.clone()
    }

    /// Gives the next tokens a lifetime of `seconds` (Microsoft's are 60 to 90 minutes).
    pub fn set_expires_in(&self, seconds: u64) {
        self.inner.lock().unwrap().expires_in = seconds;
    }

    /// Revokes every access token issued so far: the servers refuse them from now on.
    pub fn revoke_access_tokens(&self) {
        self.inner.lock().unwrap().tokens.clear();
    }
}

fn error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn token(
    State(double): State<OauthDouble>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if tenant != TENANT {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS90002: Tenant not found.",
        );
    }
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    let mut inner = double.inner.lock().unwrap();
    let grant = field("grant_type").unwrap_or_default().to_owned();
    let refresh = match grant.as_str() {
        "client_credentials" => {
            if field("scope") != Some(APP_SCOPE) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "AADSTS1002012: The provided value for scope is not valid.",
                );
            }
            None
        }
        "refresh_token" => {
            let Some(given) = field("refresh_token") else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "no refresh_token",
                );
            };
            if !inner.refresh.iter().any(|r| r == given) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "AADSTS70008: The refresh token has expired or is invalid.",
                );
            }
            // A new refresh token with each answer, as Microsoft's identity platform does.
            inner.next += 1;
            let next = format!("refresh-{}", inner.next);
            inner.refresh.push(next.clone());
            Some(next)
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            )
        }
    };
    inner.next += 1;
    let access = format!("access-{}-{}", inner.next, grant);
    inner.tokens.insert(access.clone(), double.mailbox.clone());
    inner.issued.push(grant);
    let mut answer = json!({
        "token_type": "Bearer",
        "expires_in": inner.expires_in,
        "access_token": access,
    });
    if let Some(refresh) = refresh {
        answer["refresh_token"] = json!(refresh);
    }
    Json(answer).into_response()
}

async fn introspect(
    State(double): State<OauthDouble>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let inner = double.inner.lock().unwrap();
    match form.get("token").and_then(|t| inner.tokens.get(t)) {
        Some(mailbox) => Json(json!({ "active": true, "username": mailbox })).into_response(),
        None => Json(json!({ "active": false })).into_response(),
    }
}
