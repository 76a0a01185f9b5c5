//! Case-room commands and the appservice API on the mock homeserver, without Synapse: the
//! homeserver pushes transactions, the gateway answers in the room with notices as the bot.

use casebridge_gateway::{
    store::{CaseStatus, Direction, MessageKind},
    Gateway,
};
use casebridge_tests::mock_homeserver::{AppserviceApi, BOT};
use serde_json::json;

use crate::mock_relay::{ghost, MockStack};

const ANNA: &str = "@anna:localhost";
const EVE: &str = "@eve:localhost";
const CLIENT: &str = "+46700000001";

/// A gateway whose one client has written once: its case room, and the case's number.
async fn one_case(stack: &MockStack) -> (Gateway, AppserviceApi, String, String) {
    stack.spool.put("m1", CLIENT, "Hej, jag behöver hjälp.");
    let gateway = stack.start_gateway().await;
    let (room, _) = stack.ghost_messages(&ghost(CLIENT), 1).await;
    let case = gateway.store().cases().await.unwrap().remove(0);
    let api = AppserviceApi::new(gateway.local_addr());
    (gateway, api, room, case.number)
}

async fn case_status(gateway: &Gateway) -> CaseStatus {
    gateway.store().cases().await.unwrap().remove(0).status
}

/// A team member's commands are run and answered by a notice in the room, in order; a
/// non-member's command does nothing and is answered with the refusal; so is a non-member's
/// message, which does not reach the client; a malformed command gets its own refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_commands_are_answered_in_the_room() {
    let stack = MockStack::new().await;
    let (gateway, api, room, number) = one_case(&stack).await;

    let (status, _) = api
        .transaction("c1", &[api.text(&room, ANNA, "!case")])
        .await;
    assert_eq!(status, 200);
    let notices = stack.bot_messages(&room, 1).await;
    assert!(
        notices[0].starts_with(&format!("Case {number} · open · team social")),
        "{notices:?}"
    );
    assert!(
        notices[0].contains("Contacts: +46700000001 (Loopback)"),
        "{notices:?}"
    );

    let (status, _) = api
        .transaction("c2", &[api.text(&room, EVE, "!close")])
        .await;
    assert_eq!(status, 200);
    let notices = stack.bot_messages(&room, 2).await;
    assert_eq!(
        notices[1],
        "Only members of team social can use commands in a case room. Nothing was done."
    );
    assert_eq!(case_status(&gateway).await, CaseStatus::Open);

    let (status, _) = api
        .transaction("c3", &[api.text(&room, ANNA, "!close")])
        .await;
    assert_eq!(status, 200);
    let notices = stack.bot_messages(&room, 3).await;
    assert_eq!(notices[2], format!("Case {number} closed by {ANNA}."));
    assert_eq!(case_status(&gateway).await, CaseStatus::Closed);

    // Two events in one transaction: answered in their order.
    let events = [
        api.text(&room, ANNA, "!assign nobody"),
        api.text(&room, EVE, "Ring mig privat."),
    ];
    let (status, _) = api.transaction("c4", &events).await;
    assert_eq!(status, 200);
    let notices = stack.bot_messages(&room, 5).await;
    assert_eq!(
        notices[3..],
        [
            "!assign needs a Matrix ID: !assign @user:server",
            "Only members of team social can write to the client. This message was not sent.",
        ]
    );
    // Notices, sent by the bot itself (no identity assertion), into the case room.
    let from_bot: Vec<_> = stack
        .hs
        .timeline(&room)
        .into_iter()
        .filter(|e| e.sender == BOT)
        .collect();
    assert!(
        from_bot.iter().all(|e| e.msgtype() == "m.notice"),
        "{from_bot:#?}"
    );
    let bot_sends: Vec<_> = stack
        .hs
        .sends()
        .into_iter()
        .filter(|s| s.user == BOT)
        .collect();
    assert!(bot_sends.iter().all(|s| !s.asserted), "{bot_sends:#?}");

    // The commands are in the record; nothing went to the client.
    let case = gateway.store().cases().await.unwrap().remove(0);
    let records = gateway.store().messages(case.id).await.unwrap();
    let commands: Vec<_> = records
        .iter()
        .filter(|m| m.kind == Some(MessageKind::Command))
        .map(|m| (m.sender.as_deref(), m.body.as_str()))
        .collect();
    assert_eq!(
        commands,
        [
            (Some(ANNA), "!case"),
            (Some(ANNA), "!close"),
            (Some(ANNA), "!assign nobody")
        ]
    );
    assert!(
        records.iter().all(|m| m.direction != Direction::Outbound),
        "{records:#?}"
    );
    assert!(stack.spool.outbox().is_empty());
    gateway.shutdown().await;
}

