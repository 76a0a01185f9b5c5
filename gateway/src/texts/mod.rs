//! Every text the case team reads from casebridge, in one place: notices in case rooms, answers
//! to commands, alerts, room names and topics, and the journal's words.
//!
//! The decisions say *what* the team is told, as a [`Text`] value with its facts; [`Text::say`]
//! words it in the team's language. Each language is one exhaustive `match` (`en.rs`,
//! `sv.rs`), so a text added without its translation does not compile, and a decision can be
//! tested for what it says rather than for its wording.
//!
//! The team's language is the first of its `languages` that these texts are written in
//! ([`team_language`]); Hungarian and Ukrainian are languages of automatic replies to clients
//! only, so a team whose languages are `["uk", "sv"]` reads Swedish. The channels' own labels
//! ("SMS", "e-mail") and what a channel or homeserver answered (an error's text) are shown as
//! they come.

mod en;
pub mod journal;
mod sv;

use std::collections::BTreeMap;

use casebridge_config::{Config, Language, TeamConfig};
use casebridge_policies::{commands::CommandError, inbound::ReplyKind};
use chrono::{DateTime, Utc};

use crate::store::{CaseStatus, InvitationProblem};

/// A message for the case team, possibly highlighting people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamNotice {
    /// Plain text.
    pub body: String,
    /// HTML, when there is markup (mentions).
    pub html: Option<String>,
    /// Matrix IDs to highlight.
    pub mentions: Vec<String>,
}

/// The language team `config` reads: the first of its languages that casebridge's team texts
/// are written in, else English. A team no longer configured reads English.
pub fn team_language(config: Option<&TeamConfig>) -> Language {
    config
        .and_then(|t| t.languages.iter().copied().find(|l| written_in(*l)))
        .unwrap_or(Language::En)
}

/// The language each team reads, by team key.
#[derive(Debug, Clone, Default)]
pub struct Languages(BTreeMap<String, Language>);

impl Languages {
    /// Every configured team's language.
    pub fn of(config: &Config) -> Self {
        Self(
            config
                .teams
                .iter()
                .map(|(key, team)| (key.clone(), team_language(Some(team))))
                .collect(),
        )
    }

    /// The language team `key` reads (English for a team no longer configured).
    pub fn get(&self, key: &str) -> Language {
        self.0.get(key).copied().unwrap_or(Language::En)
    }

    /// `text` as team `key` reads it.
    pub fn say(&self, key: &str, text: &Text) -> String {
        text.say(self.get(key))
    }
}

/// Whether the team's texts are written in `language`.
fn written_in(language: Language) -> bool {
    match language {
        Language::Sv | Language::En => true,
        Language::Hu | Language::Uk => false,
    }
}

/// A time as the team reads it in notices: UTC, to the minute.
fn minute(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// One of a client's addresses, as the case team sees it in a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The client's name on the channel.
    pub name: String,
    /// The channel's label.
    pub label: String,
    /// Replies go here.
    pub replies_here: bool,
    /// Why the client cannot be reached here, if they cannot.
    pub unreachable: Option<String>,
}

/// What `!case` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub number: String,
    pub status: CaseStatus,
    pub team: String,
    pub opened: DateTime<Utc>,
    pub contacts: Vec<Contact>,
    pub from_client: usize,
    pub replies: usize,
    pub automatic: usize,
    pub notes: usize,
    pub assignee: Option<String>,
    pub discreet: bool,
    pub blocked: bool,
    pub merged_into: Option<String>,
}

/// The words of `!case` in one language; [`Summary::lines`] lays them out.
struct SummaryWords {
    /// Before the case number.
    case: &'static str,
    /// Before the team.
    team: &'static str,
    open: &'static str,
    closed: &'static str,
    /// Before when it was opened.
    opened: &'static str,
    /// Before the list of contacts.
    contacts: &'static str,
    /// After the contact replies go to.
    replies_here: &'static str,
    /// Before why a contact cannot be reached.
    unreachable: &'static str,
    /// The counts of messages.
    messages: fn(&Summary) -> String,
    /// Before the assignee.
    assigned: &'static str,
    discreet: &'static str,
    blocked: &'static str,
    /// Before the case it was merged into.
    merged_into: &'static str,
}

