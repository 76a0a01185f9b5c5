//! Case-room commands (`!case`, `!close`, `!discreet on`, ...): run inside the appservice
//! transaction that brought them, so a command is recorded and takes effect exactly once.

use casebridge_policies::commands::{Command, HELP};
use sea_orm::{sea_query::Expr, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::{
    policy::TeamNotice,
    relay::Core,
    store::{
        case, identity, message, CaseId, CaseStatus, Direction, IdentityId, MessageKind, Store,
        StoreError,
    },
};

/// What must happen once the transaction that ran a command has committed.
#[derive(Debug, Default)]
pub struct AfterCommit {
    /// Invite this user to the case room.
    pub invite: Option<(String, ruma::OwnedUserId)>,
    /// A bridge instance with a reply to deliver.
    pub wake: Option<String>,
    /// Identities `!merge` moved into this case.
    pub moved: Vec<IdentityId>,
}

/// How long an invitation link works.
const INVITATION_DAYS: i64 = 7;

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
            Command::Note(_) => MessageKind::Note,
            Command::Incident(_) => MessageKind::Incident,
            _ => MessageKind::Command,
        };
        if !Store::record_internal(conn, case.id, kind, event_id, sender, body).await? {
            return Ok(AfterCommit::default());
        }
        let mut after = AfterCommit::default();
        let notice = match command {
            Command::Help => HELP.to_owned(),
            Command::Case => self.summary(conn, case).await?,
            Command::Close => set_status(conn, case, sender, CaseStatus::Closed).await?,
            Command::Reopen => set_status(conn, case, sender, CaseStatus::Open).await?,
            Command::Discreet(on) => self.discreet(conn, case, on).await?,
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
            Command::Incident(text) => self.incident(conn, case, sender, &text).await?,
            Command::Assign(user) => {
                let (notice, invite) = self.assign(conn, case, sender, user).await?;
                after.invite = invite;
                notice
            }
            Command::Invite(channel) => self.invite(conn, case, sender, &channel).await?,
            Command::Merge(number) => {
                let (notice, moved) = self.merge(conn, case, sender, &number).await?;
                after.moved = moved;
                notice
            }
            Command::Via(channel) => self.via(conn, case, &channel).await?,
        };
        Store::record_notice(conn, case.id, &notice).await?;
        Ok(after)
    }

    /// `!discreet on|off`.
    async fn discreet<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        on: bool,
    ) -> Result<String, StoreError> {
        set_case(conn, case.id, case::Column::Discreet, on).await?;
        let team = self.policies.team(&case.team);
        Ok(if on {
            format!(
                "Discreet mode on: nothing automatic goes to the client, the sender shows \
                 as «{}» with the subject «{}», and texts carry no case number.",
                team.map_or("Info", |t| t.discreet.sender_name.as_str()),
                team.map_or("Message", |t| t.discreet.subject.as_str()),
            )
        } else {
            "Discreet mode off: automatic replies and the office's sender name are back.".to_owned()
        })
    }

    /// `!incident TEXT`: posted to the team's incident room, when it has one.
    async fn incident<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        sender: &str,
        text: &str,
    ) -> Result<String, StoreError> {
        let room = self
            .policies
            .team(&case.team)
            .and_then(|t| t.incident_room.clone());
        if room.is_none() {
            return Ok(format!(
                "Incident report recorded. No incident room is configured \
                 (teams.{}.incident_room), so it was posted nowhere else.",
                case.team
            ));
        }
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
            Direction::Alert,
            MessageKind::Incident,
            &alert,
        )
        .await?;
        Ok("Incident report recorded and posted to the incident room.".to_owned())
    }

    /// `!assign USER`: a member of the case's team, who is invited to the room once the
    /// transaction has committed.
    async fn assign<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        sender: &str,
        user: ruma::OwnedUserId,
    ) -> Result<(String, Option<(String, ruma::OwnedUserId)>), StoreError> {
        let members = self
            .config
            .teams
            .get(&case.team)
            .map(|t| t.members.as_slice())
            .unwrap_or(&[]);
        if !members.contains(&user) {
            let notice = format!(
                "{user} is not a member of team {}; the case stays as it was.",
                case.team
            );
            return Ok((notice, None));
        }
        set_case(conn, case.id, case::Column::Assignee, user.to_string()).await?;
        let notice = format!("Case {} assigned to {user} by {sender}.", case.number);
        Ok((notice, case.room_id.clone().map(|room| (room, user))))
    }

    /// `!via CHANNEL`: replies go to the client's latest identity on that channel.
    async fn via<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        channel: &str,
    ) -> Result<String, StoreError> {
        let identities = identity::Entity::find()
            .filter(identity::Column::CaseId.eq(case.id))
            .all(conn)
            .await?;
        let Some(found) = identities
            .iter()
            .rev()
            .find(|i| i.channel == channel || i.instance == channel)
        else {
            return Ok(format!(
                "The client has no {channel} address in this case (known: {}).",
                identities
                    .iter()
                    .map(|i| i.channel.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        set_case(conn, case.id, case::Column::LastIdentityId, found.id).await?;
        Ok(format!(
            "Replies now go to {} ({}).",
            found.display_name,
            self.label(&found.instance, &found.channel)
        ))
    }

    /// `!invite CHANNEL`: a one-time link that joins the client's account on that channel to
    /// this case.
    async fn invite<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        sender: &str,
        channel: &str,
    ) -> Result<String, StoreError> {
        // The case team's own instance of the channel, if it has one.
        let mut candidates: Vec<(&String, &crate::relay::RunningBridge)> = self
            .bridges
            .iter()
            .filter(|(name, b)| b.capabilities.channel == channel || name.as_str() == channel)
            .collect();
        candidates.sort_by_key(|(name, _)| {
            self.config
                .bridges
                .get(name.as_str())
                .is_none_or(|b| b.team != case.team)
        });
        let Some((instance, running)) = candidates.first() else {
            return Ok(format!(
                "No {channel} bridge runs on this gateway: nothing to invite the client to."
            ));
        };
        let label = running.capabilities.label;
        let (token, expires) =
            Store::create_invitation(conn, case.id, instance, sender, INVITATION_DAYS).await?;
        Ok(match running.bridge.invitation_link(&token) {
            Some(link) => format!(
                "Invitation for the client on {label}: {link}\nSend it to the client. When \
                 they open it (and press Start), their {label} account joins case {}. It works \
                 once, until {}.",
                case.number,
                expires.format("%Y-%m-%d %H:%M UTC")
            ),
            None => format!(
                "{label} cannot carry invitation links (or does not know its own address yet). \
                 Nothing was made."
            ),
        })
    }

    /// `!merge NUMBER`: the other case's addresses join this case, and it closes.
    async fn merge<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        sender: &str,
        number: &str,
    ) -> Result<(String, Vec<IdentityId>), StoreError> {
        let refuse = |text: String| Ok((text, Vec::new()));
        if number == case.number {
            return refuse(format!("{number} is this case."));
        }
        let Some(other) = case::Entity::find()
            .filter(case::Column::Number.eq(number))
            .one(conn)
            .await?
        else {
            return refuse(format!("There is no case {number}; nothing was merged."));
        };
        if other.team != case.team {
            return refuse(format!(
                "Case {number} belongs to team {}, not {}: only a team's own cases merge.",
                other.team, case.team
            ));
        }
        if let Some(into) = &other.merged_into {
            return refuse(format!(
                "Case {number} was merged into case {into} already."
            ));
        }
        let identities = identity::Entity::find()
            .filter(identity::Column::CaseId.eq(other.id))
            .all(conn)
            .await?;
        identity::Entity::update_many()
            .col_expr(identity::Column::CaseId, Expr::value(case.id))
            // Their ghosts join this case's room with their next message.
            .col_expr(
                identity::Column::JoinedAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .filter(identity::Column::CaseId.eq(other.id))
            .exec(conn)
            .await?;
        let now = chrono::Utc::now();
        case::Entity::update_many()
            .col_expr(case::Column::Status, Expr::value(CaseStatus::Closed))
            .col_expr(case::Column::ClosedAt, Expr::value(now))
            .col_expr(case::Column::MergedInto, Expr::value(case.number.clone()))
            .col_expr(
                case::Column::LastIdentityId,
                Expr::value(Option::<IdentityId>::None),
            )
            .filter(case::Column::Id.eq(other.id))
            .exec(conn)
            .await?;
        if case.last_identity_id.is_none() {
            if let Some(first) = identities.first() {
                set_case(conn, case.id, case::Column::LastIdentityId, first.id).await?;
            }
        }
        let names = identities
            .iter()
            .map(|i| {
                format!(
                    "{} ({})",
                    i.display_name,
                    self.label(&i.instance, &i.channel)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        Store::record_notice(
            conn,
            other.id,
            &format!(
                "Merged into case {} by {sender}: {names} now belong to case {}, and their new \
                 messages go there. This case is closed; its records stay here.",
                case.number, case.number
            ),
        )
        .await?;
        let notice = format!(
            "Case {number} merged into this case by {sender}: {} now write here{}. Case \
             {number}'s earlier messages stay in its own record.",
            if names.is_empty() {
                "no addresses"
            } else {
                &names
            },
            if case.last_identity_id.is_some() {
                "; replies still go where the client wrote last (!via to choose)"
            } else {
                ""
            }
        );
        Ok((notice, identities.into_iter().map(|i| i.id).collect()))
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
        let count = |direction: Direction, automatic: bool| {
            messages
                .iter()
                .filter(|m| m.direction == direction && m.kind != Some(MessageKind::Part))
                .filter(|m| m.kind.is_some_and(MessageKind::is_automatic) == automatic)
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
                let unreachable = i
                    .unreachable
                    .as_ref()
                    .map(|why| format!(" ⚠ unreachable: {why}"))
                    .unwrap_or_default();
                format!(
                    "{} ({}){replies}{unreachable}",
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
                count(Direction::Inbound, false),
                count(Direction::Outbound, false),
                count(Direction::Outbound, true),
                messages
                    .iter()
                    .filter(|m| m.kind == Some(MessageKind::Note))
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
        if let Some(into) = &case.merged_into {
            lines.push(format!("Merged into case {into}"));
        }
        Ok(lines.join("\n"))
    }
}

async fn set_case<C: ConnectionTrait, V: Into<sea_orm::Value>>(
    conn: &C,
    case_id: CaseId,
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

/// `!close` or `!reopen`.
async fn set_status<C: ConnectionTrait>(
    conn: &C,
    case: &case::Model,
    sender: &str,
    status: CaseStatus,
) -> Result<String, StoreError> {
    set_case(conn, case.id, case::Column::Status, status).await?;
    let closed_at = (status == CaseStatus::Closed).then(chrono::Utc::now);
    set_case(conn, case.id, case::Column::ClosedAt, closed_at).await?;
    Ok(if status == CaseStatus::Closed {
        format!("Case {} closed by {sender}.", case.number)
    } else {
        format!("Case {} reopened by {sender}.", case.number)
    })
}
