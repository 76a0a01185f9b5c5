//! The planner on its own: facts in, a plan out, no database.

use casebridge_bridges::{InboundMessage, RemoteAddress, RemoteMessageId};
use casebridge_config::{Config, Language};
use chrono::TimeZone;

use super::*;
use crate::store::CaseStatus;

const CONFIG: &str = r#"
    [homeserver]
    url = "http://127.0.0.1:8008"
    server_name = "example.org"
    [appservice]
    id = "cb"
    listen = "127.0.0.1:0"
    url = "http://127.0.0.1:1"
    as_token = "a"
    hs_token = "h"
    [teams.soc]
    members = ["@anna:example.org", "@bo:example.org"]
    on_call = ["@bo:example.org"]
    auto_reply = { acknowledge = true }
    emergency = { keywords = ["help me now"], alert_room = "!alerts:example.org" }
"#;

fn policies() -> Policies {
    Policies::load(&Config::from_toml_str(CONFIG).unwrap()).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap()
}

fn inbound(id: &str, from: &str, body: &str) -> NewInbound {
    NewInbound {
        instance: "sms".into(),
        channel: "sms".into(),
        team: "soc".into(),
        label: "SMS".into(),
        ghost_localpart: format!("_cb_sms_{from}"),
        message: InboundMessage {
            message_id: RemoteMessageId::new(id),
            from: RemoteAddress::new(from),
            display_name: format!("Client {from}"),
            body: body.into(),
            sent_at: now(),
            ..Default::default()
        },
    }
}

fn case(id: i64, number: &str) -> case::Model {
    case::Model {
        id: CaseId(id),
        number: number.into(),
        year: 2026,
        seq: id as i32,
        team: "soc".into(),
        status: CaseStatus::Open,
        room_id: None,
        last_identity_id: None,
        created_at: now(),
        discreet: false,
        blocked: false,
        assignee: None,
        closed_at: None,
        legal_hold: false,
        merged_into: None,
    }
}

fn contact(identity: i64, case: &case::Model) -> Contact {
    Contact {
        identity_id: IdentityId(identity),
        case_id: case.id,
        case_number: case.number.clone(),
    }
}

fn invitation(case_id: i64, instance: &str) -> invitation::Model {
    invitation::Model {
        token_hash: "hash".into(),
        case_id: CaseId(case_id),
        instance: instance.into(),
        created_by: "@anna:example.org".into(),
        created_at: now() - chrono::Duration::days(1),
        expires_at: now() + chrono::Duration::days(6),
        used_at: None,
    }
}

/// A batch from known clients: `known` maps each address to its identity and case.
struct World {
    contacts: HashMap<Address, Contact>,
    cases: HashMap<CaseId, case::Model>,
}

impl World {
    fn new(known: &[(&str, i64, case::Model)]) -> Self {
        Self {
            contacts: known
                .iter()
                .map(|(from, identity, case)| {
                    (("sms".into(), (*from).into()), contact(*identity, case))
                })
                .collect(),
            cases: known
                .iter()
                .map(|(_, _, case)| (case.id, case.clone()))
                .collect(),
        }
    }

    fn plan(&self, batch: &[NewInbound], recorded: &[&str], policies: &Policies) -> InboundPlan {
        let recorded = recorded
            .iter()
            .map(|id| ("sms".to_owned(), (*id).to_owned()))
            .collect();
        plan(&Facts {
            batch,
            fresh: &fresh(batch, &recorded),
            contacts: &self.contacts,
            cases: &self.cases,
            routed: &HashMap::new(),
            policies,
            now: now(),
        })
        .unwrap()
    }
}

fn recorded(number: &str) -> Accepted {
    Accepted::Recorded {
        case_number: number.into(),
    }
}

#[test]
fn repeats_in_the_batch_and_of_earlier_records_are_not_fresh() {
    let batch = [
        inbound("m1", "a", "x"),
        inbound("m2", "a", "x"),
        inbound("m1", "a", "x"),
        inbound("m0", "b", "x"),
    ];
    let before = HashSet::from([("sms".to_owned(), "m0".to_owned())]);
    assert_eq!(fresh(&batch, &before), [true, true, false, false]);
}

