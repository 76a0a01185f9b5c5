//! Case-room commands (`!case`, `!close`, `!discreet on`, ...): run inside the appservice
//! transaction that brought them, so a command is recorded and takes effect exactly once.

use casebridge_policies::commands::{Command, HELP};
use sea_orm::{sea_query::Expr, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::{
    policy::TeamNotice,
    relay::Core,
    store::{case, direction, identity, is_automatic, message, Store, StoreError},
};

/// What must happen once the transaction that ran a command has committed.
#[derive(Debug, Default)]
pub struct AfterCommit {
    /// Invite this user to the case room.
    pub invite: Option<(String, ruma::OwnedUserId)>,
    /// A bridge instance with a reply to deliver.
    pub wake: Option<String>,
}

impl Core {
    /// Runs `command` from `sender` in `case`'s room, recording it and answering with a notice.
    pub(crate) async fn run_command<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        event_id: &str,
        sender: &str,
        body: &str,
        command: Command,
    ) -> Result<AfterCommit, StoreError> {
        let kind = match &command {
            Command::Note(_) => "note",
            Command::Incident(_) => "incident",
            _ => "command",
        };
        if !Store::record_internal(conn, case.id, kind, event_id, sender, body).await? {
            return Ok(AfterCommit::default());
        }
        let mut after = AfterCommit::default();
        let notice = match command {
            Command::Help => HELP.to_owned(),
            Command::Case => self.summary(conn, case).await?,
            Command::Close | Command::Reopen => {
                let status = if matches!(command, Command::Close) {
                    "closed"
                } else {
                    "open"
                };
                set_case(conn, case.id, case::Column::Status, status).await?;
                let closed_at = (status == "closed").then(chrono::Utc::now);
                set_case(conn, case.id, case::Column::ClosedAt, closed_at).await?;
                if status == "closed" {
                    format!("Case {} closed by {sender}.", case.number)
                } else {
                    format!("Case {} reopened by {sender}.", case.number)
                }
            }
            Command::Discreet(on) => {
                set_case(conn, case.id, case::Column::Discreet, on).await?;
                let team = self.policies.team(&case.team);
                if on {
                    format!(
                        "Discreet mode on: nothing automatic goes to the client, the sender shows \
                         as «{}» with the subject «{}», and texts carry no case number.",
                        team.map_or("Info", |t| t.discreet.sender_name.as_str()),
                        team.map_or("Message", |t| t.discreet.subject.as_str()),
                    )
                } else {
                    "Discreet mode off: automatic replies and the office's sender name are back."
                        .to_owned()
                }
            }
            Command::Hold(on) => {
                set_case(conn, case.id, case::Column::LegalHold, on).await?;
                if on {
                    format!("Legal hold on, set by {sender}: retention purges nothing of this case until !hold off.")
                } else {
                    format!("Legal hold off, lifted by {sender}: the retention rules apply again.")
                }
            }
            Command::Block | Command::Unblock => {
                let on = matches!(command, Command::Block);
                set_case(conn, case.id, case::Column::Blocked, on).await?;
                if on {
                    "Blocked: the client's messages are recorded but no longer shown here, and \
                     the client gets only the team's neutral answer (at most once a day). \
                     Emergency words still alert the team. !unblock undoes it."
                        .to_owned()
                } else {
                    "Unblocked: the client's messages are shown here again.".to_owned()
                }
            }
            Command::Note(_) => "Internal note recorded; it is not sent to the client.".to_owned(),
            Command::Send => match Store::release_held(conn, case.id).await? {
                Some((instance, _)) => {
                    after.wake = Some(instance);
                    format!("The held reply is sent as written, confirmed by {sender}.")
                }
                None => "No reply is held in this case.".to_owned(),
            },
            Command::Incident(text) => {
                let room = self
                    .policies
                    .team(&case.team)
                    .and_then(|t| t.incident_room.clone());
                match room {
                    Some(_) => {
                        let alert = TeamNotice {
                            body: format!(
                                "Incident report in case {} by {sender}: {text}\nCase room: https://matrix.to/#/{}",
                                case.number,
                                self.policies.case_alias(&case.number)
                            ),
                            html: None,
                            mentions: Vec::new(),
                        };
                        Store::record_team_notice(
                            conn,
                            case.id,
                            direction::ALERT,
                            "incident",
                            &alert,
                        )
                        .await?;
                        "Incident report recorded and posted to the incident room.".to_owned()
                    }
                    None => format!(
                        "Incident report recorded. No incident room is configured \
                         (teams.{}.incident_room), so it was posted nowhere else.",
                        case.team
                    ),
                }
            }
            Command::Assign(user) => {
                let members = self
                    .config
                    .teams
                    .get(&case.team)
                    .map(|t| t.members.as_slice())
                    .unwrap_or(&[]);
                if members.contains(&user) {
                    set_case(conn, case.id, case::Column::Assignee, user.to_string()).await?;
                    if let Some(room) = &case.room_id {
                        after.invite = Some((room.clone(), user.clone()));
                    }
                    format!("Case {} assigned to {user} by {sender}.", case.number)
                } else {
                    format!(
                        "{user} is not a member of team {}; the case stays as it was.",
                        case.team
                    )
                }
            }
            Command::Via(channel) => {
                let identities = identity::Entity::find()
                    .filter(identity::Column::CaseId.eq(case.id))
                    .all(conn)
                    .await?;
                match identities
                    .iter()
                    .rev()
                    .find(|i| i.channel == channel || i.instance == channel)
                {
                    Some(found) => {
                        set_case(conn, case.id, case::Column::LastIdentityId, found.id).await?;
                        format!(
                            "Replies now go to {} ({}).",
                            found.display_name,
                            self.label(&found.instance, &found.channel)
                        )
                    }
                    None => format!(
                        "The client has no {channel} address in this case (known: {}).",
                        identities
                            .iter()
                            .map(|i| i.channel.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
        };
        Store::record_notice(conn, case.id, &notice).await?;
        Ok(after)
    }

    /// `!case`: what the team needs to know at a glance.
    async fn summary<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
    ) -> Result<String, StoreError> {
        let identities = identity::Entity::find()
            .filter(identity::Column::CaseId.eq(case.id))
            .all(conn)
            .await?;
        let messages = message::Entity::find()
            .filter(message::Column::CaseId.eq(case.id))
            .all(conn)
            .await?;
        let count = |direction: &str, automatic: bool| {
            messages
                .iter()
                .filter(|m| m.direction == direction && m.kind.as_deref() != Some("part"))
                .filter(|m| is_automatic(m.kind.as_deref()) == automatic)
                .count()
        };
        let contacts: Vec<String> = identities
            .iter()
            .map(|i| {
                let replies = if case.last_identity_id == Some(i.id) {
                    " ← replies go here"
                } else {
                    ""
                };
                format!(
                    "{} ({}){replies}",
                    i.display_name,
                    self.label(&i.instance, &i.channel)
                )
            })
            .collect();
        let mut lines = vec![
            format!(
                "Case {} · {} · team {}",
                case.number, case.status, case.team
            ),
            format!("Opened {}", case.created_at.format("%Y-%m-%d %H:%M UTC")),
            format!("Contacts: {}", contacts.join("; ")),
            format!(
                "Messages: {} from the client, {} replies, {} automatic replies, {} notes",
                count(direction::INBOUND, false),
                count(direction::OUTBOUND, false),
                count(direction::OUTBOUND, true),
                messages
                    .iter()
                    .filter(|m| m.kind.as_deref() == Some("note"))
                    .count()
            ),
        ];
        if let Some(assignee) = &case.assignee {
            lines.push(format!("Assigned to {assignee}"));
        }
        if case.discreet {
            lines.push("Discreet mode is on".to_owned());
        }
        if case.blocked {
            lines.push("The client is blocked".to_owned());
        }
        Ok(lines.join("\n"))
    }
}

async fn set_case<C: ConnectionTrait, V: Into<sea_orm::Value>>(
    conn: &C,
    case_id: i64,
    column: case::Column,
    value: V,
) -> Result<(), StoreError> {
    case::Entity::update_many()
        .col_expr(column, Expr::value(value))
        .filter(case::Column::Id.eq(case_id))
        .exec(conn)
        .await?;
    Ok(())
}
