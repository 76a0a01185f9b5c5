//! Typed overrides of the mock homeserver's endpoints: pick an endpoint, narrow it (a room, a
//! transaction id, a text, an asserted user), give its answer, then how often:
//!
//! ```ignore
//! hs.room_send().with_text("A2").error(500, "M_UNKNOWN").times(2).mount().await;
//! hs.room_send().rate_limited(Duration::from_millis(50)).times(1).expect(1).mount().await;
//! ```
//!
//! An override goes before the built-in homeserver; among overrides, the first mounted that
//! matches answers. Once it has answered `times(n)` times it steps aside.

use std::{
    marker::PhantomData,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::{json, Value};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::{answer, error_body, identity, Endpoint, MockHomeserver, World};

/// Which endpoint an override is for.
pub trait EndpointKind: Send + Sync + 'static {
    /// Whether `endpoint` is this one.
    fn is(endpoint: &Endpoint) -> bool;
}

macro_rules! endpoint_kinds {
    ($($(#[$doc:meta])* $name:ident => $pattern:pat,)*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl EndpointKind for $name {
            fn is(endpoint: &Endpoint) -> bool {
                matches!(endpoint, $pattern)
            }
        }
    )*};
}

endpoint_kinds! {
    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`
    RoomSend => Endpoint::RoomSend { .. },
    /// `POST /register`
    Register => Endpoint::Register,
    /// `POST /createRoom`
    CreateRoom => Endpoint::CreateRoom,
    /// `GET /directory/room/{roomAlias}`
    ResolveAlias => Endpoint::ResolveAlias { .. },
    /// `POST /rooms/{roomId}/join`
    Join => Endpoint::Join { .. },
    /// `POST /rooms/{roomId}/invite`
    Invite => Endpoint::Invite { .. },
    /// `PUT /profile/{userId}/displayname`
    SetDisplayName => Endpoint::SetDisplayName { .. },
    /// `GET /profile/{userId}/displayname`
    GetDisplayName => Endpoint::GetDisplayName { .. },
    /// `POST /_matrix/media/v3/upload`
    Upload => Endpoint::Upload,
}

/// A narrowing of an endpoint's requests.
#[derive(Clone, Debug)]
enum Filter {
    Room(String),
    Txn(String),
    User(String),
    Text(String),
    Alias(String),
}

impl Filter {
    fn matches(&self, endpoint: &Endpoint, request: &Request) -> bool {
        match (self, endpoint) {
            (
                Self::Room(want),
                Endpoint::RoomSend { room, .. }
                | Endpoint::Join { room }
                | Endpoint::Invite { room }
                | Endpoint::Redact { room, .. },
            ) => room == want,
            (Self::Txn(want), Endpoint::RoomSend { txn, .. }) => txn == want,
            (Self::Alias(want), Endpoint::ResolveAlias { alias }) => alias == want,
            (Self::User(want), _) => identity(request).0 == *want,
            (Self::Text(want), _) => {
                request
                    .body_json::<Value>()
                    .ok()
                    .and_then(|b| b["body"].as_str().map(str::to_owned))
                    == Some(want.clone())
            }
            _ => false,
        }
    }
}

/// The requests to one endpoint that an override will answer.
pub struct MockEndpoint<'a, E> {
    hs: &'a MockHomeserver,
    filters: Vec<Filter>,
    kind: PhantomData<E>,
}

/// How an override's answer is made from the request.
type MakeBody = Box<dyn Fn(&Request) -> Value + Send + Sync>;

impl<'a, E: EndpointKind> MockEndpoint<'a, E> {
    pub(crate) fn new(hs: &'a MockHomeserver) -> Self {
        Self {
            hs,
            filters: Vec::new(),
            kind: PhantomData,
        }
    }

    fn filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Only requests acting as `user` (`user_id=`, or the bot without it).
    pub fn as_user(self, user: &str) -> Self {
        self.filter(Filter::User(user.to_owned()))
    }

    /// Answers with a Matrix error.
    pub fn error(self, status: u16, errcode: &str) -> MatrixMock<'a> {
        let body = error_body(errcode, &format!("mock homeserver: {errcode}"));
        self.respond(status, body)
    }

    /// Answers 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`, as a rate-limited homeserver does.
    pub fn rate_limited(self, retry_after: Duration) -> MatrixMock<'a> {
        self.respond(
            429,
            json!({
                "errcode": "M_LIMIT_EXCEEDED",
                "error": "Too Many Requests",
                "retry_after_ms": retry_after.as_millis() as u64,
            }),
        )
    }

    /// Answers `status` with `body`.
    pub fn respond(self, status: u16, body: Value) -> MatrixMock<'a> {
        self.answer(status, Box::new(move |_| body.clone()), None)
    }

    fn answer(self, status: u16, body: MakeBody, lands: Option<String>) -> MatrixMock<'a> {
        let filters = self.filters;
        let active = Arc::new(AtomicBool::new(true));
        let in_scope = active.clone();
        let matcher = move |request: &Request| {
            in_scope.load(Ordering::SeqCst)
                && Endpoint::of(request).is_some_and(|endpoint| {
                    E::is(&endpoint) && filters.iter().all(|f| f.matches(&endpoint, request))
                })
        };
        let responder = Override {
            world: self.hs.world(),
            status,
            body,
            lands,
        };
        MatrixMock {
            hs: self.hs,
            mock: Mock::given(matcher).respond_with(responder),
            active,
        }
    }
}

