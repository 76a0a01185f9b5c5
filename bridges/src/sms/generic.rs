//! A generic JSON SMS gateway, for providers without a module of their own. Inbound SMS
//! (`/webhook/{instance}`) and delivery reports (`/webhook/{instance}/dlr`) are JSON objects
//! signed with HMAC-SHA256 over the raw body, hex-encoded in a configurable header (a `sha256=`
//! prefix is accepted). Replies are POSTed as JSON to `send_url`, signed the same way, with an
//! optional bearer token; the answer's id field identifies the SMS in later reports.

use std::path::PathBuf;

use async_trait::async_trait;
use casebridge_config::{resolve_secret, Secret};
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use url::Url;

use super::{check_id, check_text, ProviderContext, ProviderEvent, Refusal, ID_PUNCTUATION};
use crate::{
    BridgeError, Delivered, DeliveryError, DeliveryReport, DeliveryStatus, RemoteMessageId,
};

/// `[bridges.KEY.provider]` with `kind = "webhook"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericOptions {
    /// Where replies are POSTed.
    send_url: Url,
    /// Bearer token for `send_url`, if the gateway wants one.
    send_token: Option<Secret>,
    /// File holding `send_token`.
    send_token_file: Option<PathBuf>,
    /// HMAC-SHA256 key for both directions.
    signing_secret: Option<Secret>,
    /// File holding `signing_secret`.
    signing_secret_file: Option<PathBuf>,
    /// Header carrying the signature.
    #[serde(default = "default_signature_header")]
    signature_header: String,
    /// Names of the JSON fields.
    #[serde(default)]
    fields: Fields,
}

fn default_signature_header() -> String {
    "X-Signature".to_owned()
}

/// JSON field names, each configurable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fields {
    id: String,
    from: String,
    to: String,
    text: String,
    status: String,
    reason: String,
    callback: String,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            id: "id".into(),
            from: "from".into(),
            to: "to".into(),
            text: "text".into(),
            status: "status".into(),
            reason: "reason".into(),
            callback: "callback_url".into(),
        }
    }
}

/// Longest message id we take from a gateway we know nothing of: ids are keys, so bounded;
/// 128 holds a UUID, a ULID or a provider's prefixed hex id with room to spare.
const MAX_ID: usize = 128;

/// A JSON object whose fields are each given once. `serde_json` keeps the last of a repeated
/// field; which one the sender meant would be a guess, so a repeat is refused, as a repeated
/// form field is.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut object = Map::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if object.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!(
                            "{} given more than once",
                            super::shown(&key)
                        )));
                    }
                    object.insert(key, value);
                }
                Ok(UniqueObject(object))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The generic provider.
pub struct Generic {
    http: reqwest::Client,
    options: GenericOptions,
    send_token: Option<Secret>,
    secret: Secret,
    report_url: Option<String>,
}

/// Hex HMAC-SHA256 of `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Generic {
    /// Builds the provider from its options and the bridge's context.
    pub fn new(options: GenericOptions, context: ProviderContext) -> Result<Self, BridgeError> {
        let key = &context.key;
        let secret = resolve_secret(
            &format!("{key}.signing_secret"),
            &options.signing_secret,
            &options.signing_secret_file,
        )?;
        let send_token = match (&options.send_token, &options.send_token_file) {
            (None, None) => None,
            (value, file) => Some(resolve_secret(&format!("{key}.send_token"), value, file)?),
        };
        let http = super::provider_client()?;
        let report_url = context.webhook_url.map(|url| format!("{url}/dlr"));
        Ok(Self {
            http,
            options,
            send_token,
            secret,
            report_url,
        })
    }

    fn string<'a>(&self, object: &'a Map<String, Value>, name: &str) -> Result<&'a str, Refusal> {
        object
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| (400, format!("missing string field {name:?}")))
    }
}

