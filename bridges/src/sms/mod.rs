//! The SMS bridge: one office number, clients by their phone numbers, one module per provider.
//!
//! Inbound SMS and delivery reports arrive on the gateway's webhook routes
//! (`/webhook/{instance}` and `/webhook/{instance}/dlr`); the provider checks its own
//! authentication. Replies are counted in GSM-7 or UCS-2 segments and refused, with how much to
//! cut, when they need more parts than the office allows.

pub mod elks;
pub mod generic;
pub use casebridge_policies::sms as segments;
pub mod twilio;

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;
use casebridge_config::{resolve_secret, BridgeInstance, ConfigError, Secret};
use chrono::{DateTime, Utc};
use phonenumber::{country, Mode};
use serde::Deserialize;
use tracing::warn;
use url::Url;

use self::segments::Segments;
use crate::{
    respond, Accepted, Bridge, BridgeError, BridgeFactory, Capabilities, CredentialCheck,
    Delivered, DeliveryError, DeliveryReport, InboundMessage, InboundSink, OutboundMessage,
    RemoteAddress, RemoteMessageId, Webhook,
};

/// `[bridges.KEY]` with `kind = "sms"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmsOptions {
    /// The office's number clients write to, in E.164; replies come from it.
    number: String,
    /// An alphanumeric sender shown instead of the number (clients cannot answer it).
    sender_id: Option<String>,
    /// Region for numbers written without a country code, e.g. `SE`.
    #[serde(default = "default_region")]
    default_region: String,
    /// Most parts a reply may take; a longer one is refused with how much to cut, or split.
    #[serde(default = "default_max_segments")]
    max_segments: usize,
    /// What happens to a longer reply: `refuse` (with how much to cut) or `split` into
    /// numbered messages of at most `max_segments` parts each.
    #[serde(default)]
    long_replies: LongReplies,
    /// With `split`, the most messages one reply may become; a longer one is refused.
    #[serde(default = "default_max_messages")]
    max_messages: usize,
    /// How the provider reaches this gateway (`https://host/`): delivery reports are asked for
    /// there, and signatures are checked against it.
    public_url: Option<Url>,
    /// Secret the provider presents on webhooks, for providers that sign nothing (46elks).
    webhook_secret: Option<Secret>,
    /// File holding `webhook_secret`.
    webhook_secret_file: Option<PathBuf>,
    /// The provider and its settings.
    provider: ProviderOptions,
}

fn default_region() -> String {
    "SE".to_owned()
}
fn default_max_segments() -> usize {
    3
}
fn default_max_messages() -> usize {
    4
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LongReplies {
    #[default]
    Refuse,
    Split,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
enum ProviderOptions {
    #[serde(rename = "46elks")]
    Elks(elks::ElksOptions),
    #[serde(rename = "twilio")]
    Twilio(twilio::TwilioOptions),
    #[serde(rename = "webhook")]
    Generic(Box<generic::GenericOptions>),
}

/// What every provider is built from besides its own options.
pub struct ProviderContext {
    /// Its config table, for errors: `bridges.NAME.provider`.
    pub key: String,
    /// The public URL of this instance's webhook (`https://host/webhook/NAME`), if configured.
    pub webhook_url: Option<Url>,
    /// `webhook_secret`, if configured.
    pub webhook_secret: Option<Secret>,
}

/// What a provider's webhook carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    /// An SMS from a client.
    Message {
        /// The provider's id, its shape already checked by the provider.
        id: String,
        /// Sender as the provider gives it; [`check_from`] decides whether it is one.
        from: String,
        /// The number it was sent to, as the provider gives it; it must be the office's.
        to: String,
        /// Text.
        text: String,
        /// When the provider received it.
        at: DateTime<Utc>,
    },
    /// A delivery report.
    Report(DeliveryReport),
}

/// The HTTP client every provider sends with.
fn provider_client() -> Result<reqwest::Client, BridgeError> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| BridgeError::Failed(e.to_string()))
}

