//! The team's texts in English.

use casebridge_policies::{commands::CommandError, inbound::ReplyKind};

use super::{mentions, minute, pills, SummaryWords, Text};
use crate::store::InvitationProblem;
use casebridge_policies::outbound::escape_html as escape;

/// `text` in English. One `match` over every text, long by design: the whole table of a
/// language in one place, where a translator reads it.
pub(super) fn say(text: &Text) -> String {
    match text {
        Text::CommandsOnlyForTeam { team } => {
            format!(
                "Only members of team {team} can use commands in a case room. Nothing was done."
            )
        }
        Text::WritingOnlyForTeam { team } => {
            format!(
                "Only members of team {team} can write to the client. This message was not sent."
            )
        }
        Text::EditNotSent => "Edits are not sent to the client: the first version was sent. \
                              Send a new message to correct it."
            .to_owned(),
        Text::FileNotFetched => "The file could not be fetched from the homeserver (or is \
                                 encrypted, or an image that cannot be read). Nothing was sent."
            .to_owned(),
        Text::MessageTypeNotSent { msgtype } => {
            format!(
                "Messages of type {msgtype} cannot be sent to the client yet. Nothing was sent."
            )
        }
        Text::ChannelNotRunning { instance } => format!(
            "The client's channel ({instance}) is not running on this gateway. Nothing was sent."
        ),
        Text::NoFilesOn { label } => {
            format!("Files cannot be sent to the client on {label}. Nothing was sent.")
        }
        Text::FileTypeNotCarried {
            label,
            mime,
            filename,
        } => format!("{label} does not carry files of type {mime} ({filename}). Nothing was sent."),
        Text::WindowClosed {
            label,
            since,
            templates,
        } => {
            let when = match since {
                Some(since) => format!("closed at {}", minute(since)),
                None => "not open: the client has not written on this channel".to_owned(),
            };
            let what = if *templates {
                "Only the office's approved templates can be sent until the client writes again."
            } else {
                "Nothing can be sent until the client writes again."
            };
            format!("{label}'s window for replies is {when}. {what} Nothing was sent.")
        }
        Text::Held { found } => format!(
            "Held, not sent: this reply contains {}, which is not one of the office's numbers \
             or addresses. A private number or address must not reach a client. Type !send to \
             send it as written, or write the reply again.",
            found.join(", ")
        ),
        Text::NotDelivered {
            label,
            reason,
            unreachable,
        } => {
            let notice = format!("Not delivered to the client ({label}): {reason}");
            if *unreachable {
                format!(
                    "{notice}\nThe case is flagged: the client cannot be reached on {label} until \
                     they write from there again. !via another channel, if they have one."
                )
            } else {
                notice
            }
        }
        Text::DeliveryDelayed { label, reason } => format!(
            "Delivery to the client ({label}) is delayed: {reason}. casebridge keeps trying and \
             nothing is lost; the replies after it wait their turn."
        ),
        Text::Delivered { label, at } => {
            format!("Delivered to the client ({label}) at {}.", minute(at))
        }
        Text::SentInParts { parts, label } => format!(
            "Sent as {parts} messages ({label}): the reply is longer than one message may be here."
        ),
        Text::ImageWithheld {
            filename,
            mime,
            reason,
        } => format!(
            "The client sent {filename} ({mime}), an image that could not be cleaned of hidden \
             data such as a location: {reason}. It is kept in the case records and not shown here."
        ),
        Text::FileTooLarge {
            filename,
            mime,
            size,
        } => format!(
            "The client sent {filename} ({mime}, {size} bytes), larger than the homeserver \
             accepts. It is kept in the case records."
        ),
        Text::JoinedByInvitation { name } => format!(
            "{name} opened the invitation made for this case, so the address joined this case. \
             Replies now go to this address, where the client wrote last."
        ),
        Text::InvitationRefused { name, why } => {
            let why = match why {
                InvitationProblem::Unknown => "the office does not know",
                InvitationProblem::OtherChannel => "was made for another channel",
                InvitationProblem::Used => "was used already",
                InvitationProblem::Expired => "has expired",
                InvitationProblem::CaseGone => "belongs to a case that is gone",
            };
            format!(
                "{name} came with an invitation link that {why}, so this is a new case. If the \
                 client belongs to another case, !merge this case there, or !invite them again."
            )
        }
        Text::JoinedByAnswer { name } => format!(
            "{name} wrote for the first time, answering the office's message in this case, so \
             the address joined this case. Replies now go to this address, where the client \
             wrote last."
        ),
        Text::CaseHintIgnored { name, named } => format!(
            "This message names case {named}, but {name} is not an address of that case, so it \
             opened this new case. If it belongs to case {named}, handle it there."
        ),
        Text::PartUnreadable { name, problem } => format!(
            "Part of {name}'s message could not be read: {problem}. The record keeps the \
             original whole (casebridge records export)."
        ),
        Text::AutoReplySent { label, kind, text } => {
            let kind = match kind {
                ReplyKind::OutsideHours => "outside office hours",
                ReplyKind::Acknowledgement => "acknowledgement",
                ReplyKind::Emergency => "emergency information",
                ReplyKind::Blocked => "blocked client",
            };
            format!("Automatic reply sent to the client ({label}, {kind}):\n\n{text}")
        }
        Text::Emergency {
            keyword,
            replied,
            on_call,
        } => format!(
            "⚠ Emergency: the client's message matches «{keyword}». {}{}",
            emergency_after(*replied),
            on_call_line(&on_call.join(", "))
        ),
        Text::EmergencyAlert {
            case,
            label,
            keyword,
            alias,
            on_call,
        } => format!(
            "⚠ Emergency in case {case} ({label}): the client's message matches «{keyword}». \
             Case room: https://matrix.to/#/{alias}{}",
            mentions(on_call)
        ),
        Text::Help => HELP.to_owned(),
        Text::CommandRefused(error) => refused(error),
        Text::Summary(summary) => summary.lines(&SUMMARY),
        Text::Closed { case, by } => format!("Case {case} closed by {by}."),
        Text::Reopened { case, by } => format!("Case {case} reopened by {by}."),
        Text::Hold { on: true, by } => format!(
            "Legal hold on, set by {by}: retention purges nothing of this case until !hold off."
        ),
        Text::Hold { on: false, by } => {
            format!("Legal hold off, lifted by {by}: the retention rules apply again.")
        }
        Text::Blocked => "Blocked: the client's messages are recorded but no longer shown here, \
                          and the client gets only the team's neutral answer (at most once a \
                          day). Emergency words still alert the team. !unblock undoes it."
            .to_owned(),
        Text::Unblocked => "Unblocked: the client's messages are shown here again.".to_owned(),
        Text::NoteRecorded => "Internal note recorded; it is not sent to the client.".to_owned(),
        Text::HeldReplySent { by } => {
            format!("The held reply is sent as written, confirmed by {by}.")
        }
        Text::NoHeldReply => "No reply is held in this case.".to_owned(),
        Text::DiscreetOn {
            sender_name,
            subject,
        } => format!(
            "Discreet mode on: nothing automatic goes to the client, the sender shows as \
             «{sender_name}» with the subject «{subject}», and texts carry no case number."
        ),
        Text::DiscreetOff => {
            "Discreet mode off: automatic replies and the office's sender name are back.".to_owned()
        }
        Text::ChannelRefused {
            channel,
            instance,
            what,
        } => format!(
            "The {channel} channel (bridges.{instance}) cannot log in: {what}. Until IT fixes \
             it, clients who write there are not read and replies to them wait. Ask the \
             clients you can reach another way to use another channel."
        ),
        Text::ChannelWorksAgain { channel, instance } => format!(
            "The {channel} channel (bridges.{instance}) works again: what clients wrote \
             meanwhile is read now and the waiting replies go out."
        ),
        Text::IncidentNowhere { team } => format!(
            "Incident report recorded. No incident room is configured \
             (teams.{team}.incident_room), so it was posted nowhere else."
        ),
        Text::IncidentPosted => {
            "Incident report recorded and posted to the incident room.".to_owned()
        }
        Text::IncidentReport {
            case,
            by,
            text,
            alias,
        } => format!(
            "Incident report in case {case} by {by}: {text}\nCase room: https://matrix.to/#/{alias}"
        ),
        Text::NotOnTeam { user, team } => {
            format!("{user} is not a member of team {team}; the case stays as it was.")
        }
        Text::Assigned { case, user, by } => format!("Case {case} assigned to {user} by {by}."),
        Text::NoAddressOn { channel, known } => format!(
            "The client has no {channel} address in this case (known: {}).",
            known.join(", ")
        ),
        Text::RepliesGoTo { name, label } => format!("Replies now go to {name} ({label})."),
        Text::NoBridgeFor { channel } => {
            format!("No {channel} bridge runs on this gateway: nothing to invite the client to.")
        }
        Text::Invitation {
            label,
            link,
            case,
            expires,
        } => format!(
            "Invitation for the client on {label}: {link}\nSend it to the client. When they open \
             it (and press Start), their {label} account joins case {case}. It works once, until \
             {}.",
            minute(expires)
        ),
        Text::NoInvitationLinks { label } => format!(
            "{label} cannot carry invitation links (or does not know its own address yet). \
             Nothing was made."
        ),
        Text::MergeSelf { number } => format!("{number} is this case."),
        Text::MergeUnknown { number } => {
            format!("There is no case {number}; nothing was merged.")
        }
        Text::MergeOtherTeam {
            number,
            theirs,
            ours,
        } => format!(
            "Case {number} belongs to team {theirs}, not {ours}: only a team's own cases merge."
        ),
        Text::MergedAlready { number, into } => {
            format!("Case {number} was merged into case {into} already.")
        }
        Text::MergedAway { into, by, names } => format!(
            "Merged into case {into} by {by}: {} now belong to case {into}, and their new \
             messages go there. This case is closed; its records stay here.",
            names.join(", ")
        ),
        Text::MergedHere {
            number,
            by,
            names,
            replies_stay,
        } => format!(
            "Case {number} merged into this case by {by}: {} now write here{}. Case {number}'s \
             earlier messages stay in its own record.",
            if names.is_empty() {
                "no addresses".to_owned()
            } else {
                names.join(", ")
            },
            if *replies_stay {
                "; replies still go where the client wrote last (!via to choose)"
            } else {
                ""
            }
        ),
        Text::RoomName { case } => format!("Case {case}"),
        Text::RoomTopic { case, label, team } => {
            format!("Case {case} · {label} · answered by team {team}")
        }
        Text::Purged => "Removed under the office's retention rules".to_owned(),
    }
}

