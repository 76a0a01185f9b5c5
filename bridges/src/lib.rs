//! The contract between casebridge's core and its channels.
//!
//! A channel implements the small required [`Bridge`] trait: start and stop, deliver one outbound
//! message, describe its [`Capabilities`]. What a channel receives it hands to the core through an
//! [`InboundSink`], which answers only once the message is durably recorded, so a bridge
//! acknowledges its upstream (IMAP flag, webhook 200, update offset) only after that.
//!
//! Ids are opaque newtypes: the core stores and compares them, only the bridge that made them
//! parses them. Adding a channel is one new module with a [`BridgeFactory`].

pub mod bounds;
#[cfg(feature = "email")]
pub mod email;
#[cfg(feature = "sms")]
pub mod sms;
#[cfg(any(feature = "email", feature = "telegram"))]
mod task;
#[cfg(feature = "telegram")]
pub mod telegram;

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use casebridge_config::{BridgeInstance, ConfigError};
pub use casebridge_policies::channel::{MediaKinds, ReplyWindow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

macro_rules! opaque_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps the bridge's own representation.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The stored form; only the bridge that made it should interpret it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(
    /// A client's address on one channel: an E.164 number, a mail address, a chat id.
    RemoteAddress
);
opaque_id!(
    /// The channel's own id of one message, used to deduplicate upstream retries.
    RemoteMessageId
);

/// A message a client sent on a channel. Bridges fill in what they know and take the rest
/// from `..Default::default()`: no subject, no files, not automated, no references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundMessage {
    /// The channel's id of this message; the same id twice is one message.
    pub message_id: RemoteMessageId,
    /// Who sent it.
    pub from: RemoteAddress,
    /// How to show the sender to the case team, e.g. `+46 70 123 45 67`.
    pub display_name: String,
    /// Plain-text body.
    pub body: String,
    /// Sanitised HTML body, when the channel has one.
    pub html: Option<String>,
    /// Files that came with the message, in order.
    pub attachments: Vec<Attachment>,
    /// When the channel says the message was sent or received.
    pub sent_at: DateTime<Utc>,
    /// Sent by a machine, not a person (RFC 3834 `Auto-Submitted`, a bounce, a mailing list):
    /// recorded and shown, never answered automatically.
    pub automated: bool,
    /// The subject, on channels that have one (mail).
    pub subject: Option<String>,
    /// The channel's ids of earlier messages this one answers (mail: In-Reply-To and
    /// References). A message from an unknown address that answers one of the office's own
    /// joins that message's case.
    pub references: Vec<String>,
    /// A case number the message names (a mail subject's `[2026-000123]`). It never routes a
    /// message by itself; the team is told when an unknown address names a case.
    pub case_hint: Option<String>,
    /// The message exactly as the channel delivered it (mail: the RFC 5322 bytes), for the
    /// record; the room shows `body`/`html`, which may leave quoted history out.
    pub original: Option<Vec<u8>>,
    /// The channel's id of the client's earlier message this one edits: the room shows it as an
    /// edit (`m.replace`) of that message.
    pub replaces: Option<RemoteMessageId>,
    /// A token the office handed out for this client (a Telegram deep link
    /// `t.me/BOT?start=TOKEN`): a valid one joins this address to the case it was made for.
    pub invitation: Option<String>,
    /// What the bridge could not read in the message (a broken character set, a missing
    /// part): each is shown to the case team as a notice after the message. The record keeps
    /// `original` whole.
    pub problems: Vec<String>,
}

/// A file a client sent. The bridge applies its own size limit before handing it over (and
/// says so in the message when it leaves one out); the gateway records every byte it receives.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name the client gave, or one the bridge made up.
    pub filename: String,
    /// The MIME type, e.g. `image/jpeg`.
    pub mime: String,
    /// The content.
    pub data: Vec<u8>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("mime", &self.mime)
            .field("size", &self.data.len())
            .finish()
    }
}

/// A reply from the case team, ready for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// The gateway's record id; stable across retries, so a bridge can use it for idempotency.
    pub record_id: i64,
    /// The case this reply belongs to, e.g. `2026-000123`.
    pub case_number: String,
    /// The client's address on this channel.
    pub to: RemoteAddress,
    /// Plain-text body, already passed through the outbound policies.
    pub body: String,
    /// HTML body, when the channel can use one.
    pub html: Option<String>,
    /// Set in a discreet case (a client at risk, whose phone someone else may read): the
    /// bridge shows this neutral sender and subject where it has them, and never the case
    /// number.
    pub discreet: Option<Discretion>,
    /// Sent by a rule, not a person (an auto-reply): mail marks it `Auto-Submitted:
    /// auto-replied` (RFC 3834) so the other side's auto-responders stay quiet.
    pub automatic: bool,
    /// The conversation so far with this address, for channels that thread (mail).
    pub conversation: Conversation,
    /// Files the worker sent (images without their metadata), for channels that carry them.
    pub attachments: Vec<Attachment>,
}

