//! The e-mail bridge: clients write to the office's mailbox, the case team answers from the
//! room, and the client gets an ordinary reply from the office address, threaded in their
//! conversation.
//!
//! Inbound reads the mailbox over IMAP (IDLE, or polling where the server lacks it) and marks
//! each mail handled on the server (a `$Casebridge` keyword, optionally a move) only after the
//! gateway committed it; a restart re-reads whatever is unmarked and the Message-ID
//! deduplicates. Outbound goes through SMTP with `Message-ID`, `In-Reply-To`, `References` and
//! the case number in the subject.

mod imap;
mod oauth;
pub mod parse;
mod smtp;

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use casebridge_config::{resolve_secret, BridgeInstance, ConfigError, Secret};
use lettre::message::{
    header::{self, ContentType, HeaderName, HeaderValue},
    Mailbox, MultiPart, SinglePart,
};
use serde::Deserialize;
use tokio::sync::Notify;
use tracing::warn;

use crate::{
    Bridge, BridgeError, BridgeFactory, Capabilities, CredentialCheck, Delivered, DeliveryError,
    InboundSink, MediaKinds, OutboundMessage, RemoteMessageId,
};

/// The keyword that marks a mail the gateway has recorded.
pub const HANDLED_KEYWORD: &str = "$Casebridge";

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (IMAP 993, SMTP 465).
    Tls,
    /// Plain, then STARTTLS before logging in (IMAP 143, SMTP 587).
    Starttls,
    /// No encryption: only for a server on the same host or a test bed.
    Plain,
}

/// `[bridges.KEY.imap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImapOptions {
    host: String,
    port: Option<u16>,
    #[serde(default = "tls")]
    security: Security,
    username: String,
    password: Option<Secret>,
    password_file: Option<PathBuf>,
    /// The folder clients' mail arrives in.
    #[serde(default = "inbox")]
    mailbox: String,
    /// Move handled mail here (it is flagged `$Casebridge` either way).
    handled_folder: Option<String>,
    /// Use IDLE where the server offers it; `false` polls instead (for servers or proxies whose
    /// IDLE is broken).
    #[serde(default = "yes")]
    idle: bool,
    /// Seconds between checks when the server has no IDLE (or `idle = false`).
    #[serde(default = "poll_seconds")]
    poll_seconds: u64,
    /// A PEM file of certificate authorities to trust besides the public ones (an office's own
    /// CA).
    tls_ca_file: Option<PathBuf>,
}

/// `[bridges.KEY.smtp]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpOptions {
    host: String,
    port: Option<u16>,
    #[serde(default = "tls")]
    security: Security,
    username: Option<String>,
    password: Option<Secret>,
    password_file: Option<PathBuf>,
    /// As for IMAP.
    tls_ca_file: Option<PathBuf>,
}

/// `[bridges.KEY]` with `kind = "email"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailOptions {
    /// The office's address: the mailbox clients write to, and From of every reply.
    address: String,
    /// The name shown with it.
    name: Option<String>,
    /// Files larger than this are named in the room instead of carried (bytes).
    #[serde(default = "max_attachment_bytes")]
    max_attachment_bytes: usize,
    imap: ImapOptions,
    smtp: SmtpOptions,
    /// Log in with OAuth 2.0 tokens instead of passwords (Microsoft 365, Google Workspace).
    oauth2: Option<oauth::OauthOptions>,
}

fn tls() -> Security {
    Security::Tls
}
fn inbox() -> String {
    "INBOX".into()
}
fn yes() -> bool {
    true
}
fn poll_seconds() -> u64 {
    60
}
fn max_attachment_bytes() -> usize {
    10 * 1024 * 1024
}

/// Builds `kind = "email"` instances.
pub struct EmailFactory;

