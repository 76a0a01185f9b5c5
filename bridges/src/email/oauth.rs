//! OAuth 2.0 for the office's mailbox: Microsoft 365 and Google Workspace switch off IMAP and
//! SMTP passwords, and take an access token instead (SASL `XOAUTH2`). The bridge gets the token
//! from the provider's token endpoint (RFC 6749) with the client credentials grant (Microsoft
//! 365's app-only access, the usual choice for a shared mailbox), a refresh token (Google, or
//! Microsoft 365 with a user's consent), or a Google service account's signed request (RFC
//! 7523; the account acts for the mailbox through the Workspace's domain-wide delegation),
//! keeps it until a minute before it expires, and logs in to IMAP and SMTP with it.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use casebridge_config::{resolve_secret, ConfigError, Secret};
use oauth2::{
    basic::{BasicClient, BasicErrorResponseType},
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::InboundSink;

/// Who issues the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Issuer {
    /// Microsoft 365 (Entra ID): `tenant` names the organisation.
    Microsoft,
    /// Google Workspace or Gmail.
    Google,
    /// Any other OAuth 2.0 server: `token_url` and `scope` are given.
    Custom,
}

/// `[bridges.KEY.oauth2]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OauthOptions {
    provider: Issuer,
    /// Microsoft 365: the tenant (`contoso.onmicrosoft.com` or its id).
    tenant: Option<String>,
    /// The token endpoint; set by `provider` unless `custom`.
    token_url: Option<String>,
    /// The application's (client's) id; not with a service account.
    client_id: Option<String>,
    client_secret: Option<Secret>,
    client_secret_file: Option<PathBuf>,
    /// A refresh token from a user's consent; without one the client credentials grant is
    /// used (Microsoft 365 app-only access).
    refresh_token: Option<Secret>,
    refresh_token_file: Option<PathBuf>,
    /// Google: the service account's key file (JSON, as the Google Cloud console gives it).
    /// The account acts for the mailbox (`imap.username`) by domain-wide delegation.
    service_account_file: Option<PathBuf>,
    /// What the token is for; set by `provider` and grant unless given.
    scope: Option<String>,
}

/// Microsoft 365's app-only scope: what the app was granted on Exchange Online.
const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";
/// Microsoft 365's delegated scopes for IMAP and SMTP.
const MICROSOFT_USER_SCOPE: &str = "https://outlook.office365.com/IMAP.AccessAsUser.All \
                                    https://outlook.office365.com/SMTP.Send offline_access";
/// Google's scope for IMAP and SMTP.
const GOOGLE_SCOPE: &str = "https://mail.google.com/";

type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The bridge state key of the newest refresh token.
const KEPT_REFRESH: &str = "oauth2.refresh_token";

/// What is kept under [`KEPT_REFRESH`].
#[derive(Deserialize)]
struct KeptRefresh {
    /// The digest of the configured refresh token it descends from.
    configured: String,
    token: String,
}

/// RFC 7523's grant: a signed JWT as the authorization grant.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How tokens are asked for.
enum Grant {
    /// Client id and secret: the client credentials grant, or a refresh token when one is set.
    Client {
        // Boxed: the client is ten times the service account's size.
        client: Box<Client>,
        /// The refresh token in use: the provider may hand out a new one with each token.
        refresh: Mutex<Option<Secret>>,
        /// The digest of the configured refresh token: a kept one replaces it only while the
        /// configuration still names the token it came from.
        configured: Option<String>,
    },
    /// A Google service account's request, signed with its key.
    ServiceAccount(ServiceAccount),
}

/// A Google service account acting for the mailbox.
struct ServiceAccount {
    /// `client_email`: who signs (the JWT's `iss`).
    email: String,
    /// `private_key_id`: which of its keys (the JWT's `kid`).
    key_id: String,
    key: jsonwebtoken::EncodingKey,
    token_url: String,
    /// The mailbox it acts for (the JWT's `sub`).
    mailbox: String,
}

/// The fields of a service account key file that the grant needs.
#[derive(Deserialize)]
struct ServiceAccountKey {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key_id: String,
    private_key: String,
    token_uri: Option<String>,
}

/// Gets and keeps the mailbox's access token.
pub(super) struct Tokens {
    grant: Grant,
    http: reqwest::Client,
    scopes: Vec<Scope>,
    /// The access token and when to stop using it.
    current: Mutex<Option<(Secret, Instant)>>,
    /// Where the provider's newest refresh token is kept between runs (the bridge's state in
    /// the records store), once the bridge has started.
    keeper: std::sync::OnceLock<InboundSink>,
    /// `bridges.KEY.oauth2`, for errors.
    key: String,
}

