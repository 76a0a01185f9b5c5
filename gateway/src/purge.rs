//! Carrying out what purges owe the homeserver: redacting the purged events in the case rooms
//! and deleting the purged files from its media repository. A purge writes these follow-ups in
//! its own transaction ([`crate::store::retention`]); one that fails stays queued and the next
//! run tries it again, so a homeserver that is down during a purge only delays them.

use ruma::{EventId, RoomId, UserId};

use crate::{
    matrix::MatrixClient,
    store::{purge_followup, Store, StoreError},
    texts::{Languages, Text},
};

/// What one run of [`carry_out`] did.
#[derive(Debug, Default)]
pub struct Followups {
    /// Events redacted.
    pub redacted: usize,
    /// Files deleted from the media repository.
    pub deleted: usize,
    /// Files waiting for a server admin's token (`homeserver.admin_token`).
    pub media_waiting: usize,
    /// Follow-ups that failed this time and stay queued, each with what went wrong.
    pub failed: Vec<String>,
}

async fn one(
    matrix: &MatrixClient,
    bot: &UserId,
    followup: &purge_followup::Model,
    admin_token: Option<&str>,
    reason: &str,
) -> Option<Result<(), String>> {
    match (&followup.event_id, &followup.mxc_uri, &followup.room_id) {
        (Some(event), _, Some(room)) => {
            let (room, event) = match (RoomId::parse(room.as_str()), EventId::parse(event.as_str()))
            {
                (Ok(room), Ok(event)) => (room, event),
                _ => return Some(Err(format!("{event} in {room} is not a valid event"))),
            };
            let txn = format!("cb-purge-{}", event.localpart());
            Some(
                matrix
                    .redact(&room, &event, &txn, reason, bot)
                    .await
                    .map_err(|e| format!("redacting {event} in {room}: {e}")),
            )
        }
        (None, Some(mxc), _) => {
            let admin = admin_token?;
            Some(
                matrix
                    .delete_media(mxc, admin)
                    .await
                    .map_err(|e| format!("deleting {mxc} from the media repository: {e}")),
            )
        }
        _ => Some(Err(format!(
            "purge follow-up {} names neither an event in a room nor a file",
            followup.id
        ))),
    }
}

/// Tries every queued follow-up once, as the appservice bot (`bot`) and, for files, the
/// server admin whose token is `admin_token`. A redaction's reason is in the language of the
/// case's team.
pub async fn carry_out(
    store: &Store,
    matrix: &MatrixClient,
    bot: &UserId,
    admin_token: Option<&str>,
    languages: &Languages,
) -> Result<Followups, StoreError> {
    let mut out = Followups::default();
    for followup in store.purge_followups().await? {
        let team = store.case(followup.case_id).await?.team;
        let reason = languages.say(&team, &Text::Purged);
        let Some(result) = one(matrix, bot, &followup, admin_token, &reason).await else {
            out.media_waiting += 1;
            continue;
        };
        match &result {
            Ok(()) if followup.event_id.is_some() => out.redacted += 1,
            Ok(()) => out.deleted += 1,
            Err(e) => out.failed.push(e.clone()),
        }
        store.purge_followup_result(followup.id, result).await?;
    }
    Ok(out)
}
