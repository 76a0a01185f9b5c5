//! A real mail system for one test (Dovecot and Postfix through `scripts/mail.sh`), and a mail
//! client for the test's side of it: send over SMTP as a client would, read a mailbox over IMAP.

use std::time::Duration;

use futures::TryStreamExt;

use crate::{free_ports, repo_root};

/// The office's mailbox on the test bed.
pub const OFFICE: (&str, &str) = ("office@office.test", "office-password");
/// A client's mailbox.
pub const CLIENT: (&str, &str) = ("client@client.test", "client-password");

/// Dovecot and Postfix in a temporary directory; stopped when dropped.
pub struct MailServer {
    /// IMAP port (plain, 127.0.0.1).
    pub imap_port: u16,
    /// SMTP port (plain, 127.0.0.1).
    pub smtp_port: u16,
    /// IMAP over TLS (the plain port offers STARTTLS too).
    pub imaps_port: u16,
    /// SMTP over TLS (the plain port offers STARTTLS too).
    pub smtps_port: u16,
    /// Mail submission: STARTTLS, then SMTP AUTH with a mailbox's password, or nothing.
    pub submission_port: u16,
    dir: tempfile::TempDir,
}

impl MailServer {
    /// Installs (if missing) and starts the mail system.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// The same, with IMAP and submission also taking OAuth 2.0 tokens (SASL XOAUTH2) that the
    /// endpoint at `introspection` (RFC 7662) calls active for the mailbox.
    pub async fn start_with_oauth(introspection: &str) -> Self {
        Self::start_with(Some(introspection)).await
    }

    async fn start_with(introspection: Option<&str>) -> Self {
        // The ports are free when picked and bound a moment later by Postfix and Dovecot; in
        // between, another test's connection may take one as its local port. Such a start is
        // tried again on other ports.
        for attempt in 1.. {
            let dir = tempfile::Builder::new()
                .prefix("cb-mail-")
                .tempdir()
                .unwrap();
            let [imap, smtp, lmtp, imaps, smtps, submission, auth] = free_ports();
            let server = Self {
                imap_port: imap,
                smtp_port: smtp,
                imaps_port: imaps,
                smtps_port: smtps,
                submission_port: submission,
                dir,
            };
            let ports = [imap, smtp, lmtp, imaps, smtps, submission, auth].map(|p| p.to_string());
            let mut args = vec!["start"];
            args.extend(ports.iter().map(String::as_str));
            args.extend(introspection);
            if server.try_script(&args).await {
                return server;
            }
            let taken = ["postfix.log", "dovecot.log", "dovecot.out", "postfix.out"]
                .iter()
                .filter_map(|log| std::fs::read_to_string(server.dir.path().join(log)).ok())
                .any(|text| text.contains("Address already in use"));
            assert!(
                taken && attempt < 3,
                "scripts/mail.sh start failed (attempt {attempt})"
            );
            // Dropping it stops what did start.
        }
        unreachable!("the loop returns or panics")
    }

    /// `[bridges.mail]` on the office mailbox of this server (plain IMAP and SMTP, as the
    /// office "Socialtjänsten"), answered by `team`.
    pub fn bridge_toml(&self, team: &str) -> String {
        format!(
            r#"
[bridges.mail]
kind = "email"
team = "{team}"
address = "{office}"
name = "Socialtjänsten"

[bridges.mail.imap]
host = "127.0.0.1"
port = {imap}
security = "plain"
username = "{office}"
password = "{password}"

[bridges.mail.smtp]
host = "127.0.0.1"
port = {smtp}
security = "plain"
"#,
            office = OFFICE.0,
            password = OFFICE.1,
            imap = self.imap_port,
            smtp = self.smtp_port,
        )
    }

    /// Postfix's log so far.
    pub fn postfix_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// The PEM file of the CA that signed the servers' certificate (for `localhost`).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    async fn script(&self, args: &[&str]) {
        assert!(
            self.try_script(args).await,
            "scripts/mail.sh {} failed",
            args[0]
        );
    }

    async fn try_script(&self, args: &[&str]) -> bool {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(repo_root().join("scripts/mail.sh"))
            .arg(args[0])
            .arg(self.dir.path())
            .args(&args[1..]);
        cmd.status().await.expect("bash runs").success()
    }

    /// Stops Dovecot (IMAP) alone, as an outage or an upgrade would.
    pub async fn stop_imap(&self) {
        self.script(&["stop-imap"]).await;
    }

    /// Starts Dovecot again.
    pub async fn start_imap(&self) {
        self.script(&["start-imap"]).await;
    }

    /// Gives `user`'s INBOX a new UIDVALIDITY, as restoring or recreating it would.
    pub async fn set_uid_validity(&self, user: &str, value: u32) {
        self.script(&["uidvalidity", user, &value.to_string()])
            .await;
    }

    /// Sends raw RFC 5322 bytes over SMTP from `from` to `to`, as a client's mail program would.
    pub async fn send_raw(&self, from: &str, to: &str, raw: &[u8]) {
        use lettre::{address::Envelope, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.smtp_port)
            .tls(lettre::transport::smtp::client::Tls::None)
            .build();
        let envelope =
            Envelope::new(Some(from.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
        smtp.send_raw(&envelope, raw)
            .await
            .expect("Postfix accepts the mail");
    }

    /// Every mail in `user`'s INBOX, oldest first, as raw bytes.
    pub async fn inbox(&self, (user, password): (&str, &str)) -> Vec<Vec<u8>> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.imap_port))
            .await
            .unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap();
        let mut session = client
            .login(user, password)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        session.select("INBOX").await.unwrap();
        let mails: Vec<Vec<u8>> = session
            .fetch("1:*", "BODY.PEEK[]")
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .map(|fetches| {
                fetches
                    .iter()
                    .filter_map(|f| f.body().map(<[u8]>::to_vec))
                    .collect()
            })
            .unwrap_or_default();
        let _ = session.logout().await;
        mails
    }

    /// Waits until `user`'s INBOX holds `n` mails and returns them.
    pub async fn wait_for_mail(
        &self,
        account: (&str, &str),
        n: usize,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        crate::eventually(timeout, &format!("{n} mails for {}", account.0), || async {
            let mails = self.inbox(account).await;
            (mails.len() >= n).then_some(mails)
        })
        .await
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        // A failing test shows what the mail servers said: the temporary directory goes.
        if std::thread::panicking() {
            for log in ["dovecot.log", "dovecot.out", "postfix.log"] {
                if let Ok(text) = std::fs::read_to_string(self.dir.path().join(log)) {
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = &lines[lines.len().saturating_sub(30)..];
                    eprintln!("--- {log} (last {} lines)\n{}", tail.len(), tail.join("\n"));
                }
            }
        }
        let _ = std::process::Command::new("bash")
            .arg(repo_root().join("scripts/mail.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}