impl<'a> MockEndpoint<'a, RoomSend> {
    /// Only sends to `room`.
    pub fn for_room(self, room: &str) -> Self {
        self.filter(Filter::Room(room.to_owned()))
    }

    /// Only sends with transaction id `txn`.
    pub fn with_txn(self, txn: &str) -> Self {
        self.filter(Filter::Txn(txn.to_owned()))
    }

    /// Only sends whose `content.body` is `text`.
    pub fn with_text(self, text: &str) -> Self {
        self.filter(Filter::Text(text.to_owned()))
    }

    /// Takes the event as `event_id` (it lands in the room, whoever sent it).
    pub fn ok(self, event_id: &str) -> MatrixMock<'a> {
        let id = event_id.to_owned();
        self.answer(
            200,
            Box::new(move |_| json!({ "event_id": id })),
            Some(event_id.to_owned()),
        )
    }
}

impl<'a> MockEndpoint<'a, Register> {
    /// Registers whoever is asked for (the user is not added to the state).
    pub fn ok(self) -> MatrixMock<'a> {
        let body = |request: &Request| {
            let name = request.body_json::<Value>().unwrap_or_default()["username"].clone();
            json!({ "user_id": format!("@{}:{}", name.as_str().unwrap_or_default(), super::SERVER_NAME) })
        };
        self.answer(200, Box::new(body), None)
    }
}

impl<'a> MockEndpoint<'a, CreateRoom> {
    /// Answers `room_id` (no room is added to the state).
    pub fn ok(self, room_id: &str) -> MatrixMock<'a> {
        self.respond(200, json!({ "room_id": room_id }))
    }
}

impl<'a> MockEndpoint<'a, ResolveAlias> {
    /// Only look-ups of `alias`.
    pub fn for_alias(self, alias: &str) -> Self {
        self.filter(Filter::Alias(alias.to_owned()))
    }

    /// Answers that `alias` points to `room_id`.
    pub fn ok(self, room_id: &str) -> MatrixMock<'a> {
        self.respond(
            200,
            json!({ "room_id": room_id, "servers": [super::SERVER_NAME] }),
        )
    }

    /// Answers 404 `M_NOT_FOUND`.
    pub fn not_found(self) -> MatrixMock<'a> {
        self.error(404, "M_NOT_FOUND")
    }
}

impl<'a> MockEndpoint<'a, Join> {
    /// Only joins of `room`.
    pub fn for_room(self, room: &str) -> Self {
        self.filter(Filter::Room(room.to_owned()))
    }

    /// Answers that the user joined (the membership is not changed in the state).
    pub fn ok(self) -> MatrixMock<'a> {
        let body = |request: &Request| match Endpoint::of(request) {
            Some(Endpoint::Join { room }) => json!({ "room_id": room }),
            _ => json!({}),
        };
        self.answer(200, Box::new(body), None)
    }
}

impl<'a> MockEndpoint<'a, Invite> {
    /// Only invitations to `room`.
    pub fn for_room(self, room: &str) -> Self {
        self.filter(Filter::Room(room.to_owned()))
    }

    /// Answers `{}` (the membership is not changed in the state).
    pub fn ok(self) -> MatrixMock<'a> {
        self.respond(200, json!({}))
    }
}

impl<'a> MockEndpoint<'a, SetDisplayName> {
    /// Answers `{}` (the name is not changed in the state).
    pub fn ok(self) -> MatrixMock<'a> {
        self.respond(200, json!({}))
    }
}

impl<'a> MockEndpoint<'a, GetDisplayName> {
    /// Answers `name`.
    pub fn ok(self, name: &str) -> MatrixMock<'a> {
        self.respond(200, json!({ "displayname": name }))
    }
}