/// What a threading channel needs to answer within the client's conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conversation {
    /// The subject of the client's latest message.
    pub subject: Option<String>,
    /// The channel's id of the client's latest message (mail: its Message-ID).
    pub in_reply_to: Option<String>,
    /// The channel's ids of the conversation's messages, oldest first (mail: References).
    pub references: Vec<String>,
}

/// What a discreet reply shows instead of the office's name and the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discretion {
    /// A neutral sender name (mail From name).
    pub sender_name: String,
    /// A neutral subject (mail).
    pub subject: String,
}

/// What a successful delivery returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivered {
    /// The channel's id of the sent message, when it gives one (matched to delivery reports).
    pub remote_id: Option<RemoteMessageId>,
}

/// Whether a failed delivery may succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Outage, timeout, rate limit: retry from the queue with backoff.
    Transient,
    /// The channel refused this message for good: tell the team, do not retry.
    Permanent,
    /// The client cannot be reached at this address any more (they blocked the office's bot,
    /// the mailbox is gone): permanent, and the case is flagged until the client writes again.
    Unreachable,
}

/// A delivery that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    kind: FailureKind,
    message: String,
    retry_after: Option<std::time::Duration>,
}

impl DeliveryError {
    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }
    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }
    /// The channel asked to wait this long before the next try.
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }
    /// A failure that says the client cannot be reached at this address any more.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Unreachable,
            message: message.into(),
            retry_after: None,
        }
    }
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }
    /// Whether this message can never be delivered.
    pub fn is_permanent(&self) -> bool {
        self.kind != FailureKind::Transient
    }
    /// Whether the address itself is gone (the case is flagged).
    pub fn is_unreachable(&self) -> bool {
        self.kind == FailureKind::Unreachable
    }
    /// The wait the channel asked for, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }
}

/// What a channel can carry and the rules it sets; the core fits outbound messages to them,
/// enforces the rules, and explains them to the team. Built with [`Capabilities::new`] and the
/// `with_*` methods: every rule a channel does not name keeps its default, so a new rule is one
/// field here and one line in the channels that have it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Short machine name of the channel: `email`, `sms`, `telegram`.
    pub channel: &'static str,
    /// How the channel is named to people, e.g. `SMS`; shown on the ghost: `+46 70 (SMS)`.
    pub label: &'static str,
    /// Which kinds of file can be sent (default: none).
    pub media: MediaKinds,
    /// Longest text body in characters, if limited (default: unlimited).
    pub max_length: Option<usize>,
    /// Whether the channel reports delivery after accepting a message (default: no).
    pub delivery_reports: bool,
    /// Whether the channel renders HTML (default: plain text).
    pub html: bool,
    /// How long after the client's last message the channel takes the office's messages
    /// (default: `None`, always).
    pub reply_window: Option<ReplyWindow>,
}

impl Capabilities {
    /// A channel named `channel` (machine name) and `label` (for people), with every rule at
    /// its default: plain text of any length, no files, no delivery reports, no reply window.
    pub const fn new(channel: &'static str, label: &'static str) -> Self {
        Self {
            channel,
            label,
            media: MediaKinds::NONE,
            max_length: None,
            delivery_reports: false,
            html: false,
            reply_window: None,
        }
    }

    /// Carries files of these kinds.
    pub const fn with_media(mut self, media: MediaKinds) -> Self {
        self.media = media;
        self
    }

    /// Carries at most `chars` characters of text per message.
    pub const fn with_max_length(mut self, chars: usize) -> Self {
        self.max_length = Some(chars);
        self
    }

    /// Reports delivery (or not) after accepting a message.
    pub const fn with_delivery_reports(mut self, reports: bool) -> Self {
        self.delivery_reports = reports;
        self
    }

    /// Renders HTML.
    pub const fn with_html(mut self) -> Self {
        self.html = true;
        self
    }

    /// Takes the office's messages only within `window` of the client's last message.
    pub const fn with_reply_window(mut self, window: ReplyWindow) -> Self {
        self.reply_window = Some(window);
        self
    }
}

/// A failure to start or run a bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The instance's configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The bridge could not start or lost its upstream for good.
    #[error("{0}")]
    Failed(String),
}

