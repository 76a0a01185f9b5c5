//! The Matrix relay on the mock homeserver, in milliseconds and without Synapse: rooms and
//! ghosts made as the specification asks, every case's messages in order while cases run in
//! parallel, and retries that reuse the transaction id while the case behind a failing send
//! waits and the others go on.

use std::time::Duration;

use casebridge_gateway::{
    store::{message, Direction, MessageState},
    Gateway,
};
use casebridge_tests::{
    free_port, init_logging,
    loopback::test_factories,
    mock_homeserver::{Call, Endpoint, Event, BOT},
    GatewaySetup, MockHomeserver, Spool,
};

/// Long enough for anything the gateway does here; these tests take well under a second.
const WAIT: Duration = Duration::from_secs(10);

/// A mock homeserver, and the settings of a gateway (SQLite) for it.
pub struct MockStack {
    pub hs: MockHomeserver,
    pub setup: GatewaySetup,
    pub spool: Spool,
    _dir: tempfile::TempDir,
}

impl MockStack {
    pub async fn new() -> Self {
        init_logging();
        let dir = tempfile::Builder::new()
            .prefix("cb-mock-")
            .tempdir()
            .unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        let hs = MockHomeserver::start().await;
        let setup = GatewaySetup {
            homeserver_url: hs.url(),
            port: free_port(),
            database_url: format!("sqlite://{}", dir.path().join("cb.db").display()),
            spool: spool.root().to_owned(),
            members: vec!["@anna:localhost".into(), "@bo:localhost".into()],
            // Retries 100 ms, then 200 ms apart.
            max_backoff_ms: 200,
            extra: String::new(),
        };
        Self {
            hs,
            setup,
            spool,
            _dir: dir,
        }
    }

    pub async fn start_gateway(&self) -> Gateway {
        Gateway::start(self.setup.config(), &test_factories())
            .await
            .expect("gateway starts")
    }

    /// Waits until `ghost` has `n` messages in one room; that room and the messages.
    pub async fn ghost_messages(&self, ghost: &str, n: usize) -> (String, Vec<Event>) {
        self.hs
            .wait_until(WAIT, &format!("{n} messages of {ghost}"), |hs| {
                let events: Vec<Event> = hs
                    .events()
                    .into_iter()
                    .filter(|e| e.sender == ghost)
                    .collect();
                assert!(
                    events.len() <= n,
                    "more than {n} messages of {ghost}: {events:#?}"
                );
                (events.len() == n).then(|| (events[0].room_id.clone(), events))
            })
            .await
    }

    /// Waits until the bot has posted `n` notices (or mentions) in `room`; their texts.
    pub async fn bot_messages(&self, room: &str, n: usize) -> Vec<String> {
        self.hs
            .wait_until(WAIT, &format!("{n} bot messages in {room}"), |hs| {
                let texts: Vec<String> = hs
                    .timeline(room)
                    .iter()
                    .filter(|e| e.sender == BOT)
                    .map(|e| e.body().to_owned())
                    .collect();
                assert!(texts.len() <= n, "more than {n} bot messages: {texts:#?}");
                (texts.len() == n).then_some(texts)
            })
            .await
    }
}

/// The ghost of loopback address `address`.
pub fn ghost(address: &str) -> String {
    format!(
        "@_cb_loop_{}:localhost",
        casebridge_gateway::relay::escape_localpart(address)
    )
}

/// Every inbound record of the gateway, by body.
async fn inbound_records(gateway: &Gateway) -> Vec<message::Model> {
    let store = gateway.store();
    let mut all = Vec::new();
    for case in store.cases().await.unwrap() {
        all.extend(
            store
                .messages(case.id)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| m.direction == Direction::Inbound),
        );
    }
    all
}

/// Waits until the gateway has `n` inbound records, all relayed (a round records what it
/// sent once all its sends are done); returns them.
async fn relayed_records(gateway: &Gateway, n: usize) -> Vec<message::Model> {
    casebridge_tests::eventually(WAIT, &format!("{n} relayed records"), || async {
        let records = inbound_records(gateway).await;
        (records.len() == n && records.iter().all(|r| r.state == MessageState::Relayed))
            .then_some(records)
    })
    .await
}

