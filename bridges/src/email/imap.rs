//! Reads the office mailbox: every mail without the `$Casebridge` keyword is handed to the
//! gateway, and marked (and moved, if configured) once the gateway has committed it. Waits with
//! IDLE where the server has it, polls where not, and reconnects with backoff when the
//! connection or the server goes away.

use std::{fmt, sync::Arc, time::Duration};

use async_imap::{extensions::idle::IdleResponse, types::UnsolicitedResponse, Client, Session};
use futures::TryStreamExt;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::Notify,
};
use tracing::{debug, info, warn};

use super::{
    oauth::{xoauth2, TokenError, Tokens},
    parse, Security, HANDLED_KEYWORD,
};
use crate::{CredentialCheck, DeliveryReport, InboundSink, RemoteMessageId};

/// How long connecting, greeting and logging in may take before the attempt is given up (a
/// server that is stopping can accept a connection and never answer it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one IMAP command may take (a fetch of 50 large mails included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `step`, failing with a named timeout if it takes longer than `limit`.
async fn within<T>(
    what: &str,
    limit: Duration,
    step: impl std::future::Future<Output = T>,
) -> Result<T, ReadError> {
    tokio::time::timeout(limit, step)
        .await
        .map_err(|_| ReadError::Server(format!("{what} got no answer in {} s", limit.as_secs())))
}

/// Mails fetched per round trip.
const CHUNK: usize = 50;
/// How long IDLE waits without hearing anything before the connection counts as dead and is
/// renewed: servers send a keepalive every few minutes (Dovecot: 2), and RFC 2177 asks for a
/// new IDLE within 29 minutes anyway.
const IDLE_RENEW: Duration = Duration::from_secs(5 * 60);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A byte stream IMAP can run over: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Stream for T {}

type ImapSession = Session<Box<dyn Stream>>;

/// One mailbox's reader.
pub struct Reader {
    pub instance: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub login: Login,
    pub mailbox: String,
    pub handled_folder: Option<String>,
    /// Use IDLE when the server has it.
    pub idle: bool,
    pub poll: Duration,
    pub office: String,
    /// The office address's domain: bounces of mail with Message-IDs there are ours.
    pub domain: String,
    pub max_attachment_bytes: usize,
    /// Certificate authorities trusted besides the public ones.
    pub extra_ca: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
    pub stop: Notify,
}

/// How the reader logs in.
pub enum Login {
    /// `imap.password`: IMAP `LOGIN`.
    Password(casebridge_config::Secret),
    /// A token from `[oauth2]`: `AUTHENTICATE XOAUTH2`.
    Oauth(Arc<Tokens>),
}

/// SASL `XOAUTH2` for async-imap: the user and token at the server's first (empty) challenge,
/// and an empty answer to the error it sends back when it refuses them, which ends the
/// exchange with `NO`.
struct XOauth2(Option<String>);

impl async_imap::Authenticator for XOauth2 {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        self.0.take().unwrap_or_default()
    }
}

/// The certificates of a PEM file, for [`Reader::extra_ca`].
pub fn extra_roots(
    pem: Option<&[u8]>,
) -> Result<Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>, String> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let Some(pem) = pem else {
        return Ok(Vec::new());
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("login refused: {0}")]
    Login(async_imap::error::Error),
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("the gateway did not record a mail: {0}")]
    Gateway(String),
    #[error("{0}")]
    Server(String),
}