impl Summary {
    /// `!case`'s lines in the words `w`.
    fn lines(&self, w: &SummaryWords) -> String {
        let status = match self.status {
            CaseStatus::Open => w.open,
            CaseStatus::Closed => w.closed,
        };
        let contacts: Vec<String> = self
            .contacts
            .iter()
            .map(|c| {
                let mut line = format!("{} ({})", c.name, c.label);
                if c.replies_here {
                    line.push_str(&format!(" ← {}", w.replies_here));
                }
                if let Some(why) = &c.unreachable {
                    line.push_str(&format!(" ⚠ {}: {why}", w.unreachable));
                }
                line
            })
            .collect();
        let mut lines = vec![
            format!(
                "{} {} · {status} · {} {}",
                w.case, self.number, w.team, self.team
            ),
            format!("{} {}", w.opened, minute(&self.opened)),
            format!("{}: {}", w.contacts, contacts.join("; ")),
            (w.messages)(self),
        ];
        if let Some(assignee) = &self.assignee {
            lines.push(format!("{} {assignee}", w.assigned));
        }
        if self.discreet {
            lines.push(w.discreet.to_owned());
        }
        if self.blocked {
            lines.push(w.blocked.to_owned());
        }
        if let Some(into) = &self.merged_into {
            lines.push(format!("{} {into}", w.merged_into));
        }
        lines.join("\n")
    }
}

/// What casebridge tells the case team, with the facts that go into the words.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    test,
    derive(strum::EnumDiscriminants),
    strum_discriminants(name(Kind), derive(strum::EnumIter, Hash))
)]
pub enum Text {
    // A message in a case room that goes nowhere.
    /// A command from someone off the case's team.
    CommandsOnlyForTeam { team: String },
    /// A reply from someone off the case's team.
    WritingOnlyForTeam { team: String },
    /// An edit of a reply.
    EditNotSent,
    /// A file the homeserver did not give us.
    FileNotFetched,
    /// A message type that has no form on any channel (a poll, a location).
    MessageTypeNotSent { msgtype: String },
    /// The client's channel runs on no bridge of this gateway.
    ChannelNotRunning { instance: String },
    /// A file for a channel that carries none.
    NoFilesOn { label: String },
    /// A file of a type the channel does not carry.
    FileTypeNotCarried {
        label: String,
        mime: String,
        filename: String,
    },
    /// The channel's reply window is closed: since when (`None`: it never opened), and
    /// whether templates may still go.
    WindowClosed {
        label: String,
        since: Option<DateTime<Utc>>,
        templates: bool,
    },
    /// A reply held because it names contacts off the office's list.
    Held { found: Vec<String> },

    // Delivery.
    /// The channel refused a reply for good; `unreachable`: the address is flagged.
    NotDelivered {
        label: String,
        reason: String,
        unreachable: bool,
    },
    /// A reply keeps failing for now.
    DeliveryDelayed { label: String, reason: String },
    /// The channel reports the reply reached the client.
    Delivered { label: String, at: DateTime<Utc> },
    /// A reply went out in several messages.
    SentInParts { parts: usize, label: String },
    /// A client's image that could not be cleaned of hidden data.
    ImageWithheld {
        filename: String,
        mime: String,
        reason: String,
    },
    /// A client's file larger than the homeserver takes.
    FileTooLarge {
        filename: String,
        mime: String,
        size: i64,
    },

    // A new address.
    /// It came with this case's invitation.
    JoinedByInvitation { name: String },
    /// It came with an invitation that does not hold.
    InvitationRefused {
        name: String,
        why: InvitationProblem,
    },
    /// It answered the office's message in this case.
    JoinedByAnswer { name: String },
    /// It named another case, which does not know it.
    CaseHintIgnored { name: String, named: String },
    /// Part of its message could not be read.
    PartUnreadable { name: String, problem: String },

    // Policies.
    /// An automatic reply went to the client.
    AutoReplySent {
        label: String,
        kind: ReplyKind,
        text: String,
    },
    /// An emergency word in a client's message, in the case room.
    Emergency {
        keyword: String,
        replied: bool,
        on_call: Vec<String>,
    },
    /// The same, in the team's on-call room.
    EmergencyAlert {
        case: String,
        label: String,
        keyword: String,
        alias: String,
        on_call: Vec<String>,
    },