impl BridgeFactory for EmailFactory {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn build(&self, name: &str, config: &BridgeInstance) -> Result<Arc<dyn Bridge>, BridgeError> {
        let options: EmailOptions = config.options(name)?;
        let key = |k: &str| format!("bridges.{name}.{k}");
        let invalid = |k: &str, message: String| {
            BridgeError::Config(ConfigError::Invalid {
                key: key(k),
                message,
            })
        };
        let office: lettre::Address = options.address.parse().map_err(|e| {
            invalid(
                "address",
                format!("{:?} is not an e-mail address: {e}", options.address),
            )
        })?;
        let tokens = options
            .oauth2
            .as_ref()
            .map(|o| oauth::Tokens::new(&key("oauth2"), o, &options.imap.username).map(Arc::new))
            .transpose()?;
        let (imap_login, smtp_login) = match tokens {
            Some(tokens) => {
                for (k, given) in [
                    ("imap.password", options.imap.password.is_some()),
                    ("imap.password_file", options.imap.password_file.is_some()),
                    ("smtp.password", options.smtp.password.is_some()),
                    ("smtp.password_file", options.smtp.password_file.is_some()),
                ] {
                    if given {
                        return Err(invalid(
                            k,
                            "with [oauth2] the mailbox logs in with tokens: remove the password"
                                .into(),
                        ));
                    }
                }
                let user = options
                    .smtp
                    .username
                    .clone()
                    .unwrap_or_else(|| options.imap.username.clone());
                (
                    imap::Login::Oauth(tokens.clone()),
                    smtp::Login::Oauth { user, tokens },
                )
            }
            None => {
                let imap_password = resolve_secret(
                    &key("imap.password"),
                    &options.imap.password,
                    &options.imap.password_file,
                )?;
                let smtp_password = match (&options.smtp.password, &options.smtp.password_file) {
                    (None, None) => None,
                    _ => Some(resolve_secret(
                        &key("smtp.password"),
                        &options.smtp.password,
                        &options.smtp.password_file,
                    )?),
                };
                let smtp_login = match (&options.smtp.username, smtp_password) {
                    (Some(user), Some(password)) => smtp::Login::Password {
                        user: user.clone(),
                        password,
                    },
                    (None, None) => smtp::Login::None,
                    _ => {
                        return Err(invalid(
                            "smtp",
                            "give both username and password, or neither".into(),
                        ))
                    }
                };
                (imap::Login::Password(imap_password), smtp_login)
            }
        };
        let read_ca = |k: &str, path: &Option<PathBuf>| -> Result<Option<Vec<u8>>, BridgeError> {
            path.as_ref()
                .map(|p| {
                    std::fs::read(p)
                        .map_err(|e| invalid(k, format!("cannot read {}: {e}", p.display())))
                })
                .transpose()
        };
        let imap_ca = read_ca("imap.tls_ca_file", &options.imap.tls_ca_file)?;
        let smtp_ca = read_ca("smtp.tls_ca_file", &options.smtp.tls_ca_file)?;
        let smtp = smtp::Sender::new(options.smtp.clone(), smtp_ca, smtp_login)
            .map_err(|e| invalid("smtp", e))?;
        Ok(Arc::new(EmailBridge {
            office: Mailbox::new(options.name.clone(), office.clone()),
            imap: Arc::new(imap::Reader {
                instance: name.to_owned(),
                host: options.imap.host.clone(),
                port: options.imap.port.unwrap_or(match options.imap.security {
                    Security::Tls => 993,
                    _ => 143,
                }),
                security: options.imap.security,
                username: options.imap.username.clone(),
                login: imap_login,
                mailbox: options.imap.mailbox.clone(),
                handled_folder: options.imap.handled_folder.clone(),
                idle: options.imap.idle,
                poll: Duration::from_secs(options.imap.poll_seconds.max(1)),
                office: options.address.to_lowercase(),
                domain: office.domain().to_lowercase(),
                max_attachment_bytes: options.max_attachment_bytes,
                extra_ca: imap::extra_roots(imap_ca.as_deref())
                    .map_err(|e| invalid("imap.tls_ca_file", e))?,
                stop: Notify::new(),
            }),
            smtp,
            task: std::sync::Mutex::new(None),
        }))
    }
}

struct EmailBridge {
    office: Mailbox,
    imap: Arc<imap::Reader>,
    smtp: smtp::Sender,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The Message-ID of a reply: unique per record and the same on every retry. It names no case:
/// replies in a discreet case carry the earlier ids in References, and a case number must not
/// reach that client's phone. Replies are routed by the ids we stored, not by their shape.
fn message_id(message: &OutboundMessage, domain: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{}:{}", message.record_id, message.case_number));
    format!(
        "cb.{}.{}@{domain}",
        message.record_id,
        hex::encode(&digest[..10])
    )
}

impl EmailBridge {
    /// The reply as a mail: from the office (or the neutral name), threaded.
    fn compose(&self, message: &OutboundMessage) -> Result<lettre::Message, DeliveryError> {
        let to: Mailbox = message.to.as_str().parse().map_err(|e| {
            DeliveryError::permanent(format!(
                "{} is not an e-mail address: {e}",
                message.to.as_str()
            ))
        })?;
        let message_id = message_id(message, self.office.email.domain());
        let (from, subject) = match &message.discreet {
            Some(d) => (
                Mailbox::new(Some(d.sender_name.clone()), self.office.email.clone()),
                d.subject.clone(),
            ),
            None => (
                self.office.clone(),
                subject(message, self.office.name.as_deref()),
            ),
        };
        let mut builder = lettre::Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{message_id}>")));
        if let Some(parent) = &message.conversation.in_reply_to {
            builder = builder.in_reply_to(format!("<{parent}>"));
        }
        if !message.conversation.references.is_empty() {
            builder = builder.references(
                message
                    .conversation
                    .references
                    .iter()
                    .map(|r| format!("<{r}>"))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        if message.automatic {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-replied".into(),
            ));
        }
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .header(header::ContentTransferEncoding::QuotedPrintable)
            .body(message.body.clone());
        let body = message.html.as_ref().map(|html| {
            MultiPart::alternative()
                .singlepart(text.clone())
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .header(header::ContentTransferEncoding::QuotedPrintable)
                        .body(parse::sanitise(html)),
                )
        });
        let mail = if message.attachments.is_empty() {
            match body {
                Some(alternative) => builder.multipart(alternative),
                None => builder.singlepart(text),
            }
        } else {
            let mut mixed = match body {
                Some(alternative) => MultiPart::mixed().multipart(alternative),
                None => MultiPart::mixed().singlepart(text),
            };
            for file in &message.attachments {
                let mime = ContentType::parse(&file.mime).unwrap_or_else(|_| {
                    ContentType::parse("application/octet-stream").expect("valid")
                });
                mixed = mixed.singlepart(
                    lettre::message::Attachment::new(file.filename.clone())
                        .body(file.data.clone(), mime),
                );
            }
            builder.multipart(mixed)
        };
        mail.map_err(|e| DeliveryError::permanent(format!("cannot build the mail: {e}")))
    }
}

