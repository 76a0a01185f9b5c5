//! Hostile clients of the gateway's HTTP server (issue 19): slow and numerous connections,
//! bodies that are not what the specification says, and transactions full of events the
//! gateway cannot read. No Synapse needed: these are raw requests.

use std::time::{Duration, Instant};

use casebridge_gateway::Gateway;
use casebridge_tests::{
    free_port, loopback::test_factories, CapturedLog, GatewaySetup, Spool, HS_TOKEN,
};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A gateway with `http` as its `[http]` table, and the folder it lives in.
async fn gateway(http: &str) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let setup = GatewaySetup {
        // Nothing listens here: the homeserver is not needed for these requests.
        homeserver_url: format!("http://127.0.0.1:{}", free_port()),
        port: free_port(),
        database_url: format!("sqlite://{}", dir.path().join("cb.db").display()),
        spool: Spool::new(dir.path().join("spool")).root().to_owned(),
        members: vec!["@anna:localhost".into()],
        max_backoff_ms: 1000,
        extra: format!("[http]\n{http}\n"),
    };
    let gateway = Gateway::start(setup.config(), &test_factories())
        .await
        .unwrap();
    (gateway, dir)
}

/// Sends `head` on a new connection, then `trickle` a byte every 100 ms, over and over, until
/// the server closes the connection; what the server answered, and when it closed, if it did
/// within `within`.
async fn trickle(
    gateway: &Gateway,
    head: &[u8],
    trickle: &[u8],
    within: Duration,
) -> Result<(Duration, String), String> {
    let started = Instant::now();
    let stream = TcpStream::connect(gateway.local_addr()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head).await.unwrap();
    let writing = async move {
        for byte in trickle.iter().cycle() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
        // Closed on this side: wait for the reader.
        std::future::pending::<()>().await;
    };
    let reading = async move {
        let mut answer = Vec::new();
        // Until the end of the stream, or a reset.
        let _ = reader.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let closed = tokio::time::timeout(within, async {
        tokio::select! {
            answer = reading => answer,
            () = writing => unreachable!(),
        }
    })
    .await;
    match closed {
        Ok(answer) => Ok((started.elapsed(), answer)),
        Err(_) => Err(format!("still open after {within:?}")),
    }
}

/// Issue 19, point 4: a client that sends its headers or its body a byte at a time, or nothing
/// at all, is cut once the limit passes (the limits here are 1 s; the margin is generous).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut() {
    casebridge_tests::init_logging();
    let (gateway, _dir) = gateway("header_timeout_ms = 1000\nbody_timeout_ms = 1000").await;
    let margin = Duration::from_secs(6);

    let (took, _) = trickle(
        &gateway,
        b"PUT /_matrix/app/v1/transactions/1 HTTP/1.1\r\n",
        b"X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n",
        margin,
    )
    .await
    .expect("a client sending its headers a byte at a time is cut");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    let (took, _) = trickle(&gateway, b"", b"", margin)
        .await
        .expect("a connection that never sends a request is closed");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    let head = format!(
        "PUT /_matrix/app/v1/transactions/2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \
         {HS_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    );
    let (took, _) = trickle(&gateway, head.as_bytes(), b" ", margin)
        .await
        .expect("a client sending its body a byte at a time is cut");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // A body that stops half way gets its answer. (Not asserted above: a server that closes
    // while bytes it has not read keep coming resets the connection, and a reset may overtake
    // the answer.)
    let (took, answer) = trickle(
        &gateway,
        format!("{head}{{\"events\": [").as_bytes(),
        b"",
        margin,
    )
    .await
    .expect("a client that stops sending its body is cut");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    // A keep-alive connection that sends its next request in time is served on.
    let mut stream = TcpStream::connect(gateway.local_addr()).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 1024];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    gateway.shutdown().await;
}

/// Issue 19, point 4: no more than `max_connections` connections are served at once; the next
/// one is served once one of them closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped() {
    casebridge_tests::init_logging();
    let (gateway, _dir) = gateway("max_connections = 2\nheader_timeout_ms = 60000").await;
    let first = TcpStream::connect(gateway.local_addr()).await.unwrap();
    let _second = TcpStream::connect(gateway.local_addr()).await.unwrap();

    let mut third = TcpStream::connect(gateway.local_addr()).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    // Not a timing bet: with two connections held, no answer can come, however long it waits.
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buffer)).await;
    assert!(
        early.is_err(),
        "a third connection was served while two were held: {early:?}"
    );

    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buffer))
        .await
        .expect("served once a held connection closed")
        .unwrap();
    assert!(
        buffer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &buffer[..n]
    );

    gateway.shutdown().await;
}