/// `text`'s HTML in English, for a text with links that highlight people.
pub(super) fn html(text: &Text) -> Option<String> {
    match text {
        Text::Emergency {
            keyword,
            replied,
            on_call,
        } => Some(format!(
            "<strong>⚠ Emergency</strong>: the client's message matches «{}». {}{}",
            escape(keyword),
            emergency_after(*replied),
            on_call_line(pills(on_call).trim_start())
        )),
        Text::EmergencyAlert {
            case,
            label,
            keyword,
            alias,
            on_call,
        } => Some(format!(
            "<strong>⚠ Emergency in case {case}</strong> ({}): the client's message matches \
             «{}». Case room: <a href=\"https://matrix.to/#/{alias}\">{alias}</a>{}",
            escape(label),
            escape(keyword),
            pills(on_call)
        )),
        _ => None,
    }
}

fn emergency_after(replied: bool) -> &'static str {
    if replied {
        "The client was sent the emergency numbers."
    } else {
        "Nothing was sent to the client automatically."
    }
}

fn on_call_line(who: &str) -> String {
    if who.is_empty() {
        String::new()
    } else {
        format!(" On call: {who}.")
    }
}

fn refused(error: &CommandError) -> String {
    match error {
        CommandError::TakesNoArgument { word } => format!("!{word} takes no argument"),
        CommandError::NeedsText { word } => format!("!{word} needs a text: !{word} TEXT"),
        CommandError::NeedsUser => "!assign needs a Matrix ID: !assign @user:server".to_owned(),
        CommandError::ViaNeedsChannel => {
            "!via needs one channel: !via sms, !via email, !via telegram".to_owned()
        }
        CommandError::InviteNeedsChannel => {
            "!invite needs one channel: !invite telegram".to_owned()
        }
        CommandError::NeedsCaseNumber => {
            "!merge needs a case number: !merge 2026-000123".to_owned()
        }
        CommandError::NeedsOnOff { word } => format!("!{word} needs on or off"),
        CommandError::Unknown { word } => {
            format!("unknown command !{word}; nothing was sent. !help lists the commands")
        }
    }
}