/// `Re: <the client's subject> [2026-000123]`, without piling up `Re:` or case numbers.
fn subject(message: &OutboundMessage, office: Option<&str>) -> String {
    let tag = format!("[{}]", message.case_number);
    match message.conversation.subject.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => {
            let mut base = s.replace(&tag, "");
            loop {
                let t = base.trim_start();
                let lower = t.to_ascii_lowercase();
                match ["re:", "sv:", "vs:", "aw:", "fwd:"]
                    .iter()
                    .find(|p| lower.starts_with(**p))
                {
                    Some(p) => base = t[p.len()..].to_owned(),
                    None => break,
                }
            }
            format!("Re: {} {tag}", base.trim())
        }
        _ => format!("{} {tag}", office.unwrap_or("Reply")),
    }
}

#[async_trait]
impl Bridge for EmailBridge {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new("email", "E-mail")
            .with_media(MediaKinds::ALL)
            .with_html()
    }

    async fn start(&self, inbound: InboundSink) -> Result<(), BridgeError> {
        if let imap::Login::Oauth(tokens) = &self.imap.login {
            tokens.keep_in(&inbound).await;
        }
        let reader = self.imap.clone();
        let what = format!("bridges.{} IMAP reader", reader.instance);
        let handle = crate::task::spawn_restarting(what, move || {
            let (reader, inbound) = (reader.clone(), inbound.clone());
            async move { reader.run(inbound).await }
        });
        *self.task.lock().expect("not poisoned") = Some(handle);
        Ok(())
    }

    async fn check_credentials(&self) -> CredentialCheck {
        let imap = self.imap.check().await;
        let CredentialCheck::Accepted(imap) = imap else {
            return imap;
        };
        match self
            .smtp
            .check(&format!("bridges.{}.smtp", self.imap.instance))
            .await
        {
            Ok(smtp) => CredentialCheck::Accepted(format!("{imap}; {smtp}")),
            Err(check) => check,
        }
    }

    async fn stop(&self) {
        // One waiter, which may be busy right now: a stored permit is not lost.
        self.imap.stop.notify_one();
        let handle = self.task.lock().expect("not poisoned").take();
        if let Some(handle) = handle {
            if tokio::time::timeout(Duration::from_secs(5), handle)
                .await
                .is_err()
            {
                warn!(instance = %self.imap.instance, "IMAP reader did not stop in 5 s");
            }
        }
    }

    async fn deliver(&self, message: &OutboundMessage) -> Result<Delivered, DeliveryError> {
        let mail = self.compose(message)?;
        let id = mail.headers().get_raw("Message-ID").map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        });
        match self.smtp.send(mail).await {
            Ok(()) => Ok(Delivered {
                remote_id: id.map(RemoteMessageId::new),
            }),
            // The office's login, not the reply: it waits until the login works again.
            Err(e) if e.is_login() => Err(DeliveryError::transient(format!(
                "the mail server refused the office's login: {e}"
            ))),
            Err(smtp::SendError::Smtp(e)) if e.is_permanent() => Err(DeliveryError::permanent(
                format!("the mail server refused the reply: {e}"),
            )),
            Err(e) => Err(DeliveryError::transient(format!("sending mail: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Conversation, OutboundMessage, RemoteAddress};

    use super::{message_id, subject};

    /// A plain reply of record `record_id` in case 2026-000042.
    fn reply(record_id: i64) -> OutboundMessage {
        OutboundMessage {
            record_id,
            case_number: "2026-000042".into(),
            to: RemoteAddress::new("a@client.test"),
            body: String::new(),
            html: None,
            discreet: None,
            automatic: false,
            conversation: Conversation::default(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn subjects_keep_one_re_and_one_case_number() {
        let mut m = reply(1);
        assert_eq!(
            subject(&m, Some("Mottagningen")),
            "Mottagningen [2026-000042]"
        );
        m.conversation.subject = Some("SV: Re: Fråga om bidrag [2026-000042]".into());
        assert_eq!(subject(&m, None), "Re: Fråga om bidrag [2026-000042]");
    }

    #[test]
    fn a_message_id_names_no_case() {
        let m = reply(7);
        let id = message_id(&m, "office.test");
        assert!(
            id.starts_with("cb.7.") && id.ends_with("@office.test"),
            "{id}"
        );
        assert!(!id.contains("2026") && !id.contains("000042"), "{id}");
        assert_eq!(id, message_id(&m, "office.test"), "the same on every retry");
    }
}
