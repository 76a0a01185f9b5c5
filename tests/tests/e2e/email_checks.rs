//! The e-mail bridge's logins against the real Dovecot and Postfix: the credential check (an
//! IMAP login and an SMTP submission login, each refusal named by the key to fix), and OAuth 2.0
//! tokens (SASL XOAUTH2) as Microsoft 365 and Google take them, from a token server double that
//! Dovecot asks whether a token is good.

use casebridge_bridges::{Bridge, BridgeFactory, CredentialCheck};
use casebridge_tests::{
    mail::{MailServer, CLIENT, OFFICE},
    oauth::{OauthDouble, CLIENT_ID, CLIENT_SECRET, GOOGLE_MAIL_SCOPE, REFRESH_TOKEN, TENANT},
};

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
    // A refused login is the office's problem, never the reply's: the reply waits.
    let refused = bridge(&mail, OFFICE.1, "wrong")
        .deliver(&reply(1, "Hej"))
        .await
        .unwrap_err();
    assert!(
        !refused.is_permanent() && refused.to_string().contains("refused the office's login"),
        "{refused:?}"
    );
    assert!(
        smtp.starts_with("bridges.mail.smtp.password: the SMTP server refused the login (")
            && smtp.contains("535"),
        "{smtp}"
    );
}

/// A bridge on the office's mailbox that logs in to IMAP and submission with tokens from
/// `[oauth2]` (its table as JSON).
fn oauth_bridge(mail: &MailServer, oauth2: serde_json::Value) -> std::sync::Arc<dyn Bridge> {
    let instance = serde_json::from_value(serde_json::json!({
        "kind": "email",
        "team": "social",
        "address": OFFICE.0,
        "name": "Socialtjänsten",
        "imap": {
            "host": "127.0.0.1", "port": mail.imap_port, "security": "plain",
            "username": OFFICE.0,
        },
        "smtp": {
            "host": "localhost", "port": mail.submission_port, "security": "starttls",
            "tls_ca_file": mail.ca_file(), "username": OFFICE.0,
        },
        "oauth2": oauth2,
    }))
    .unwrap();
    casebridge_bridges::email::EmailFactory
        .build("mail", &instance)
        .unwrap()
}

/// A reply to the client, record `record_id`.
fn reply(record_id: i64, body: &str) -> casebridge_bridges::OutboundMessage {
    casebridge_bridges::OutboundMessage {
        record_id,
        case_number: "2026-000001".into(),
        to: casebridge_bridges::RemoteAddress::new(CLIENT.0),
        body: body.into(),
        html: None,
        discreet: None,
        automatic: false,
        conversation: Default::default(),
        attachments: Vec::new(),
    }
}

/// Starts `bridge`, has it read a client's mail from the mailbox and answer it (the real
/// Dovecot and Postfix check each login's token with the token server), and stops it.
async fn read_and_answer(mail: &MailServer, bridge: &std::sync::Arc<dyn Bridge>) {
    use casebridge_bridges::{Accepted, InboundSink};
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    bridge
        .start(InboundSink::new("mail", bridge.capabilities(), tx))
        .await
        .unwrap();
    mail.send_raw(
        CLIENT.0,
        OFFICE.0,
        b"From: Klara <client@client.test>\r\nTo: office@office.test\r\nSubject: Tid\r\n\
          Message-ID: <o1@client.test>\r\n\r\nKan jag boka en tid?\r\n",
    )
    .await;
    let envelope = tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
        .await
        .expect("the mail within 30 s")
        .expect("the bridge runs");
    let casebridge_bridges::Inbound::Message(envelope) = envelope else {
        panic!("a mail, not a report");
    };
    assert!(envelope.message.body.contains("Kan jag boka en tid?"));
    envelope
        .reply
        .send(Ok(Accepted::Recorded {
            case_number: "2026-000001".into(),
        }))
        .unwrap();
    bridge
        .deliver(&reply(1, "Välkommen på torsdag."))
        .await
        .unwrap();
    mail.wait_for_mail(CLIENT, 1, std::time::Duration::from_secs(30))
        .await;
    assert!(
        mail.postfix_log()
            .lines()
            .any(|l| l.contains("sasl_method=XOAUTH2") && l.contains(OFFICE.0)),
        "{}",
        mail.postfix_log()
    );
    bridge.stop().await;
}