/// How a provider's non-success answer counts, the same for every provider: wrong credentials
/// (the office's to fix; the reply stays queued), timeouts, rate limits and server errors are
/// retried; any other refusal is final.
fn refused(provider: &str, status: u16, detail: &str) -> DeliveryError {
    let message = format!("{provider} answered {status}: {}", detail.trim());
    match status {
        401 | 408 | 429 | 500..=599 => DeliveryError::transient(message),
        _ => DeliveryError::permanent(message),
    }
}

/// An alphanumeric sender as operators and providers take it: 1–11 ASCII letters, digits and
/// spaces, at least one letter (a digits-only sender would pass for a number).
fn check_sender_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 11 {
        return Err(format!(
            "{id:?} has {} characters; a sender id takes 1 to 11",
            id.chars().count()
        ));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_alphanumeric() && *c != ' ') {
        return Err(format!(
            "{id:?} contains {c:?}; a sender id takes only the letters A-Z and a-z, digits and spaces"
        ));
    }
    if !id.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "{id:?} has no letter; a sender id of digits only passes for a number"
        ));
    }
    Ok(())
}

/// A refusal of a webhook request: status and reason.
pub type Refusal = (u16, String);

/// Most parts of a concatenated SMS: the concatenation header numbers parts in one byte
/// (3GPP TS 23.040, 9.2.3.24.1), so no phone can send a longer one.
pub const MAX_PARTS: usize = 255;

/// Bytes no text of [`MAX_PARTS`] parts can exceed (39,015 GSM-7 characters of at most 3 bytes
/// in UTF-8), checked before the parts are counted so a huge body costs nothing to refuse.
const MAX_TEXT_BYTES: usize = 153 * MAX_PARTS * 3;

/// A hostile value as it may appear in a refusal or a log line: quoted, control characters
/// escaped, and cut after 24 characters, so a 500 KB field is never echoed or logged whole.
pub(crate) fn shown(value: &str) -> String {
    const SHOWN: usize = 24;
    let count = value.chars().count();
    if count <= SHOWN {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(SHOWN).collect();
        format!("{head:?}… ({count} characters)")
    }
}

/// A field given more than once: which value counts would be a guess, so it is refused.
pub(crate) fn once<'a>(
    form: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, Refusal> {
    let mut values = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err((400, format!("{name}: given more than once")));
    }
    Ok(first)
}

/// A field that must be there, once.
pub(crate) fn required<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, Refusal> {
    once(form, name)?.ok_or_else(|| (400, format!("missing field {name:?}")))
}

/// Punctuation ids are written with besides letters and digits (UUIDs, `g-1`, `a.b`, `x_y`).
pub(crate) const ID_PUNCTUATION: &[u8] = b"-_.:";

/// A provider's message id: 1 to `max` ASCII letters and digits (plus `extra`), as providers
/// write them; anything else is no id of theirs, and an id is a key, so it is bounded.
pub(crate) fn check_id(field: &str, id: &str, max: usize, extra: &[u8]) -> Result<(), Refusal> {
    if id.is_empty() || id.len() > max {
        return Err((
            400,
            format!(
                "{field}: {} is no message id (1 to {max} characters)",
                shown(id)
            ),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        let allowed = match std::str::from_utf8(extra) {
            Ok("") | Err(_) => "letters and digits only".to_owned(),
            Ok(extra) => format!("letters, digits and {extra} only"),
        };
        return Err((
            400,
            format!("{field}: {} is no message id ({allowed})", shown(id)),
        ));
    }
    Ok(())
}

/// An SMS text no longer than `max_chars` (a provider's own limit) and than any concatenated SMS.
pub(crate) fn check_text(field: &str, text: &str, max_chars: Option<usize>) -> Result<(), Refusal> {
    let too_long = |limit: String| {
        Err((
            400,
            format!("{field}: longer than {limit}; no SMS carries that"),
        ))
    };
    if text.len() > MAX_TEXT_BYTES {
        return too_long(format!("{MAX_PARTS} parts ({} bytes)", text.len()));
    }
    if let Some(max) = max_chars {
        if text.chars().count() > max {
            return too_long(format!("{max} characters"));
        }
    }
    let segments = Segments::of(text);
    if segments.parts > MAX_PARTS {
        return too_long(format!("{MAX_PARTS} parts ({} parts)", segments.parts));
    }
    Ok(())
}

/// Whether `s` is a number in E.164 syntax: `+`, a country code (never 0), at most 15 digits.
fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// A phone number written as people and gateways write them: digits with at most a leading `+`,
/// spaces, hyphens and brackets, and short. Only such a string is handed to the number parser,
/// which would otherwise pick a number out of any text (`+46701234567\n+46701234568`).
fn looks_like_number(s: &str) -> bool {
    s.len() <= 24
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'(' | b')') || (b == b'+' && i == 0)
        })
}