/// A client that sends requests ahead and never reads the answers holds its connection only
/// until writing to it has stalled for `send_timeout_ms`: with one connection allowed, the next
/// client is served soon after, not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_are_cut() {
    casebridge_tests::init_logging();
    let (gateway, _dir) = gateway(
        "max_connections = 1
header_timeout_ms = 60000
send_timeout_ms = 1000",
    )
    .await;
    // A small receive window, so the answers pile up in the server's send buffer soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let hog = socket.connect(gateway.local_addr()).await.unwrap();
    let (_unread, mut writer) = hog.into_split();
    // Several megabytes of answers asked for at once; nothing is ever read.
    let requests = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4000);
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&requests).await;
        writer
    });

    let started = Instant::now();
    let mut next = TcpStream::connect(gateway.local_addr()).await.unwrap();
    next.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), next.read(&mut buffer))
        .await
        .expect("served once the client that does not read was cut")
        .unwrap();
    assert!(
        buffer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buffer[..n])
    );
    eprintln!("the next client was served after {:?}", started.elapsed());
    sending.abort();
    gateway.shutdown().await;
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

fn errcode(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["errcode"].as_str())
}

/// Issue 19, point 6: the appservice API takes only what the specification describes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_parsed_strictly() {
    casebridge_tests::init_logging();
    let (gateway, _dir) = gateway("").await;
    let base = format!("http://{}", gateway.local_addr());
    let client = reqwest::Client::new();
    let txn = |id: &str| format!("{base}/_matrix/app/v1/transactions/{id}");
    let ping = format!("{base}/_matrix/app/v1/ping");
    let empty = json!({"events": []}).to_string();

    // Transactions: JSON only, with or without parameters.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let mut request = client
            .put(txn("ct"))
            .bearer_auth(HS_TOKEN)
            .body(empty.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = send(request).await;
        assert_eq!(
            errcode(&answer),
            (415, Some("M_NOT_JSON")),
            "{content_type:?}"
        );
    }
    for content_type in ["application/json", "Application/JSON; charset=utf-8"] {
        let request = client
            .put(txn("ct"))
            .bearer_auth(HS_TOKEN)
            .header("content-type", content_type)
            .body(empty.clone());
        assert_eq!(send(request).await.0, 200, "{content_type}");
    }
    let answer = send(
        client
            .put(txn("arr"))
            .bearer_auth(HS_TOKEN)
            .header("content-type", "application/json")
            .body("[[]]"),
    )
    .await;
    assert_eq!(errcode(&answer), (400, Some("M_BAD_JSON")));

    // Transaction ids: short, of a safe alphabet.
    let long = "a".repeat(10_000);
    for id in ["%00", long.as_str(), "..%2F..", "a%20b", "%C3%A5"] {
        let answer = send(
            client
                .put(txn(id))
                .bearer_auth(HS_TOKEN)
                .json(&json!({"events": []})),
        )
        .await;
        assert_eq!(
            errcode(&answer),
            (400, Some("M_INVALID_PARAM")),
            "{}",
            &id[..id.len().min(20)]
        );
    }
    let longest = "a".repeat(255);
    for id in ["1", "42", longest.as_str(), "m1700000000.1_x~y-z"] {
        let answer = send(
            client
                .put(txn(id))
                .bearer_auth(HS_TOKEN)
                .json(&json!({"events": []})),
        )
        .await;
        assert_eq!(answer.0, 200, "{}", &id[..id.len().min(20)]);
    }

    // Ping: a JSON object with an optional string transaction_id.
    let answer = send(
        client
            .post(&ping)
            .bearer_auth(HS_TOKEN)
            .header("content-type", "application/json")
            .body(vec![0x9fu8, 0x00, 0xff, 0x13, 0x37]),
    )
    .await;
    assert_eq!(errcode(&answer), (400, Some("M_NOT_JSON")));
    let answer = send(client.post(&ping).bearer_auth(HS_TOKEN).body("{}")).await;
    assert_eq!(errcode(&answer), (415, Some("M_NOT_JSON")));
    let answer = send(client.post(&ping).bearer_auth(HS_TOKEN)).await;
    assert_eq!(errcode(&answer), (415, Some("M_NOT_JSON")));
    for body in [json!({"transaction_id": 5}), json!([]), json!("x")] {
        let answer = send(client.post(&ping).bearer_auth(HS_TOKEN).json(&body)).await;
        assert_eq!(errcode(&answer), (400, Some("M_BAD_JSON")), "{body}");
    }
    for body in [json!({}), json!({"transaction_id": "mautrix-go_1700_1"})] {
        let answer = send(client.post(&ping).bearer_auth(HS_TOKEN).json(&body)).await;
        assert_eq!(answer.0, 200, "{body}");
    }

    // Authentication: one token, given once.
    let answer = send(
        client
            .post(format!("{ping}?access_token={HS_TOKEN}&access_token=other"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(errcode(&answer), (400, Some("M_INVALID_PARAM")));
    let answer = send(
        client
            .post(format!(
                "{ping}?access_token={HS_TOKEN}&access_token={HS_TOKEN}"
            ))
            .json(&json!({})),
    )
    .await;
    assert_eq!(errcode(&answer), (400, Some("M_INVALID_PARAM")));
    let answer = send(
        client
            .post(format!("{ping}?access_token=other"))
            .bearer_auth(HS_TOKEN)
            .json(&json!({})),
    )
    .await;
    assert_eq!(errcode(&answer), (400, Some("M_INVALID_PARAM")));
    let answer = send(
        client
            .post(format!("{ping}?access_token={HS_TOKEN}"))
            .bearer_auth("other")
            .json(&json!({})),
    )
    .await;
    assert_eq!(errcode(&answer), (400, Some("M_INVALID_PARAM")));
    let answer = send(
        client
            .post(&ping)
            .header("authorization", format!("Bearer {HS_TOKEN}"))
            .header("authorization", format!("Bearer {HS_TOKEN}"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(errcode(&answer), (400, Some("M_INVALID_PARAM")));
    // The same token both ways is no ambiguity; the query token alone is the legacy way.
    let answer = send(
        client
            .post(format!("{ping}?access_token={HS_TOKEN}"))
            .bearer_auth(HS_TOKEN)
            .json(&json!({})),
    )
    .await;
    assert_eq!(answer.0, 200);
    let answer = send(
        client
            .post(format!("{ping}?access_token={HS_TOKEN}"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(answer.0, 200);

    gateway.shutdown().await;
}

/// Issue 19, point 5: a transaction of ten thousand events the gateway cannot read is logged
/// in a few lines, not one per event.
// One thread: the gateway's tasks run where the capturing subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn unreadable_events_are_summed_up() {
    let captured = CapturedLog::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber(tracing::Level::WARN));

    let (gateway, _dir) = gateway("").await;
    let events: Vec<Value> = (0..10_000)
        .map(|i| match i % 3 {
            0 => json!({"type": "m.room.message", "event_id": format!("$e{i}")}),
            1 => json!({"type": "m.room.message", "event_id": format!("$e{i}"), "sender": i,
                        "room_id": "!r:localhost", "origin_server_ts": 1, "content": {}}),
            _ => json!({"type": 5}),
        })
        .collect();
    let before = captured.mark();
    let answer = send(
        reqwest::Client::new()
            .put(format!(
                "http://{}/_matrix/app/v1/transactions/flood",
                gateway.local_addr()
            ))
            .bearer_auth(HS_TOKEN)
            .json(&json!({ "events": events })),
    )
    .await;
    assert_eq!(answer.0, 200, "{answer:?}");
    gateway.shutdown().await;

    let log = captured.since(before);
    // Other lines may come meanwhile (the homeserver here is unreachable): only this
    // transaction's are counted, and all of them are bounded.
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("flood")).collect();
    assert!(
        lines.len() <= 2,
        "{} log lines about the transaction; the first: {:?}",
        lines.len(),
        &lines[..lines.len().min(5)]
    );
    assert!(
        log.lines().count() < 100,
        "{} log lines",
        log.lines().count()
    );
    let summary = lines
        .iter()
        .find(|l| l.contains("cannot read"))
        .expect("a summary of the unreadable events");
    assert!(summary.contains("skipped=10000"), "{summary}");
    assert!(summary.len() < 2000, "{summary}");
}
