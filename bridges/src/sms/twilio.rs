//! Twilio: `POST {api}/2010-04-01/Accounts/{AccountSid}/Messages.json` with Basic auth
//! (account SID, auth token) and a form (`To`, `From`, `Body`, `StatusCallback`). Inbound SMS and
//! status callbacks are forms signed with `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed with
//! the auth token, over the full public URL followed by every form parameter's name and value,
//! sorted by name (see [`signature`] for repeated parameters). Signatures are checked against
//! `public_url`, the URL Twilio was given.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use async_trait::async_trait;
use base64::Engine as _;
use casebridge_config::{resolve_secret, ConfigError, Secret};
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use url::Url;

use super::{check_id, check_text, once, required, shown, ProviderContext, ProviderEvent, Refusal};
use crate::{
    BridgeError, CredentialCheck, Delivered, DeliveryError, DeliveryReport, DeliveryStatus,
    RemoteMessageId,
};

/// `[bridges.KEY.provider]` with `kind = "twilio"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioOptions {
    /// The API base, `https://api.twilio.com` unless a test points elsewhere.
    #[serde(default = "default_api_url")]
    api_url: Url,
    /// The account SID (`AC...`).
    account_sid: String,
    /// The auth token: API password and webhook signing key.
    auth_token: Option<Secret>,
    /// File holding `auth_token`.
    auth_token_file: Option<PathBuf>,
}

fn default_api_url() -> Url {
    Url::parse("https://api.twilio.com").expect("a valid URL")
}

/// The Twilio provider.
pub struct Twilio {
    http: reqwest::Client,
    endpoint: Url,
    /// `GET /2010-04-01/Accounts/{sid}.json`: the account, which proves the credentials.
    account: Url,
    /// `bridges.NAME.provider`, for errors.
    key: String,
    account_sid: String,
    auth_token: Secret,
    webhook_url: Url,
}

