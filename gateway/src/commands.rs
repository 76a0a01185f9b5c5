//! Case-room commands (`!case`, `!close`, `!discreet on`, ...): run inside the appservice
//! transaction that brought them, so a command is recorded and takes effect exactly once.

use casebridge_policies::commands::Command;
use sea_orm::{sea_query::Expr, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::{
    relay::Core,
    store::{
        case, identity, message, CaseId, CaseStatus, Direction, IdentityId, MessageKind, Store,
        StoreError,
    },
    texts::{self, Summary, Text},
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
            Command::Help => Text::Help,
            Command::Case => self.summary(conn, case).await?,
            Command::Close => set_status(conn, case, sender, CaseStatus::Closed).await?,
            Command::Reopen => set_status(conn, case, sender, CaseStatus::Open).await?,
            Command::Discreet(on) => self.discreet(conn, case, on).await?,
            Command::Hold(on) => {
                set_case(conn, case.id, case::Column::LegalHold, on).await?;
                Text::Hold {
                    on,
                    by: sender.to_owned(),
                }
            }
            Command::Block | Command::Unblock => {
                let on = matches!(command, Command::Block);
                set_case(conn, case.id, case::Column::Blocked, on).await?;
                if on {
                    Text::Blocked
                } else {
                    Text::Unblocked
                }
            }
            Command::Note(_) => Text::NoteRecorded,
            Command::Send => match Store::release_held(conn, case.id).await? {
                Some((instance, _)) => {
                    after.wake = Some(instance);
                    Text::HeldReplySent {
                        by: sender.to_owned(),
                    }
                }
                None => Text::NoHeldReply,
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
        Store::record_notice(conn, case.id, &self.policies.say(&case.team, &notice)).await?;
        Ok(after)
    }

    /// `!discreet on|off`.
    async fn discreet<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        on: bool,
    ) -> Result<Text, StoreError> {
        set_case(conn, case.id, case::Column::Discreet, on).await?;
        let team = self.policies.team(&case.team);
        Ok(if on {
            Text::DiscreetOn {
                sender_name: team
                    .map_or("Info", |t| t.discreet.sender_name.as_str())
                    .into(),
                subject: team
                    .map_or("Message", |t| t.discreet.subject.as_str())
                    .into(),
            }
        } else {
            Text::DiscreetOff
        })
    }

    /// `!incident TEXT`: posted to the team's incident room, when it has one.
    async fn incident<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        sender: &str,
        text: &str,
    ) -> Result<Text, StoreError> {
        let room = self
            .policies
            .team(&case.team)
            .and_then(|t| t.incident_room.clone());
        if room.is_none() {
            return Ok(Text::IncidentNowhere {
                team: case.team.clone(),
            });
        }
        let alert = Text::IncidentReport {
            case: case.number.clone(),
            by: sender.to_owned(),
            text: text.to_owned(),
            alias: self.policies.case_alias(&case.number),
        }
        .notice(self.policies.language(&case.team));
        Store::record_team_notice(
            conn,
            case.id,
            Direction::Alert,
            MessageKind::Incident,
            &alert,
        )
        .await?;
        Ok(Text::IncidentPosted)
    }

    /// `!assign USER`: a member of the case's team, who is invited to the room once the
    /// transaction has committed.
    async fn assign<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        sender: &str,
        user: ruma::OwnedUserId,
    ) -> Result<(Text, Option<(String, ruma::OwnedUserId)>), StoreError> {
        let members = self
            .config
            .teams
            .get(&case.team)
            .map(|t| t.members.as_slice())
            .unwrap_or(&[]);
        if !members.contains(&user) {
            let notice = Text::NotOnTeam {
                user: user.to_string(),
                team: case.team.clone(),
            };
            return Ok((notice, None));
        }
        set_case(conn, case.id, case::Column::Assignee, user.to_string()).await?;
        let notice = Text::Assigned {
            case: case.number.clone(),
            user: user.to_string(),
            by: sender.to_owned(),
        };
        Ok((notice, case.room_id.clone().map(|room| (room, user))))
    }

    /// `!via CHANNEL`: replies go to the client's latest identity on that channel.
    async fn via<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        channel: &str,
    ) -> Result<Text, StoreError> {
        let identities = identity::Entity::find()
            .filter(identity::Column::CaseId.eq(case.id))
            .all(conn)
            .await?;
        let Some(found) = identities
            .iter()
            .rev()
            .find(|i| i.channel == channel || i.instance == channel)
        else {
            return Ok(Text::NoAddressOn {
                channel: channel.to_owned(),
                known: identities.iter().map(|i| i.channel.clone()).collect(),
            });
        };
        set_case(conn, case.id, case::Column::LastIdentityId, found.id).await?;
        Ok(Text::RepliesGoTo {
            name: found.display_name.clone(),
            label: self.label(&found.instance, &found.channel),
        })
    }

    /// `!invite CHANNEL`: a one-time link that joins the client's account on that channel to
    /// this case.
    async fn invite<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        sender: &str,
        channel: &str,
    ) -> Result<Text, StoreError> {
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
            return Ok(Text::NoBridgeFor {
                channel: channel.to_owned(),
            });
        };
        let label = running.capabilities.label.to_owned();
        let (token, expires) =
            Store::create_invitation(conn, case.id, instance, sender, INVITATION_DAYS).await?;
        Ok(match running.bridge.invitation_link(&token) {
            Some(link) => Text::Invitation {
                label,
                link,
                case: case.number.clone(),
                expires,
            },
            None => Text::NoInvitationLinks { label },
        })
    }

    /// `!merge NUMBER`: the other case's addresses join this case, and it closes.
    async fn merge<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
        sender: &str,
        number: &str,
    ) -> Result<(Text, Vec<IdentityId>), StoreError> {
        let refuse = |text: Text| Ok((text, Vec::new()));
        let number_ = || number.to_owned();
        if number == case.number {
            return refuse(Text::MergeSelf { number: number_() });
        }
        let Some(other) = case::Entity::find()
            .filter(case::Column::Number.eq(number))
            .one(conn)
            .await?
        else {
            return refuse(Text::MergeUnknown { number: number_() });
        };
        if other.team != case.team {
            return refuse(Text::MergeOtherTeam {
                number: number_(),
                theirs: other.team.clone(),
                ours: case.team.clone(),
            });
        }
        if let Some(into) = &other.merged_into {
            return refuse(Text::MergedAlready {
                number: number_(),
                into: into.clone(),
            });
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
        let names: Vec<String> = identities
            .iter()
            .map(|i| {
                format!(
                    "{} ({})",
                    i.display_name,
                    self.label(&i.instance, &i.channel)
                )
            })
            .collect();
        let away = Text::MergedAway {
            into: case.number.clone(),
            by: sender.to_owned(),
            names: names.clone(),
        };
        Store::record_notice(conn, other.id, &self.policies.say(&other.team, &away)).await?;
        let notice = Text::MergedHere {
            number: number_(),
            by: sender.to_owned(),
            names,
            replies_stay: case.last_identity_id.is_some(),
        };
        Ok((notice, identities.into_iter().map(|i| i.id).collect()))
    }

    /// `!case`: what the team needs to know at a glance.
    async fn summary<C: ConnectionTrait>(
        &self,
        conn: &C,
        case: &case::Model,
    ) -> Result<Text, StoreError> {
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
        Ok(Text::Summary(Summary {
            number: case.number.clone(),
            status: case.status,
            team: case.team.clone(),
            opened: case.created_at,
            contacts: identities
                .iter()
                .map(|i| texts::Contact {
                    name: i.display_name.clone(),
                    label: self.label(&i.instance, &i.channel),
                    replies_here: case.last_identity_id == Some(i.id),
                    unreachable: i.unreachable.clone(),
                })
                .collect(),
            from_client: count(Direction::Inbound, false),
            replies: count(Direction::Outbound, false),
            automatic: count(Direction::Outbound, true),
            notes: messages
                .iter()
                .filter(|m| m.kind == Some(MessageKind::Note))
                .count(),
            assignee: case.assignee.clone(),
            discreet: case.discreet,
            blocked: case.blocked,
            merged_into: case.merged_into.clone(),
        }))
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
) -> Result<Text, StoreError> {
    set_case(conn, case.id, case::Column::Status, status).await?;
    let closed_at = (status == CaseStatus::Closed).then(chrono::Utc::now);
    set_case(conn, case.id, case::Column::ClosedAt, closed_at).await?;
    let (case, by) = (case.number.clone(), sender.to_owned());
    Ok(if status == CaseStatus::Closed {
        Text::Closed { case, by }
    } else {
        Text::Reopened { case, by }
    })
}
