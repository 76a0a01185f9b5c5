//! Sending through the office's SMTP server: logged in with a password, with an OAuth 2.0 token
//! (`XOAUTH2`, Microsoft 365 and Google), or not at all.

use std::{sync::Arc, time::Duration};

use casebridge_config::Secret;
use lettre::{
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{Certificate, Tls, TlsParameters},
    },
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};

use super::{
    oauth::{TokenError, Tokens},
    Security, SmtpOptions,
};
use crate::CredentialCheck;

type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// How the bridge logs in to SMTP.
pub(super) enum Login {
    /// It does not (a relay that trusts the gateway's address).
    None,
    /// `smtp.username` and `smtp.password`.
    Password { user: String, password: Secret },
    /// `smtp.username` (the mailbox) and a token from `[oauth2]`.
    Oauth { user: String, tokens: Arc<Tokens> },
}

/// Why a mail was not handed to the server.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// No token for the login.
    #[error("{0}")]
    Token(TokenError),
    /// The server's answer, or no answer.
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
}

impl SendError {
    /// The server refused the office's login (RFC 4954: 530, 534, 535, 538), or no token could
    /// be got: the office's problem, never the mail's, so the reply waits.
    pub(super) fn is_login(&self) -> bool {
        match self {
            Self::Token(_) => true,
            Self::Smtp(e) => login_refused(e),
        }
    }
}

/// The server's answer refuses the login (RFC 4954: 530, 534, 535, 538).
fn login_refused(e: &lettre::transport::smtp::Error) -> bool {
    e.status()
        .is_some_and(|code| matches!(code.to_string().as_str(), "530" | "534" | "535" | "538"))
}

/// The SMTP side of an e-mail bridge.
pub(super) struct Sender {
    options: SmtpOptions,
    ca: Option<Vec<u8>>,
    login: Login,
    /// The transport, with the token it logs in with (OAuth: a new token, a new transport).
    transport: tokio::sync::Mutex<Option<(Option<String>, Transport)>>,
}

impl Sender {
    /// The sender for `options`; a transport that cannot be built is an error now.
    pub(super) fn new(
        options: SmtpOptions,
        ca: Option<Vec<u8>>,
        login: Login,
    ) -> Result<Self, String> {
        let sender = Self {
            options,
            ca,
            login,
            transport: tokio::sync::Mutex::new(None),
        };
        // Built once now, so that a wrong TLS or CA setting is named at start.
        let first = match &sender.login {
            Login::None => sender.build(None)?,
            Login::Password { user, password } => {
                sender.build(Some((user, password.expose(), Mechanism::Plain)))?
            }
            Login::Oauth { user, .. } => sender.build(Some((user, "", Mechanism::Xoauth2)))?,
        };
        if !matches!(sender.login, Login::Oauth { .. }) {
            *sender.transport.try_lock().expect("not shared yet") = Some((None, first));
        }
        Ok(sender)
    }

    /// Whether it logs in.
    pub(super) fn logs_in(&self) -> bool {
        !matches!(self.login, Login::None)
    }

    fn build(&self, login: Option<(&str, &str, Mechanism)>) -> Result<Transport, String> {
        let options = &self.options;
        let tls = || {
            let mut builder = TlsParameters::builder(options.host.clone());
            if let Some(pem) = &self.ca {
                let ca = Certificate::from_pem(pem).map_err(|e| format!("tls_ca_file: {e}"))?;
                builder = builder.add_root_certificate(ca);
            }
            builder
                .build()
                .map_err(|e| format!("TLS for {}: {e}", options.host))
        };
        let builder = Transport::builder_dangerous(&options.host);
        let builder = match options.security {
            Security::Tls => builder
                .port(options.port.unwrap_or(465))
                .tls(Tls::Wrapper(tls()?)),
            Security::Starttls => builder
                .port(options.port.unwrap_or(587))
                .tls(Tls::Required(tls()?)),
            Security::Plain => builder.port(options.port.unwrap_or(25)).tls(Tls::None),
        };
        let builder = match login {
            Some((user, secret, Mechanism::Xoauth2)) => builder
                .credentials(Credentials::new(user.to_owned(), secret.to_owned()))
                .authentication(vec![Mechanism::Xoauth2]),
            Some((user, secret, _)) => {
                builder.credentials(Credentials::new(user.to_owned(), secret.to_owned()))
            }
            None => builder,
        };
        Ok(builder.timeout(Some(Duration::from_secs(60))).build())
    }

    /// The transport to send with: for OAuth, one that logs in with a token good for at least
    /// another minute.
    async fn transport(&self) -> Result<Transport, TokenError> {
        let mut held = self.transport.lock().await;
        let Login::Oauth { user, tokens } = &self.login else {
            let (_, transport) = held.as_ref().expect("built at start");
            return Ok(transport.clone());
        };
        let token = tokens.access_token().await?;
        if let Some((Some(with), transport)) = held.as_ref() {
            if with == token.expose() {
                return Ok(transport.clone());
            }
        }
        let transport = self
            .build(Some((user, token.expose(), Mechanism::Xoauth2)))
            .map_err(TokenError::Unreachable)?;
        *held = Some((Some(token.expose().to_owned()), transport.clone()));
        Ok(transport)
    }

    /// Hands `mail` to the server.
    pub(super) async fn send(&self, mail: Message) -> Result<(), SendError> {
        let transport = self.transport().await.map_err(SendError::Token)?;
        let sent = transport
            .send(mail)
            .await
            .map(drop)
            .map_err(SendError::from);
        if let (Err(e), Login::Oauth { tokens, .. }) = (&sent, &self.login) {
            if e.is_login() {
                // Revoked, or the app's rights changed: the next try gets a new token.
                tokens.forget().await;
            }
        }
        sent
    }

    /// Connects and logs in without sending: what the credential check says of SMTP.
    pub(super) async fn check(&self, key: &str) -> Result<&'static str, CredentialCheck> {
        let transport = self.transport().await.map_err(|e| match e {
            TokenError::Refused(what) => CredentialCheck::Refused(what),
            TokenError::Unreachable(what) => CredentialCheck::Unreachable(what),
        })?;
        match transport.test_connection().await {
            Ok(true) if self.logs_in() => Ok("SMTP login"),
            Ok(true) => Ok("the SMTP server answers (no SMTP login configured)"),
            Ok(false) => Err(CredentialCheck::Unreachable(format!(
                "{key}: the SMTP server did not answer"
            ))),
            Err(e) if login_refused(&e) => Err(CredentialCheck::Refused(
                self.refusal(key, &format!("the SMTP server refused the login ({e})")),
            )),
            Err(e) if e.is_permanent() => Err(CredentialCheck::Refused(format!(
                "{key}: the SMTP server refused: {e}"
            ))),
            Err(e) => Err(CredentialCheck::Unreachable(format!("{key}: {e}"))),
        }
    }

    fn refusal(&self, key: &str, what: &str) -> String {
        match &self.login {
            Login::Oauth { user, .. } => format!(
                "{key}.username: {what} of {user:?} with the OAuth token; check that the app may \
                 send as this mailbox (Microsoft 365: SMTP AUTH on, and the app's service \
                 principal given the mailbox)"
            ),
            _ => format!("{key}.password: {what}; check {key}.username and {key}.password"),
        }
    }
}