/// Calls that did not succeed, except those a healthy run makes: the alias look-up before a
/// room exists, and the profile look-up of team members who have set no name.
fn unexpected_failures(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| c.status >= 300)
        .filter(|c| {
            !matches!(
                (&c.endpoint, c.status),
                (Some(Endpoint::ResolveAlias { .. }), 404)
                    | (Some(Endpoint::GetDisplayName { .. }), 404)
            )
        })
        .collect()
}

/// Many clients at once: each gets one room, made as the specification asks, and its messages
/// land there in the order they were written, each sent once, by its ghost, with the
/// transaction id `cb-m<record id>`; the sends of several cases interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_relay_keeps_each_rooms_order() {
    const CLIENTS: usize = 4;
    const EACH: usize = 12;
    let stack = MockStack::new().await;
    // Answers take 0-4 ms: sends in flight at once can overtake each other.
    stack.hs.set_latency(Duration::from_millis(4));
    // Everything is queued before the gateway starts, so the relay sees it all at once.
    for i in 0..EACH {
        for c in 0..CLIENTS {
            stack.spool.put(
                &format!("m{:03}", i * CLIENTS + c),
                &format!("+4670000000{c}"),
                &format!("client {c} message {i}"),
            );
        }
    }
    let gateway = stack.start_gateway().await;

    let mut rooms = Vec::new();
    for c in 0..CLIENTS {
        let ghost = ghost(&format!("+4670000000{c}"));
        let (room, events) = stack.ghost_messages(&ghost, EACH).await;
        let bodies: Vec<&str> = events.iter().map(Event::body).collect();
        let written: Vec<String> = (0..EACH)
            .map(|i| format!("client {c} message {i}"))
            .collect();
        assert_eq!(bodies, written, "client {c}'s room");
        assert!(events.iter().all(|e| e.room_id == room), "{events:#?}");
        assert!(events.iter().all(|e| e.msgtype() == "m.text"));
        // The room holds this client's messages only (and nothing from the bot).
        assert_eq!(stack.hs.timeline(&room), events);
        rooms.push((c, ghost, room, events));
    }

    // Each room: created by the bot under the case's alias, private, the team invited, URL
    // previews off; the ghost registered, named after the contact and channel, and joined.
    let cases = gateway.store().cases().await.unwrap();
    assert_eq!(cases.len(), CLIENTS);
    for (c, ghost, room, _) in &rooms {
        let case = cases
            .iter()
            .find(|case| case.room_id.as_deref() == Some(room.as_str()))
            .expect("the room is a case's");
        let made = stack
            .hs
            .room_by_alias(&format!("#_cb_case_{}:localhost", case.number))
            .expect("the case alias resolves");
        assert_eq!(&made.room_id, room);
        assert_eq!(made.creator, BOT);
        assert_eq!(made.create["preset"], "private_chat");
        assert_eq!(made.create["name"], format!("+4670000000{c} (Loopback)"));
        assert_eq!(
            made.create["initial_state"][0]["type"],
            "org.matrix.room.preview_urls"
        );
        assert_eq!(made.create["initial_state"][0]["content"]["disable"], true);
        for member in ["@anna:localhost", "@bo:localhost"] {
            assert_eq!(made.members[member], "invite", "{member}");
        }
        assert_eq!(made.members[ghost.as_str()], "join");
        assert!(stack.hs.is_registered(ghost));
        assert_eq!(
            stack.hs.display_name(ghost).as_deref(),
            Some(format!("+4670000000{c} (Loopback)").as_str())
        );
    }

    // Sent once each, as the ghost (identity assertion), transaction id `cb-m<record id>`,
    // and the record keeps the event id.
    let records = relayed_records(&gateway, CLIENTS * EACH).await;
    let sends = stack.hs.sends();
    assert_eq!(sends.len(), CLIENTS * EACH, "no send twice");
    let events = stack.hs.events();
    for record in &records {
        let event = events
            .iter()
            .find(|e| e.body() == record.body)
            .expect("every record landed");
        assert_eq!(event.txn, format!("cb-m{}", record.id));
        assert_eq!(record.state, MessageState::Relayed);
        assert_eq!(record.event_id.as_deref(), Some(event.event_id.as_str()));
    }
    assert!(sends
        .iter()
        .all(|s| s.asserted && s.user.starts_with("@_cb_loop_")));
    // Cases went in parallel: some room got a message before another room's earlier one.
    let first_room = &events[0].room_id;
    let last_of_first = events
        .iter()
        .rposition(|e| &e.room_id == first_room)
        .unwrap();
    assert!(
        events[..last_of_first]
            .iter()
            .any(|e| &e.room_id != first_room),
        "the cases were relayed one after the other"
    );
    let calls = stack.hs.calls();
    let failures = unexpected_failures(&calls);
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(stack.hs.unknown_calls().is_empty());
    gateway.shutdown().await;
}

