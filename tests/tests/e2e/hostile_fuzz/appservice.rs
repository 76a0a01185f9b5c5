//! Generated requests at the appservice API, on the harness of the webhook fuzz tests.

use casebridge_tests::HS_TOKEN;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::{runner, Request, Run};

/// What an appservice request may be: the token right, wrong, doubled or missing; a txnId of
/// the spec's alphabet or not; JSON or another type; a body that is a transaction or not.
fn appservice_case() -> impl Strategy<Value = (Request, bool)> {
    let token = prop_oneof![
        3 => Just(Some(HS_TOKEN.to_owned())),
        1 => Just(None),
        1 => "[a-z]{1,20}".prop_map(Some),
    ];
    let txn = prop_oneof![
        3 => "[A-Za-z0-9._~-]{1,40}".prop_filter("not . or ..", |t| t != "." && t != ".."),
        1 => "%(00|2F|C3%A5|20)[a-z]{0,5}",
        1 => "[a-z]{256,300}",
    ];
    let content_type = prop_oneof![
        3 => Just("application/json"),
        1 => Just("text/plain"),
        1 => Just("application/x-www-form-urlencoded"),
    ];
    let event = prop_oneof![
        json_value(),
        ("[a-z.]{1,20}", "[!$@][a-z]{1,10}:localhost", json_value()).prop_map(|(t, id, c)| {
            json!({"type": t, "event_id": format!("${id}"), "room_id": id, "sender": "@x:localhost",
                   "origin_server_ts": 1, "content": c})
        }),
    ];
    let body = prop_oneof![
        prop::collection::vec(event, 0..20).prop_map(|e| json!({ "events": e }).to_string()),
        json_value().prop_map(|v| v.to_string()),
        "\\PC{0,200}",
    ];
    (token, txn, content_type, body).prop_map(|(token, txn, content_type, body)| {
        let mut headers = vec![("content-type".to_owned(), content_type.to_owned())];
        if let Some(token) = &token {
            headers.push(("authorization".to_owned(), format!("Bearer {token}")));
        }
        let spec_txn = txn.len() <= 255 && !txn.contains('%');
        let well_formed =
            token.as_deref() == Some(HS_TOKEN) && spec_txn && content_type == "application/json";
        let request = Request {
            method: reqwest::Method::PUT,
            path: format!("/_matrix/app/v1/transactions/{txn}"),
            headers,
            body: body.into_bytes(),
        };
        (request, well_formed)
    })
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Generated requests at the appservice API: a request off the spec (token, txnId, content
/// type) is refused with a 4xx, none is answered 5xx, and none records anything: no case exists
/// that an event could belong to.
#[test]
fn generated_appservice_requests_are_answered_within_the_spec() {
    let run = std::cell::RefCell::new(Run::start());
    runner(300)
        .run(&appservice_case(), |(request, well_formed)| {
            let mut run = run.borrow_mut();
            let before = run.target.inbound();
            let shown = format!("{request:?}");
            let (status, text) = run.target.send(request);
            run.requests += 1;
            prop_assert!(
                status == 200 || (400..500).contains(&status),
                "{status} {text}\n{shown}"
            );
            if !well_formed {
                prop_assert!((400..500).contains(&status), "{status} {text}\n{shown}");
            }
            prop_assert_eq!(run.target.inbound(), before);
            Ok(())
        })
        .unwrap();
    let run = run.into_inner();
    assert_eq!(run.target.health(), 200);
    assert!(run
        .target
        .rt
        .block_on(run.target.gateway.store().cases())
        .unwrap()
        .is_empty());
    run.check_log();
}
