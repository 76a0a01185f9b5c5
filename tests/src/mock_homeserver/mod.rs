//! A mock homeserver, in the spirit of matrix-rust-sdk's: the client-server endpoints the
//! gateway calls, answered in milliseconds as the Matrix specification (and Synapse) answers
//! them, with typed overrides (`hs.room_send().rate_limited(..).times(1).mount().await`) and
//! a record of every call and of what landed in which room, in order. Built on `wiremock`.
//!
//! Out of the box it behaves as a small, strict homeserver for one appservice: the
//! `as_token` is checked, a ghost must be registered (and in the appservice's namespace)
//! before the gateway may speak as it with `user_id=`, only members of a room may invite to it
//! or send in it, only invited users may join it, aliases resolve once a room is created with
//! one, and a send repeated with the same transaction id returns the same event instead of
//! adding a second one. What an override answers is recorded the same way; only a successful
//! `room_send` override changes the state (its event lands in the room).
//!
//! [`AppserviceApi`] is the other direction: the homeserver pushing transactions to the gateway.

mod appservice;
mod endpoints;
mod homeserver;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub use appservice::AppserviceApi;
pub use endpoints::{
    CreateRoom, GetDisplayName, Invite, Join, MatrixMock, MockEndpoint, Register, ResolveAlias,
    RoomSend, ScopedMock, SetDisplayName, Upload,
};

/// The homeserver's name, as the test configurations ([`crate::GatewaySetup`]) give it.
pub const SERVER_NAME: &str = "localhost";
/// The appservice's own user (`sender_localpart`), whom a request without `user_id=` acts as.
pub const BOT: &str = "@casebridge:localhost";
/// The start of every ghost's user id: the appservice's exclusive user namespace.
pub const GHOST_PREFIX: &str = "@_cb_";

/// Priority of the built-in homeserver behind the overrides (wiremock: lower goes first; an
/// override gets wiremock's default, 5, and among overrides the first mounted wins).
const HOMESERVER_PRIORITY: u8 = 200;

/// A client-server endpoint the gateway calls, with what its path names (ids decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /_matrix/client/v3/register`
    Register,
    /// `GET /_matrix/client/v3/profile/{userId}/displayname`
    GetDisplayName {
        /// The user whose name is asked.
        user: String,
    },
    /// `PUT /_matrix/client/v3/profile/{userId}/displayname`
    SetDisplayName {
        /// The user whose name is set.
        user: String,
    },
    /// `GET /_matrix/client/v3/directory/room/{roomAlias}`
    ResolveAlias {
        /// The alias.
        alias: String,
    },
    /// `POST /_matrix/client/v3/createRoom`
    CreateRoom,
    /// `POST /_matrix/client/v3/rooms/{roomId}/invite`
    Invite {
        /// The room.
        room: String,
    },
    /// `POST /_matrix/client/v3/rooms/{roomId}/join`
    Join {
        /// The room.
        room: String,
    },
    /// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
    RoomSend {
        /// The room.
        room: String,
        /// The event type.
        event_type: String,
        /// The client's transaction id.
        txn: String,
    },
    /// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
    Redact {
        /// The room.
        room: String,
        /// The event redacted.
        event: String,
        /// The client's transaction id.
        txn: String,
    },
    /// `POST /_matrix/media/v3/upload`
    Upload,
    /// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`
    Download {
        /// `mxc://localhost/{media}`'s id.
        media: String,
    },
    /// `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`
    DeleteMedia {
        /// The media id.
        media: String,
    },
}

impl Endpoint {
    /// The endpoint `request` calls, if it is one the mock knows.
    pub fn of(request: &Request) -> Option<Self> {
        let segments: Vec<String> = request.url.path_segments()?.map(percent_decode).collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let owned = |x: &str| x.to_owned();
        Some(match (request.method.as_str(), s.as_slice()) {
            ("POST", ["_matrix", "client", "v3", "register"]) => Self::Register,
            ("GET", ["_matrix", "client", "v3", "profile", user, "displayname"]) => {
                Self::GetDisplayName { user: owned(user) }
            }
            ("PUT", ["_matrix", "client", "v3", "profile", user, "displayname"]) => {
                Self::SetDisplayName { user: owned(user) }
            }
            ("GET", ["_matrix", "client", "v3", "directory", "room", alias]) => {
                Self::ResolveAlias {
                    alias: owned(alias),
                }
            }
            ("POST", ["_matrix", "client", "v3", "createRoom"]) => Self::CreateRoom,
            ("POST", ["_matrix", "client", "v3", "rooms", room, "invite"]) => {
                Self::Invite { room: owned(room) }
            }
            ("POST", ["_matrix", "client", "v3", "rooms", room, "join"]) => {
                Self::Join { room: owned(room) }
            }
            ("PUT", ["_matrix", "client", "v3", "rooms", room, "send", kind, txn]) => {
                Self::RoomSend {
                    room: owned(room),
                    event_type: owned(kind),
                    txn: owned(txn),
                }
            }
            ("PUT", ["_matrix", "client", "v3", "rooms", room, "redact", event, txn]) => {
                Self::Redact {
                    room: owned(room),
                    event: owned(event),
                    txn: owned(txn),
                }
            }
            ("POST", ["_matrix", "media", "v3", "upload"]) => Self::Upload,
            ("GET", ["_matrix", "client", "v1", "media", "download", _, media, ..]) => {
                Self::Download {
                    media: owned(media),
                }
            }
            ("DELETE", ["_synapse", "admin", "v1", "media", _, media]) => Self::DeleteMedia {
                media: owned(media),
            },
            _ => return None,
        })
    }
}