/// Why no token was got.
#[derive(Debug, thiserror::Error)]
pub(super) enum TokenError {
    /// The provider refused: the credentials, consent or grant are wrong (what to fix).
    #[error("{0}")]
    Refused(String),
    /// The provider could not be asked now.
    #[error("{0}")]
    Unreachable(String),
}

impl Tokens {
    /// Builds the token source of `[key]` (`bridges.NAME.oauth2`) for `mailbox` (the IMAP
    /// user).
    pub(super) fn new(
        key: &str,
        options: &OauthOptions,
        mailbox: &str,
    ) -> Result<Self, ConfigError> {
        let invalid = |field: &str, message: String| invalid_at(key, field, message);
        let refresh = match (&options.refresh_token, &options.refresh_token_file) {
            (None, None) => None,
            _ => Some(resolve_secret(
                &format!("{key}.refresh_token"),
                &options.refresh_token,
                &options.refresh_token_file,
            )?),
        };
        let http = reqwest::Client::builder()
            // RFC 6749 section 4.4's advice against following redirects with credentials.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| invalid("token_url", e.to_string()))?;
        let (grant, scope) = match &options.service_account_file {
            Some(path) => {
                let account = service_account(key, options, path, mailbox)?;
                let scope = options.scope.clone().unwrap_or_else(|| GOOGLE_SCOPE.into());
                (Grant::ServiceAccount(account), scope)
            }
            None => client_grant(key, options, refresh)?,
        };
        Ok(Self {
            grant,
            http,
            scopes: scope
                .split_whitespace()
                .map(|s| Scope::new(s.into()))
                .collect(),
            current: Mutex::new(None),
            keeper: std::sync::OnceLock::new(),
            key: key.to_owned(),
        })
    }

    /// Keeps the provider's newest refresh token in `sink`'s bridge state from now on, and
    /// takes up the one kept by an earlier run if it descends from the configured one.
    /// Microsoft hands out a new refresh token with each access token, and an old one expires
    /// after 90 days: without this, a gateway restarted months after the consent would offer
    /// the expired token from its configuration. A configuration that names another refresh
    /// token (a new consent) wins over what was kept.
    pub(super) async fn keep_in(&self, sink: &InboundSink) {
        let Grant::Client {
            refresh,
            configured: Some(configured),
            ..
        } = &self.grant
        else {
            return;
        };
        let _ = self.keeper.set(sink.clone());
        let kept = match sink.state(KEPT_REFRESH).await {
            Ok(kept) => kept,
            Err(e) => {
                warn!(key = %self.key, error = %e, "cannot read the refresh token kept by the last run; the configured one is used");
                return;
            }
        };
        let Some(kept) = kept else {
            return;
        };
        match serde_json::from_str::<KeptRefresh>(&kept) {
            Ok(kept) if kept.configured == *configured => {
                *refresh.lock().await = Some(Secret::new(kept.token));
                *self.current.lock().await = None;
            }
            Ok(_) => {
                info!(key = %self.key, "the configured refresh token is new: it replaces the one kept by the last run")
            }
            Err(e) => {
                warn!(key = %self.key, error = %e, "the kept refresh token is unreadable; the configured one is used")
            }
        }
    }

    /// Keeps `token`, the provider's newest refresh token (see [`Tokens::keep_in`]).
    async fn keep(&self, configured: &Option<String>, token: &str) {
        let (Some(sink), Some(configured)) = (self.keeper.get(), configured) else {
            return;
        };
        let kept = serde_json::json!({ "configured": configured, "token": token }).to_string();
        if let Err(e) = sink.set_state(KEPT_REFRESH, &kept).await {
            warn!(key = %self.key, error = %e, "cannot keep the provider's new refresh token: after a restart the configured one is offered");
        }
    }