    // Commands.
    /// `!help`.
    Help,
    /// A command that does not parse.
    CommandRefused(CommandError),
    /// `!case`.
    Summary(Summary),
    /// `!close`.
    Closed { case: String, by: String },
    /// `!reopen`.
    Reopened { case: String, by: String },
    /// `!hold on` / `!hold off`.
    Hold { on: bool, by: String },
    /// `!block`.
    Blocked,
    /// `!unblock`.
    Unblocked,
    /// `!note`.
    NoteRecorded,
    /// `!send` with a reply held.
    HeldReplySent { by: String },
    /// `!send` with none.
    NoHeldReply,
    /// `!discreet on`.
    DiscreetOn {
        sender_name: String,
        subject: String,
    },
    /// `!discreet off`.
    DiscreetOff,
    /// `!incident` without an incident room.
    IncidentNowhere { team: String },
    /// `!incident` with one.
    IncidentPosted,
    /// The report in the incident room.
    IncidentReport {
        case: String,
        by: String,
        text: String,
        alias: String,
    },
    /// A channel of the team refuses the office's credentials (found by the gateway's checks):
    /// clients who write there are not read and replies wait until IT fixes it.
    ChannelRefused {
        channel: String,
        instance: String,
        what: String,
    },
    /// The channel takes the office's credentials again.
    ChannelWorksAgain { channel: String, instance: String },
    /// `!assign` of someone off the team.
    NotOnTeam { user: String, team: String },
    /// `!assign`.
    Assigned {
        case: String,
        user: String,
        by: String,
    },
    /// `!via` of a channel the client has no address on.
    NoAddressOn { channel: String, known: Vec<String> },
    /// `!via`.
    RepliesGoTo { name: String, label: String },
    /// `!invite` of a channel no bridge runs.
    NoBridgeFor { channel: String },
    /// `!invite`.
    Invitation {
        label: String,
        link: String,
        case: String,
        expires: DateTime<Utc>,
    },
    /// `!invite` on a channel without links.
    NoInvitationLinks { label: String },
    /// `!merge` of this case.
    MergeSelf { number: String },
    /// `!merge` of an unknown case.
    MergeUnknown { number: String },
    /// `!merge` of another team's case.
    MergeOtherTeam {
        number: String,
        theirs: String,
        ours: String,
    },
    /// `!merge` of a case merged already.
    MergedAlready { number: String, into: String },
    /// In the case merged away.
    MergedAway {
        into: String,
        by: String,
        names: Vec<String>,
    },
    /// In the case merged into; `replies_stay`: the case had a client already.
    MergedHere {
        number: String,
        by: String,
        names: Vec<String>,
        replies_stay: bool,
    },

    // Rooms.
    /// A case room's name before it has a client.
    RoomName { case: String },
    /// A case room's topic.
    RoomTopic {
        case: String,
        label: String,
        team: String,
    },
    /// The reason on a message removed by the retention rules.
    Purged,
}

impl Text {
    /// The text in `language` (English where casebridge has no team texts in it).
    pub fn say(&self, language: Language) -> String {
        match language {
            Language::Sv => sv::say(self),
            Language::En | Language::Hu | Language::Uk => en::say(self),
        }
    }

    /// The text as a room message in `language`: with HTML and the people it highlights where
    /// it mentions someone.
    pub fn notice(&self, language: Language) -> TeamNotice {
        let html = match language {
            Language::Sv => sv::html(self),
            Language::En | Language::Hu | Language::Uk => en::html(self),
        };
        let mentions = match self {
            Self::Emergency { on_call, .. } | Self::EmergencyAlert { on_call, .. } => {
                on_call.clone()
            }
            _ => Vec::new(),
        };
        TeamNotice {
            body: self.say(language),
            html,
            mentions,
        }
    }
}

/// A Matrix user as a link that highlights them.
fn pill(user: &str) -> String {
    format!("<a href=\"https://matrix.to/#/{user}\">{user}</a>")
}

/// `users` as links, after a space; nothing for nobody.
fn pills(users: &[String]) -> String {
    if users.is_empty() {
        return String::new();
    }
    let links: Vec<String> = users.iter().map(|u| pill(u)).collect();
    format!(" {}", links.join(", "))
}

/// `users` after a space; nothing for nobody.
fn mentions(users: &[String]) -> String {
    if users.is_empty() {
        String::new()
    } else {
        format!(" {}", users.join(", "))
    }
}

#[cfg(test)]
mod tests;