/// One request the mock answered, in arrival order.
#[derive(Debug, Clone)]
pub struct Call {
    /// What was called (`None`: an endpoint the mock does not know).
    pub endpoint: Option<Endpoint>,
    /// `METHOD /path`, as sent (for messages).
    pub request_line: String,
    /// Who the request acts as: its `user_id=` (identity assertion), else [`BOT`].
    pub user: String,
    /// Whether the request asserted an identity with `user_id=`.
    pub asserted: bool,
    /// The JSON body (`Null` if none or not JSON).
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// The `errcode` answered, on an error.
    pub errcode: Option<String>,
}

impl Call {
    /// The transaction id of a room send, if this is one.
    pub fn txn(&self) -> Option<&str> {
        match &self.endpoint {
            Some(Endpoint::RoomSend { txn, .. }) => Some(txn),
            _ => None,
        }
    }

    /// The room a room send went to, if this is one.
    pub fn send_room(&self) -> Option<&str> {
        match &self.endpoint {
            Some(Endpoint::RoomSend { room, .. }) => Some(room),
            _ => None,
        }
    }

    /// `content.body` of the request (a message's text).
    pub fn text(&self) -> Option<&str> {
        self.body["body"].as_str()
    }
}

/// An event that landed in a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its id.
    pub event_id: String,
    /// The room.
    pub room_id: String,
    /// Who sent it.
    pub sender: String,
    /// Its type (`m.room.message`).
    pub event_type: String,
    /// The transaction id it was sent with.
    pub txn: String,
    /// Its content.
    pub content: Value,
}

impl Event {
    /// `content.body`.
    pub fn body(&self) -> &str {
        self.content["body"].as_str().unwrap_or_default()
    }

    /// `content.msgtype`.
    pub fn msgtype(&self) -> &str {
        self.content["msgtype"].as_str().unwrap_or_default()
    }
}

/// A room of the mock, as created.
#[derive(Debug, Clone, Default)]
pub struct Room {
    /// Its id.
    pub room_id: String,
    /// Its alias, if created with one.
    pub alias: Option<String>,
    /// Who created it.
    pub creator: String,
    /// The `createRoom` body.
    pub create: Value,
    /// Membership by user: `invite` or `join`.
    pub members: BTreeMap<String, String>,
}

/// The mock's state: what a homeserver keeps.
#[derive(Default)]
pub(crate) struct World {
    users: BTreeSet<String>,
    display_names: BTreeMap<String, String>,
    aliases: BTreeMap<String, String>,
    rooms: Vec<Room>,
    events: Vec<Event>,
    /// (user, room, txn) -> the event a send made: a retry is the same event.
    txns: BTreeMap<(String, String, String), String>,
    media: BTreeMap<String, Vec<u8>>,
    calls: Vec<Call>,
    next: u64,
    latency: Duration,
}

impl World {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn room_mut(&mut self, room: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|r| r.room_id == room)
    }

    /// Adds the event a send made, unless its transaction made one already; its id.
    fn land(&mut self, user: &str, room: &str, kind: &str, txn: &str, body: &Value) -> String {
        let key = (user.to_owned(), room.to_owned(), txn.to_owned());
        if let Some(event) = self.txns.get(&key) {
            return event.clone();
        }
        let event_id = format!("$mock{}", self.next_id());
        self.land_as(&event_id, user, room, kind, txn, body);
        event_id
    }

    fn land_as(
        &mut self,
        event_id: &str,
        user: &str,
        room: &str,
        kind: &str,
        txn: &str,
        body: &Value,
    ) {
        self.txns.insert(
            (user.to_owned(), room.to_owned(), txn.to_owned()),
            event_id.to_owned(),
        );
        self.events.push(Event {
            event_id: event_id.to_owned(),
            room_id: room.to_owned(),
            sender: user.to_owned(),
            event_type: kind.to_owned(),
            txn: txn.to_owned(),
            content: body.clone(),
        });
    }
}

/// A running mock homeserver. Dropping it checks every `expect` of its mounted mocks.
pub struct MockHomeserver {
    server: MockServer,
    world: Arc<Mutex<World>>,
}

