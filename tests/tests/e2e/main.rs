//! End-to-end tests against a real Synapse (and PostgreSQL), one binary: `mod` per area.

mod appservice_api;
mod binary;
mod durability;
mod email;
mod email_checks;
mod hostile_fuzz;
mod hostile_http;
mod journal;
mod mock_appservice;
mod mock_bridges;
mod mock_relay;
mod office;
mod policies;
mod relay;
mod sms;
mod telegram;

use std::time::Duration;

use casebridge_gateway::Gateway;
use casebridge_tests::{
    eventually, free_port, init_logging, loopback::test_factories, GatewaySetup, Spool, Synapse,
    Worker,
};

/// Records in every case of `gateway`'s store that `pick` accepts.
pub async fn count_records(
    gateway: &Gateway,
    pick: impl Fn(&casebridge_gateway::store::message::Model) -> bool,
) -> usize {
    let store = gateway.store();
    let mut n = 0;
    for case in store.cases().await.unwrap() {
        n += store
            .messages(case.id)
            .await
            .unwrap()
            .iter()
            .filter(|m| pick(m))
            .count();
    }
    n
}

/// Which records store a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A Synapse, a registered and logged-in worker, and the settings of a gateway for them.
pub struct Stack {
    pub synapse: Synapse,
    pub worker: Worker,
    pub setup: GatewaySetup,
    pub spool: Spool,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub async fn new(db: Db, name: &str) -> Self {
        init_logging();
        let dir = tempfile::Builder::new()
            .prefix("cb-test-")
            .tempdir()
            .unwrap();
        let spool = Spool::new(dir.path().join("spool"));
        let database_url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("casebridge.db").display()),
            Db::Postgres => casebridge_tests::postgres::fresh_database(name).await,
        };
        let mut setup = GatewaySetup {
            // Replaced once Synapse runs; the registration does not depend on it.
            homeserver_url: "http://127.0.0.1:1".into(),
            port: free_port(),
            database_url,
            spool: spool.root().to_owned(),
            members: vec!["@anna:localhost".into(), "@bo:localhost".into()],
            max_backoff_ms: 1000,
            extra: String::new(),
        };
        let synapse = Synapse::start(&[setup.registration_yaml()]).await;
        setup.homeserver_url = synapse.url.clone();
        for (user, password) in [
            ("anna", "anna-password"),
            ("bo", "bo-password"),
            ("eve", "eve-password"),
        ] {
            synapse.register_user(user, password).await;
        }
        let worker = Worker::login(&synapse.url, "anna", "anna-password").await;
        Self {
            synapse,
            worker,
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

    /// Waits for the worker's invite to a new case room and joins it.
    pub async fn join_case_room(&mut self) -> String {
        let room = {
            let worker = &mut self.worker;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(room) = worker.invites().await.into_iter().next() {
                    break room;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no case room invite within 20 s"
                );
            }
        };
        self.worker.join(&room).await;
        room
    }

    /// The bodies of the room's notices, oldest first.
    pub async fn notices(&self, room: &str) -> Vec<String> {
        self.worker
            .messages(room)
            .await
            .iter()
            .filter(|e| e["content"]["msgtype"] == "m.notice")
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits for a notice whose body `matches`, and returns it.
    pub async fn wait_for_notice(
        &self,
        room: &str,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        eventually(Duration::from_secs(20), what, || async {
            self.notices(room).await.into_iter().find(|n| matches(n))
        })
        .await
    }

    /// Waits until the room holds `n` messages from ghosts and returns them.
    pub async fn ghost_messages(
        &self,
        room: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        eventually(
            timeout,
            &format!("{n} ghost messages in {room}"),
            || async {
                let all: Vec<_> = self
                    .worker
                    .messages(room)
                    .await
                    .into_iter()
                    .filter(|e| e["sender"].as_str().is_some_and(|s| s.starts_with("@_cb_")))
                    .collect();
                assert!(
                    all.len() <= n,
                    "more ghost messages than sent: {} > {n}",
                    all.len()
                );
                (all.len() == n).then_some(all)
            },
        )
        .await
    }
}