#[test]
fn only_the_first_new_message_of_an_unknown_address_is_looked_up() {
    let known = case(1, "2026-000001");
    let world = World::new(&[("a", 1, known)]);
    let batch = [
        inbound("m1", "a", "x"),
        inbound("m0", "b", "x"),
        inbound("m2", "b", "x"),
        inbound("m3", "c", "x"),
        inbound("m4", "b", "x"),
    ];
    let before = HashSet::from([("sms".to_owned(), "m0".to_owned())]);
    let fresh = fresh(&batch, &before);
    assert_eq!(unknown_senders(&batch, &fresh, &world.contacts), [2, 3]);
}

#[test]
fn a_new_client_opens_a_case_numbered_after_the_last() {
    let mut named = inbound("m2", "b", "x");
    named.message.case_hint = Some("2026-000007".into());
    let batch = [inbound("m1", "a", "x"), named];
    let admission = admit(
        &batch,
        &[(0, Lead::default()), (1, Lead::default())],
        41,
        now(),
    );
    assert!(admission.invitations.is_empty());
    assert_eq!(
        admission.cases,
        [
            NewCase {
                number: "2026-000042".into(),
                year: 2026,
                seq: 42,
                team: "soc".into()
            },
            NewCase {
                number: "2026-000043".into(),
                year: 2026,
                seq: 43,
                team: "soc".into()
            },
        ]
    );
    assert_eq!(
        admission.identities,
        [
            NewIdentity {
                first: 0,
                case: CaseRef::New(0),
                notice: None
            },
            NewIdentity {
                first: 1,
                case: CaseRef::New(1),
                notice: Some(Text::CaseHintIgnored {
                    name: "Client b".into(),
                    named: "2026-000007".into()
                })
            },
        ]
    );
}

#[test]
fn an_invitation_or_an_answer_joins_its_case() {
    let invited = case(3, "2026-000003");
    let answered = case(4, "2026-000004");
    let batch = [
        inbound("m1", "a", "x"),
        inbound("m2", "b", "x"),
        inbound("m3", "c", "x"),
    ];
    let leads = [
        (
            0,
            Lead {
                invitation: Some(Ok(("hash".into(), invited.clone()))),
                answered: None,
            },
        ),
        (
            1,
            Lead {
                invitation: Some(Err(InvitationProblem::Expired)),
                answered: None,
            },
        ),
        (
            2,
            Lead {
                invitation: Some(Err(InvitationProblem::Used)),
                answered: Some(answered.clone()),
            },
        ),
    ];
    let admission = admit(&batch, &leads, 9, now());
    assert_eq!(admission.invitations, ["hash"]);
    assert_eq!(admission.cases.len(), 1, "only the expired link opens one");
    assert_eq!(admission.cases[0].number, "2026-000010");
    let [a, b, c] = &admission.identities[..] else {
        panic!("{:?}", admission.identities)
    };
    assert_eq!(a.case, CaseRef::Known(invited));
    assert_eq!(
        a.notice,
        Some(Text::JoinedByInvitation {
            name: "Client a".into()
        })
    );
    assert_eq!(b.case, CaseRef::New(0));
    assert_eq!(
        b.notice,
        Some(Text::InvitationRefused {
            name: "Client b".into(),
            why: InvitationProblem::Expired
        })
    );
    assert_eq!(c.case, CaseRef::Known(answered));
    assert_eq!(
        c.notice,
        Some(Text::JoinedByAnswer {
            name: "Client c".into()
        })
    );
}

