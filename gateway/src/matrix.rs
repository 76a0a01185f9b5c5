//! The gateway's client-server API calls as the appservice: ruma's request types, sent with
//! reqwest, asserting the identity of the bot or a ghost.

use std::{borrow::Cow, collections::BTreeSet, time::Duration};

use ruma::{
    api::{
        auth_scheme::{AuthScheme, SendAccessToken},
        client::{
            account::register::{self, LoginType},
            alias::get_alias,
            appservice::request_ping,
            media::create_content,
            membership::{invite_user, join_room_by_id},
            message::send_message_event,
            profile::{get_display_name, set_display_name},
            redact::redact_event,
            room::{create_room, Visibility},
        },
        path_builder::{PathBuilder, SinglePath, VersionHistory},
        AppserviceUserIdentity, IncomingResponse, MatrixVersion, OutgoingRequest,
        OutgoingRequestAppserviceExt, SupportedVersions,
    },
    events::room::message::RoomMessageEventContent,
    EventId, OwnedEventId, OwnedMxcUri, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId,
    TransactionId, UserId,
};

/// A failed homeserver call.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {detail}")]
pub struct MatrixError {
    operation: &'static str,
    /// HTTP status, if the homeserver answered.
    pub status: Option<u16>,
    /// Matrix errcode, if the homeserver gave one.
    pub errcode: Option<String>,
    detail: String,
    /// How long a rate-limited caller is asked to wait (`Retry-After`, or the older
    /// `retry_after_ms` of an `M_LIMIT_EXCEEDED` body).
    pub retry_after: Option<Duration>,
}

impl MatrixError {
    /// A failure before anything was sent (a value the gateway could not form).
    pub fn local(operation: &'static str, detail: impl Into<String>) -> Self {
        Self {
            operation,
            status: Some(400),
            errcode: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// Whether a retry may succeed: no answer, 5xx, or rate limiting.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => s >= 500 || s == 429 || s == 408,
        }
    }
}

/// The appservice's client to its homeserver.
#[derive(Clone, Debug)]
pub struct MatrixClient {
    http: reqwest::Client,
    base: String,
    as_token: String,
    versions: SupportedVersions,
}

/// Fills in the path-builder input of an endpoint, whichever kind of path it has.
pub trait PathInput: PathBuilder {
    /// The input for `versions`.
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Self::Input<'_> {
        Cow::Borrowed(versions)
    }
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) -> Self::Input<'_> {}
}

