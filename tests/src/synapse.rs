//! A real Synapse for one test, started and stopped through `scripts/synapse.sh`.

use std::path::PathBuf;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::{free_port, repo_root};

/// The shared secret `scripts/synapse.sh` writes into the homeserver config.
pub const REGISTRATION_SECRET: &str = "casebridge-local-registration-secret";

/// A running Synapse in its own temporary directory; stopped when dropped.
pub struct Synapse {
    /// The client-server API base URL.
    pub url: String,
    dir: tempfile::TempDir,
    port: u16,
    registrations: Vec<PathBuf>,
}

impl Synapse {
    /// Starts Synapse with the given appservice registrations (YAML texts).
    pub async fn start(registrations: &[String]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cb-synapse-")
            .tempdir()
            .unwrap();
        let mut files = Vec::new();
        for (i, yaml) in registrations.iter().enumerate() {
            let path = dir.path().join(format!("appservice-{i}.yaml"));
            std::fs::write(&path, yaml).unwrap();
            files.push(path);
        }
        let port = free_port();
        let synapse = Self {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            port,
            registrations: files,
        };
        synapse.run_script("start").await;
        synapse
    }

    async fn run_script(&self, command: &str) {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(repo_root().join("scripts/synapse.sh"))
            .arg(command)
            .arg(self.dir.path());
        if command == "start" {
            cmd.arg(self.port.to_string()).args(&self.registrations);
        }
        let status = cmd.status().await.expect("bash runs");
        assert!(status.success(), "scripts/synapse.sh {command} failed");
    }

    /// Stops the homeserver (SIGTERM, as an outage or an upgrade would).
    pub async fn stop(&self) {
        self.run_script("stop").await;
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&self) {
        self.run_script("start").await;
    }

    /// Registers a user with the admin shared-secret API; returns the Matrix ID.
    pub async fn register_user(&self, localpart: &str, password: &str) -> String {
        self.register(localpart, password, false).await
    }

    /// Registers a server admin (Synapse's admin API answers them); returns the user ID.
    pub async fn register_admin(&self, localpart: &str, password: &str) -> String {
        self.register(localpart, password, true).await
    }

    async fn register(&self, localpart: &str, password: &str, admin: bool) -> String {
        let http = reqwest::Client::new();
        let url = format!("{}/_synapse/admin/v1/register", self.url);
        let nonce: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        let nonce = nonce["nonce"].as_str().unwrap().to_owned();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(REGISTRATION_SECRET.as_bytes()).unwrap();
        let kind = if admin { "admin" } else { "notadmin" };
        mac.update(format!("{nonce}\0{localpart}\0{password}\0{kind}").as_bytes());
        let mac = hex::encode(mac.finalize().into_bytes());
        let response = http
            .post(&url)
            .json(&json!({
                "nonce": nonce, "username": localpart, "password": password,
                "admin": admin, "mac": mac,
            }))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(
            status.is_success(),
            "registering {localpart}: {status} {body}"
        );
        body["user_id"].as_str().unwrap().to_owned()
    }

    /// The homeserver's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("homeserver.log")).unwrap_or_default();
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/synapse.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