#[test]
fn an_invitation_is_checked_for_channel_use_and_age() {
    let valid = invitation(3, "sms");
    assert_eq!(
        check_invitation(Some(&valid), "sms", false, now()),
        Ok(CaseId(3))
    );
    assert_eq!(
        check_invitation(None, "sms", false, now()),
        Err(InvitationProblem::Unknown)
    );
    assert_eq!(
        check_invitation(Some(&valid), "mail", false, now()),
        Err(InvitationProblem::OtherChannel)
    );
    assert_eq!(
        check_invitation(Some(&valid), "sms", true, now()),
        Err(InvitationProblem::Used),
        "an earlier message of the batch used it"
    );
    let used = invitation::Model {
        used_at: Some(now()),
        ..valid.clone()
    };
    assert_eq!(
        check_invitation(Some(&used), "sms", false, now()),
        Err(InvitationProblem::Used)
    );
    assert_eq!(
        check_invitation(
            Some(&valid),
            "sms",
            false,
            now() + chrono::Duration::days(7)
        ),
        Err(InvitationProblem::Expired)
    );
}

#[test]
fn replies_move_only_where_the_client_wrote_from_elsewhere() {
    let replied_to = |identity| case::Model {
        last_identity_id: Some(IdentityId(identity)),
        ..case(2, "2026-000002")
    };
    let world = World::new(&[
        (
            "a",
            1,
            case::Model {
                last_identity_id: Some(IdentityId(1)),
                ..case(1, "2026-000001")
            },
        ),
        ("b", 2, replied_to(2)),
        ("c", 3, replied_to(2)),
    ]);
    let batch = [
        inbound("m1", "a", "x"),
        inbound("m2", "b", "x"),
        inbound("m3", "c", "x"),
    ];
    let plan = world.plan(&batch, &[], &Policies::default());
    assert_eq!(
        plan.wrote_from,
        BTreeMap::from([(CaseId(1), IdentityId(1)), (CaseId(2), IdentityId(3))])
    );
    // Case 1's replies already go to a; case 2's went to b and now go to c.
    assert_eq!(
        plan.replies_move,
        BTreeMap::from([(CaseId(2), IdentityId(3))])
    );
}

#[test]
fn a_known_client_goes_to_their_case_and_a_repeat_is_a_duplicate() {
    let world = World::new(&[
        ("a", 1, case(1, "2026-000001")),
        ("b", 2, case(2, "2026-000002")),
        ("c", 3, case(2, "2026-000002")),
    ]);
    let batch = [
        inbound("m1", "a", "x"),
        inbound("m2", "b", "x"),
        inbound("m1", "a", "x"),
        inbound("m3", "c", "x"),
        inbound("m0", "c", "x"),
    ];
    let plan = world.plan(&batch, &["m0"], &Policies::default());
    assert_eq!(
        plan.answers,
        [
            recorded("2026-000001"),
            recorded("2026-000002"),
            Accepted::Duplicate,
            recorded("2026-000002"),
            Accepted::Duplicate,
        ]
    );
    let items: Vec<_> = plan
        .records
        .iter()
        .map(|r| (r.item, r.case_id.0, r.identity_id.0, r.state))
        .collect();
    assert_eq!(
        items,
        [
            (0, 1, 1, MessageState::Received),
            (1, 2, 2, MessageState::Received),
            (3, 2, 3, MessageState::Received),
        ]
    );
    // Case 2's client wrote last from c.
    assert_eq!(
        plan.wrote_from,
        BTreeMap::from([(CaseId(1), IdentityId(1)), (CaseId(2), IdentityId(3))])
    );
    // Neither case had a place for replies: both get one.
    assert_eq!(plan.replies_move, plan.wrote_from);
    assert!(plan.notices.is_empty());
    assert!(plan.policy.is_empty(), "no team policy, no steps");
}