#[async_trait]
impl super::Provider for Generic {
    fn authenticate(&self, request: &http::Request<Vec<u8>>) -> Result<(), Refusal> {
        let header = &self.options.signature_header;
        let mut signatures = request.headers().get_all(header.as_str()).iter();
        let presented = match (signatures.next(), signatures.next()) {
            (Some(one), None) => one.to_str().unwrap_or_default(),
            (None, _) => return Err((401, format!("missing {header}"))),
            // Which one counts would be a guess: refused, not read first-wins.
            (Some(_), Some(_)) => return Err((401, format!("{header} given more than once"))),
        };
        let presented = presented
            .strip_prefix("sha256=")
            .unwrap_or(presented)
            .to_ascii_lowercase();
        let expected = sign(self.secret.expose(), request.body());
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err((403, format!("{header} does not match the body")))
        }
    }

    fn parse(
        &self,
        request: &http::Request<Vec<u8>>,
        report: bool,
    ) -> Result<ProviderEvent, Refusal> {
        let UniqueObject(object) = serde_json::from_slice(request.body())
            .map_err(|e| (400, format!("not a JSON object of distinct fields: {e}")))?;
        let object = &object;
        let f = &self.options.fields;
        if report {
            let status = match self.string(object, &f.status)? {
                "sent" => DeliveryStatus::Sent,
                "delivered" => DeliveryStatus::Delivered,
                "failed" => DeliveryStatus::Failed {
                    reason: object
                        .get(&f.reason)
                        .and_then(Value::as_str)
                        .unwrap_or("failed")
                        .to_owned(),
                },
                other => {
                    return Err((
                        400,
                        format!("{}: unknown status {}", f.status, super::shown(other)),
                    ))
                }
            };
            let id = self.string(object, &f.id)?;
            check_id(&f.id, id, MAX_ID, ID_PUNCTUATION)?;
            return Ok(ProviderEvent::Report(DeliveryReport {
                remote_id: RemoteMessageId::new(id),
                status,
                at: Utc::now(),
            }));
        }
        let id = self.string(object, &f.id)?;
        check_id(&f.id, id, MAX_ID, ID_PUNCTUATION)?;
        let text = self.string(object, &f.text)?;
        check_text(&f.text, text, None)?;
        Ok(ProviderEvent::Message {
            id: id.to_owned(),
            from: self.string(object, &f.from)?.to_owned(),
            to: self.string(object, &f.to)?.to_owned(),
            text: text.to_owned(),
            at: Utc::now(),
        })
    }

    fn report_url(&self) -> Option<String> {
        self.report_url.clone()
    }

    fn accepted(&self) -> http::Response<Vec<u8>> {
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(b"{}".to_vec())
            .expect("a valid response")
    }

    async fn send(
        &self,
        from: &str,
        to: &str,
        text: &str,
        report_url: Option<&str>,
    ) -> Result<Delivered, DeliveryError> {
        let f = &self.options.fields;
        let mut object = Map::new();
        object.insert(f.from.clone(), from.into());
        object.insert(f.to.clone(), to.into());
        object.insert(f.text.clone(), text.into());
        if let Some(url) = report_url {
            object.insert(f.callback.clone(), url.into());
        }
        let body = serde_json::to_vec(&Value::Object(object)).expect("JSON serialises");
        let mut request = self
            .http
            .post(self.options.send_url.clone())
            .header("content-type", "application/json")
            .header(
                self.options.signature_header.as_str(),
                sign(self.secret.expose(), &body),
            )
            .body(body);
        if let Some(token) = &self.send_token {
            request = request.bearer_auth(token.expose());
        }
        let response = request
            .send()
            .await
            .map_err(|e| DeliveryError::transient(format!("SMS gateway unreachable: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        match status {
            200..=299 => {
                let id = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
                    v.get(&f.id).and_then(|id| {
                        id.as_str()
                            .map(str::to_owned)
                            .or_else(|| id.as_i64().map(|n| n.to_string()))
                    })
                });
                Ok(Delivered {
                    remote_id: id.map(RemoteMessageId::new),
                })
            }
            _ => Err(super::refused("the SMS gateway", status, &text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sign;

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
