//! The relay: inbound messages into records and case rooms, case-team replies into records and
//! out through their bridge, each step taken from the durable queue.
//!
//! `inbound` takes what bridges hand in, `matrix_relay` posts the queue into case rooms (made
//! and joined by `rooms`), `delivery` hands replies to their bridge, and `transactions` reads
//! what case teams write, each message's effect decided by the pure `room_plan`.

mod channel_health;
mod delivery;
mod inbound;
mod matrix_relay;
mod room_plan;
mod rooms;
mod transactions;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use casebridge_bridges::{Bridge, Capabilities};
use casebridge_config::{Config, Secrets};
use chrono::Utc;
use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, UserId};
use tokio::sync::Notify;

pub use self::channel_health::{channel_news, ChannelNews};
pub use self::rooms::{escape_localpart, ghost_localpart, MAX_USER_ID};
use crate::{
    cache::{self, Cache},
    matrix::{MatrixClient, MatrixError},
    metrics::Metrics,
    policy::Policies,
    store::{CaseId, IdentityId, MessageId, Store, StoreError, Target},
    texts::Text,
    throttle::Throttle,
};

/// A bridge instance the gateway runs.
pub struct RunningBridge {
    /// The bridge.
    pub bridge: Arc<dyn Bridge>,
    /// Its capabilities, read once at start.
    pub capabilities: Capabilities,
    /// Wakes its delivery worker when a reply is queued.
    pub wake: Notify,
    /// The message its delivery worker has handed to the bridge and not yet recorded: what a
    /// stop that has to abort the worker names in the log.
    pub delivering: Mutex<Option<MessageId>>,
    /// Its delivery worker's outage warnings: one line per interval however many fail.
    pub warnings: Throttle,
    /// Whether it started, and what its channel said of its credentials.
    pub health: Mutex<crate::preflight::BridgeHealth>,
}

impl RunningBridge {
    /// Changes what is known of its health with `change`, and shows in `metrics` whether it
    /// is up.
    pub fn record_health(
        &self,
        instance: &str,
        metrics: &Metrics,
        change: impl FnOnce(&mut crate::preflight::BridgeHealth),
    ) {
        let up = {
            let mut health = self.health.lock().expect("not poisoned");
            change(&mut health);
            health.up()
        };
        metrics
            .bridge_up
            .with_label_values(&[instance])
            .set(i64::from(up));
    }

    /// The message being delivered right now, if any.
    pub fn in_flight(&self) -> Option<MessageId> {
        *self.delivering.lock().expect("not poisoned")
    }
}

/// Everything the relay tasks share.
pub struct Core {
    /// The configuration.
    pub config: Config,
    /// Resolved secrets.
    pub secrets: Secrets,
    /// The records store.
    pub store: Store,
    /// The homeserver client.
    pub matrix: MatrixClient,
    /// Running bridge instances by key.
    pub bridges: BTreeMap<String, RunningBridge>,
    /// Wakes the Matrix relay worker.
    pub matrix_wake: Notify,
    /// Counters and histograms.
    pub metrics: Metrics,
    /// Every team's policy.
    pub policies: Policies,
    /// The bot user.
    pub bot: OwnedUserId,
    bot_ready: tokio::sync::OnceCell<()>,
    /// Rooms of cases, once known (a case's room never changes).
    rooms: Cache<CaseId, OwnedRoomId>,
    /// Ghosts known to be in their case room, by identity.
    ghosts: Cache<IdentityId, OwnedUserId>,
    /// Alert rooms the bot is in, by team.
    alert_rooms: Mutex<HashMap<String, OwnedRoomId>>,
    /// Display names of workers, as the homeserver last told (profiles, member events). Not
    /// bounded like the caches: it holds the homeserver's own users who are in case rooms
    /// (ghosts are left out), not what outsiders send, and it must keep every worker's name for
    /// the privacy check of replies.
    display_names: Mutex<HashMap<String, String>>,
    /// Outage warnings: one line per interval however many items fail.
    relay_warnings: Throttle,
    /// What the last check of the homeserver link found (`casebridge run` checks it).
    pub homeserver_link: Mutex<Option<crate::preflight::HomeserverCheck>>,
}

/// How often an outage that fails every queued item is logged.
pub const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(30);

/// Pause after the records store failed, before trying again.
const STORE_PAUSE: Duration = Duration::from_secs(1);

impl Core {
    /// Assembles the core.
    pub fn new(
        config: Config,
        secrets: Secrets,
        store: Store,
        bridges: BTreeMap<String, RunningBridge>,
        metrics: Metrics,
        policies: Policies,
    ) -> Self {
        let matrix = MatrixClient::new(config.homeserver.url.as_str(), secrets.as_token.expose());
        let bot = UserId::parse(format!(
            "@{}:{}",
            config.appservice.bot_localpart, config.homeserver.server_name
        ))
        .expect("bot_localpart and server_name are checked at load");
        Self {
            config,
            secrets,
            store,
            matrix,
            bridges,
            matrix_wake: Notify::new(),
            metrics,
            policies,
            bot,
            bot_ready: tokio::sync::OnceCell::new(),
            rooms: Cache::new(cache::ENTRIES),
            ghosts: Cache::new(cache::ENTRIES),
            alert_rooms: Mutex::new(HashMap::new()),
            display_names: Mutex::new(HashMap::new()),
            relay_warnings: Throttle::new(OUTAGE_LOG_EVERY),
            homeserver_link: Mutex::new(None),
        }
    }

    fn user_id(&self, localpart: &str) -> Result<OwnedUserId, MatrixError> {
        UserId::parse(format!(
            "@{localpart}:{}",
            self.config.homeserver.server_name
        ))
        .map_err(|e| MatrixError::local("user id", format!("@{localpart}: {e}")))
    }

    fn case_alias(&self, number: &str) -> (String, Result<OwnedRoomAliasId, MatrixError>) {
        let localpart = format!("{}case_{number}", self.config.appservice.ghost_prefix);
        let alias = RoomAliasId::parse(format!(
            "#{localpart}:{}",
            self.config.homeserver.server_name
        ))
        .map_err(|e| MatrixError::local("alias", e.to_string()));
        (localpart, alias)
    }

    /// `text` as the team of case `case_id` reads it.
    pub(crate) async fn say_in_case(
        &self,
        case_id: CaseId,
        text: &Text,
    ) -> Result<String, StoreError> {
        let case = self.store.case(case_id).await?;
        Ok(self.policies.say(&case.team, text))
    }

    pub(crate) fn label(&self, instance: &str, channel: &str) -> String {
        self.bridges
            .get(instance)
            .map_or_else(|| channel.to_owned(), |b| b.capabilities.label.to_owned())
    }

    fn backoff(&self, attempts: i32) -> Duration {
        let q = &self.config.queue;
        let factor = 1u64 << attempts.clamp(0, 16);
        Duration::from_millis(
            q.initial_backoff_ms
                .saturating_mul(factor)
                .min(q.max_backoff_ms),
        )
    }

    async fn until_next_due(&self, target: Target, instance: &str) -> Duration {
        match self.store.next_due(target, instance).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(10)),
            _ => Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Matrix(#[from] MatrixError),
}