impl<'a> MockEndpoint<'a, Upload> {
    /// Answers `content_uri` (nothing is stored).
    pub fn ok(self, content_uri: &str) -> MatrixMock<'a> {
        self.respond(200, json!({ "content_uri": content_uri }))
    }
}

impl MockHomeserver {
    /// Overrides room sends.
    pub fn room_send(&self) -> MockEndpoint<'_, RoomSend> {
        MockEndpoint::new(self)
    }

    /// Overrides registrations.
    pub fn register(&self) -> MockEndpoint<'_, Register> {
        MockEndpoint::new(self)
    }

    /// Overrides room creation.
    pub fn create_room(&self) -> MockEndpoint<'_, CreateRoom> {
        MockEndpoint::new(self)
    }

    /// Overrides alias look-ups.
    pub fn resolve_alias(&self) -> MockEndpoint<'_, ResolveAlias> {
        MockEndpoint::new(self)
    }

    /// Overrides joins.
    pub fn join(&self) -> MockEndpoint<'_, Join> {
        MockEndpoint::new(self)
    }

    /// Overrides invitations.
    pub fn invite(&self) -> MockEndpoint<'_, Invite> {
        MockEndpoint::new(self)
    }

    /// Overrides setting a display name.
    pub fn put_display_name(&self) -> MockEndpoint<'_, SetDisplayName> {
        MockEndpoint::new(self)
    }

    /// Overrides reading a display name.
    pub fn get_display_name(&self) -> MockEndpoint<'_, GetDisplayName> {
        MockEndpoint::new(self)
    }

    /// Overrides media uploads.
    pub fn upload(&self) -> MockEndpoint<'_, Upload> {
        MockEndpoint::new(self)
    }
}

/// An override's answer, recorded like the built-in homeserver's.
struct Override {
    world: Arc<std::sync::Mutex<World>>,
    status: u16,
    body: MakeBody,
    /// The event id a successful send lands as.
    lands: Option<String>,
}

impl Respond for Override {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut world = self.world.lock().expect("not poisoned");
        if let (
            Some(event_id),
            Some(Endpoint::RoomSend {
                room,
                event_type,
                txn,
            }),
        ) = (&self.lands, Endpoint::of(request))
        {
            let user = identity(request).0;
            let key = (user.clone(), room.clone(), txn.clone());
            if !world.txns.contains_key(&key) {
                let body = request.body_json().unwrap_or(Value::Null);
                world.land_as(event_id, &user, &room, &event_type, &txn, &body);
            }
        }
        let body = (self.body)(request);
        answer(&mut world, request, self.status, body)
    }
}

/// An override, ready to mount.
pub struct MatrixMock<'a> {
    hs: &'a MockHomeserver,
    mock: Mock,
    /// Whether it still answers: see [`MatrixMock::mount_as_scoped`].
    active: Arc<AtomicBool>,
}

impl MatrixMock<'_> {
    /// Answers at most `n` requests, then steps aside.
    pub fn times(self, n: u64) -> Self {
        Self {
            hs: self.hs,
            mock: self.mock.up_to_n_times(n),
            active: self.active,
        }
    }

    /// Expects exactly `n` matching requests, checked when the mock homeserver is dropped or
    /// [`MockHomeserver::verify`]d (or the scoped guard is dropped).
    pub fn expect(self, n: u64) -> Self {
        Self {
            hs: self.hs,
            mock: self.mock.expect(n),
            active: self.active,
        }
    }

    /// Names the override in a failed expectation's message.
    pub fn named(self, name: &str) -> Self {
        Self {
            hs: self.hs,
            mock: self.mock.named(name),
            active: self.active,
        }
    }

    /// Mounts it for the rest of the test.
    pub async fn mount(self) {
        self.mock.mount(self.hs.server()).await;
    }

    /// Mounts it until the guard is dropped; its `expect` is checked with the others'.
    ///
    /// (Not wiremock's own scoped mocks: wiremock finds a scoped mock by its place in a list
    /// it re-sorts by priority, so with the homeserver's lower priority behind the overrides,
    /// dropping its guard would put another mock out of scope.)
    pub async fn mount_as_scoped(self) -> ScopedMock {
        let active = self.active.clone();
        self.mock.mount(self.hs.server()).await;
        ScopedMock(active)
    }
}

/// An override that answers until this is dropped.
#[must_use = "the override stops answering when this is dropped"]
pub struct ScopedMock(Arc<AtomicBool>);

impl Drop for ScopedMock {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