/// The sender of an inbound SMS, as `(address, display name)`: a phone number (kept in E.164;
/// national numbers are read in `region`), or an alphanumeric sender id as operators deliver
/// them (46elks documents inbound SMS `from` "SMSElk"; clients cannot answer such a sender, but
/// what it says may matter to a case). Anything else is refused: it would become a client, a
/// ghost and a case that nobody can answer.
fn check_from(region: country::Id, from: &str) -> Result<(String, String), Refusal> {
    if looks_like_number(from) {
        if let Ok(n) = phonenumber::parse(Some(region), from) {
            if phonenumber::is_valid(&n) {
                return Ok(normalise(region, from));
            }
        }
        // A number in a range the parser's tables do not know yet is still a number.
        if is_e164(from) {
            return Ok((from.to_owned(), from.to_owned()));
        }
    } else if check_sender_id(from).is_ok() {
        return Ok((from.to_owned(), from.to_owned()));
    }
    Err((
        400,
        format!(
            "from: {} is neither a phone number nor an alphanumeric sender id",
            shown(from)
        ),
    ))
}

/// The number an inbound SMS was sent to must be this office's (`number`, E.164): a message
/// to another number is not this instance's to take.
fn check_to(region: country::Id, number: &str, to: &str) -> Result<(), Refusal> {
    let e164 = looks_like_number(to)
        .then(|| phonenumber::parse(Some(region), to).ok())
        .flatten()
        .map(|n| n.format().mode(Mode::E164).to_string());
    if e164.as_deref() == Some(number) {
        Ok(())
    } else {
        Err((
            403,
            format!("to: {} is not this office's number", shown(to)),
        ))
    }
}

/// One SMS provider's API.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Checks that the request comes from the provider.
    fn authenticate(&self, request: &http::Request<Vec<u8>>) -> Result<(), Refusal>;
    /// Reads an authenticated webhook request; `report` is true on the delivery-report route.
    fn parse(
        &self,
        request: &http::Request<Vec<u8>>,
        report: bool,
    ) -> Result<ProviderEvent, Refusal>;
    /// The answer once the event is recorded.
    fn accepted(&self) -> http::Response<Vec<u8>>;
    /// Where delivery reports should go, if the provider can send them here.
    fn report_url(&self) -> Option<String>;
    /// Shows the API credentials to the provider with a call that sends nothing (an account
    /// lookup). By default the provider has none.
    async fn check(&self) -> CredentialCheck {
        CredentialCheck::Unchecked("this provider has no call that proves its credentials".into())
    }
    /// Sends one SMS; `report_url` is where delivery reports should go.
    async fn send(
        &self,
        from: &str,
        to: &str,
        text: &str,
        report_url: Option<&str>,
    ) -> Result<Delivered, DeliveryError>;
}

/// Builds SMS bridges.
pub struct SmsFactory;