/// Many new clients at once on a store with two connections: rooms are made and messages sent
/// while other cases record what they sent, without the relay waiting out the pool's timeout.
/// (A case held its connection and SQLite's write lock while the relay's loop, the only one
/// polling it, waited for a connection: 30 s stalls and "database is locked".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_relay_stays_busy_with_a_small_pool_and_many_new_cases() {
    const CLIENTS: usize = 40;
    let stack = MockStack::new().await;
    stack.hs.set_latency(Duration::from_millis(4));
    for c in 0..CLIENTS {
        stack.spool.put(
            &format!("m{c:03}"),
            &format!("+467000001{c:02}"),
            &format!("client {c}"),
        );
    }
    let mut config = stack.setup.config();
    config.database.max_connections = 2;
    let gateway = Gateway::start(config, &test_factories())
        .await
        .expect("gateway starts");
    let records = relayed_records(&gateway, CLIENTS).await;
    assert_eq!(records.len(), CLIENTS);
    assert_eq!(stack.hs.sends().len(), CLIENTS, "each sent once");
    let calls = stack.hs.calls();
    let failures = unexpected_failures(&calls);
    assert!(failures.is_empty(), "{failures:#?}");
    gateway.shutdown().await;
}

/// The sends of `text`, in order.
fn sends_of<'a>(sends: &'a [Call], text: &str) -> Vec<&'a Call> {
    sends.iter().filter(|s| s.text() == Some(text)).collect()
}

/// A send that fails (500, or 429 `M_LIMIT_EXCEEDED`) is retried with the same transaction id,
/// into the same room, until it goes through, and lands once; the case's later messages wait
/// behind it and are not even tried; the other case goes on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_relay_retries_with_the_same_transaction_id() {
    let stack = MockStack::new().await;
    let (a, b) = ("+46700000001", "+46700000002");
    for i in 1..=4 {
        stack.spool.put(&format!("m{i}a"), a, &format!("A{i}"));
        stack.spool.put(&format!("m{i}b"), b, &format!("B{i}"));
    }
    // A2 fails for as long as this guard lives; B2 is rate limited once.
    let outage = stack
        .hs
        .room_send()
        .with_text("A2")
        .error(500, "M_UNKNOWN")
        .named("A2 fails")
        .mount_as_scoped()
        .await;
    stack
        .hs
        .room_send()
        .with_text("B2")
        .rate_limited(Duration::from_millis(50))
        .times(1)
        .expect(1)
        .named("B2 rate limited once")
        .mount()
        .await;
    let gateway = stack.start_gateway().await;

    // B's case goes on while A's waits; A2 is tried again and again.
    let (b_room, b_events) = stack.ghost_messages(&ghost(b), 4).await;
    let b_bodies: Vec<&str> = b_events.iter().map(Event::body).collect();
    assert_eq!(b_bodies, ["B1", "B2", "B3", "B4"]);
    stack
        .hs
        .wait_until(WAIT, "A2 tried three times", |hs| {
            (sends_of(&hs.sends(), "A2").len() >= 3).then_some(())
        })
        .await;
    let (a_room, a_events) = stack.ghost_messages(&ghost(a), 1).await;
    assert_eq!(a_events[0].body(), "A1");
    let sends = stack.hs.sends();
    assert!(
        sends_of(&sends, "A3").is_empty() && sends_of(&sends, "A4").is_empty(),
        "a message overtook the failing one before it: {sends:#?}"
    );

    // The homeserver is back: A2 goes through once, then A3 and A4, in order.
    drop(outage);
    let (room, a_events) = stack.ghost_messages(&ghost(a), 4).await;
    assert_eq!(room, a_room);
    let a_bodies: Vec<&str> = a_events.iter().map(Event::body).collect();
    assert_eq!(a_bodies, ["A1", "A2", "A3", "A4"]);
    assert_eq!(stack.hs.timeline(&a_room), a_events, "A2 landed once");
    assert_eq!(stack.hs.timeline(&b_room), b_events);

    // Every try of a message was the same request: room, ghost and transaction id.
    let records = relayed_records(&gateway, 8).await;
    let sends = stack.hs.sends();
    for (text, min_failures, max_failures, status) in
        [("A2", 3, usize::MAX, 500), ("B2", 1, 1, 429)]
    {
        let record = records.iter().find(|r| r.body == text).unwrap();
        let tries = sends_of(&sends, text);
        let (last, failed) = tries.split_last().unwrap();
        assert!(
            (min_failures..=max_failures).contains(&failed.len()),
            "{text}: {tries:#?}"
        );
        assert!(failed.iter().all(|t| t.status == status), "{tries:#?}");
        assert_eq!(last.status, 200);
        for t in &tries {
            assert_eq!(t.txn(), Some(format!("cb-m{}", record.id).as_str()));
            assert_eq!(t.send_room(), last.send_room());
            assert_eq!(t.user, last.user);
        }
        assert_eq!(record.state, MessageState::Relayed);
    }
    // B2's retry came after the 429, and B3 only after B2 went through.
    let position = |text: &str, status: u16| {
        sends
            .iter()
            .position(|s| s.text() == Some(text) && s.status == status)
            .unwrap()
    };
    assert!(position("B2", 200) < position("B3", 200));
    assert!(position("A2", 200) < position("A3", 200));
    // B finished before A2 first went through: the failing case held up no other.
    assert!(position("B4", 200) < position("A2", 200));
    stack.hs.verify().await;
    gateway.shutdown().await;
}

