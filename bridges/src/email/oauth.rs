//! OAuth 2.0 for the office's mailbox: Microsoft 365 and Google Workspace switch off IMAP and
//! SMTP passwords, and take an access token instead (SASL `XOAUTH2`). The bridge gets the token
//! from the provider's token endpoint (RFC 6749) with the client credentials grant (Microsoft
//! 365's app-only access, the usual choice for a shared mailbox) or a refresh token (Google, or
//! Microsoft 365 with a user's consent), keeps it until a minute before it expires, and logs in
//! to IMAP and SMTP with it.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use casebridge_config::{resolve_secret, ConfigError, Secret};
use oauth2::{
    basic::{BasicClient, BasicErrorResponseType},
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;
use tokio::sync::Mutex;

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
    /// The application's (client's) id.
    client_id: String,
    client_secret: Option<Secret>,
    client_secret_file: Option<PathBuf>,
    /// A refresh token from a user's consent; without one the client credentials grant is
    /// used (Microsoft 365 app-only access).
    refresh_token: Option<Secret>,
    refresh_token_file: Option<PathBuf>,
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

/// Gets and keeps the mailbox's access token.
pub(super) struct Tokens {
    client: Client,
    http: reqwest::Client,
    scopes: Vec<Scope>,
    /// The refresh token in use: the provider may hand out a new one with each token.
    refresh: Mutex<Option<Secret>>,
    /// The access token and when to stop using it.
    current: Mutex<Option<(Secret, Instant)>>,
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
    /// Builds the token source of `[key]` (`bridges.NAME.oauth2`).
    pub(super) fn new(key: &str, options: &OauthOptions) -> Result<Self, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: format!("{key}.{field}"),
            message,
        };
        let secret = resolve_secret(
            &format!("{key}.client_secret"),
            &options.client_secret,
            &options.client_secret_file,
        )?;
        let refresh = match (&options.refresh_token, &options.refresh_token_file) {
            (None, None) => None,
            _ => Some(resolve_secret(
                &format!("{key}.refresh_token"),
                &options.refresh_token,
                &options.refresh_token_file,
            )?),
        };
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
            (Issuer::Google, None, _) => "https://oauth2.googleapis.com/token".into(),
            (Issuer::Custom, None, _) => {
                return Err(invalid(
                    "token_url",
                    "a custom provider needs its token endpoint: token_url = \"https://...\""
                        .into(),
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
                    "refresh_token",
                    "Google gives mailbox access to a user's consent only: set refresh_token \
                     (or refresh_token_file) from the consent of the office's mailbox"
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
        let client = BasicClient::new(ClientId::new(options.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
            // Microsoft documents the secret in the body; Google and RFC 6749 servers take it.
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(
                TokenUrl::new(token_url).map_err(|e| invalid("token_url", e.to_string()))?,
            );
        let http = reqwest::Client::builder()
            // RFC 6749 section 4.4's advice against following redirects with credentials.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| invalid("token_url", e.to_string()))?;
        Ok(Self {
            client,
            http,
            scopes: scope
                .split_whitespace()
                .map(|s| Scope::new(s.into()))
                .collect(),
            refresh: Mutex::new(refresh),
            current: Mutex::new(None),
            key: key.to_owned(),
        })
    }

    /// A token good for at least another minute: the one held, or a new one.
    pub(super) async fn access_token(&self) -> Result<Secret, TokenError> {
        let mut current = self.current.lock().await;
        if let Some((token, until)) = current.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let mut refresh = self.refresh.lock().await;
        let answer = match refresh.as_ref() {
            Some(token) => {
                self.client
                    .exchange_refresh_token(&RefreshToken::new(token.expose().to_owned()))
                    .add_scopes(self.scopes.clone())
                    .request_async(&self.http)
                    .await
            }
            None => {
                self.client
                    .exchange_client_credentials()
                    .add_scopes(self.scopes.clone())
                    .request_async(&self.http)
                    .await
            }
        };
        let answer = answer.map_err(|e| self.explain(e))?;
        if let Some(next) = answer.refresh_token() {
            *refresh = Some(Secret::new(next.secret().clone()));
        }
        let token = Secret::new(answer.access_token().secret().clone());
        // A token without a lifetime is used for 5 minutes; one is renewed a minute early.
        let lifetime = answer
            .expires_in()
            .unwrap_or(Duration::from_secs(300))
            .saturating_sub(Duration::from_secs(60));
        *current = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
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

/// The SASL `XOAUTH2` initial response (Google's and Microsoft's format): the user and the
/// bearer token, separated by ^A.
pub(super) fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(toml: &str) -> OauthOptions {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn each_provider_has_its_endpoint_and_scope() {
        let microsoft = options(
            "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\n\
             client_id = \"app\"\nclient_secret = \"s\"\n",
        );
        let tokens = Tokens::new("bridges.mail.oauth2", &microsoft).unwrap();
        assert_eq!(
            tokens.client.token_uri().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(tokens.scopes, [Scope::new(MICROSOFT_APP_SCOPE.into())]);
        let google = options(
            "provider = \"google\"\nclient_id = \"app\"\nclient_secret = \"s\"\n\
             refresh_token = \"r\"\n",
        );
        let tokens = Tokens::new("bridges.mail.oauth2", &google).unwrap();
        assert_eq!(
            tokens.client.token_uri().as_str(),
            "https://oauth2.googleapis.com/token"
        );
        assert_eq!(tokens.scopes, [Scope::new(GOOGLE_SCOPE.into())]);
    }

    #[test]
    fn what_a_provider_needs_is_named_by_its_key() {
        let err = |toml: &str| {
            Tokens::new("bridges.mail.oauth2", &options(toml))
                .err()
                .unwrap()
                .to_string()
        };
        assert!(
            err("provider = \"microsoft\"\nclient_id = \"a\"\nclient_secret = \"s\"\n")
                .starts_with("bridges.mail.oauth2.tenant: Microsoft 365 needs the tenant")
        );
        assert!(
            err("provider = \"google\"\nclient_id = \"a\"\nclient_secret = \"s\"\n")
                .starts_with("bridges.mail.oauth2.refresh_token: Google gives mailbox access")
        );
        assert!(
            err("provider = \"custom\"\nclient_id = \"a\"\nclient_secret = \"s\"\n")
                .starts_with("bridges.mail.oauth2.token_url:")
        );
        assert!(
            err("provider = \"google\"\nclient_id = \"a\"\nrefresh_token = \"r\"\n")
                .contains("client_secret")
        );
    }

    #[test]
    fn the_xoauth2_response_is_user_and_bearer_token() {
        assert_eq!(
            xoauth2("office@office.test", "tok"),
            "user=office@office.test\x01auth=Bearer tok\x01\x01"
        );
    }
}