impl BridgeFactory for SmsFactory {
    fn kind(&self) -> &'static str {
        "sms"
    }

    fn build(&self, name: &str, config: &BridgeInstance) -> Result<Arc<dyn Bridge>, BridgeError> {
        let options: SmsOptions = config.options(name)?;
        let key = |k: &str| format!("bridges.{name}.{k}");
        let invalid = |k: &str, message: String| {
            BridgeError::Config(ConfigError::Invalid {
                key: key(k),
                message,
            })
        };
        let region: country::Id = options.default_region.parse().map_err(|_| {
            invalid(
                "default_region",
                format!(
                    "{:?} is not a region code; e.g. default_region = \"SE\" (ISO 3166 alpha-2)",
                    options.default_region
                ),
            )
        })?;
        let number = phonenumber::parse(Some(region), &options.number)
            .ok()
            .filter(phonenumber::is_valid)
            .ok_or_else(|| {
                invalid(
                    "number",
                    format!(
                        "{:?} is not a valid phone number (read in region {}); write the \
                         office's number in international form, e.g. number = \"+46701234567\"",
                        options.number, options.default_region
                    ),
                )
            })?;
        if options.max_segments == 0 {
            return Err(invalid("max_segments", "must be at least 1".into()));
        }
        let webhook_secret = match (&options.webhook_secret, &options.webhook_secret_file) {
            (None, None) => None,
            (value, file) => Some(resolve_secret(&key("webhook_secret"), value, file)?),
        };
        let webhook_url = options.public_url.as_ref().map(|base| {
            let mut base = base.clone();
            if !base.path().ends_with('/') {
                base.set_path(&format!("{}/", base.path()));
            }
            base.join(&format!("webhook/{name}"))
                .expect("a relative path joins")
        });
        let context = ProviderContext {
            key: key("provider"),
            webhook_url,
            webhook_secret,
        };
        let provider: Arc<dyn Provider> = match options.provider {
            ProviderOptions::Elks(elks) => Arc::new(elks::Elks::new(elks, context)?),
            ProviderOptions::Twilio(twilio) => Arc::new(twilio::Twilio::new(twilio, context)?),
            ProviderOptions::Generic(generic) => {
                Arc::new(generic::Generic::new(*generic, context)?)
            }
        };
        if let Some(id) = &options.sender_id {
            check_sender_id(id).map_err(|why| invalid("sender_id", why))?;
        }
        let report_url = provider.report_url();
        Ok(Arc::new(SmsBridge {
            number: number.format().mode(Mode::E164).to_string(),
            sender: options
                .sender_id
                .unwrap_or_else(|| number.format().mode(Mode::E164).to_string()),
            region,
            max_segments: options.max_segments,
            max_messages: match options.long_replies {
                LongReplies::Refuse => 0,
                LongReplies::Split => options.max_messages,
            },
            report_url,
            provider,
            sink: std::sync::Mutex::new(None),
        }))
    }
}

struct SmsBridge {
    /// The office's number, E.164: inbound SMS must be addressed to it.
    number: String,
    sender: String,
    region: country::Id,
    max_segments: usize,
    /// Most messages a split reply becomes; 0: long replies are refused.
    max_messages: usize,
    report_url: Option<String>,
    provider: Arc<dyn Provider>,
    sink: std::sync::Mutex<Option<InboundSink>>,
}

/// E.164 address and display form of a sender: national, as the office writes its own
/// country's numbers (`070-123 45 67`), international for any other country; a sender that
/// is no phone number (an alphanumeric id) stays as it is. `region` is the office's country.
fn normalise(region: country::Id, from: &str) -> (String, String) {
    match phonenumber::parse(Some(region), from) {
        Ok(n) if phonenumber::is_valid(&n) => {
            let shown = if n.country().id() == Some(region) {
                Mode::National
            } else {
                Mode::International
            };
            (
                n.format().mode(Mode::E164).to_string(),
                n.format().mode(shown).to_string(),
            )
        }
        _ => (from.to_owned(), from.to_owned()),
    }
}