/// The words of `!case`.
const SUMMARY: SummaryWords = SummaryWords {
    case: "Case",
    team: "team",
    open: "open",
    closed: "closed",
    opened: "Opened",
    contacts: "Contacts",
    replies_here: "replies go here",
    unreachable: "unreachable",
    messages: |s| {
        format!(
            "Messages: {} from the client, {} replies, {} automatic replies, {} notes",
            s.from_client, s.replies, s.automatic, s.notes
        )
    },
    assigned: "Assigned to",
    discreet: "Discreet mode is on",
    blocked: "The client is blocked",
    merged_into: "Merged into case",
};

/// What `!help` says.
const HELP: &str = "Commands in a case room (only the case team may use them):
!case — summary of the case
!close / !reopen — close the case, or open it again
!assign @user:server — hand the case to a colleague (they are invited)
!via sms|email|telegram — the channel replies go out on
!discreet on|off — nothing automatic to the client, neutral sender, no case number
!block / !unblock — stop relaying a client's messages (they get the team's neutral answer)
!note TEXT — an internal note: recorded, never sent
!incident TEXT — an incident report: recorded and posted to the incident room
!hold on|off — legal hold: retention purges nothing of this case
!invite telegram — a one-time link for the client: their Telegram chat joins this case
!merge 2026-000123 — the same client wrote from another address: that case's addresses join this case
!send — send a held reply (one naming a number or address off the office's list) as written
!help — this list";
