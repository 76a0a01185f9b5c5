//! An OAuth 2.0 authorization server double, shaped as Microsoft's identity platform: the token
//! endpoint `POST /{tenant}/oauth2/v2.0/token` (RFC 6749: the client credentials grant of 4.4
//! and the refresh token grant of section 6, client authentication in the body, answers as in
//! 5.1 and errors as in 5.2), and a token introspection endpoint `POST /introspect` (RFC 7662)
//! that the test's Dovecot asks whether a token is active and for whom, so that IMAP and SMTP
//! logins with its tokens are checked by the real servers.
//!
//! And shaped as Google's `POST /token` for service accounts ("Using OAuth 2.0 for Server to
//! Server Applications"; RFC 7523): `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//! and an `assertion`, a JWT signed RS256 with the account's key (`kid` its key id), claims
//! `iss` the account, `sub` the user it acts for (domain-wide delegation), `scope`, `aud` the
//! token endpoint, `iat` and `exp` at most an hour apart. Its errors are Google's: a bad
//! signature or claims `invalid_grant` (400), an unknown user `invalid_grant` "Invalid email or
//! User ID", no delegation for the scope `unauthorized_client` (401).

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
/// The Google service account the double knows.
pub const SERVICE_ACCOUNT: &str = "casebridge@socialtjanst-mail.iam.gserviceaccount.com";
/// The id of its key.
pub const SERVICE_ACCOUNT_KEY_ID: &str = "3f6b2a9c41d7e8f05a1b2c3d4e5f60718293a4b5";
/// Google's scope for IMAP and SMTP, which the account's delegation allows.
pub const GOOGLE_MAIL_SCOPE: &str = "https://mail.google.com/";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The tests' key pair (`tests/fixtures/README.md`).
const PRIVATE_KEY: &str = include_str!("../fixtures/google-service-account.key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/google-service-account.pub.pem");

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
    /// Whether the Workspace's admin allowed the service account to act for its users.
    no_delegation: bool,
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
            .route("/token", post(google_token))
            .with_state(double.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        double
    }

    /// The token endpoint of the tenant.
    pub fn token_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.url)
    }

    /// Google's token endpoint.
    pub fn google_token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// Writes the service account's key file, as the Google Cloud console gives it, into
    /// `dir` (its `token_uri` is this double's).
    pub fn service_account_key_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let file = json!({
            "type": "service_account",
            "project_id": "socialtjanst-mail",
            "private_key_id": SERVICE_ACCOUNT_KEY_ID,
            "private_key": PRIVATE_KEY,
            "client_email": SERVICE_ACCOUNT,
            "client_id": "104857600000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.google_token_url(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        });
        let path = dir.join("service-account.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
        path
    }

    /// Takes back the service account's domain-wide delegation (or gives it again).
    pub fn set_delegation(&self, allowed: bool) {
        self.inner.lock().unwrap().no_delegation = !allowed;
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

    /// Refuses `token` from now on, as a refresh token that expired (Microsoft's live 90 days).
    pub fn revoke_refresh_token(&self, token: &str) {
        self.inner.lock().unwrap().refresh.retain(|r| r != token);
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

/// The claims of a service account's request.
#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    scope: String,
    iat: u64,
    exp: u64,
}

async fn google_token(
    State(double): State<OauthDouble>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some(JWT_BEARER) {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: ",
        );
    }
    let Some(assertion) = field("assertion") else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let bad_signature = || {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT Signature.",
        )
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return bad_signature();
    };
    if header.alg != jsonwebtoken::Algorithm::RS256
        || header.kid.as_deref() != Some(SERVICE_ACCOUNT_KEY_ID)
    {
        return bad_signature();
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[double.google_token_url()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    validation.set_issuer(&[SERVICE_ACCOUNT]);
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => bad_signature(),
                _ => error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                     reasonable timeframe. Check your iat and exp values in the JWT claim.",
                ),
            }
        }
    };
    if claims.exp.saturating_sub(claims.iat) > 3600 || claims.iss != SERVICE_ACCOUNT {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let mut inner = double.inner.lock().unwrap();
    if inner.no_delegation || claims.scope != GOOGLE_MAIL_SCOPE {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client \
             not authorized for any of the scopes requested.",
        );
    }
    if claims.sub.as_deref() != Some(double.mailbox.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid email or User ID",
        );
    }
    inner.next += 1;
    let access = format!("ya29.access-{}", inner.next);
    inner.tokens.insert(access.clone(), double.mailbox.clone());
    inner.issued.push(JWT_BEARER.to_owned());
    Json(json!({
        "access_token": access,
        "expires_in": inner.expires_in,
        "token_type": "Bearer",
    }))
    .into_response()
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