impl MockHomeserver {
    /// Starts a mock homeserver on a free port of 127.0.0.1, answering as a healthy homeserver.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let world = Arc::new(Mutex::new(World::default()));
        Mock::given(|_: &Request| true)
            .respond_with(homeserver::Homeserver {
                world: world.clone(),
            })
            .with_priority(HOMESERVER_PRIORITY)
            .named("the mock homeserver")
            .mount(&server)
            .await;
        Self { server, world }
    }

    /// The client-server base URL, for `[homeserver] url`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub(crate) fn server(&self) -> &MockServer {
        &self.server
    }

    pub(crate) fn world(&self) -> Arc<Mutex<World>> {
        self.world.clone()
    }

    fn read<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.world.lock().expect("not poisoned"))
    }

    /// Delays every answer by up to `max` (a fixed pseudo-random spread), as a loaded server
    /// would: requests in flight at once overtake each other.
    pub fn set_latency(&self, max: Duration) {
        self.world.lock().expect("not poisoned").latency = max;
    }

    /// Sets `user`'s display name, as the user would have (for the gateway's profile look-ups).
    pub fn set_display_name(&self, user: &str, name: &str) {
        let mut world = self.world.lock().expect("not poisoned");
        world.users.insert(user.to_owned());
        world.display_names.insert(user.to_owned(), name.to_owned());
    }

    /// Every request answered so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.read(|w| w.calls.clone())
    }

    /// Every room send so far (successful or not), in arrival order.
    pub fn sends(&self) -> Vec<Call> {
        self.read(|w| {
            w.calls
                .iter()
                .filter(|c| c.txn().is_some())
                .cloned()
                .collect()
        })
    }

    /// Requests to endpoints the mock does not know (answered 404 `M_UNRECOGNIZED`).
    pub fn unknown_calls(&self) -> Vec<Call> {
        self.read(|w| {
            w.calls
                .iter()
                .filter(|c| c.endpoint.is_none())
                .cloned()
                .collect()
        })
    }

    /// Every event that landed, in order.
    pub fn events(&self) -> Vec<Event> {
        self.read(|w| w.events.clone())
    }

    /// The events of `room`, in order.
    pub fn timeline(&self, room: &str) -> Vec<Event> {
        self.read(|w| {
            w.events
                .iter()
                .filter(|e| e.room_id == room)
                .cloned()
                .collect()
        })
    }

    /// The rooms, in the order they were created.
    pub fn rooms(&self) -> Vec<Room> {
        self.read(|w| w.rooms.clone())
    }

    /// The room `alias` (`#...:localhost`) points to.
    pub fn room_by_alias(&self, alias: &str) -> Option<Room> {
        self.read(|w| {
            let id = w.aliases.get(alias)?;
            w.rooms.iter().find(|r| &r.room_id == id).cloned()
        })
    }

    /// `user`'s display name, if set.
    pub fn display_name(&self, user: &str) -> Option<String> {
        self.read(|w| w.display_names.get(user).cloned())
    }

    /// Whether `user` is registered.
    pub fn is_registered(&self, user: &str) -> bool {
        self.read(|w| w.users.contains(user))
    }

    /// Waits until `what` of the state holds, polling every 5 ms, for at most `timeout`.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; calls so far:\n{}",
                self.calls()
                    .iter()
                    .map(|c| format!("  {} as {} -> {}", c.request_line, c.user, c.status))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Checks now (rather than at drop) that every mounted mock got what it `expect`ed.
    pub async fn verify(&self) {
        self.server.verify().await;
    }
}

/// Records `request`, answered with `status` and `body`, and makes its answer.
pub(crate) fn answer(
    world: &mut World,
    request: &Request,
    status: u16,
    body: Value,
) -> ResponseTemplate {
    let (user, asserted) = identity(request);
    world.calls.push(Call {
        endpoint: Endpoint::of(request),
        request_line: format!("{} {}", request.method, request.url.path()),
        user,
        asserted,
        body: request.body_json().unwrap_or(Value::Null),
        status,
        errcode: body["errcode"].as_str().map(str::to_owned),
    });
    let mut template = ResponseTemplate::new(status).set_body_json(body);
    if !world.latency.is_zero() {
        // A spread that is the same from run to run: Knuth's multiplicative hash of the count.
        let spread = (world.calls.len() as u64).wrapping_mul(2_654_435_761) % 1000;
        template = template.set_delay(world.latency.mul_f64(spread as f64 / 1000.0));
    }
    template
}

/// A Matrix error body.
pub fn error_body(errcode: &str, error: &str) -> Value {
    json!({ "errcode": errcode, "error": error })
}

/// Who a request acts as: its `user_id=` query parameter, else the appservice's bot.
fn identity(request: &Request) -> (String, bool) {
    match request.url.query_pairs().find(|(key, _)| key == "user_id") {
        Some((_, user)) => (user.into_owned(), true),
        None => (BOT.to_owned(), false),
    }
}

/// `%XX` escapes of a path segment decoded.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = segment
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