/// Microsoft 365 with app-only access (the client credentials grant): the mailbox is read over
/// IMAP and answered through submission with XOAUTH2, both checked by the real Dovecot against
/// the token server; one token serves both until it is revoked, then a new one is got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reads_and_sends_with_microsoft_365_tokens() {
    let oauth = OauthDouble::start(OFFICE.0).await;
    let mail = MailServer::start_with_oauth(&oauth.introspection_url()).await;
    let microsoft = serde_json::json!({
        "provider": "microsoft", "tenant": TENANT, "token_url": oauth.token_url(),
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
    });
    let microsoft_again = microsoft.clone();
    let bridge = oauth_bridge(&mail, microsoft);
    assert_eq!(
        bridge.check_credentials().await,
        CredentialCheck::Accepted(format!("IMAP login as {}; SMTP login", OFFICE.0))
    );

    read_and_answer(&mail, &bridge).await;
    // The check, the reader and the sender shared one token.
    assert_eq!(oauth.issued(), ["client_credentials"]);

    // A token is renewed a minute before it expires: this one (62 s) after 2 s. The old one
    // is revoked once the new one is issued, so the next reply goes out only if it logs in
    // with the new token.
    oauth.set_expires_in(62);
    let renewing = oauth_bridge(&mail, microsoft_again);
    renewing.deliver(&reply(2, "Andra svaret.")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    oauth.revoke_access_tokens();
    renewing.deliver(&reply(3, "Tredje svaret.")).await.unwrap();
    mail.wait_for_mail(CLIENT, 3, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(oauth.issued().len(), 3, "{:?}", oauth.issued());
}

/// A wrong client secret and a refresh token from a user's consent (as Google, or Microsoft
/// 365 with delegated access, give them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_oauth_refusals_are_named_and_refresh_tokens_work() {
    let oauth = OauthDouble::start(OFFICE.0).await;
    let mail = MailServer::start_with_oauth(&oauth.introspection_url()).await;
    let wrong = serde_json::json!({
        "provider": "microsoft", "tenant": TENANT, "token_url": oauth.token_url(),
        "client_id": CLIENT_ID, "client_secret": "an-expired-secret",
    });
    let CredentialCheck::Refused(what) = oauth_bridge(&mail, wrong).check_credentials().await
    else {
        panic!("a wrong client secret is refused");
    };
    assert!(
        what.starts_with(
            "bridges.mail.oauth2.client_secret: the token endpoint refused (invalid_client: \
             AADSTS7000215"
        ),
        "{what}"
    );
    let consent = |refresh: &str| {
        serde_json::json!({
            "provider": "custom", "token_url": oauth.token_url(),
            "scope": "https://mail.google.com/",
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": refresh,
        })
    };
    assert_eq!(
        oauth_bridge(&mail, consent(REFRESH_TOKEN))
            .check_credentials()
            .await,
        CredentialCheck::Accepted(format!("IMAP login as {}; SMTP login", OFFICE.0))
    );
    assert_eq!(oauth.issued(), ["refresh_token"]);
    let CredentialCheck::Refused(what) = oauth_bridge(&mail, consent("revoked-consent"))
        .check_credentials()
        .await
    else {
        panic!("an unknown refresh token is refused");
    };
    assert!(
        what.starts_with(
            "bridges.mail.oauth2.refresh_token: the token endpoint refused (invalid_grant"
        ),
        "{what}"
    );
}

/// Google Workspace with a service account: its key file says who it is, it signs its token
/// requests (RFC 7523) and acts for the office's mailbox by the Workspace's domain-wide
/// delegation; the real Dovecot and Postfix take its tokens. Without the delegation the
/// refusal says where the admin grants it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reads_and_sends_as_a_google_service_account() {
    let oauth = OauthDouble::start(OFFICE.0).await;
    let mail = MailServer::start_with_oauth(&oauth.introspection_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let google = serde_json::json!({
        "provider": "google",
        "service_account_file": oauth.service_account_key_file(dir.path()),
    });
    let bridge = oauth_bridge(&mail, google.clone());
    assert_eq!(
        bridge.check_credentials().await,
        CredentialCheck::Accepted(format!("IMAP login as {}; SMTP login", OFFICE.0))
    );
    read_and_answer(&mail, &bridge).await;
    assert_eq!(
        oauth.issued(),
        ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    );

    oauth.set_delegation(false);
    let CredentialCheck::Refused(what) = oauth_bridge(&mail, google).check_credentials().await
    else {
        panic!("a service account without delegation is refused");
    };
    assert!(
        what.starts_with(
            "bridges.mail.oauth2.service_account_file: the token endpoint refused \
             (unauthorized_client: Client is unauthorized"
        ) && what.contains("Domain-wide delegation")
            && what.contains(GOOGLE_MAIL_SCOPE),
        "{what}"
    );
}

/// One run of a gateway with the mailbox's bridge: the bridge starts with its state in the
/// records store at `store_url`, checks its logins and stops.
async fn run_once(
    mail: &MailServer,
    store_url: &str,
    oauth2: serde_json::Value,
) -> CredentialCheck {
    let store = casebridge_gateway::store::Store::connect(store_url, 2)
        .await
        .unwrap();
    let bridge = oauth_bridge(mail, oauth2);
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let sink = casebridge_bridges::InboundSink::new("mail", bridge.capabilities(), tx)
        .with_state(std::sync::Arc::new(store));
    bridge.start(sink).await.unwrap();
    let check = bridge.check_credentials().await;
    bridge.stop().await;
    check
}

/// Microsoft answers each refresh with a new refresh token, and the consent's own expires
/// after 90 days: the newest is kept in the records store, so that a restart months later
/// still logs in. A new consent written into the configuration wins over what was kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_keeps_the_newest_refresh_token_across_restarts() {
    let oauth = OauthDouble::start(OFFICE.0).await;
    let mail = MailServer::start_with_oauth(&oauth.introspection_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("records.db").display());
    let consent = |refresh: &str| {
        serde_json::json!({
            "provider": "microsoft", "tenant": TENANT, "token_url": oauth.token_url(),
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": refresh,
        })
    };
    let accepted = CredentialCheck::Accepted(format!("IMAP login as {}; SMTP login", OFFICE.0));
    assert_eq!(
        run_once(&mail, &store, consent(REFRESH_TOKEN)).await,
        accepted
    );
    oauth.revoke_refresh_token(REFRESH_TOKEN);
    // The configuration still names the consent's token, which no longer works.
    assert_eq!(
        run_once(&mail, &store, consent(REFRESH_TOKEN)).await,
        accepted
    );
    assert_eq!(
        oauth.issued(),
        ["refresh_token", "refresh_token"],
        "one token per run"
    );
    let CredentialCheck::Refused(what) = run_once(
        &mail,
        &store,
        consent("a-new-consent-the-provider-never-gave"),
    )
    .await
    else {
        panic!("the configured new consent is offered, not the kept token");
    };
    assert!(
        what.starts_with("bridges.mail.oauth2.refresh_token: the token endpoint refused"),
        "{what}"
    );
}