/// What a bridge found when it showed its credentials to its channel: the check `casebridge
/// run` makes at start and again while it runs, so that a wrong password is an error the admin
/// reads at once, not a failure at the first client's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCheck {
    /// The channel took them; what it said of the account (`Telegram bot @office_bot`).
    Accepted(String),
    /// The channel refused them, or the account cannot be used: what is wrong, led by the key
    /// to fix (`bridges.sms.provider.api_password: ...`).
    Refused(String),
    /// The channel could not be asked now (network, outage): tried again later.
    Unreachable(String),
    /// The channel has no call that proves the credentials without sending anything.
    Unchecked(String),
}

impl CredentialCheck {
    /// The word `/health` shows for it.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Accepted(_) => "accepted",
            Self::Refused(_) => "refused",
            Self::Unreachable(_) => "unreachable",
            Self::Unchecked(_) => "unchecked",
        }
    }

    /// What the channel said.
    pub fn detail(&self) -> &str {
        match self {
            Self::Accepted(d) | Self::Refused(d) | Self::Unreachable(d) | Self::Unchecked(d) => d,
        }
    }
}

/// One channel instance (`[bridges.KEY]`).
#[async_trait]
pub trait Bridge: Send + Sync + 'static {
    /// What this channel can carry.
    fn capabilities(&self) -> Capabilities;

    /// Starts receiving: inbound messages go to `inbound`. Returns once the bridge runs; the
    /// bridge spawns its own tasks.
    async fn start(&self, inbound: InboundSink) -> Result<(), BridgeError>;

    /// Stops receiving and releases connections.
    async fn stop(&self);

    /// Sends one message to a client. Called from the durable queue, so it may be called again
    /// with the same `record_id` after a crash.
    async fn deliver(&self, message: &OutboundMessage) -> Result<Delivered, DeliveryError>;

    /// Optional capability: shows the instance's credentials to its channel with the cheapest
    /// call that proves them (a login, `getMe`, an account lookup), sending nothing to anyone.
    /// Called at start and again while the gateway runs; it must not disturb the bridge's
    /// own loops.
    async fn check_credentials(&self) -> CredentialCheck {
        CredentialCheck::Unchecked("this channel has no call that proves its credentials".into())
    }

    /// Optional capability: the bridge receives its provider's HTTP calls.
    fn webhook(&self) -> Option<&dyn Webhook> {
        None
    }

    /// Optional capability: a reply too long for one message of this channel, cut into the
    /// messages to send. The gateway records and queues each part on its own, so each is
    /// delivered (and retried) exactly once. `None`: deliver it whole, as `deliver` decides.
    /// By default a text longer than [`Capabilities::max_length`] is cut between words
    /// ([`casebridge_policies::channel::fit_length`]); a channel with its own rule (SMS
    /// segments, or refusing) says so here.
    fn split(&self, body: &str) -> Option<Vec<String>> {
        let max = self.capabilities().max_length?;
        (body.chars().count() > max).then(|| casebridge_policies::channel::fit_length(body, max))
    }

    /// Optional capability: a link the client opens to bring `token` to the office on this
    /// channel (Telegram: `https://t.me/BOT?start=TOKEN`); the message it starts carries the
    /// token as [`InboundMessage::invitation`]. `None`: the channel has no such links.
    fn invitation_link(&self, _token: &str) -> Option<String> {
        None
    }
}

/// Optional capability of a bridge whose provider calls it over HTTP (inbound SMS, delivery
/// reports, a Telegram webhook). The gateway serves it at `/webhook/{instance}` and below, and
/// answers the provider with what the bridge returns. A bridge checks the provider's signature
/// or secret itself and answers success only once [`InboundSink::submit`] has returned `Ok`.
#[async_trait]
pub trait Webhook: Send + Sync {
    /// Handles one request. Its URI is the one the provider called, path and query included,
    /// relative to the gateway (`/webhook/{instance}/...`).
    async fn handle(&self, request: http::Request<Vec<u8>>) -> http::Response<Vec<u8>>;
}

/// A plain-text answer to a provider's webhook call.
#[cfg(any(feature = "sms", feature = "telegram"))]
pub(crate) fn respond(status: u16, text: &str) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(format!("{text}\n").into_bytes())
        .expect("a valid response")
}

/// Builds bridge instances of one kind from their configuration.
pub trait BridgeFactory: Send + Sync + 'static {
    /// The `kind` value this factory answers to.
    fn kind(&self) -> &'static str;

    /// Builds the instance `name`; parse its own options with [`BridgeInstance::options`].
    fn build(&self, name: &str, config: &BridgeInstance) -> Result<Arc<dyn Bridge>, BridgeError>;
}

