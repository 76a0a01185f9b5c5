//! The e-mail bridge's credential check against the real Dovecot and Postfix: an IMAP login
//! and an SMTP submission login, each refusal named by the key to fix.

use casebridge_bridges::{Bridge, BridgeFactory, CredentialCheck};
use casebridge_tests::mail::{MailServer, OFFICE};

/// A bridge reading the office's mailbox with `imap_password`, sending through Postfix's
/// submission port (STARTTLS, login) with `smtp_password`.
fn bridge(
    mail: &MailServer,
    imap_password: &str,
    smtp_password: &str,
) -> std::sync::Arc<dyn Bridge> {
    let instance = serde_json::from_value(serde_json::json!({
        "kind": "email",
        "team": "social",
        "address": OFFICE.0,
        "name": "Socialtjänsten",
        "imap": {
            "host": "127.0.0.1", "port": mail.imap_port, "security": "plain",
            "username": OFFICE.0, "password": imap_password,
        },
        "smtp": {
            "host": "localhost", "port": mail.submission_port, "security": "starttls",
            "tls_ca_file": mail.ca_file(), "username": OFFICE.0, "password": smtp_password,
        },
    }))
    .unwrap();
    casebridge_bridges::email::EmailFactory
        .build("mail", &instance)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_credentials_are_checked_with_an_imap_and_an_smtp_login() {
    let mail = MailServer::start().await;
    assert_eq!(
        bridge(&mail, OFFICE.1, OFFICE.1).check_credentials().await,
        CredentialCheck::Accepted(format!("IMAP login as {}; SMTP login", OFFICE.0))
    );
    let CredentialCheck::Refused(imap) = bridge(&mail, "wrong", OFFICE.1).check_credentials().await
    else {
        panic!("a wrong IMAP password is refused");
    };
    assert!(
        imap.starts_with(&format!(
            "bridges.mail.imap.password: the IMAP server refused the login of \"{}\"",
            OFFICE.0
        )),
        "{imap}"
    );
    let CredentialCheck::Refused(smtp) = bridge(&mail, OFFICE.1, "wrong").check_credentials().await
    else {
        panic!("a wrong SMTP password is refused");
    };
    assert!(
        smtp.starts_with("bridges.mail.smtp.password: the SMTP server refused: ")
            && smtp.contains("535"),
        "{smtp}"
    );
}