#[async_trait]
impl Bridge for SmsBridge {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new("sms", "SMS")
            .with_max_length(Segments::capacity(
                segments::Encoding::Gsm7,
                self.max_segments,
            ))
            .with_delivery_reports(self.report_url.is_some())
    }

    async fn start(&self, inbound: InboundSink) -> Result<(), BridgeError> {
        *self.sink.lock().expect("not poisoned") = Some(inbound);
        Ok(())
    }

    async fn stop(&self) {
        self.sink.lock().expect("not poisoned").take();
    }

    async fn check_credentials(&self) -> CredentialCheck {
        self.provider.check().await
    }

    async fn deliver(&self, message: &OutboundMessage) -> Result<Delivered, DeliveryError> {
        let segments = Segments::of(&message.body);
        if segments.parts > self.max_segments {
            let fits = Segments::capacity(segments.encoding, self.max_segments);
            let encoding = match segments.encoding {
                segments::Encoding::Gsm7 => "GSM-7",
                segments::Encoding::Ucs2 => {
                    "UCS-2, because of a character outside the GSM alphabet"
                }
            };
            return Err(DeliveryError::permanent(format!(
                "too long for SMS: {} parts ({encoding}); this office allows {}. Cut about {} characters and send it again.",
                segments.parts,
                self.max_segments,
                segments.units - fits
            )));
        }
        self.provider
            .send(
                &self.sender,
                message.to.as_str(),
                &message.body,
                self.report_url.as_deref(),
            )
            .await
    }

    fn webhook(&self) -> Option<&dyn Webhook> {
        Some(self)
    }

    fn split(&self, body: &str) -> Option<Vec<String>> {
        if self.max_messages == 0 || Segments::of(body).parts <= self.max_segments {
            return None;
        }
        segments::split(body, self.max_segments, self.max_messages)
    }
}

#[async_trait]
impl Webhook for SmsBridge {
    async fn handle(&self, request: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        if request.method() != http::Method::POST {
            return respond(405, "use POST");
        }
        if let Err((status, reason)) = self.provider.authenticate(&request) {
            warn!(status, reason, "SMS webhook refused");
            return respond(status, &reason);
        }
        let report = request.uri().path().trim_end_matches('/').ends_with("/dlr");
        // A refusal is logged once, with the reason only: reasons show values cut short
        // (`shown`), so a hostile field is never logged whole. Nothing refused is recorded.
        let event = match self
            .provider
            .parse(&request, report)
            .and_then(|e| self.check(e))
        {
            Ok(e) => e,
            Err((status, reason)) => {
                warn!(status, reason, "SMS webhook refused");
                return respond(status, &reason);
            }
        };
        let Some(sink) = self.sink.lock().expect("not poisoned").clone() else {
            return respond(503, "not started");
        };
        let recorded = match event {
            Checked::Message(message) => sink
                .submit(message)
                .await
                .map(|a| matches!(a, Accepted::Recorded { .. } | Accepted::Duplicate)),
            Checked::Report(report) => sink.report(report).await,
        };
        match recorded {
            Ok(_) => self.provider.accepted(),
            // Not recorded: the provider retries.
            Err(e) => respond(503, &e.to_string()),
        }
    }
}

/// A webhook event whose addresses have been checked.
// Built and consumed at once, one per request: boxing the message would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Checked {
    Message(InboundMessage),
    Report(DeliveryReport),
}