/// The factories of the bridges this build ships: one per channel feature that is on. Each
/// bridge adds itself here.
pub fn builtin_factories() -> Vec<Arc<dyn BridgeFactory>> {
    vec![
        #[cfg(feature = "sms")]
        Arc::new(sms::SmsFactory),
        #[cfg(feature = "email")]
        Arc::new(email::EmailFactory),
        #[cfg(feature = "telegram")]
        Arc::new(telegram::TelegramFactory),
    ]
}

/// How the core answered an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Recorded now; the upstream may be acknowledged.
    Recorded {
        /// The case it belongs to.
        case_number: String,
    },
    /// This message id was recorded before; acknowledge the upstream again, nothing else.
    Duplicate,
}

/// The core could not record an inbound message: do not acknowledge it upstream.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the gateway could not record the message: {0}")]
pub struct SubmitError(pub String);

/// The core's answer to an enqueued message, still to come.
#[derive(Debug)]
pub struct PendingAck(oneshot::Receiver<Result<Accepted, SubmitError>>);

impl PendingAck {
    /// Waits until the message is durably recorded (or could not be).
    pub async fn recorded(self) -> Result<Accepted, SubmitError> {
        self.0
            .await
            .map_err(|_| SubmitError("the gateway dropped the message".into()))?
    }
}

/// One inbound message on its way into the core.
#[derive(Debug)]
pub struct InboundEnvelope {
    /// The bridge instance it came from.
    pub instance: Arc<str>,
    /// The channel, from the bridge's capabilities.
    pub capabilities: Capabilities,
    /// The message.
    pub message: InboundMessage,
    /// Answered once the message is committed (or could not be).
    pub reply: oneshot::Sender<Result<Accepted, SubmitError>>,
}

/// What a channel says became of a reply it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Handed to the carrier.
    Sent,
    /// The client's device has it.
    Delivered,
    /// It will not arrive.
    Failed {
        /// Why, as the channel says it.
        reason: String,
    },
}

/// A delivery report for a reply, matched by the id the channel gave when it accepted it
/// ([`Delivered::remote_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The channel's id of the sent message.
    pub remote_id: RemoteMessageId,
    /// What became of it.
    pub status: DeliveryStatus,
    /// When, as the channel says.
    pub at: DateTime<Utc>,
}

/// A delivery report on its way into the core.
#[derive(Debug)]
pub struct ReportEnvelope {
    /// The bridge instance it came from.
    pub instance: Arc<str>,
    /// The report.
    pub report: DeliveryReport,
    /// Answered once the report is committed: true if it matched a reply.
    pub reply: oneshot::Sender<Result<bool, SubmitError>>,
}

/// What a bridge hands to the core.
#[derive(Debug)]
// Messages are nearly all of the traffic: boxing them to shrink the rare report would cost an
// allocation per message.
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    /// A client's message.
    Message(InboundEnvelope),
    /// A delivery report for a reply.
    Report(ReportEnvelope),
}

/// Small durable values a bridge keeps between runs (an IMAP mailbox's UIDVALIDITY and last
/// UID), in the gateway's records store, per bridge instance.
#[async_trait]
pub trait BridgeState: Send + Sync {
    /// The value under `key`, if one was kept.
    async fn get(&self, instance: &str, key: &str) -> Result<Option<String>, SubmitError>;
    /// Keeps `value` under `key`, replacing what was there.
    async fn set(&self, instance: &str, key: &str, value: &str) -> Result<(), SubmitError>;
}

/// A bridge's handle into the core's inbound queue.
#[derive(Clone)]
pub struct InboundSink {
    instance: Arc<str>,
    capabilities: Capabilities,
    tx: mpsc::Sender<Inbound>,
    state: Option<Arc<dyn BridgeState>>,
}

impl InboundSink {
    /// A sink for `instance` that feeds `tx`.
    pub fn new(
        instance: impl Into<Arc<str>>,
        capabilities: Capabilities,
        tx: mpsc::Sender<Inbound>,
    ) -> Self {
        Self {
            instance: instance.into(),
            capabilities,
            tx,
            state: None,
        }
    }

    /// The same sink, keeping bridge state in `state` (see [`InboundSink::state`]).
    pub fn with_state(mut self, state: Arc<dyn BridgeState>) -> Self {
        self.state = Some(state);
        self
    }