    /// A token good for at least another minute: the one held, or a new one.
    pub(super) async fn access_token(&self) -> Result<Secret, TokenError> {
        let mut current = self.current.lock().await;
        if let Some((token, until)) = current.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let (token, expires_in) = match &self.grant {
            Grant::Client {
                client,
                refresh,
                configured,
            } => {
                let mut refresh = refresh.lock().await;
                let answer = match refresh.as_ref() {
                    Some(token) => {
                        client
                            .exchange_refresh_token(&RefreshToken::new(token.expose().to_owned()))
                            .add_scopes(self.scopes.clone())
                            .request_async(&self.http)
                            .await
                    }
                    None => {
                        client
                            .exchange_client_credentials()
                            .add_scopes(self.scopes.clone())
                            .request_async(&self.http)
                            .await
                    }
                };
                let answer = answer.map_err(|e| self.explain(e))?;
                if let Some(next) = answer.refresh_token() {
                    if refresh.as_ref().map(Secret::expose) != Some(next.secret().as_str()) {
                        self.keep(configured, next.secret()).await;
                    }
                    *refresh = Some(Secret::new(next.secret().clone()));
                }
                (
                    Secret::new(answer.access_token().secret().clone()),
                    answer.expires_in(),
                )
            }
            Grant::ServiceAccount(account) => self.service_account_token(account).await?,
        };
        // A token without a lifetime is used for 5 minutes; one is renewed a minute early.
        let lifetime = expires_in
            .unwrap_or(Duration::from_secs(300))
            .saturating_sub(Duration::from_secs(60));
        *current = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Asks Google's token endpoint with a request the service account signed (RFC 7523:
    /// `iss` the account, `sub` the mailbox, `aud` the endpoint, valid for an hour).
    async fn service_account_token(
        &self,
        account: &ServiceAccount,
    ) -> Result<(Secret, Option<Duration>), TokenError> {
        let key = &self.key;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let scope: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        let claims = serde_json::json!({
            "iss": account.email,
            "sub": account.mailbox,
            "scope": scope.join(" "),
            "aud": account.token_url,
            "iat": now,
            "exp": now + 3600,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(account.key_id.clone());
        let assertion = jsonwebtoken::encode(&header, &claims, &account.key).map_err(|e| {
            TokenError::Refused(format!(
                "{key}.service_account_file: cannot sign with its private key: {e}"
            ))
        })?;
        let response = self
            .http
            .post(&account.token_url)
            .form(&[
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| TokenError::Unreachable(format!("{key}: the token endpoint: {e}")))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.map_err(|e| {
            TokenError::Unreachable(format!(
                "{key}: the token endpoint answered {status} with something that is no token: {e}"
            ))
        })?;
        let text = |field: &str| answer.get(field).and_then(|v| v.as_str());
        if status.is_success() {
            let token = text("access_token").ok_or_else(|| {
                TokenError::Unreachable(format!(
                    "{key}: the token endpoint answered without an access_token"
                ))
            })?;
            let expires_in = answer
                .get("expires_in")
                .and_then(serde_json::Value::as_u64)
                .map(Duration::from_secs);
            return Ok((Secret::new(token.to_owned()), expires_in));
        }
        let error = text("error").unwrap_or("no error code");
        let detail = text("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(TokenError::Unreachable(format!(
                "{key}: the token endpoint answered {status} ({error}{detail})"
            )));
        }
        let (field, hint) = match error {
            "unauthorized_client" | "access_denied" => (
                "service_account_file",
                format!(
                    "; in the Google Admin console (Security, API controls, Domain-wide \
                     delegation) allow the account's client id the scope {}",
                    scope.join(",")
                ),
            ),
            "invalid_scope" => ("scope", String::new()),
            "invalid_grant" if detail.contains("email") || detail.contains("User ID") => (
                "service_account_file",
                format!("; is {} a user of the Workspace domain?", account.mailbox),
            ),
            _ => ("service_account_file", String::new()),
        };
        Err(TokenError::Refused(format!(
            "{key}.{field}: the token endpoint refused ({error}{detail}){hint}"
        )))
    }

    /// Forgets the token held: the server refused it (revoked, or the app's rights changed).
    pub(super) async fn forget(&self) {
        self.current.lock().await.take();
    }

    fn explain<RE: std::error::Error + 'static>(
        &self,
        e: RequestTokenError<RE, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
    ) -> TokenError {
        let key = &self.key;
        match e {
            RequestTokenError::ServerResponse(answer) => {
                let detail = answer
                    .error_description()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                let field = match answer.error() {
                    BasicErrorResponseType::InvalidClient
                    | BasicErrorResponseType::UnauthorizedClient => "client_secret",
                    BasicErrorResponseType::InvalidGrant => "refresh_token",
                    BasicErrorResponseType::InvalidScope => "scope",
                    _ => "client_id",
                };
                TokenError::Refused(format!(
                    "{key}.{field}: the token endpoint refused ({}{detail})",
                    answer.error().as_ref()
                ))
            }
            RequestTokenError::Request(e) => {
                TokenError::Unreachable(format!("{key}: the token endpoint: {e}"))
            }
            RequestTokenError::Parse(e, _) => TokenError::Unreachable(format!(
                "{key}: the token endpoint answered something that is no token: {e}"
            )),
            RequestTokenError::Other(e) => TokenError::Unreachable(format!("{key}: {e}")),
        }
    }
}