/// The appservice API as the homeserver uses it: a replayed transaction id is acknowledged and
/// not applied again (even with other events in it), the ping is answered, events in rooms
/// that are no case's and the gateway's own echoes are acknowledged and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_appservice_api_replays_pings_and_strangers() {
    let stack = MockStack::new().await;
    let (gateway, api, room, _) = one_case(&stack).await;
    let note_notice = "Internal note recorded; it is not sent to the client.";

    let (status, body) = api
        .transaction("r1", &[api.text(&room, ANNA, "!note first")])
        .await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(stack.bot_messages(&room, 1).await, [note_notice]);
    // The same transaction id again, as a homeserver retrying would, here with another event:
    // acknowledged, and not applied.
    let (status, body) = api
        .transaction("r1", &[api.text(&room, ANNA, "!note second")])
        .await;
    assert_eq!((status, body), (200, json!({})));

    // Strangers: a room that is no case's, and the gateway's own ghost and bot in the room.
    let elsewhere = "!elsewhere:localhost";
    let strangers = [
        api.text(elsewhere, ANNA, "!close"),
        api.text(elsewhere, ANNA, "Hej från ett annat rum."),
        api.text(&room, &ghost(CLIENT), "!close"),
        api.text(&room, BOT, "!close"),
        api.text(&room, &ghost(CLIENT), "an echo of the client"),
    ];
    let (status, body) = api.transaction("r2", &strangers).await;
    assert_eq!((status, body), (200, json!({})));

    // A later transaction is applied: once its notice is in the room, all before it is done.
    let (status, _) = api
        .transaction("r3", &[api.text(&room, ANNA, "!note third")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        stack.bot_messages(&room, 2).await,
        [note_notice, note_notice]
    );
    let case = gateway.store().cases().await.unwrap().remove(0);
    assert_eq!(
        case.status,
        CaseStatus::Open,
        "a stranger's !close was applied"
    );
    let records = gateway.store().messages(case.id).await.unwrap();
    let notes: Vec<&str> = records
        .iter()
        .filter(|m| m.kind == Some(MessageKind::Note))
        .map(|m| m.body.as_str())
        .collect();
    assert_eq!(notes, ["!note first", "!note third"]);
    assert!(
        records.iter().all(|m| m.direction != Direction::Outbound),
        "{records:#?}"
    );
    assert!(stack.hs.timeline(elsewhere).is_empty());
    assert!(stack
        .hs
        .sends()
        .iter()
        .all(|s| s.send_room() == Some(room.as_str())));

    // The ping: answered `{}` with the token, refused without the right one, and only for
    // a body the specification describes.
    let ping = json!({"transaction_id": "mock-ping-1"});
    assert_eq!(api.ping(&ping, None).await, (200, json!({})));
    assert_eq!(api.ping(&json!({}), None).await, (200, json!({})));
    let (status, body) = api.ping(&ping, Some("not-the-hs-token")).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    let (status, body) = api.ping(&json!({"transaction_id": 5}), None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (400, Some("M_BAD_JSON"))
    );
    gateway.shutdown().await;
}