    /// This instance's durable value under `key`. A sink without a store (a bridge's unit
    /// tests) keeps nothing and answers `None`.
    pub async fn state(&self, key: &str) -> Result<Option<String>, SubmitError> {
        match &self.state {
            Some(state) => state.get(&self.instance, key).await,
            None => Ok(None),
        }
    }

    /// Keeps `value` under `key` for this instance (see [`InboundSink::state`]).
    pub async fn set_state(&self, key: &str, value: &str) -> Result<(), SubmitError> {
        match &self.state {
            Some(state) => state.set(&self.instance, key, value).await,
            None => Ok(()),
        }
    }

    /// Hands one message to the core and waits until it is durably recorded. Only after `Ok`
    /// may the bridge acknowledge it upstream.
    pub async fn submit(&self, message: InboundMessage) -> Result<Accepted, SubmitError> {
        self.enqueue(message).await?.recorded().await
    }

    /// Hands one message to the core without waiting for the commit: messages enqueued one
    /// after another keep their order, and the core can commit them as one batch. Await
    /// [`PendingAck::recorded`] before acknowledging upstream.
    pub async fn enqueue(&self, message: InboundMessage) -> Result<PendingAck, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let envelope = InboundEnvelope {
            instance: self.instance.clone(),
            capabilities: self.capabilities.clone(),
            message: bounds::bounded(message),
            reply,
        };
        self.tx
            .send(Inbound::Message(envelope))
            .await
            .map_err(|_| SubmitError("the gateway is shutting down".into()))?;
        Ok(PendingAck(answer))
    }

    /// Hands a delivery report to the core and waits until it is recorded: true if it matched
    /// a reply. Acknowledge the channel's callback only after `Ok`.
    pub async fn report(&self, report: DeliveryReport) -> Result<bool, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let envelope = ReportEnvelope {
            instance: self.instance.clone(),
            report,
            reply,
        };
        self.tx
            .send(Inbound::Report(envelope))
            .await
            .map_err(|_| SubmitError("the gateway is shutting down".into()))?;
        answer
            .await
            .map_err(|_| SubmitError("the gateway dropped the report".into()))?
    }

    /// The instance this sink belongs to.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_plain_strings() {
        let id = RemoteAddress::new("+46701234567");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"+46701234567\"");
        assert_eq!(serde_json::from_str::<RemoteAddress>(&json).unwrap(), id);
    }

    #[test]
    fn delivery_error_kinds() {
        let e = DeliveryError::transient("503").with_retry_after(std::time::Duration::from_secs(3));
        assert!(e.is_transient() && !e.is_permanent());
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
        assert!(DeliveryError::permanent("bad number").is_permanent());
        let gone = DeliveryError::unreachable("blocked");
        assert!(gone.is_permanent() && gone.is_unreachable() && !gone.is_transient());
    }

    #[test]
    fn capabilities_default_to_no_rule_and_name_only_what_a_channel_has() {
        let plain = Capabilities::new("x", "X");
        assert!(!plain.media.any() && !plain.html);
        assert_eq!((plain.max_length, plain.reply_window), (None, None));
        let meta = Capabilities::new("whatsapp", "WhatsApp")
            .with_media(MediaKinds {
                images: true,
                ..MediaKinds::NONE
            })
            .with_max_length(4096)
            .with_reply_window(ReplyWindow::WHATSAPP);
        assert!(meta.media.any() && meta.media.accepts("image/png"));
        assert!(!meta.media.accepts("application/pdf"));
        assert_eq!(meta.max_length, Some(4096));
        assert_eq!(meta.reply_window, Some(ReplyWindow::WHATSAPP));
        assert!(!Capabilities::new("x", "X")
            .with_media(MediaKinds::NONE)
            .media
            .any());
    }

    #[tokio::test]
    async fn submit_waits_for_the_core() {
        let (tx, mut rx) = mpsc::channel(1);
        let caps = Capabilities::new("test", "Test");
        let sink = InboundSink::new("inst", caps, tx);
        let core = tokio::spawn(async move {
            let Some(Inbound::Message(env)) = rx.recv().await else {
                panic!("a message")
            };
            assert_eq!(&*env.instance, "inst");
            env.reply.send(Ok(Accepted::Duplicate)).unwrap();
        });
        let message = InboundMessage {
            message_id: RemoteMessageId::new("m1"),
            from: RemoteAddress::new("a"),
            display_name: "a".into(),
            body: "hi".into(),
            sent_at: Utc::now(),
            ..Default::default()
        };
        assert_eq!(
            sink.submit(message.clone()).await.unwrap(),
            Accepted::Duplicate
        );
        core.await.unwrap();
        drop(sink);
    }
}