/// The signature Twilio sends for a request to `url` with the form parameters `params`, in any
/// order, repeats included: the URL, then for each name in sorted order, that name followed by
/// each of its values, the distinct values in sorted order. This is what Twilio's own validators
/// compute (`twilio-node` `getExpectedTwilioSignature`, `twilio-python` `compute_signature`);
/// keeping one value per name would fail a genuine request that repeats a parameter.
pub fn signature<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let mut sorted: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, value) in params {
        sorted
            .entry(name.as_ref())
            .or_default()
            .insert(value.as_ref());
    }
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, values) in sorted {
        for value in values {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Longest message SID we take: Twilio's are two letters and 32 hex digits (34 characters).
const MAX_SID: usize = 34;

/// Longest body Twilio delivers: it documents 1,600 characters for a message.
const MAX_BODY: usize = 1600;

impl Twilio {
    /// Builds the provider from its options and the bridge's context.
    pub fn new(options: TwilioOptions, context: ProviderContext) -> Result<Self, BridgeError> {
        let key = &context.key;
        let auth_token = resolve_secret(
            &format!("{key}.auth_token"),
            &options.auth_token,
            &options.auth_token_file,
        )?;
        let webhook_url = context.webhook_url.ok_or_else(|| {
            BridgeError::Config(ConfigError::Invalid {
                key: format!("{}.public_url", key.trim_end_matches(".provider")),
                message: "Twilio signs its webhooks against the URL it was given: set public_url"
                    .into(),
            })
        })?;
        if !options.account_sid.starts_with("AC") {
            return Err(BridgeError::Config(ConfigError::Invalid {
                key: format!("{key}.account_sid"),
                message: format!("{:?} is not an account SID (AC...)", options.account_sid),
            }));
        }
        let endpoint = options
            .api_url
            .join(&format!(
                "2010-04-01/Accounts/{}/Messages.json",
                options.account_sid
            ))
            .map_err(|e| BridgeError::Failed(format!("{key}.api_url: {e}")))?;
        let account = options
            .api_url
            .join(&format!("2010-04-01/Accounts/{}.json", options.account_sid))
            .map_err(|e| BridgeError::Failed(format!("{key}.api_url: {e}")))?;
        let http = super::provider_client()?;
        Ok(Self {
            http,
            endpoint,
            account,
            key: key.clone(),
            account_sid: options.account_sid,
            auth_token,
            webhook_url,
        })
    }

    /// The public URL Twilio called: our webhook URL, the route below it, and the query.
    fn public_url_of(&self, request: &http::Request<Vec<u8>>) -> String {
        let path = request.uri().path();
        let below = path.find("/webhook/").map_or("", |i| {
            let rest = &path[i + "/webhook/".len()..];
            rest.find('/').map_or("", |j| &rest[j..])
        });
        let mut url = format!("{}{below}", self.webhook_url);
        if let Some(query) = request.uri().query() {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}

/// The form's parameters in order, repeats kept: the signature covers every value.
fn form(body: &[u8]) -> Result<Vec<(String, String)>, Refusal> {
    serde_urlencoded::from_bytes(body).map_err(|e| (400, format!("not a form: {e}")))
}

/// A message SID: two capital letters (`SM`, `MM`) and letters or digits, at most [`MAX_SID`].
fn check_sid(field: &str, sid: &str) -> Result<(), Refusal> {
    check_id(field, sid, MAX_SID, &[])?;
    if sid.len() < 3 || !sid.bytes().take(2).all(|b| b.is_ascii_uppercase()) {
        return Err((400, format!("{field}: {} is no message SID", shown(sid))));
    }
    Ok(())
}

#[async_trait]
impl super::Provider for Twilio {
    fn authenticate(&self, request: &http::Request<Vec<u8>>) -> Result<(), Refusal> {
        let mut signatures = request.headers().get_all("x-twilio-signature").iter();
        let (Some(presented), None) = (signatures.next(), signatures.next()) else {
            // Two: which one counts would be a guess, so refused, not read first-wins.
            return Err(if request.headers().contains_key("x-twilio-signature") {
                (401, "X-Twilio-Signature given more than once".into())
            } else {
                (401, "missing X-Twilio-Signature".into())
            });
        };
        let presented = presented.as_bytes();
        let params = form(request.body())?;
        let expected = signature(
            self.auth_token.expose(),
            &self.public_url_of(request),
            &params,
        );
        if !bool::from(presented.ct_eq(expected.as_bytes())) {
            return Err((403, "X-Twilio-Signature does not match".into()));
        }
        match once(&params, "AccountSid")? {
            Some(sid) if sid != self.account_sid => Err((403, "another account's request".into())),
            _ => Ok(()),
        }
    }

    fn parse(
        &self,
        request: &http::Request<Vec<u8>>,
        report: bool,
    ) -> Result<ProviderEvent, Refusal> {
        let form = form(request.body())?;
        let sid = required(&form, "MessageSid")?;
        check_sid("MessageSid", sid)?;
        if report {
            let status = match required(&form, "MessageStatus")? {
                "delivered" | "read" => DeliveryStatus::Delivered,
                status @ ("undelivered" | "failed") => DeliveryStatus::Failed {
                    // Twilio's error codes are five digits; anything else is not repeated.
                    reason: match once(&form, "ErrorCode")? {
                        Some(code)
                            if (1..=8).contains(&code.len())
                                && code.bytes().all(|b| b.is_ascii_digit()) =>
                        {
                            format!("{status} (Twilio error {code})")
                        }
                        _ => status.to_owned(),
                    },
                },
                _ => DeliveryStatus::Sent,
            };
            return Ok(ProviderEvent::Report(DeliveryReport {
                remote_id: RemoteMessageId::new(sid),
                status,
                at: Utc::now(),
            }));
        }
        let text = required(&form, "Body")?;
        check_text("Body", text, Some(MAX_BODY))?;
        Ok(ProviderEvent::Message {
            id: sid.to_owned(),
            from: required(&form, "From")?.to_owned(),
            to: required(&form, "To")?.to_owned(),
            text: text.to_owned(),
            at: Utc::now(),
        })
    }

    fn report_url(&self) -> Option<String> {
        Some(format!("{}/dlr", self.webhook_url))
    }

    fn accepted(&self) -> http::Response<Vec<u8>> {
        // Empty TwiML: no automatic answer to the client.
        http::Response::builder()
            .status(200)
            .header("content-type", "text/xml")
            .body(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>".to_vec())
            .expect("a valid response")
    }

    /// `GET /2010-04-01/Accounts/{AccountSid}.json` (Twilio's "Fetch an Account"): 401 with
    /// error 20003 for wrong credentials; an account whose `status` is `suspended` or `closed`
    /// sends nothing.
    async fn check(&self) -> CredentialCheck {
        let key = &self.key;
        let response = match self
            .http
            .get(self.account.clone())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => return CredentialCheck::Unreachable(format!("Twilio unreachable: {e}")),
        };
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let name = body["friendly_name"].as_str().unwrap_or_default();
        match (status, body["status"].as_str()) {
            (200..=299, Some("active")) => {
                CredentialCheck::Accepted(format!("Twilio account {name:?}"))
            }
            (200..=299, Some(other)) => CredentialCheck::Refused(format!(
                "{key}.account_sid: the Twilio account {name:?} is {other}, so it sends nothing; \
                 see the Twilio console"
            )),
            (200..=299, None) => CredentialCheck::Unreachable(format!(
                "Twilio answered {status} without the account's status"
            )),
            (401 | 403, _) => CredentialCheck::Refused(format!(
                "{key}.auth_token: Twilio refused the credentials of account {} ({status}, \
                 error {}); copy the Account SID and Auth Token from the Twilio console",
                self.account_sid, body["code"]
            )),
            (404, _) => CredentialCheck::Refused(format!(
                "{key}.account_sid: Twilio has no account {}",
                self.account_sid
            )),
            _ => CredentialCheck::Unreachable(format!(
                "Twilio answered {status}: {}",
                body["message"].as_str().unwrap_or_default()
            )),
        }
    }

    async fn send(
        &self,
        from: &str,
        to: &str,
        text: &str,
        report_url: Option<&str>,
    ) -> Result<Delivered, DeliveryError> {
        let mut fields = vec![("To", to), ("From", from), ("Body", text)];
        if let Some(url) = report_url {
            fields.push(("StatusCallback", url));
        }
        let response = self
            .http
            .post(self.endpoint.clone())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&fields)
            .send()
            .await
            .map_err(|e| DeliveryError::transient(format!("Twilio unreachable: {e}")))?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        match status {
            200..=299 => match body["sid"].as_str() {
                Some(sid) => Ok(Delivered {
                    remote_id: Some(RemoteMessageId::new(sid)),
                }),
                None => Err(DeliveryError::transient(format!(
                    "Twilio answered {status} without a sid"
                ))),
            },
            _ => {
                let detail = format!(
                    "{} (error {})",
                    body["message"].as_str().unwrap_or("no message"),
                    body["code"]
                );
                Err(super::refused("Twilio", status, &detail))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_twilios_documented_example() {
        // The example in Twilio's webhook-security documentation.
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ];
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }
}
