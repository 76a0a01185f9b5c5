//! Rooms and ghosts: the bot, case rooms, alert rooms, the ghosts that speak for clients, and
//! the display names of workers.

use ruma::{OwnedRoomAliasId, OwnedRoomId, OwnedUserId, UserId};
use tracing::{debug, error, info};

use super::{Core, RelayError};
use crate::{
    matrix::MatrixError,
    store::{CaseId, IdentityId, Store},
    texts::Text,
};

impl Core {
    /// The ghost localpart that speaks for `address` on `instance`: see [`ghost_localpart`].
    pub fn ghost_localpart(&self, instance: &str, address: &str) -> String {
        ghost_localpart(
            &self.config.appservice.ghost_prefix,
            instance,
            address,
            self.config.homeserver.server_name.as_str(),
        )
    }

    /// A worker's display name, if known.
    pub(super) fn display_name(&self, user: &UserId) -> Option<String> {
        self.display_names
            .lock()
            .expect("not poisoned")
            .get(user.as_str())
            .cloned()
    }

    /// Every known display name of a worker.
    pub(super) fn known_names(&self) -> Vec<String> {
        self.display_names
            .lock()
            .expect("not poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Remembers the display name a homeserver reports for a (non-appservice) user.
    pub(super) fn learn_display_name(&self, user: &UserId, name: Option<&str>) {
        if self.config.is_appservice_user(user) {
            return;
        }
        let mut names = self.display_names.lock().expect("not poisoned");
        match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => {
                names.insert(user.to_string(), name.to_owned());
            }
            None => {
                names.remove(user.as_str());
            }
        }
    }

    /// Asks the homeserver for every configured worker's display name (at start; member events
    /// keep them current after).
    pub async fn load_display_names(&self) {
        let users: Vec<OwnedUserId> = self
            .config
            .teams
            .values()
            .flat_map(|t| t.members.iter().chain(&t.on_call))
            .cloned()
            .collect();
        for user in users {
            match self.matrix.display_name(&user).await {
                Ok(name) => self.learn_display_name(&user, name.as_deref()),
                Err(e) => debug!(%user, error = %e, "no display name"),
            }
        }
    }

    /// Team `team`'s alert room, with the bot in it (it must have been invited, or the room
    /// be public).
    pub(super) async fn alert_room(&self, team: &str) -> Result<OwnedRoomId, RelayError> {
        if let Some(room) = self.alert_rooms.lock().expect("not poisoned").get(team) {
            return Ok(room.clone());
        }
        let configured = self
            .policies
            .team(team)
            .and_then(|p| p.alert_room.clone())
            .ok_or_else(|| {
                MatrixError::local(
                    "alert room",
                    format!("teams.{team}.emergency.alert_room is not set"),
                )
            })?;
        let room = match OwnedRoomId::try_from(configured.as_str()) {
            Ok(room) => room,
            Err(_) => {
                let alias = OwnedRoomAliasId::try_from(configured.as_str())
                    .map_err(|e| MatrixError::local("alert room", e.to_string()))?;
                self.matrix.resolve_alias(&alias).await?.ok_or_else(|| {
                    MatrixError::local(
                        "alert room",
                        format!("teams.{team}.emergency.alert_room: no room has alias {alias}"),
                    )
                })?
            }
        };
        self.ensure_bot().await?;
        if let Err(e) = self.matrix.join(&room, &self.bot).await {
            error!(error = %e, %room, team, "the bot cannot join the alert room: invite it there");
            return Err(e.into());
        }
        self.alert_rooms
            .lock()
            .expect("not poisoned")
            .insert(team.to_owned(), room.clone());
        Ok(room)
    }

    async fn ensure_bot(&self) -> Result<(), MatrixError> {
        self.bot_ready
            .get_or_try_init(|| async {
                self.matrix
                    .ensure_registered(&self.config.appservice.bot_localpart)
                    .await?;
                self.matrix
                    .set_display_name(&self.bot, &self.config.appservice.bot_displayname)
                    .await
            })
            .await
            .map(|_| ())
    }

    /// The case's room, created (with the team invited) on its first message.
    pub(super) async fn ensure_room(&self, case_id: CaseId) -> Result<OwnedRoomId, RelayError> {
        if let Some(room) = self.rooms.get(&case_id) {
            return Ok(room);
        }
        let case = self.store.case(case_id).await?;
        if let Some(room) = &case.room_id {
            let room = OwnedRoomId::try_from(room.as_str())
                .map_err(|e| MatrixError::local("room id", e.to_string()))?;
            self.rooms.put(case_id, room.clone());
            return Ok(room);
        }
        self.ensure_bot().await?;
        let identities = self.store.identities(case_id).await?;
        let first = identities.first();
        let label = first
            .map(|i| self.label(&i.instance, &i.channel))
            .unwrap_or_default();
        let name = match first {
            Some(i) => format!("{} ({label})", i.display_name),
            None => self.policies.say(
                &case.team,
                &Text::RoomName {
                    case: case.number.clone(),
                },
            ),
        };
        let topic = self.policies.say(
            &case.team,
            &Text::RoomTopic {
                case: case.number.clone(),
                label,
                team: case.team.clone(),
            },
        );
        let invite = self
            .config
            .teams
            .get(&case.team)
            .map(|t| t.members.clone())
            .unwrap_or_default();
        let (alias_localpart, alias) = self.case_alias(&case.number);
        let room = self
            .matrix
            .create_case_room(&alias_localpart, &alias?, &name, &topic, invite)
            .await?;
        self.store.set_room(case_id, room.as_str()).await?;
        self.rooms.put(case_id, room.clone());
        info!(case = %case.number, %room, "case room created");
        Ok(room)
    }

    /// The identity's ghost, registered, named and joined to `room`.
    pub(super) async fn ensure_ghost_in_room(
        &self,
        identity_id: IdentityId,
        room: &OwnedRoomId,
    ) -> Result<OwnedUserId, RelayError> {
        if let Some(ghost) = self.ghosts.get(&identity_id) {
            return Ok(ghost);
        }
        let identity = Store::identity(self.store.connection(), identity_id).await?;
        let ghost = self.user_id(&identity.ghost_localpart)?;
        if identity.joined_at.is_none() {
            self.matrix
                .ensure_registered(&identity.ghost_localpart)
                .await?;
            let label = self.label(&identity.instance, &identity.channel);
            self.matrix
                .set_display_name(&ghost, &format!("{} ({label})", identity.display_name))
                .await?;
            self.matrix.invite(room, &ghost).await?;
            self.matrix.join(room, &ghost).await?;
            self.store.set_joined(identity.id).await?;
        }
        self.ghosts.put(identity_id, ghost.clone());
        Ok(ghost)
    }
}

/// Longest Matrix user id, `@localpart:server_name`, in bytes (the spec's limit; homeservers
/// refuse longer ones, so a ghost with a longer id could never join its case room).
pub const MAX_USER_ID: usize = 255;

/// The ghost localpart for `address` on `instance`: `{prefix}{instance}_{address}`, both escaped
/// ([`escape_localpart`]), so always in the localpart grammar. When that would make the user id
/// longer than [`MAX_USER_ID`], the address part becomes its escaped head (at most 32
/// characters, for people to recognise) and `=z` and 32 hex digits of the SHA-256 of the whole
/// address. Escaping never writes `=` before anything but two hex digits, so such a part is
/// never another address's plain one; and every address whose plain localpart fits keeps it, so
/// existing ghosts and rooms are unchanged (a longer one never had a ghost: the homeserver
/// refused it).
pub fn ghost_localpart(prefix: &str, instance: &str, address: &str, server_name: &str) -> String {
    use sha2::Digest as _;
    let head = format!("{prefix}{}_", escape_localpart(instance));
    let plain = escape_localpart(address);
    // `@`, `:` and the server name around the localpart.
    let room = MAX_USER_ID.saturating_sub(2 + server_name.len() + head.len());
    if plain.len() <= room {
        return format!("{head}{plain}");
    }
    const DIGEST: usize = 2 + 32;
    let budget = room.saturating_sub(DIGEST).min(32);
    let mut shown = String::new();
    for c in address.chars() {
        let token = escape_localpart(c.encode_utf8(&mut [0; 4]));
        if shown.len() + token.len() > budget {
            break;
        }
        shown.push_str(&token);
    }
    let digest = sha2::Sha256::digest(address.as_bytes());
    format!("{head}{shown}=z{}", hex::encode(&digest[..16]))
}

/// Maps any string into the characters a Matrix localpart allows, one-to-one: `a-z0-9.-` stay,
/// `_` doubles, capitals become `_` plus the small letter, anything else `=xx` per UTF-8 byte
/// (the spec's suggested mapping for other character sets).
pub fn escape_localpart(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for byte in s.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => out.push(byte as char),
            b'_' => out.push_str("__"),
            b'A'..=b'Z' => {
                out.push('_');
                out.push(byte.to_ascii_lowercase() as char);
            }
            _ => out.push_str(&format!("={byte:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{escape_localpart, ghost_localpart, MAX_USER_ID};

    #[test]
    fn localpart_escaping_is_valid_and_one_to_one() {
        assert_eq!(escape_localpart("+46701234567"), "=2b46701234567");
        assert_eq!(
            escape_localpart("Anna_B@Example.org"),
            "_anna___b=40_example.org"
        );
        assert_eq!(escape_localpart("Åsa"), "=c3=85sa");
        assert_ne!(escape_localpart("a_b"), escape_localpart("a_B"));
        for s in ["+46 70", "x@y.z", "Zoë", "_", "=2b"] {
            assert!(escape_localpart(s)
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-')));
        }
    }

    /// The localpart grammar (`a-z`, `0-9`, `._=-/+`), within the user id limit.
    fn is_valid_ghost(localpart: &str, server_name: &str) -> bool {
        !localpart.is_empty()
            && 2 + localpart.len() + server_name.len() <= MAX_USER_ID
            && localpart.bytes().all(|b| {
                matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+')
            })
    }

    #[test]
    fn ghost_localparts_of_valid_addresses_keep_their_form() {
        // What existing ghosts are called: unchanged, so their rooms keep working.
        assert_eq!(
            ghost_localpart("_cb_", "sms", "+46701234567", "localhost"),
            "_cb_sms_=2b46701234567"
        );
        assert_eq!(
            ghost_localpart("_cb_", "office-mail", "Anna_B@Example.org", "localhost"),
            "_cb_office-mail_".to_owned() + &escape_localpart("Anna_B@Example.org")
        );
        assert_eq!(
            ghost_localpart("_cb_", "tg", "123456789", "example.org"),
            "_cb_tg_123456789"
        );
    }

    #[test]
    fn ghost_localparts_of_long_addresses_are_bounded_digests() {
        let zeros = "0".repeat(10_000);
        let ghost = ghost_localpart("_cb_", "sms", &zeros, "localhost");
        assert!(is_valid_ghost(&ghost, "localhost"), "{ghost}");
        assert!(
            ghost.starts_with(&format!("_cb_sms_{}=z", "0".repeat(32))),
            "{ghost}"
        );
        assert_eq!(ghost.len(), "_cb_sms_".len() + 32 + 2 + 32);
        // One character more is another ghost.
        assert_ne!(
            ghost,
            ghost_localpart("_cb_", "sms", &format!("{zeros}0"), "localhost")
        );
        // The longest address that fits keeps its plain form; one byte more is digested.
        let room = MAX_USER_ID - 2 - "localhost".len() - "_cb_sms_".len();
        let fits = "a".repeat(room);
        assert_eq!(
            ghost_localpart("_cb_", "sms", &fits, "localhost"),
            format!("_cb_sms_{fits}")
        );
        let over = ghost_localpart("_cb_", "sms", &format!("{fits}a"), "localhost");
        assert!(
            over.contains("=z") && is_valid_ghost(&over, "localhost"),
            "{over}"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_address_makes_a_valid_bounded_stable_ghost(address in "\\PC{0,400}") {
            let ghost = ghost_localpart("_cb_", "sms", &address, "matrix.example.org");
            proptest::prop_assert!(is_valid_ghost(&ghost, "matrix.example.org"), "{}", ghost);
            proptest::prop_assert_eq!(
                &ghost,
                &ghost_localpart("_cb_", "sms", &address, "matrix.example.org")
            );
        }

        #[test]
        fn long_or_escaped_addresses_stay_within_the_limit(
            address in proptest::collection::vec(proptest::prelude::any::<char>(), 0..3000)
        ) {
            let address: String = address.into_iter().collect();
            let ghost = ghost_localpart("_cb_", "sms", &address, "localhost");
            proptest::prop_assert!(is_valid_ghost(&ghost, "localhost"), "{}", ghost);
        }

        #[test]
        fn e164_numbers_keep_their_plain_ghost(digits in "[1-9][0-9]{1,14}") {
            let number = format!("+{digits}");
            proptest::prop_assert_eq!(
                ghost_localpart("_cb_", "sms", &number, "localhost"),
                format!("_cb_sms_=2b{digits}")
            );
        }
    }
}
