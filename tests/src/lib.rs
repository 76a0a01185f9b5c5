//! Shared helpers of casebridge's end-to-end tests and the local demo: a real Synapse per test,
//! a mock homeserver for the tests that need no Synapse, a worker's Matrix client, the
//! spool-backed loopback bridge, PostgreSQL databases, and gateway configurations that tie
//! them together.

pub mod elks;
pub mod loopback;
pub mod mail;
pub mod mock_homeserver;
pub mod oauth;
pub mod postgres;
pub mod sms_gateway;
pub mod synapse;
pub mod telegram;
pub mod twilio;
pub mod worker;

use std::{
    future::Future,
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

pub use loopback::{LoopbackFactory, Spool};
pub use mock_homeserver::MockHomeserver;
pub use synapse::Synapse;
pub use worker::Worker;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repo")
        .to_owned()
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `N` different TCP ports that were free a moment ago on 127.0.0.1 (held together while they
/// are picked, so no two are the same).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settings of one test gateway.
pub struct GatewaySetup {
    /// Homeserver client URL.
    pub homeserver_url: String,
    /// Port the gateway listens on.
    pub port: u16,
    /// Database URL.
    pub database_url: String,
    /// The loopback spool directory.
    pub spool: PathBuf,
    /// Team members' Matrix IDs.
    pub members: Vec<String>,
    /// Longest retry pause, in ms.
    pub max_backoff_ms: u64,
    /// More TOML appended to the configuration (further bridges).
    pub extra: String,
}

/// The appservice tokens every test registration uses.
pub const AS_TOKEN: &str = "test-as-token-0123456789";
/// See [`AS_TOKEN`].
pub const HS_TOKEN: &str = "test-hs-token-9876543210";
/// The loopback bridge's webhook secret in test configurations.
pub const WEBHOOK_SECRET: &str = "loop-webhook-secret";

impl GatewaySetup {
    /// The gateway's TOML configuration.
    pub fn toml(&self) -> String {
        let members: Vec<String> = self.members.iter().map(|m| format!("{m:?}")).collect();
        format!(
            r#"
[homeserver]
url = "{hs}"
server_name = "localhost"

[appservice]
listen = "127.0.0.1:{port}"
url = "http://127.0.0.1:{port}"
as_token = "{AS_TOKEN}"
hs_token = "{HS_TOKEN}"

[database]
url = "{db}"

[queue]
initial_backoff_ms = 100
max_backoff_ms = {backoff}

[teams.social]
name = "Social services"
members = [{members}]

[bridges.loop]
kind = "loopback"
team = "social"
spool = "{spool}"
secret = "{WEBHOOK_SECRET}"
{extra}
"#,
            hs = self.homeserver_url,
            port = self.port,
            db = self.database_url,
            backoff = self.max_backoff_ms,
            members = members.join(", "),
            spool = self.spool.display(),
            extra = self.extra,
        )
    }

    /// The parsed configuration.
    pub fn config(&self) -> casebridge_config::Config {
        casebridge_config::Config::from_toml_str(&self.toml()).expect("test config parses")
    }

    /// The appservice registration YAML for this gateway.
    pub fn registration_yaml(&self) -> String {
        casebridge_gateway::registration::registration_yaml(&self.config()).unwrap()
    }
}

/// Logs of a test, once per process, to stderr (`RUST_LOG` to tune).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,casebridge_gateway=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Real images of each type a phone or mail program sends, 24×16 pixels, each with a GPS
/// position in EXIF and XMP (GIF: XMP), IPTC and a comment where the type has them: (file name,
/// MIME type, bytes). How they were made: policies/tests/fixtures/README.md.
pub fn images_with_gps() -> Vec<(&'static str, &'static str, &'static [u8])> {
    macro_rules! fixture {
        ($name:literal, $mime:literal) => {
            (
                $name,
                $mime,
                &include_bytes!(concat!("../../policies/tests/fixtures/", $name))[..],
            )
        };
    }
    vec![
        fixture!("gps.jpg", "image/jpeg"),
        fixture!("gps.png", "image/png"),
        fixture!("gps.webp", "image/webp"),
        fixture!("gps.gif", "image/gif"),
        fixture!("gps.tif", "image/tiff"),
        fixture!("gps.heic", "image/heic"),
        fixture!("gps.avif", "image/avif"),
    ]
}

/// What is left in `bytes` of what [`images_with_gps`] carry: the street (XMP description, IPTC
/// city, comment), the camera make, XMP's latitude, the XMP namespace, EXIF's header (with its
/// byte order), "GPS", and
/// EXIF's rational 59/1 (the latitude's degrees) in both byte orders. Empty when nothing is.
pub fn location_traces(bytes: &[u8]) -> Vec<String> {
    const TRACES: [&[u8]; 9] = [
        b"Storgatan",
        b"CasebridgeCam",
        b"59,19.758N",
        b"http://ns.adobe.com/xap",
        b"GPS",
        b"Exif\0\0MM",
        b"Exif\0\0II",
        b"\0\0\0\x3b\0\0\0\x01",
        b"\x3b\0\0\0\x01\0\0\0",
    ];
    TRACES
        .iter()
        .filter(|t| bytes.windows(t.len()).any(|w| w == **t))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

/// A small JPEG whose EXIF segment names a GPS position, and whose image data ends with
/// `12 34 56 78 FF D9`: what a phone's photo carries, for tests that it leaves no location.
pub fn jpeg_with_gps() -> Vec<u8> {
    let segment = |marker: u8, payload: &[u8]| {
        let mut s = vec![0xFF, marker];
        s.extend(((payload.len() + 2) as u16).to_be_bytes());
        s.extend(payload);
        s
    };
    let mut jpeg = vec![0xFF, 0xD8];
    jpeg.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    jpeg.extend(segment(0xE1, b"Exif\0\0MM\0*GPSLatitude 59.3293 N"));
    jpeg.extend(segment(0xDB, &[0u8; 65]));
    jpeg.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
    jpeg.extend([0x12, 0x34, 0x56, 0x78, 0xFF, 0xD9]);
    jpeg
}

/// What a test's gateway logged: a `tracing` writer into a shared buffer. Install
/// [`CapturedLog::subscriber`] as the thread's default on a current-thread runtime, so the
/// gateway's tasks log into it.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// A subscriber writing lines of `level` and above into this log, without colours.
    pub fn subscriber(&self, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
    }

    /// Where the log ends now: [`CapturedLog::since`] it reads what comes after.
    pub fn mark(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    /// What was logged after `mark`.
    pub fn since(&self, mark: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")[mark..]).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