/// The client credentials or refresh token grant of `[key]`, and its scope.
fn client_grant(
    key: &str,
    options: &OauthOptions,
    refresh: Option<Secret>,
) -> Result<(Grant, String), ConfigError> {
    let invalid = |field: &str, message: String| invalid_at(key, field, message);
    let Some(client_id) = &options.client_id else {
        return Err(invalid(
            "client_id",
            "set the application's (client's) id from the provider's app registration".into(),
        ));
    };
    let secret = resolve_secret(
        &format!("{key}.client_secret"),
        &options.client_secret,
        &options.client_secret_file,
    )?;
    let token_url = match (options.provider, &options.token_url, &options.tenant) {
        (_, Some(url), _) => url.clone(),
        (Issuer::Microsoft, None, Some(tenant)) => {
            format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
        }
        (Issuer::Microsoft, None, None) => {
            return Err(invalid(
                "tenant",
                "Microsoft 365 needs the tenant: tenant = \"contoso.onmicrosoft.com\"".into(),
            ))
        }
        (Issuer::Google, None, _) => GOOGLE_TOKEN_URL.into(),
        (Issuer::Custom, None, _) => {
            return Err(invalid(
                "token_url",
                "a custom provider needs its token endpoint: token_url = \"https://...\"".into(),
            ))
        }
    };
    let scope = match (options.provider, &options.scope, &refresh) {
        (_, Some(scope), _) => scope.clone(),
        (Issuer::Microsoft, None, None) => MICROSOFT_APP_SCOPE.into(),
        (Issuer::Microsoft, None, Some(_)) => MICROSOFT_USER_SCOPE.into(),
        (Issuer::Google, None, Some(_)) => GOOGLE_SCOPE.into(),
        (Issuer::Google, None, None) => {
            return Err(invalid(
                "service_account_file",
                "Google gives a mailbox's access to a service account with domain-wide \
                 delegation (service_account_file = its key file) or to a user's consent \
                 (refresh_token)"
                    .into(),
            ))
        }
        (Issuer::Custom, None, _) => {
            return Err(invalid(
                "scope",
                "a custom provider needs the scope of IMAP and SMTP access".into(),
            ))
        }
    };
    let client = BasicClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
        // Microsoft documents the secret in the body; Google and RFC 6749 servers take it.
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(token_url).map_err(|e| invalid("token_url", e.to_string()))?);
    let configured = refresh
        .as_ref()
        .map(|token| hex::encode(Sha256::digest(token.expose().as_bytes())));
    let grant = Grant::Client {
        client: Box::new(client),
        refresh: Mutex::new(refresh),
        configured,
    };
    Ok((grant, scope))
}

/// The error of `field` in the `[key]` table.
fn invalid_at(key: &str, field: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: format!("{key}.{field}"),
        message,
    }
}

/// Google's token endpoint.
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The service account of `[key]` from its key file at `path`, acting for `mailbox`.
fn service_account(
    key: &str,
    options: &OauthOptions,
    path: &Path,
    mailbox: &str,
) -> Result<ServiceAccount, ConfigError> {
    let invalid = |field: &str, message: String| invalid_at(key, field, message);
    if options.provider != Issuer::Google {
        return Err(invalid(
            "service_account_file",
            "service accounts are Google's: set provider = \"google\", or log in with \
             client_id and client_secret"
                .into(),
        ));
    }
    for (field, given) in [
        ("client_id", options.client_id.is_some()),
        ("client_secret", options.client_secret.is_some()),
        ("client_secret_file", options.client_secret_file.is_some()),
        ("refresh_token", options.refresh_token.is_some()),
        ("refresh_token_file", options.refresh_token_file.is_some()),
    ] {
        if given {
            return Err(invalid(
                field,
                "not used with a service account (its key file says who it is): remove it".into(),
            ));
        }
    }
    let field = |message: String| invalid("service_account_file", message);
    let bytes =
        std::fs::read(path).map_err(|e| field(format!("cannot read {}: {e}", path.display())))?;
    let file: ServiceAccountKey = serde_json::from_slice(&bytes).map_err(|e| {
        field(format!(
            "{} is not a service account's key file (the JSON the Google Cloud console gives \
             under IAM, Service accounts, Keys): {e}",
            path.display()
        ))
    })?;
    if file.kind != "service_account" {
        return Err(field(format!(
            "{} holds a key of type {:?}, not a service account's (\"service_account\")",
            path.display(),
            file.kind
        )));
    }
    let signing_key = jsonwebtoken::EncodingKey::from_rsa_pem(file.private_key.as_bytes())
        .map_err(|e| {
            field(format!(
                "the private_key in {} is not an RSA key in PEM: {e}",
                path.display()
            ))
        })?;
    let token_url = options
        .token_url
        .clone()
        .or(file.token_uri)
        .unwrap_or_else(|| GOOGLE_TOKEN_URL.into());
    Ok(ServiceAccount {
        email: file.client_email,
        key_id: file.private_key_id,
        key: signing_key,
        token_url,
        mailbox: mailbox.to_owned(),
    })
}

/// The SASL `XOAUTH2` initial response (Google's and Microsoft's format): the user and the
/// bearer token, separated by ^A.
pub(super) fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

#[cfg(test)]
mod tests;
