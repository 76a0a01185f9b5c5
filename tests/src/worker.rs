//! A social worker's Matrix client, written against the client-server API directly so that the
//! tests check the gateway with an independent implementation.

use std::{collections::BTreeSet, time::Duration};

use serde_json::{json, Value};

/// A logged-in Matrix user.
pub struct Worker {
    /// The Matrix ID.
    pub user_id: String,
    base: String,
    token: String,
    http: reqwest::Client,
    since: Option<String>,
    txn: u64,
}

impl Worker {
    /// Logs `localpart` in with `password`.
    pub async fn login(base: &str, localpart: &str, password: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let body: Value = http
            .post(format!("{base}/_matrix/client/v3/login"))
            .json(&json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            user_id: body["user_id"]
                .as_str()
                .expect("login answers user_id")
                .to_owned(),
            token: body["access_token"].as_str().unwrap().to_owned(),
            base: base.to_owned(),
            http,
            since: None,
            txn: 0,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Rooms this worker is invited to, from one `/sync` long-poll.
    pub async fn invites(&mut self) -> BTreeSet<String> {
        let mut path = "/_matrix/client/v3/sync?timeout=500".to_owned();
        if let Some(since) = &self.since {
            path += &format!("&since={since}");
        }
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "sync: {body}");
        self.since = body["next_batch"].as_str().map(str::to_owned);
        body["rooms"]["invite"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates a private room, inviting `invite`; returns its id.
    pub async fn create_room(&self, name: &str, invite: &[&str]) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(json!({ "name": name, "invite": invite, "preset": "private_chat" })),
            )
            .await;
        assert_eq!(status, 200, "create room {name}: {body}");
        body["room_id"].as_str().unwrap().to_owned()
    }

    /// Invites `user` to a room.
    pub async fn invite(&self, room: &str, user: &str) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/_matrix/client/v3/rooms/{room}/invite"),
                Some(json!({ "user_id": user })),
            )
            .await;
        assert_eq!(status, 200, "invite {user} to {room}: {body}");
    }

    /// The access token, for calls this client has no method for.
    pub fn access_token(&self) -> &str {
        &self.token
    }

    /// Joins a room.
    pub async fn join(&self, room: &str) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/_matrix/client/v3/rooms/{room}/join"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "join {room}: {body}");
    }

    /// Sends a message event with `content`; returns the event id.
    pub async fn send(&mut self, room: &str, content: Value) -> String {
        self.txn += 1;
        let path = format!(
            "/_matrix/client/v3/rooms/{room}/send/m.room.message/w{}-{}",
            self.txn,
            rand::random::<u32>()
        );
        let (status, body) = self.call(reqwest::Method::PUT, &path, Some(content)).await;
        assert_eq!(status, 200, "send: {body}");
        body["event_id"].as_str().unwrap().to_owned()
    }

    /// Sends plain text.
    pub async fn send_text(&mut self, room: &str, text: &str) -> String {
        self.send(room, json!({"msgtype": "m.text", "body": text}))
            .await
    }

    /// Every `m.room.message` event of the room, oldest first.
    pub async fn messages(&self, room: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=500");
            if let Some(f) = &from {
                path += &format!("&from={f}");
            }
            let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
            assert_eq!(status, 200, "messages: {body}");
            let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
            if chunk.is_empty() {
                break;
            }
            events.extend(chunk.into_iter().filter(|e| e["type"] == "m.room.message"));
            match body["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => break,
            }
        }
        events.reverse();
        events
    }

    /// One state event's content, if set.
    pub async fn state(&self, room: &str, event_type: &str, key: &str) -> Option<Value> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{room}/state/{event_type}/{key}"),
                None,
            )
            .await;
        (status == 200).then_some(body)
    }

    /// The room's members with their membership (`join`, `invite`, ...).
    pub async fn members(&self, room: &str) -> Vec<(String, String)> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{room}/members"),
                None,
            )
            .await;
        assert_eq!(status, 200, "members: {body}");
        body["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["state_key"].as_str().unwrap().to_owned(),
                    e["content"]["membership"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Uploads a file to the media repository; returns its `mxc://` URI.
    pub async fn upload(&self, data: Vec<u8>, mime: &str, filename: &str) -> String {
        let response = self
            .http
            .post(format!(
                "{}/_matrix/media/v3/upload?filename={filename}",
                self.base
            ))
            .bearer_auth(&self.token)
            .header("content-type", mime)
            .body(data)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "upload: {}",
            response.status()
        );
        let body: Value = response.json().await.unwrap();
        body["content_uri"].as_str().unwrap().to_owned()
    }

    /// Downloads an `mxc://` URI through the authenticated media API.
    pub async fn download(&self, mxc: &str) -> Vec<u8> {
        match self.try_download(mxc).await {
            Ok(data) => data,
            Err(status) => panic!("download {mxc}: {status}"),
        }
    }

    /// Downloads an `mxc://` URI, or the HTTP status the homeserver answered instead.
    pub async fn try_download(&self, mxc: &str) -> Result<Vec<u8>, u16> {
        let (server, id) = mxc
            .strip_prefix("mxc://")
            .and_then(|r| r.split_once('/'))
            .expect("an mxc URI");
        let response = self
            .http
            .get(format!(
                "{}/_matrix/client/v1/media/download/{server}/{id}",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        if !response.status().is_success() {
            return Err(response.status().as_u16());
        }
        Ok(response.bytes().await.unwrap().to_vec())
    }

    /// The display name of `user`.
    pub async fn display_name(&self, user: &str) -> Option<String> {
        let (_, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/profile/{user}/displayname"),
                None,
            )
            .await;
        body["displayname"].as_str().map(str::to_owned)
    }
}
