//! 46elks (Sweden): `POST {api}/a1/sms` with Basic auth and a form (`from`, `to`, `message`,
//! `whendelivered`); inbound SMS and delivery reports come as forms to our webhooks. 46elks signs
//! nothing, so the webhook URL carries a secret: as the Basic auth password
//! (`https://casebridge:SECRET@host/webhook/sms`) or as `?secret=SECRET`.
//!
//! An inbound webhook's response body would be sent to the client as a reply SMS: we answer
//! 204 with none.

use std::path::PathBuf;

use async_trait::async_trait;
use base64::Engine as _;
use casebridge_config::{resolve_secret, ConfigError, Secret};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use url::Url;

use super::{
    check_id, check_text, once, required, shown, ProviderContext, ProviderEvent, Refusal,
    ID_PUNCTUATION,
};
use crate::{
    BridgeError, CredentialCheck, Delivered, DeliveryError, DeliveryReport, DeliveryStatus,
    RemoteMessageId,
};

/// `[bridges.KEY.provider]` with `kind = "46elks"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElksOptions {
    /// The API base, `https://api.46elks.com` unless a test points elsewhere.
    #[serde(default = "default_api_url")]
    api_url: Url,
    /// API username (from the 46elks dashboard).
    api_username: String,
    /// API password.
    api_password: Option<Secret>,
    /// File holding `api_password`.
    api_password_file: Option<PathBuf>,
}

fn default_api_url() -> Url {
    Url::parse("https://api.46elks.com").expect("a valid URL")
}

/// The 46elks provider.
pub struct Elks {
    http: reqwest::Client,
    endpoint: Url,
    /// `GET /a1/me`: the account, which proves the credentials without sending anything.
    account: Url,
    /// `bridges.NAME.provider`, for errors.
    key: String,
    username: String,
    password: Secret,
    webhook_secret: Secret,
    report_url: Option<String>,
}

impl Elks {
    /// Builds the provider from its options and the bridge's context.
    pub fn new(options: ElksOptions, context: ProviderContext) -> Result<Self, BridgeError> {
        let key = &context.key;
        let password = resolve_secret(
            &format!("{key}.api_password"),
            &options.api_password,
            &options.api_password_file,
        )?;
        let webhook_secret = context.webhook_secret.ok_or_else(|| {
            BridgeError::Config(ConfigError::Invalid {
                key: format!("{}.webhook_secret", key.trim_end_matches(".provider")),
                message: "46elks signs nothing: set webhook_secret (or webhook_secret_file) and put it in the webhook URL".into(),
            })
        })?;
        let report_url = context.webhook_url.map(|url| {
            let mut url = Url::parse(&format!("{url}/dlr")).expect("a URL with a path appended");
            url.query_pairs_mut()
                .append_pair("secret", webhook_secret.expose());
            url.to_string()
        });
        let endpoint = options
            .api_url
            .join("a1/sms")
            .map_err(|e| BridgeError::Failed(format!("{key}.api_url: {e}")))?;
        let account = options
            .api_url
            .join("a1/me")
            .map_err(|e| BridgeError::Failed(format!("{key}.api_url: {e}")))?;
        let http = super::provider_client()?;
        Ok(Self {
            http,
            endpoint,
            account,
            key: key.clone(),
            username: options.api_username,
            password,
            webhook_secret,
            report_url,
        })
    }
}

/// The form's fields in order, repeats kept: a repeated field is refused, never read first-wins.
fn form(body: &[u8]) -> Result<Vec<(String, String)>, Refusal> {
    serde_urlencoded::from_bytes(body).map_err(|e| (400, format!("not a form: {e}")))
}

/// 46elks writes times as UTC without a zone: `2018-07-13T13:57:23.741000`.
fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// Longest 46elks id we take: theirs are `s` and 32 hex digits (33); the bound leaves room for
/// a longer format without letting an id grow without end.
const MAX_ID: usize = 64;

