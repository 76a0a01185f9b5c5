//! The token source's settings and the XOAUTH2 response.

use super::*;

fn options(toml: &str) -> OauthOptions {
    toml::from_str(toml).unwrap()
}

const MAILBOX: &str = "office@office.test";

fn token_url(tokens: &Tokens) -> String {
    match &tokens.grant {
        Grant::Client { client, .. } => client.token_uri().to_string(),
        Grant::ServiceAccount(account) => account.token_url.clone(),
    }
}

/// A service account key file as the Google Cloud console gives it, with the tests' key.
fn key_file(dir: &Path, fields: serde_json::Value) -> PathBuf {
    let mut file = serde_json::json!({
        "type": "service_account",
        "project_id": "socialtjanst-mail",
        "private_key_id": "7f3c1e",
        "private_key": include_str!("../../../../tests/fixtures/google-service-account.key.pem"),
        "client_email": "casebridge@socialtjanst-mail.iam.gserviceaccount.com",
        "client_id": "104857600000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    for (k, v) in fields.as_object().unwrap() {
        file[k] = v.clone();
    }
    let path = dir.join("key.json");
    std::fs::write(&path, file.to_string()).unwrap();
    path
}

#[test]
fn each_provider_has_its_endpoint_and_scope() {
    let microsoft = options(
        "provider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\n\
         client_id = \"app\"\nclient_secret = \"s\"\n",
    );
    let tokens = Tokens::new("bridges.mail.oauth2", &microsoft, MAILBOX).unwrap();
    assert_eq!(
        token_url(&tokens),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert_eq!(tokens.scopes, [Scope::new(MICROSOFT_APP_SCOPE.into())]);
    let google = options(
        "provider = \"google\"\nclient_id = \"app\"\nclient_secret = \"s\"\n\
         refresh_token = \"r\"\n",
    );
    let tokens = Tokens::new("bridges.mail.oauth2", &google, MAILBOX).unwrap();
    assert_eq!(token_url(&tokens), "https://oauth2.googleapis.com/token");
    assert_eq!(tokens.scopes, [Scope::new(GOOGLE_SCOPE.into())]);
}

#[test]
fn what_a_provider_needs_is_named_by_its_key() {
    let err = |toml: &str| {
        Tokens::new("bridges.mail.oauth2", &options(toml), MAILBOX)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(
        err("provider = \"microsoft\"\nclient_id = \"a\"\nclient_secret = \"s\"\n")
            .starts_with("bridges.mail.oauth2.tenant: Microsoft 365 needs the tenant")
    );
    assert!(
        err("provider = \"google\"\nclient_id = \"a\"\nclient_secret = \"s\"\n")
            .starts_with("bridges.mail.oauth2.service_account_file: Google gives a mailbox's")
    );
    assert!(
        err("provider = \"custom\"\nclient_id = \"a\"\nclient_secret = \"s\"\n")
            .starts_with("bridges.mail.oauth2.token_url:")
    );
    assert!(
        err("provider = \"google\"\nclient_id = \"a\"\nrefresh_token = \"r\"\n")
            .contains("client_secret")
    );
}

#[test]
fn a_service_account_is_read_from_its_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = key_file(dir.path(), serde_json::json!({}));
    let google = options(&format!(
        "provider = \"google\"\nservice_account_file = {:?}\n",
        path.display().to_string()
    ));
    let tokens = Tokens::new("bridges.mail.oauth2", &google, MAILBOX).unwrap();
    let Grant::ServiceAccount(account) = &tokens.grant else {
        panic!("a service account's grant");
    };
    assert_eq!(
        account.email,
        "casebridge@socialtjanst-mail.iam.gserviceaccount.com"
    );
    assert_eq!(account.key_id, "7f3c1e");
    assert_eq!(account.mailbox, MAILBOX);
    assert_eq!(account.token_url, GOOGLE_TOKEN_URL);
    assert_eq!(tokens.scopes, [Scope::new(GOOGLE_SCOPE.into())]);
    // The key file's token endpoint is used, unless token_url is set.
    let path = key_file(
        dir.path(),
        serde_json::json!({"token_uri": "http://127.0.0.1:9/token"}),
    );
    let tokens = Tokens::new("bridges.mail.oauth2", &google, MAILBOX).unwrap();
    assert_eq!(token_url(&tokens), "http://127.0.0.1:9/token");
    let overridden = options(&format!(
        "provider = \"google\"\nservice_account_file = {:?}\ntoken_url = \"http://127.0.0.1:8/t\"\n",
        path.display().to_string()
    ));
    let tokens = Tokens::new("bridges.mail.oauth2", &overridden, MAILBOX).unwrap();
    assert_eq!(token_url(&tokens), "http://127.0.0.1:8/t");
}

#[test]
fn a_wrong_service_account_setting_names_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let err = |toml: String| {
        Tokens::new("bridges.mail.oauth2", &options(&toml), MAILBOX)
            .err()
            .unwrap()
            .to_string()
    };
    let setting = |provider: &str, path: &Path, more: &str| {
        format!(
            "provider = \"{provider}\"\nservice_account_file = {:?}\n{more}",
            path.display().to_string()
        )
    };
    let missing = dir.path().join("nowhere.json");
    assert!(
        err(setting("google", &missing, "")).starts_with(&format!(
            "bridges.mail.oauth2.service_account_file: cannot read {}",
            missing.display()
        )),
        "{}",
        err(setting("google", &missing, ""))
    );
    let good = key_file(dir.path(), serde_json::json!({}));
    assert!(err(setting("microsoft", &good, ""))
        .starts_with("bridges.mail.oauth2.service_account_file: service accounts are Google's"));
    assert!(err(setting("google", &good, "client_id = \"a\"\n"))
        .starts_with("bridges.mail.oauth2.client_id: not used with a service account"));
    let not_json = dir.path().join("key.p12");
    std::fs::write(&not_json, b"\x30\x82binary").unwrap();
    assert!(err(setting("google", &not_json, "")).contains("is not a service account's key file"));
    let user = key_file(dir.path(), serde_json::json!({"type": "authorized_user"}));
    assert!(err(setting("google", &user, ""))
        .contains("holds a key of type \"authorized_user\", not a service account's"));
    let broken = key_file(
        dir.path(),
        serde_json::json!({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
    );
    assert!(err(setting("google", &broken, "")).contains("is not an RSA key in PEM"));
    assert!(err("provider = \"microsoft\"\ntenant = \"t\"\n".into())
        .starts_with("bridges.mail.oauth2.client_id: set the application's"));
}

#[test]
fn the_xoauth2_response_is_user_and_bearer_token() {
    assert_eq!(
        xoauth2("office@office.test", "tok"),
        "user=office@office.test\x01auth=Bearer tok\x01\x01"
    );
}