#[test]
fn a_blocked_case_records_without_relaying_and_notices_follow_the_message() {
    let blocked = case::Model {
        blocked: true,
        ..case(1, "2026-000001")
    };
    let world = World::new(&[("a", 1, blocked)]);
    let mut garbled = inbound("m1", "a", "x");
    garbled.message.problems = vec!["a part in an unknown charset".into()];
    let batch = [garbled];
    let recorded = HashSet::new();
    let fresh = fresh(&batch, &recorded);
    let plan = plan(&Facts {
        batch: &batch,
        fresh: &fresh,
        contacts: &world.contacts,
        cases: &world.cases,
        routed: &HashMap::from([(
            0,
            Text::JoinedByAnswer {
                name: "Klara".into(),
            },
        )]),
        policies: &Policies::default(),
        now: now(),
    })
    .unwrap();
    assert_eq!(plan.records[0].state, MessageState::Blocked);
    assert_eq!(
        plan.notices,
        [
            (
                CaseId(1),
                "Klara wrote for the first time, answering the office's message in this case, \
                 so the address joined this case. Replies now go to this address, where the \
                 client wrote last."
                    .to_owned()
            ),
            (
                CaseId(1),
                "Part of Client a's message could not be read: a part in an unknown charset. \
                 The record keeps the original whole (casebridge records export)."
                    .to_owned()
            ),
        ]
    );
}

#[test]
fn an_emergency_word_alerts_the_on_call_room() {
    let policies = policies();
    let world = World::new(&[("a", 1, case(1, "2026-000001"))]);
    let batch = [inbound("m1", "a", "please help me now")];
    let plan = world.plan(&batch, &[], &policies);
    let [step] = &plan.policy[..] else {
        panic!("{:?}", plan.policy)
    };
    let emergency = step.emergency.as_ref().unwrap();
    let team = policies.team("soc").unwrap();
    assert_eq!(
        emergency.replied,
        policy::emergency_notice(team, "help me now", true).notice(Language::En)
    );
    assert_eq!(
        emergency.unreplied,
        policy::emergency_notice(team, "help me now", false).notice(Language::En)
    );
    assert_eq!(
        emergency.alert,
        Some(
            policy::emergency_alert(&policies, team, "2026-000001", "SMS", "help me now")
                .notice(Language::En)
        )
    );
    let reply = step.reply.as_ref().unwrap();
    assert_eq!(reply.kind, MessageKind::EmergencyReply);
    assert_eq!(
        reply.once_key, None,
        "the emergency numbers go out every time"
    );
}

#[test]
fn an_automatic_reply_carries_its_once_key_for_each_message() {
    let world = World::new(&[("a", 7, case(1, "2026-000001"))]);
    let batch = [inbound("m1", "a", "hello"), inbound("m2", "a", "again")];
    let plan = world.plan(&batch, &[], &policies());
    let keys: Vec<_> = plan
        .policy
        .iter()
        .map(|step| {
            let reply = step.reply.as_ref().unwrap();
            assert_eq!(reply.kind, MessageKind::Acknowledgement);
            assert!(reply
                .notice
                .starts_with("Automatic reply sent to the client (SMS, "));
            assert!(step.emergency.is_none());
            reply.once_key.clone().unwrap()
        })
        .collect();
    // The same key twice: the store's mark lets only the first go out.
    assert_eq!(keys, ["acknowledgement:7:ever", "acknowledgement:7:ever"]);
}

#[test]
fn a_discreet_case_gets_no_automatic_reply() {
    let discreet = case::Model {
        discreet: true,
        ..case(1, "2026-000001")
    };
    let world = World::new(&[("a", 1, discreet)]);
    let plan = world.plan(&[inbound("m1", "a", "hello")], &[], &policies());
    assert!(plan.policy.is_empty(), "{:?}", plan.policy);
    let plan = world.plan(&[inbound("m2", "a", "help me now")], &[], &policies());
    let [step] = &plan.policy[..] else {
        panic!("{:?}", plan.policy)
    };
    assert!(step.reply.is_none(), "not even the emergency numbers");
    assert!(step.emergency.is_some(), "the team is still alerted");
}

#[test]
fn a_sender_the_facts_lack_is_an_error_not_a_guess() {
    let world = World::new(&[]);
    let batch = [inbound("m1", "a", "x")];
    let fresh = fresh(&batch, &HashSet::new());
    let err = plan(&Facts {
        batch: &batch,
        fresh: &fresh,
        contacts: &world.contacts,
        cases: &world.cases,
        routed: &HashMap::new(),
        policies: &Policies::default(),
        now: now(),
    })
    .unwrap_err();
    assert!(matches!(err, StoreError::Missing(_)), "{err}");
}
