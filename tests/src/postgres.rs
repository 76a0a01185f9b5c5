//! A fresh PostgreSQL database per test, on the server the test command started.

/// The environment variable holding the admin URL of the test PostgreSQL server.
pub const ENV: &str = "CASEBRIDGE_TEST_POSTGRES";

/// Creates an empty database and returns its URL. Panics with the way out when the server is
/// not configured: the README's test command starts it.
pub async fn fresh_database(name_hint: &str) -> String {
    use sea_orm::{ConnectionTrait, Database};
    let admin = std::env::var(ENV).unwrap_or_else(|_| {
        panic!("{ENV} is not set: run the tests with scripts/test.sh, which starts PostgreSQL")
    });
    let name = format!("cb_{}_{}", name_hint, rand::random::<u32>());
    let db = Database::connect(&admin)
        .await
        .expect("connect to the test PostgreSQL server");
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    db.close().await.unwrap();
    let (base, _) = admin.rsplit_once('/').expect("admin URL ends in /DBNAME");
    format!("{base}/{name}")
}