/// A rate-limited send waits as long as the homeserver asks (`retry_after_ms`), not only the
/// relay's own backoff (100-200 ms here); the other case goes on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_relay_waits_as_long_as_a_rate_limit_asks() {
    let stack = MockStack::new().await;
    let (a, b) = ("+46700000001", "+46700000002");
    stack.spool.put("m1a", a, "A1");
    stack.spool.put("m1b", b, "B1");
    stack
        .hs
        .room_send()
        .with_text("A1")
        .rate_limited(Duration::from_millis(1500))
        .times(1)
        .expect(1)
        .named("A1 rate limited once")
        .mount()
        .await;
    let started = std::time::Instant::now();
    let gateway = stack.start_gateway().await;
    stack.ghost_messages(&ghost(b), 1).await;
    let b_landed = started.elapsed();
    stack.ghost_messages(&ghost(a), 1).await;
    let a_landed = started.elapsed();
    // Slowness can only make the wait longer: the bound below holds on any machine.
    assert!(
        a_landed >= Duration::from_millis(1500),
        "A1 was tried again after {a_landed:?}, before the 1.5 s the homeserver asked for"
    );
    assert!(b_landed < a_landed, "B1 waited behind A1's rate limit");
    assert_eq!(sends_of(&stack.hs.sends(), "A1").len(), 2);
    stack.hs.verify().await;
    gateway.shutdown().await;
}

/// A send the homeserver refuses for good (400) is given up after five tries, the record says
/// so, and the case's next message goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_relay_gives_up_a_refused_send() {
    let stack = MockStack::new().await;
    let a = "+46700000001";
    for i in 1..=3 {
        stack.spool.put(&format!("m{i}"), a, &format!("A{i}"));
    }
    stack
        .hs
        .room_send()
        .with_text("A2")
        .error(400, "M_BAD_JSON")
        .expect(5)
        .named("A2 refused")
        .mount()
        .await;
    let gateway = stack.start_gateway().await;
    let (_, events) = stack.ghost_messages(&ghost(a), 2).await;
    let bodies: Vec<&str> = events.iter().map(Event::body).collect();
    assert_eq!(bodies, ["A1", "A3"]);
    let records = inbound_records(&gateway).await;
    let refused = records.iter().find(|r| r.body == "A2").unwrap();
    assert_eq!(refused.state, MessageState::Failed);
    assert!(
        refused
            .error
            .as_deref()
            .is_some_and(|e| e.contains("M_BAD_JSON")),
        "{refused:?}"
    );
    let sends = stack.hs.sends();
    let tries = sends_of(&sends, "A2");
    assert_eq!(tries.len(), 5, "{tries:#?}");
    let a3 = sends.iter().position(|s| s.text() == Some("A3")).unwrap();
    let last_a2 = sends.iter().rposition(|s| s.text() == Some("A2")).unwrap();
    assert!(last_a2 < a3, "A3 overtook A2 while it was still tried");
    stack.hs.verify().await;
    gateway.shutdown().await;
}
