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

/// What `!help` says.
pub const HELP: &str = "Commands in a case room (only the case team may use them):
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

/// Reads `body` as a command: `None` if it is not one (a text for the client), an error that
/// says what is wrong if it looks like one but is not right.
pub fn parse(body: &str) -> Option<Result<Command, String>> {
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
            Err(format!("!{word} takes no argument"))
        }
    };
    let needs_text = |make: fn(String) -> Command| {
        if argument.is_empty() {
            Err(format!("!{word} needs a text: !{word} TEXT"))
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
                .map_err(|_| "!assign needs a Matrix ID: !assign @user:server".to_owned())
        }
        "via" => {
            if argument.is_empty() || argument.contains(char::is_whitespace) {
                Err("!via needs one channel: !via sms, !via email, !via telegram".to_owned())
            } else {
                Ok(Command::Via(argument.to_ascii_lowercase()))
            }
        }
        "invite" => {
            if argument.is_empty() || argument.contains(char::is_whitespace) {
                Err("!invite needs one channel: !invite telegram".to_owned())
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
                Err("!merge needs a case number: !merge 2026-000123".to_owned())
            }
        }
        "discreet" => match argument.to_ascii_lowercase().as_str() {
            "on" => Ok(Command::Discreet(true)),
            "off" => Ok(Command::Discreet(false)),
            _ => Err("!discreet needs on or off".to_owned()),
        },
        "hold" => match argument.to_ascii_lowercase().as_str() {
            "on" => Ok(Command::Hold(true)),
            "off" => Ok(Command::Hold(false)),
            _ => Err("!hold needs on or off".to_owned()),
        },
        _ => Err(format!(
            "unknown command !{word}; nothing was sent. !help lists the commands"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::{parse, Command};

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
            "unknown command !hejsan; nothing was sent. !help lists the commands"
        );
    }
}