impl MatrixClient {
    /// A client for the homeserver at `base` using the appservice token.
    pub fn new(base: &str, as_token: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(32)
            .build()
            .expect("a TLS backend is compiled in");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            as_token: as_token.to_owned(),
            versions: SupportedVersions {
                versions: BTreeSet::from([MatrixVersion::V1_1, MatrixVersion::V1_11]),
                features: BTreeSet::new(),
            },
        }
    }

    /// Sends `request` as `user` (the appservice's sender when `None`).
    pub async fn send<R>(
        &self,
        operation: &'static str,
        request: R,
        user: Option<&UserId>,
    ) -> Result<R::IncomingResponse, MatrixError>
    where
        R: OutgoingRequest + OutgoingRequestAppserviceExt,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        let err = |status, errcode, detail: String| MatrixError {
            operation,
            status,
            errcode,
            detail,
            retry_after: None,
        };
        let identity = user.map(AppserviceUserIdentity::new).unwrap_or_default();
        let request = request
            .try_into_http_request_with_identity::<Vec<u8>>(
                &self.base,
                SendAccessToken::Appservice(&self.as_token),
                identity,
                R::PathBuilder::input(&self.versions),
            )
            .map_err(|e| err(None, None, format!("cannot build request: {e}")))?;
        let (parts, body) = request.into_parts();
        let response = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| err(None, None, format!("homeserver unreachable: {e}")))?;
        let status = response.status();
        let retry_after_header = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| err(None, None, format!("reading the answer: {e}")))?;
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let errcode = body
                .get("errcode")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            let message = body
                .get("error")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let retry_after = retry_after_header
                .or_else(|| {
                    body.get("retry_after_ms")
                        .and_then(serde_json::Value::as_u64)
                        .map(Duration::from_millis)
                })
                // A homeserver's wish, within reason: an hour at most.
                .map(|d| d.min(Duration::from_secs(3600)));
            return Err(MatrixError {
                retry_after,
                ..err(
                    Some(status.as_u16()),
                    errcode.clone(),
                    format!(
                        "{} {} {message}",
                        status.as_u16(),
                        errcode.as_deref().unwrap_or("")
                    ),
                )
            });
        }
        let http_response = http::Response::builder()
            .status(status)
            .body(bytes.to_vec())
            .expect("status and body are valid");
        R::IncomingResponse::try_from_http_response(http_response).map_err(|e| {
            err(
                Some(status.as_u16()),
                None,
                format!("unexpected answer: {e}"),
            )
        })
    }

    /// Registers the ghost (or bot) `localpart`; one that exists already is fine.
    pub async fn ensure_registered(&self, localpart: &str) -> Result<(), MatrixError> {
        let mut request = register::v3::Request::new();
        request.username = Some(localpart.to_owned());
        request.login_type = Some(LoginType::ApplicationService);
        request.inhibit_login = true;
        match self.send("register user", request, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.errcode.as_deref() == Some("M_USER_IN_USE") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the display name of `user`.
    pub async fn set_display_name(&self, user: &UserId, name: &str) -> Result<(), MatrixError> {
        // The per-field profile endpoint is newer than many homeservers; this one is universal.
        #[allow(deprecated)]
        let request = set_display_name::v3::Request::new(user.to_owned(), Some(name.to_owned()));
        self.send("set display name", request, Some(user))
            .await
            .map(|_| ())
    }

    /// Redacts `event` in `room` as `user` (the bot, who created the room and may redact any
    /// event there). `txn` makes a retry the same redaction.
    pub async fn redact(
        &self,
        room: &RoomId,
        event: &EventId,
        txn: &str,
        reason: &str,
        user: &UserId,
    ) -> Result<(), MatrixError> {
        let mut request =
            redact_event::v3::Request::new(room.to_owned(), event.to_owned(), txn.into());
        request.reason = Some(reason.to_owned());
        self.send("redact", request, Some(user)).await.map(|_| ())
    }

    /// Deletes a file of this homeserver from its media repository with Synapse's admin API
    /// (`DELETE /_synapse/admin/v1/media/{server_name}/{media_id}`), as the server admin whose
    /// token is `admin_token`. A file already gone is fine.
    pub async fn delete_media(&self, mxc: &str, admin_token: &str) -> Result<(), MatrixError> {
        let (server, id) = mxc
            .strip_prefix("mxc://")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| {
                MatrixError::local("delete media", format!("{mxc} is not an mxc URI"))
            })?;
        let url = format!(
            "{}/_synapse/admin/v1/media/{}/{}",
            self.base,
            urlencode(server),
            urlencode(id)
        );
        let response = self
            .http
            .delete(&url)
            .bearer_auth(admin_token)
            .send()
            .await
            .map_err(|e| MatrixError {
                operation: "delete media",
                status: None,
                errcode: None,
                detail: e.to_string(),
                retry_after: None,
            })?;
        let status = response.status().as_u16();
        if response.status().is_success() || status == 404 {
            return Ok(());
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Err(MatrixError {
            operation: "delete media",
            status: Some(status),
            errcode: body["errcode"].as_str().map(str::to_owned),
            detail: body["error"].as_str().unwrap_or_default().to_owned(),
            retry_after: None,
        })
    }

    /// Asks the homeserver to ping this appservice (`POST
    /// /_matrix/client/v1/appservice/{appserviceId}/ping`, Matrix 1.7): the homeserver calls
    /// the appservice's own `/_matrix/app/v1/ping` with its hs_token, and answers how long that
    /// took. Proves in one call that the homeserver answers, knows the as_token, and reaches
    /// the appservice with the hs_token it expects.
    pub async fn ping(
        &self,
        appservice_id: &str,
        transaction_id: &str,
    ) -> Result<Duration, MatrixError> {
        let mut request = request_ping::v1::Request::new(appservice_id.to_owned());
        request.transaction_id = Some(transaction_id.into());
        self.send("appservice ping", request, None)
            .await
            .map(|r| r.duration)
    }

    /// The display name of `user`, if set.
    pub async fn display_name(&self, user: &UserId) -> Result<Option<String>, MatrixError> {
        #[allow(deprecated)]
        let request = get_display_name::v3::Request::new(user.to_owned());
        self.send("get display name", request, None)
            .await
            .map(|r| r.displayname)
    }

    /// Creates a private case room as the bot, or finds the one an earlier try created under
    /// the same alias (creating a room is not idempotent; the alias makes it so).
    pub async fn create_case_room(
        &self,
        alias_localpart: &str,
        alias: &OwnedRoomAliasId,
        name: &str,
        topic: &str,
        invite: Vec<OwnedUserId>,
    ) -> Result<OwnedRoomId, MatrixError> {
        if let Some(room) = self.resolve_alias(alias).await? {
            return Ok(room);
        }
        let mut request = create_room::v3::Request::new();
        request.room_alias_name = Some(alias_localpart.to_owned());
        request.name = Some(name.to_owned());
        request.topic = Some(topic.to_owned());
        request.invite = invite;
        request.preset = Some(create_room::v3::RoomPreset::PrivateChat);
        request.visibility = Visibility::Private;
        // No URL previews in a case room: a worker's client (or homeserver) must never fetch a
        // URL a sender chose. Element honours this room setting.
        request.initial_state = vec![ruma::serde::Raw::from_json(
            serde_json::value::to_raw_value(&serde_json::json!({
                "type": "org.matrix.room.preview_urls",
                "state_key": "",
                "content": { "disable": true },
            }))
            .expect("a JSON literal"),
        )];
        match self.send("create room", request, None).await {
            Ok(response) => Ok(response.room_id),
            Err(e) if e.errcode.as_deref() == Some("M_ROOM_IN_USE") => {
                self.resolve_alias(alias).await?.ok_or(MatrixError {
                    operation: "create room",
                    status: None,
                    errcode: None,
                    detail: format!("{alias} is in use but does not resolve"),
                    retry_after: None,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The room an alias points to, if any.
    pub async fn resolve_alias(
        &self,
        alias: &OwnedRoomAliasId,
    ) -> Result<Option<OwnedRoomId>, MatrixError> {
        match self
            .send(
                "resolve alias",
                get_alias::v3::Request::new(alias.clone()),
                None,
            )
            .await
        {
            Ok(response) => Ok(Some(response.room_id)),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Invites `user` to `room` as the bot; one already in the room is fine.
    pub async fn invite(&self, room: &RoomId, user: &UserId) -> Result<(), MatrixError> {
        let request = invite_user::v3::Request::new(
            room.to_owned(),
            invite_user::v3::InvitationRecipient::UserId(invite_user::v3::InviteUserId::new(
                user.to_owned(),
            )),
        );
        match self.send("invite", request, None).await {
            Ok(_) => Ok(()),
            // Synapse answers 403 for a user who is already joined.
            Err(e) if e.status == Some(403) && e.detail.contains("already in the room") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Joins `room` as `user`.
    pub async fn join(&self, room: &RoomId, user: &UserId) -> Result<(), MatrixError> {
        let request = join_room_by_id::v3::Request::new(room.to_owned());
        self.send("join", request, Some(user)).await.map(|_| ())
    }

    /// Uploads a file to the media repository as `user`; returns its `mxc://` URI.
    pub async fn upload(
        &self,
        data: Vec<u8>,
        mime: &str,
        filename: &str,
        user: Option<&UserId>,
    ) -> Result<OwnedMxcUri, MatrixError> {
        let mut request = create_content::v3::Request::new(data);
        request.content_type = Some(mime.to_owned());
        request.filename = Some(filename.to_owned());
        Ok(self.send("upload media", request, user).await?.content_uri)
    }

    /// Downloads a file from the media repository (authenticated media), as the bot.
    pub async fn download(&self, uri: &ruma::MxcUri) -> Result<Vec<u8>, MatrixError> {
        let request =
            ruma::api::client::authenticated_media::get_content::v1::Request::from_uri(uri)
                .map_err(|e| MatrixError::local("download", format!("{uri}: {e}")))?;
        Ok(self.send("download media", request, None).await?.file)
    }

    /// Sends a message as `user` (the bot when `None`). The transaction id makes a retry of the
    /// same send return the same event instead of a second one.
    pub async fn send_message(
        &self,
        room: &RoomId,
        txn_id: &TransactionId,
        content: &RoomMessageEventContent,
        user: Option<&UserId>,
    ) -> Result<OwnedEventId, MatrixError> {
        let request =
            send_message_event::v3::Request::new(room.to_owned(), txn_id.to_owned(), content)
                .map_err(|e| MatrixError {
                    operation: "send message",
                    status: None,
                    errcode: None,
                    detail: format!("cannot serialise content: {e}"),
                    retry_after: None,
                })?;
        Ok(self.send("send message", request, user).await?.event_id)
    }
}

/// One path segment, percent-encoded.
fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