impl SmsBridge {
    /// Checks the addresses of an inbound SMS, the same for every provider (each provider has
    /// checked its own fields' shapes and bounds in `parse`): sent to this office's number, from
    /// a phone number or a sender id.
    fn check(&self, event: ProviderEvent) -> Result<Checked, Refusal> {
        match event {
            ProviderEvent::Message {
                id,
                from,
                to,
                text,
                at,
            } => {
                check_to(self.region, &self.number, &to)?;
                let (address, display_name) = check_from(self.region, &from)?;
                Ok(Checked::Message(InboundMessage {
                    message_id: RemoteMessageId::new(id),
                    from: RemoteAddress::new(address),
                    display_name,
                    body: text,
                    sent_at: at,
                    ..Default::default()
                }))
            }
            ProviderEvent::Report(report) => Ok(Checked::Report(report)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(extra: &str) -> BridgeInstance {
        let text = format!(
            "[homeserver]\nurl = \"http://127.0.0.1:8008\"\nserver_name = \"localhost\"\n\
             [appservice]\nurl = \"http://127.0.0.1:29330\"\nas_token = \"a\"\nhs_token = \"h\"\n\
             [teams.t]\nmembers = [\"@a:localhost\"]\n\
             [bridges.sms]\nkind = \"sms\"\nteam = \"t\"\n{extra}"
        );
        casebridge_config::Config::from_toml_str(&text)
            .unwrap()
            .bridges["sms"]
            .clone()
    }

    const GOOD: &str = "number = \"0766 86 00 00\"\nwebhook_secret = \"s3cret\"\n\
        [bridges.sms.provider]\nkind = \"46elks\"\napi_username = \"u\"\napi_password = \"p\"\n";

    #[test]
    fn config_is_checked_and_named() {
        assert!(SmsFactory.build("sms", &instance(GOOD)).is_ok());
        let bad_number = GOOD.replace("0766 86 00 00", "12");
        let err = SmsFactory
            .build("sms", &instance(&bad_number))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "bridges.sms.number: \"12\" is not a valid phone number (read in region SE); write \
             the office's number in international form, e.g. number = \"+46701234567\""
        );
        let unknown = GOOD.replace("api_username", "api_user");
        let err = SmsFactory
            .build("sms", &instance(&unknown))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("api_user"), "{err}");
        let no_secret = GOOD.replace("webhook_secret = \"s3cret\"\n", "");
        let err = SmsFactory
            .build("sms", &instance(&no_secret))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "bridges.sms.webhook_secret: 46elks signs nothing: set webhook_secret (or webhook_secret_file) and put it in the webhook URL"
        );
        let provider = GOOD.replace("46elks", "carrier-pigeon");
        let err = SmsFactory
            .build("sms", &instance(&provider))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn sender_ids_are_checked_as_operators_take_them() {
        for good in ["Kommunen", "Soc 24", "A", "SOCIALTJANS"] {
            let config = GOOD.replace("number =", &format!("sender_id = {good:?}\nnumber ="));
            assert!(
                SmsFactory.build("sms", &instance(&config)).is_ok(),
                "{good}"
            );
        }
        for (bad, why) in [
            (
                "Socialtjänsten",
                "has 14 characters; a sender id takes 1 to 11",
            ),
            ("Soc-jour", "contains '-'; a sender id takes only"),
            ("Kontoret ä", "contains 'ä'"),
            ("112", "has no letter"),
            ("", "has 0 characters"),
        ] {
            let config = GOOD.replace("number =", &format!("sender_id = {bad:?}\nnumber ="));
            let err = SmsFactory
                .build("sms", &instance(&config))
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.starts_with(&format!("bridges.sms.sender_id: {bad:?} ")) && err.contains(why),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn numbers_show_as_the_office_writes_them() {
        let se: country::Id = "SE".parse().unwrap();
        assert_eq!(
            normalise(se, "0701234567"),
            ("+46701234567".to_owned(), "070-123 45 67".to_owned())
        );
        assert_eq!(
            normalise(se, "+46701234567"),
            ("+46701234567".to_owned(), "070-123 45 67".to_owned())
        );
        assert_eq!(
            normalise(se, "+36201234567"),
            ("+36201234567".to_owned(), "+36 20 123 4567".to_owned())
        );
        assert_eq!(
            normalise(se, "Bank"),
            ("Bank".to_owned(), "Bank".to_owned())
        );
    }

    #[test]
    fn provider_refusals_are_classified_the_same_for_every_provider() {
        for status in [401, 408, 429, 500, 503] {
            assert!(refused("p", status, "").is_transient(), "{status}");
        }
        for status in [400, 403, 404, 422] {
            assert!(refused("p", status, "").is_permanent(), "{status}");
        }
        assert_eq!(
            refused("46elks", 403, " Invalid to number\n").to_string(),
            "46elks answered 403: Invalid to number"
        );
    }

    #[tokio::test]
    async fn too_long_replies_say_how_much_to_cut() {
        let bridge = SmsFactory.build("sms", &instance(GOOD)).unwrap();
        let message = OutboundMessage {
            record_id: 1,
            case_number: "2026-000001".into(),
            to: RemoteAddress::new("+46701234567"),
            body: "å".repeat(500),
            html: None,
            discreet: None,
            automatic: false,
            conversation: Default::default(),
            attachments: Vec::new(),
        };
        let err = bridge.deliver(&message).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(
            err.to_string(),
            "too long for SMS: 4 parts (GSM-7); this office allows 3. Cut about 41 characters and send it again."
        );
    }
}