impl Reader {
    /// Reads until stopped; every failure is logged and retried with backoff.
    pub async fn run(self: Arc<Self>, sink: InboundSink) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let stopped = self.stop.notified();
            tokio::pin!(stopped);
            stopped.as_mut().enable();
            let outcome = tokio::select! {
                r = self.session(&sink, &mut backoff) => r,
                () = &mut stopped => return,
            };
            match outcome {
                Ok(()) => return,
                Err(e) => {
                    warn!(instance = %self.instance, error = %e, retry_in = ?backoff, "mailbox connection lost");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = &mut stopped => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Logs in and out once: whether the server takes the instance's credentials.
    pub async fn check(&self) -> CredentialCheck {
        let key = format!("bridges.{}.imap", self.instance);
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(Ok(mut session)) => {
                let _ = session.logout().await;
                CredentialCheck::Accepted(format!("IMAP login as {}", self.username))
            }
            Ok(Err(ReadError::Login(e))) => CredentialCheck::Refused(match self.login {
                Login::Password(_) => format!(
                    "{key}.password: the IMAP server refused the login of {:?} ({e}); check \
                     {key}.username and {key}.password",
                    self.username
                ),
                Login::Oauth(_) => format!(
                    "{key}.username: the IMAP server refused the OAuth token for {:?} ({e}); \
                     check that the app may open this mailbox (Microsoft 365: the app's service \
                     principal given FullAccess to it)",
                    self.username
                ),
            }),
            Ok(Err(ReadError::Token(TokenError::Refused(what)))) => CredentialCheck::Refused(what),
            Ok(Err(e)) => {
                CredentialCheck::Unreachable(format!("IMAP {}:{}: {e}", self.host, self.port))
            }
            Err(_) => CredentialCheck::Unreachable(format!(
                "IMAP {}:{}: no answer within {} s",
                self.host,
                self.port,
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }

    async fn connect(&self) -> Result<ImapSession, ReadError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        let client: Client<Box<dyn Stream>> = match self.security {
            Security::Plain => {
                let mut c = Client::new(Box::new(tcp) as Box<dyn Stream>);
                greeting(&mut c).await?;
                c
            }
            Security::Tls => {
                let mut c = Client::new(Box::new(self.tls(tcp).await?) as Box<dyn Stream>);
                greeting(&mut c).await?;
                c
            }
            Security::Starttls => {
                let mut plain = Client::new(tcp);
                greeting(&mut plain).await?;
                plain.run_command_and_check_ok("STARTTLS", None).await?;
                let tcp = plain.into_inner();
                Client::new(Box::new(self.tls(tcp).await?) as Box<dyn Stream>)
            }
        };
        match &self.login {
            Login::Password(password) => client
                .login(&self.username, password.expose())
                .await
                .map_err(|(e, _)| ReadError::Login(e)),
            Login::Oauth(tokens) => {
                let token = tokens.access_token().await?;
                let response = xoauth2(&self.username, token.expose());
                let session = client
                    .authenticate("XOAUTH2", XOauth2(Some(response)))
                    .await
                    .map_err(|(e, _)| ReadError::Login(e));
                if session.is_err() {
                    // Revoked, or the app's rights changed: the next try gets a new token.
                    tokens.forget().await;
                }
                session
            }
        }
    }

    async fn tls(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ReadError> {
        let mut roots = tokio_rustls::rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for ca in &self.extra_ca {
            roots
                .add(ca.clone())
                .map_err(|e| ReadError::Tls(format!("tls_ca_file: {e}")))?;
        }
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ReadError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| ReadError::Tls(format!("{}: {e}", self.host)))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| ReadError::Tls(e.to_string()))
    }

    /// One connection: catch up, then wait for news, until it fails or the bridge stops.
    async fn session(&self, sink: &InboundSink, backoff: &mut Duration) -> Result<(), ReadError> {
        let mut session =
            within("connecting and logging in", CONNECT_TIMEOUT, self.connect()).await??;
        let mailbox = within("SELECT", COMMAND_TIMEOUT, session.select(&self.mailbox)).await??;
        let uid_validity = mailbox.uid_validity.unwrap_or(0);
        let idle = self.idle
            && within("CAPABILITY", COMMAND_TIMEOUT, session.capabilities())
                .await??
                .has_str("IDLE");
        info!(instance = %self.instance, mailbox = %self.mailbox, idle, "reading the mailbox");
        let mut cursor = self.cursor(sink, uid_validity).await?;
        // A mail that arrives while the reader searches, fetches or marks is announced in the
        // answer to that command (`* 12 EXISTS`), which the IMAP client sets aside here; IDLE
        // would not announce it again. So: search again until a search finds nothing new and
        // nothing was announced meanwhile, and look at the announcements once more after IDLE
        // has started.
        let news = session.unsolicited_responses.clone();
        loop {
            while self.catch_up(&mut session, sink, &mut cursor).await? > 0 || announced(&news) {}
            *backoff = Duration::from_secs(1);
            if idle {
                let mut handle = session.idle();
                within("IDLE", COMMAND_TIMEOUT, handle.init()).await??;
                if !announced(&news) {
                    let (wait, _interrupt) = handle.wait_with_timeout(IDLE_RENEW);
                    match wait.await? {
                        IdleResponse::NewData(_) => {
                            debug!(instance = %self.instance, "mailbox changed")
                        }
                        IdleResponse::Timeout | IdleResponse::ManualInterrupt => {}
                    }
                }
                session = within("DONE", COMMAND_TIMEOUT, handle.done()).await??;
            } else {
                tokio::time::sleep(self.poll).await;
            }
        }
    }

    /// Where this mailbox's reading resumes: the kept cursor if the mailbox is the same one
    /// (same UIDVALIDITY), else a fresh one for it, kept at once.
    async fn cursor(&self, sink: &InboundSink, uid_validity: u32) -> Result<Cursor, ReadError> {
        let key = format!("imap:{}", self.mailbox);
        let kept = sink
            .state(&key)
            .await
            .map_err(|e| ReadError::Gateway(e.to_string()))?
            .as_deref()
            .and_then(Cursor::parse);
        match kept {
            Some(c) if c.uid_validity == uid_validity => Ok(c),
            kept => {
                if let Some(old) = kept {
                    warn!(
                        instance = %self.instance, mailbox = %self.mailbox,
                        old = old.uid_validity, new = uid_validity,
                        "the mailbox's UIDVALIDITY changed (it was recreated or restored): reading \
                         every unmarked mail again; Message-IDs keep the records free of duplicates"
                    );
                }
                let fresh = Cursor {
                    uid_validity,
                    last_uid: 0,
                };
                self.keep(sink, fresh).await?;
                Ok(fresh)
            }
        }
    }

    async fn keep(&self, sink: &InboundSink, cursor: Cursor) -> Result<(), ReadError> {
        sink.set_state(&format!("imap:{}", self.mailbox), &cursor.to_string())
            .await
            .map_err(|e| ReadError::Gateway(e.to_string()))
    }

    /// Hands every unmarked mail after the cursor to the gateway, oldest first, marks what it
    /// committed, and moves the cursor past it. Returns how many mails the search found.
    async fn catch_up(
        &self,
        session: &mut ImapSession,
        sink: &InboundSink,
        cursor: &mut Cursor,
    ) -> Result<usize, ReadError> {
        let uid_validity = cursor.uid_validity;
        let mut uids: Vec<u32> = within(
            "SEARCH",
            COMMAND_TIMEOUT,
            session.uid_search(cursor.search()),
        )
        .await??
        .into_iter()
        // `UID n:*` also names the newest mail when its UID is below n.
        .filter(|uid| *uid > cursor.last_uid)
        .collect();
        uids.sort_unstable();
        for chunk in uids.chunks(CHUNK) {
            let set = uid_set(chunk);
            let fetched: Vec<_> = within("FETCH", COMMAND_TIMEOUT, async {
                session
                    .uid_fetch(&set, "(UID BODY.PEEK[])")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await??;
            let mut pending = Vec::with_capacity(fetched.len());
            let mut reports = Vec::new();
            for fetch in &fetched {
                let Some(uid) = fetch.uid else { continue };
                let raw = fetch.body().unwrap_or_default();
                if let Some(bounce) = parse::bounce(raw, &self.domain) {
                    // A bounce of the office's own mail: a delivery report, not a message.
                    let matched = sink
                        .report(DeliveryReport {
                            remote_id: RemoteMessageId::new(bounce.original.clone()),
                            status: bounce.status,
                            at: chrono::Utc::now(),
                        })
                        .await
                        .map_err(|e| ReadError::Gateway(e.to_string()))?;
                    if !matched {
                        warn!(instance = %self.instance, original = %bounce.original, "a bounce of a mail the records do not know");
                    }
                    reports.push(uid);
                    continue;
                }
                let message = parse::inbound(
                    raw,
                    &parse::Context {
                        office: &self.office,
                        max_attachment_bytes: self.max_attachment_bytes,
                        fallback_id: format!("imap-{uid_validity}-{uid}@{}", self.mailbox),
                    },
                );
                let ack = sink
                    .enqueue(message)
                    .await
                    .map_err(|e| ReadError::Gateway(e.to_string()))?;
                pending.push((uid, ack));
            }
            let mut done = reports;
            for (uid, ack) in pending {
                ack.recorded()
                    .await
                    .map_err(|e| ReadError::Gateway(e.to_string()))?;
                done.push(uid);
            }
            if done.is_empty() {
                continue;
            }
            done.sort_unstable();
            let set = uid_set(&done);
            within("STORE", COMMAND_TIMEOUT, async {
                session
                    .uid_store(&set, format!("+FLAGS ({HANDLED_KEYWORD})"))
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await??;
            if let Some(folder) = &self.handled_folder {
                session.uid_mv(&set, folder).await.map_err(|e| {
                    ReadError::Server(format!("moving handled mail to {folder}: {e}"))
                })?;
            }
            // Every UID of the chunk is recorded or a report by now.
            if let Some(&last) = chunk.last() {
                cursor.last_uid = last;
                self.keep(sink, *cursor).await?;
            }
            debug!(instance = %self.instance, count = done.len(), "mails recorded and marked");
        }
        Ok(uids.len())
    }
}

/// Takes every announcement the server made in answers to the reader's commands; true if one
/// says the mailbox grew.
fn announced(news: &async_channel::Receiver<UnsolicitedResponse>) -> bool {
    let mut grew = false;
    while let Ok(news) = news.try_recv() {
        grew |= matches!(
            news,
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
        );
    }
    grew
}

/// Where a mailbox's reading resumes, kept in the records store: the mailbox's UIDVALIDITY and
/// the last UID the gateway committed under it (`"UIDVALIDITY:UID"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub uid_validity: u32,
    pub last_uid: u32,
}

impl Cursor {
    fn parse(kept: &str) -> Option<Self> {
        let (validity, uid) = kept.split_once(':')?;
        Some(Self {
            uid_validity: validity.parse().ok()?,
            last_uid: uid.parse().ok()?,
        })
    }

    /// The SEARCH for mail still to read: after the cursor, and not marked handled (a mail
    /// marked by an earlier run whose cursor did not move is not read twice).
    fn search(&self) -> String {
        format!(
            "UID {}:* UNKEYWORD {HANDLED_KEYWORD}",
            self.last_uid.saturating_add(1)
        )
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid_validity, self.last_uid)
    }
}

async fn greeting<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug>(
    client: &mut Client<T>,
) -> Result<(), ReadError> {
    match client.read_response().await? {
        Some(_) => Ok(()),
        None => Err(ReadError::Server(
            "the server closed the connection before greeting".into(),
        )),
    }
}

/// `1,2,5` for the UIDs.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_round_trip_and_search_after_the_last_uid() {
        let c = Cursor {
            uid_validity: 1_700_000_000,
            last_uid: 41,
        };
        assert_eq!(c.to_string(), "1700000000:41");
        assert_eq!(Cursor::parse("1700000000:41"), Some(c));
        assert_eq!(c.search(), "UID 42:* UNKEYWORD $Casebridge");
        for broken in ["", "12", "x:1", "1:y", "1:2:3"] {
            assert_eq!(Cursor::parse(broken), None, "{broken}");
        }
        let end = Cursor {
            uid_validity: 1,
            last_uid: u32::MAX,
        };
        assert_eq!(
            end.search(),
            format!("UID {}:* UNKEYWORD $Casebridge", u32::MAX)
        );
    }
}
