//! Commands the case team types in a case room. A message that starts with `!` and a word is a
//! command, never a text for the client: an unknown one is refused rather than sent.

use ruma::OwnedUserId;

/// A case-room command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `!help`
    Help,
    /// `!case`: a summary of the case.
    Case,
    /// `!close`
    Close,
    /// `!reopen`
    Reopen,
    /// `!assign @user`: hand the case to a colleague.
    Assign(OwnedUserId),
    /// `!via CHANNEL`: reply on this channel (or bridge instance) from now on.
    Via(String),
    /// `!discreet on|off`
    Discreet(bool),
    /// `!block`: stop relaying the client's messages.
    Block,
    /// `!unblock`
    Unblock,
    /// `!note TEXT`: recorded, never sent.
    Note(String),
    /// `!incident TEXT`: an incident report.
    Incident(String),
    /// `!send`: send the held reply as written.
    Send,
    /// `!hold on|off`: legal hold, retention purges nothing of the case.
    Hold(bool),
    /// `!invite CHANNEL`: a one-time link that joins the client's account on that channel (a
    /// Telegram chat) to this case.
    Invite(String),
    /// `!merge CASE`: the other case's addresses join this case; it closes, pointing here.
    Merge(String),
}

/// Why a text that looks like a command is not one; the gateway words it for the team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `!close now`: a command that takes nothing was given something.
    TakesNoArgument { word: String },
    /// `!note` without its text.
    NeedsText { word: String },
    /// `!assign` without a Matrix ID.
    NeedsUser,
    /// `!via` without one channel.
    ViaNeedsChannel,
    /// `!invite` without one channel.
    InviteNeedsChannel,
    /// `!merge` without a case number.
    NeedsCaseNumber,
    /// `!discreet` or `!hold` without `on` or `off`.
    NeedsOnOff { word: String },
    /// A word that is no command.
    Unknown { word: String },
}

/// Reads `body` as a command: `None` if it is not one (a text for the client), an error that
/// says what is wrong if it looks like one but is not right.
pub fn parse(body: &str) -> Option<Result<Command, CommandError>> {
    let body = body.trim();
    let rest = body.strip_prefix('!')?;
    let word_end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    if word_end == 0 {
        return None;
    }
    let (word, argument) = rest.split_at(word_end);
    let argument = argument.trim();
    let word = word.to_ascii_lowercase();
    let no_argument = |command: Command| {
        if argument.is_empty() {
            Ok(command)
        } else {
            Err(CommandError::TakesNoArgument { word: word.clone() })
        }
    };
    let needs_text = |make: fn(String) -> Command| {
        if argument.is_empty() {
            Err(CommandError::NeedsText { word: word.clone() })
        } else {
            Ok(make(argument.to_owned()))
        }
    };
    Some(match word.as_str() {
        "help" => no_argument(Command::Help),
        "case" => no_argument(Command::Case),
        "close" => no_argument(Command::Close),
        "reopen" => no_argument(Command::Reopen),
        "block" => no_argument(Command::Block),
        "unblock" => no_argument(Command::Unblock),
        "send" => no_argument(Command::Send),
        "note" => needs_text(Command::Note),
        "incident" => needs_text(Command::Incident),
        "assign" => {
            // Clients such as Element send a mention as the user's display name in `body`;
            // the caller passes the Matrix ID from the formatted body or mentions instead.
            OwnedUserId::try_from(argument)
                .map(Command::Assign)
                .map_err(|_| CommandError::NeedsUser)
        }
        "via" => {
            if argument.is_empty() || argument.contains(char::is_whitespace) {
                Err(CommandError::ViaNeedsChannel)
            } else {
                Ok(Command::Via(argument.to_ascii_lowercase()))
            }
        }
        "invite" => {
            if argument.is_empty() || argument.contains(char::is_whitespace) {
                Err(CommandError::InviteNeedsChannel)
            } else {
                Ok(Command::Invite(argument.to_ascii_lowercase()))
            }
        }
        "merge" => {
            let number = argument.trim_start_matches('[').trim_end_matches(']');
            let ok = number.split_once('-').is_some_and(|(y, n)| {
                y.len() == 4
                    && !n.is_empty()
                    && y.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit())
            });
            if ok {
                Ok(Command::Merge(number.to_owned()))
            } else {
                Err(CommandError::NeedsCaseNumber)
            }
        }
        "discreet" => match argument.to_ascii_lowercase().as_str() {
            "on" => Ok(Command::Discreet(true)),
            "off" => Ok(Command::Discreet(false)),
            _ => Err(CommandError::NeedsOnOff { word: word.clone() }),
        },
        "hold" => match argument.to_ascii_lowercase().as_str() {
            "on" => Ok(Command::Hold(true)),
            "off" => Ok(Command::Hold(false)),
            _ => Err(CommandError::NeedsOnOff { word: word.clone() }),
        },
        _ => Err(CommandError::Unknown { word: word.clone() }),
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, Command, CommandError};

    #[test]
    fn commands_and_texts() {
        assert_eq!(parse("Hej! Vi ses."), None);
        assert_eq!(parse("!!! viktigt"), None);
        assert_eq!(parse("! ok"), None);
        assert_eq!(parse("!help"), Some(Ok(Command::Help)));
        assert_eq!(parse("  !Discreet ON "), Some(Ok(Command::Discreet(true))));
        assert_eq!(
            parse("!note ringde mamman, återkommer"),
            Some(Ok(Command::Note("ringde mamman, återkommer".into())))
        );
        assert_eq!(
            parse("!assign @bo:example.org"),
            Some(Ok(Command::Assign("@bo:example.org".try_into().unwrap())))
        );
        assert_eq!(parse("!via SMS"), Some(Ok(Command::Via("sms".into()))));
        assert_eq!(
            parse("!invite Telegram"),
            Some(Ok(Command::Invite("telegram".into())))
        );
        assert_eq!(
            parse("!merge [2026-000123]"),
            Some(Ok(Command::Merge("2026-000123".into())))
        );
        assert!(parse("!merge 123").unwrap().is_err());
        assert!(parse("!merge").unwrap().is_err());
        assert!(parse("!invite").unwrap().is_err());
        assert!(parse("!note").unwrap().is_err());
        assert!(parse("!close now").unwrap().is_err());
        assert!(parse("!assign Bo").unwrap().is_err());
        assert_eq!(
            parse("!hejsan").unwrap().unwrap_err(),
            CommandError::Unknown {
                word: "hejsan".into()
            }
        );
        assert_eq!(
            parse("!hold maybe").unwrap().unwrap_err(),
            CommandError::NeedsOnOff {
                word: "hold".into()
            }
        );
    }
}