#[async_trait]
impl super::Provider for Elks {
    fn authenticate(&self, request: &http::Request<Vec<u8>>) -> Result<(), Refusal> {
        // Every secret the request presents: Basic auth passwords and `secret` parameters.
        // More than one is ambiguous (which one counts would be a guess), so it is refused
        // before any is compared.
        let mut presented: Vec<String> = Vec::new();
        for value in request.headers().get_all(http::header::AUTHORIZATION) {
            let password = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.split_once(':').map(|(_, password)| password.to_owned()));
            presented.push(password.unwrap_or_default());
        }
        if let Some(query) = request.uri().query() {
            presented.extend(
                url::form_urlencoded::parse(query.as_bytes())
                    .filter(|(k, _)| k == "secret")
                    .map(|(_, v)| v.into_owned()),
            );
        }
        let presented = match presented.as_slice() {
            [] => return Err((401, "missing webhook secret".into())),
            [one] => one,
            _ => {
                return Err((
                    401,
                    "webhook secret given more than once; give it once, in the URL's password or as ?secret=".into(),
                ))
            }
        };
        if bool::from(
            presented
                .as_bytes()
                .ct_eq(self.webhook_secret.expose().as_bytes()),
        ) {
            Ok(())
        } else {
            Err((403, "wrong webhook secret".into()))
        }
    }

    fn parse(
        &self,
        request: &http::Request<Vec<u8>>,
        report: bool,
    ) -> Result<ProviderEvent, Refusal> {
        let form = form(request.body())?;
        let id = required(&form, "id")?;
        check_id("id", id, MAX_ID, ID_PUNCTUATION)?;
        if report {
            let status = match required(&form, "status")? {
                "sent" => DeliveryStatus::Sent,
                "delivered" => DeliveryStatus::Delivered,
                "failed" => DeliveryStatus::Failed {
                    reason: "the carrier reported it as failed".into(),
                },
                other => return Err((400, format!("status: unknown status {}", shown(other)))),
            };
            return Ok(ProviderEvent::Report(DeliveryReport {
                remote_id: RemoteMessageId::new(id),
                status,
                at: once(&form, "delivered")?
                    .and_then(parse_time)
                    .unwrap_or_else(Utc::now),
            }));
        }
        // 46elks documents every field of an inbound SMS, "direction" always "incoming": a post
        // without one of them is not 46elks'.
        let direction = required(&form, "direction")?;
        if direction != "incoming" {
            return Err((
                400,
                format!("direction: {} on the inbound route", shown(direction)),
            ));
        }
        let created = required(&form, "created")?;
        let at = parse_time(created).ok_or_else(|| {
            (
                400,
                format!("created: {} is not a 46elks time", shown(created)),
            )
        })?;
        let text = required(&form, "message")?;
        check_text("message", text, None)?;
        Ok(ProviderEvent::Message {
            id: id.to_owned(),
            from: required(&form, "from")?.to_owned(),
            to: required(&form, "to")?.to_owned(),
            text: text.to_owned(),
            at,
        })
    }

    fn report_url(&self) -> Option<String> {
        self.report_url.clone()
    }

    fn accepted(&self) -> http::Response<Vec<u8>> {
        http::Response::builder()
            .status(204)
            .body(Vec::new())
            .expect("a valid response")
    }

    /// `GET /a1/me` (46elks' "Get account information"): 401 for wrong credentials; the
    /// balance is in ten-thousandths of the account's currency, and at zero every send fails.
    async fn check(&self) -> CredentialCheck {
        #[derive(Deserialize)]
        struct Account {
            displayname: Option<String>,
            currency: Option<String>,
            balance: Option<i64>,
        }
        let key = &self.key;
        let response = match self
            .http
            .get(self.account.clone())
            .basic_auth(&self.username, Some(self.password.expose()))
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return CredentialCheck::Unreachable(format!("46elks unreachable: {e}")),
        };
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        match status {
            200..=299 => match serde_json::from_str::<Account>(&body) {
                Ok(account) => {
                    let name = account.displayname.unwrap_or_default();
                    let currency = account.currency.unwrap_or_default();
                    match account.balance {
                        Some(balance) if balance <= 0 => CredentialCheck::Refused(format!(
                            "{key}: the 46elks account {name:?} has no credit left, so every SMS \
                             fails; top it up in the 46elks dashboard"
                        )),
                        Some(balance) => CredentialCheck::Accepted(format!(
                            "46elks account {name:?}, balance {:.2} {currency}",
                            balance as f64 / 10_000.0
                        )),
                        None => CredentialCheck::Accepted(format!("46elks account {name:?}")),
                    }
                }
                Err(e) => CredentialCheck::Unreachable(format!(
                    "46elks answered {status} with an account it does not document: {e}"
                )),
            },
            401 | 403 => CredentialCheck::Refused(format!(
                "{key}.api_password: 46elks refused the API credentials of {:?} ({status}); copy \
                 the API username and password from the 46elks dashboard",
                self.username
            )),
            _ => CredentialCheck::Unreachable(format!("46elks answered {status}: {}", body.trim())),
        }
    }

    async fn send(
        &self,
        from: &str,
        to: &str,
        text: &str,
        report_url: Option<&str>,
    ) -> Result<Delivered, DeliveryError> {
        let mut fields = vec![("from", from), ("to", to), ("message", text)];
        if let Some(url) = report_url {
            fields.push(("whendelivered", url));
        }
        let response = self
            .http
            .post(self.endpoint.clone())
            .basic_auth(&self.username, Some(self.password.expose()))
            .form(&fields)
            .send()
            .await
            .map_err(|e| DeliveryError::transient(format!("46elks unreachable: {e}")))?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        match status {
            200..=299 => {
                #[derive(Deserialize)]
                struct Sent {
                    id: String,
                }
                let sent: Sent = serde_json::from_str(&body).map_err(|e| {
                    DeliveryError::transient(format!("46elks answered {status} without an id: {e}"))
                })?;
                Ok(Delivered {
                    remote_id: Some(RemoteMessageId::new(sent.id)),
                })
            }
            _ => Err(super::refused("46elks", status, &body)),
        }
    }
}
