//! What a message in a room causes, decided from facts alone: the transaction handler gathers
//! the facts (sender, case, team, content, the policies' verdicts), asks [`plan`] and carries
//! out the [`RoomPlan`].

use casebridge_bridges::{Attachment, MediaKinds};
use casebridge_policies::{
    channel::WindowVerdict,
    commands::{Command, CommandError},
    outbound::OutboundText,
    privacy::Outcome,
};

use crate::texts::Text;

/// The facts about one room message that decide what it causes.
pub(super) struct RoomFacts<'a> {
    /// Sent by the bot or one of the ghosts: our own output.
    pub from_appservice: bool,
    /// The case whose room it is in; `None`: the room is no case's.
    pub case: Option<CaseFacts<'a>>,
    /// The command its text holds, parsed or refused; `None`: it holds none.
    pub command: Option<Result<Command, CommandError>>,
    /// It edits an earlier message.
    pub edit: bool,
    /// What kind of message it is.
    pub content: Content<'a>,
}

/// What is known of the case a room message is in.
pub(super) struct CaseFacts<'a> {
    /// The team that answers the case.
    pub team: &'a str,
    /// The sender is a member of that team.
    pub on_team: bool,
    /// The channel the client was last heard from; `None`: no client yet.
    pub client: Option<ClientChannel<'a>>,
    /// The team's privacy policy's verdict on the message's text.
    pub verdict: Outcome,
}

/// The channel a reply to the client would go out on.
pub(super) struct ClientChannel<'a> {
    /// The bridge instance.
    pub instance: &'a str,
    /// How the case team names the channel.
    pub label: &'a str,
    /// This gateway runs that bridge.
    pub running: bool,
    /// The kinds of file that bridge sends.
    pub media: MediaKinds,
    /// Whether the channel takes a person's reply now, for a channel with a reply window
    /// (Meta's 24 hours); `None`: the channel has none.
    pub window: Option<WindowVerdict>,
}

/// A room message's kind, as far as the plan cares.
pub(super) enum Content<'a> {
    /// Text or an emote: words for the client.
    Text,
    /// A notice: the convention for bot output, never client-facing text.
    Notice,
    /// An image, file, audio or video, as fetched from the homeserver (`None`: it could not be).
    File(Option<&'a Attachment>),
    /// Any other message type, by its `msgtype`.
    Other(&'a str),
}

/// What a room message causes.
#[derive(Debug, PartialEq)]
pub(super) enum RoomPlan {
    /// Nothing: our own output, a room that is no case's, a notice, or a case with no client.
    Ignore,
    /// A team member's command, to run.
    Command(Command),
    /// A team member's command that does not parse: recorded, and answered with the reason.
    RefuseCommand(CommandError),
    /// Nothing goes out; the team is told why in this notice.
    Notice(Text),
    /// A reply to the client.
    Reply(Reply),
}

/// A reply to the client, as it is recorded.
#[derive(Debug, PartialEq)]
pub(super) struct Reply {
    /// The bridge instance it goes out on.
    pub instance: String,
    /// The text after the privacy policy.
    pub text: OutboundText,
    /// The file it carries, if it is one.
    pub attachments: Vec<Attachment>,
    /// Held for a worker's `!send`, with the notice that tells the team why; `None`: it goes
    /// out.
    pub held: Option<Text>,
}

/// What the room message described by `facts` causes.
pub(super) fn plan(facts: RoomFacts<'_>) -> RoomPlan {
    // Our own bot and ghosts: never echoed back.
    if facts.from_appservice {
        return RoomPlan::Ignore;
    }
    let Some(case) = facts.case else {
        return RoomPlan::Ignore;
    };
    let team = case.team;
    if let Some(command) = facts.command {
        if !case.on_team {
            return RoomPlan::Notice(Text::CommandsOnlyForTeam { team: team.into() });
        }
        return match command {
            Ok(command) => RoomPlan::Command(command),
            Err(refusal) => RoomPlan::RefuseCommand(refusal),
        };
    }
    if !case.on_team {
        return RoomPlan::Notice(Text::WritingOnlyForTeam { team: team.into() });
    }
    if facts.edit {
        return RoomPlan::Notice(Text::EditNotSent);
    }
    let attachments = match facts.content {
        Content::Text => Vec::new(),
        Content::Notice => return RoomPlan::Ignore,
        Content::File(Some(file)) => vec![file.clone()],
        Content::File(None) => return RoomPlan::Notice(Text::FileNotFetched),
        Content::Other(msgtype) => {
            return RoomPlan::Notice(Text::MessageTypeNotSent {
                msgtype: msgtype.into(),
            })
        }
    };
    let Some(client) = case.client else {
        return RoomPlan::Ignore;
    };
    if !client.running {
        return RoomPlan::Notice(Text::ChannelNotRunning {
            instance: client.instance.into(),
        });
    }
    if !attachments.is_empty() && !client.media.any() {
        return RoomPlan::Notice(Text::NoFilesOn {
            label: client.label.into(),
        });
    }
    if let Some(file) = attachments.iter().find(|f| !client.media.accepts(&f.mime)) {
        return RoomPlan::Notice(Text::FileTypeNotCarried {
            label: client.label.into(),
            mime: file.mime.clone(),
            filename: file.filename.clone(),
        });
    }
    if let Some(WindowVerdict::Closed { since, templates }) = client.window {
        return RoomPlan::Notice(Text::WindowClosed {
            label: client.label.into(),
            since,
            templates,
        });
    }
    let (text, held) = match case.verdict {
        Outcome::Send(text) => (text, None),
        Outcome::Hold { text, found } => (text, Some(Text::Held { found })),
    };
    RoomPlan::Reply(Reply {
        instance: client.instance.to_owned(),
        text,
        attachments,
        held,
    })
}

#[cfg(test)]
mod tests {
    use casebridge_bridges::{Attachment, MediaKinds};
    use casebridge_policies::channel::{Author, ReplyWindow, WindowVerdict};
    use casebridge_policies::{
        commands::{Command, CommandError},
        outbound::OutboundText,
        privacy::Outcome,
    };
    use chrono::{TimeZone, Utc};

    use super::{plan, CaseFacts, ClientChannel, Content, Reply, RoomFacts, RoomPlan};
    use crate::texts::Text;

    fn text(body: &str) -> OutboundText {
        OutboundText {
            body: body.to_owned(),
            html: None,
        }
    }

    fn sms() -> ClientChannel<'static> {
        ClientChannel {
            instance: "sms",
            label: "SMS",
            running: true,
            media: MediaKinds::NONE,
            window: None,
        }
    }

    /// A team member's text reply in a case of team `social` whose client wrote by SMS.
    fn reply(body: &str) -> RoomFacts<'static> {
        RoomFacts {
            from_appservice: false,
            case: Some(CaseFacts {
                team: "social",
                on_team: true,
                client: Some(sms()),
                verdict: Outcome::Send(text(body)),
            }),
            command: None,
            edit: false,
            content: Content::Text,
        }
    }

    fn notice(plan: RoomPlan) -> Text {
        match plan {
            RoomPlan::Notice(notice) => notice,
            other => panic!("expected a notice, got {other:?}"),
        }
    }

    #[test]
    fn a_members_text_is_a_reply_on_the_clients_channel() {
        assert_eq!(
            plan(reply("Hello")),
            RoomPlan::Reply(Reply {
                instance: "sms".to_owned(),
                text: text("Hello"),
                attachments: Vec::new(),
                held: None,
            })
        );
    }

    #[test]
    fn our_own_messages_and_rooms_of_no_case_cause_nothing() {
        let mut ours = reply("Hello");
        ours.from_appservice = true;
        assert_eq!(plan(ours), RoomPlan::Ignore);
        let mut elsewhere = reply("Hello");
        elsewhere.case = None;
        assert_eq!(plan(elsewhere), RoomPlan::Ignore);
    }

    #[test]
    fn notices_and_cases_without_a_client_cause_nothing() {
        let mut bot_style = reply("Hello");
        bot_style.content = Content::Notice;
        assert_eq!(plan(bot_style), RoomPlan::Ignore);
        let mut no_client = reply("Hello");
        no_client.case.as_mut().unwrap().client = None;
        assert_eq!(plan(no_client), RoomPlan::Ignore);
    }

    #[test]
    fn someone_off_the_team_is_refused_with_a_notice() {
        let mut outsider = reply("Hello");
        outsider.case.as_mut().unwrap().on_team = false;
        assert_eq!(
            notice(plan(outsider)),
            Text::WritingOnlyForTeam {
                team: "social".into()
            }
        );
        let mut outsider_command = reply("!close");
        outsider_command.case.as_mut().unwrap().on_team = false;
        outsider_command.command = Some(Ok(Command::Close));
        assert_eq!(
            notice(plan(outsider_command)),
            Text::CommandsOnlyForTeam {
                team: "social".into()
            }
        );
    }

    #[test]
    fn a_command_is_run_or_refused_never_sent() {
        let mut close = reply("!close");
        close.command = Some(Ok(Command::Close));
        assert_eq!(plan(close), RoomPlan::Command(Command::Close));
        let mut unknown = reply("!frobnicate");
        let refusal = CommandError::Unknown {
            word: "frobnicate".into(),
        };
        unknown.command = Some(Err(refusal.clone()));
        assert_eq!(plan(unknown), RoomPlan::RefuseCommand(refusal));
    }

    #[test]
    fn a_reply_naming_a_private_number_is_held_with_the_reason() {
        let mut private = reply("Call me on 070-123 45 67");
        private.case.as_mut().unwrap().verdict = Outcome::Hold {
            text: text("Call me on 070-123 45 67"),
            found: vec!["070-123 45 67".to_owned()],
        };
        let RoomPlan::Reply(reply) = plan(private) else {
            panic!("a held reply is still recorded");
        };
        assert_eq!(reply.text, text("Call me on 070-123 45 67"));
        assert_eq!(
            reply.held,
            Some(Text::Held {
                found: vec!["070-123 45 67".to_owned()]
            })
        );
    }

    #[test]
    fn edits_and_unsupported_messages_are_explained_not_sent() {
        let mut edit = reply("Hello again");
        edit.edit = true;
        assert_eq!(notice(plan(edit)), Text::EditNotSent);
        let mut poll = reply("");
        poll.content = Content::Other("m.location");
        assert_eq!(
            notice(plan(poll)),
            Text::MessageTypeNotSent {
                msgtype: "m.location".into()
            }
        );
        let mut lost_file = reply("");
        lost_file.content = Content::File(None);
        assert_eq!(notice(plan(lost_file)), Text::FileNotFetched);
    }

    #[test]
    fn files_go_only_on_a_channel_that_sends_them() {
        let file = Attachment {
            filename: "form.pdf".to_owned(),
            mime: "application/pdf".to_owned(),
            data: b"%PDF".to_vec(),
        };
        let mut on_sms = reply("");
        on_sms.content = Content::File(Some(&file));
        assert_eq!(
            notice(plan(on_sms)),
            Text::NoFilesOn {
                label: "SMS".into()
            }
        );
        let mut on_mail = reply("");
        on_mail.content = Content::File(Some(&file));
        on_mail.case.as_mut().unwrap().client = Some(ClientChannel {
            instance: "mail",
            label: "e-mail",
            running: true,
            media: MediaKinds::ALL,
            window: None,
        });
        let RoomPlan::Reply(reply) = plan(on_mail) else {
            panic!("a file for a channel that sends files is a reply");
        };
        assert_eq!(
            (reply.instance.as_str(), reply.attachments),
            ("mail", vec![file])
        );
    }

    #[test]
    fn a_file_of_a_kind_the_channel_does_not_carry_is_not_sent() {
        let file = Attachment {
            filename: "plan.pdf".into(),
            mime: "application/pdf".into(),
            data: b"%PDF".to_vec(),
        };
        let mut to_pictures_only = reply("");
        to_pictures_only.content = Content::File(Some(&file));
        to_pictures_only.case.as_mut().unwrap().client = Some(ClientChannel {
            label: "WhatsApp",
            media: MediaKinds {
                images: true,
                ..MediaKinds::NONE
            },
            ..sms()
        });
        assert_eq!(
            notice(plan(to_pictures_only)),
            Text::FileTypeNotCarried {
                label: "WhatsApp".into(),
                mime: "application/pdf".into(),
                filename: "plan.pdf".into()
            }
        );
    }

    #[test]
    fn outside_a_channels_reply_window_nothing_free_form_is_sent() {
        let last = Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0).unwrap();
        let on = |window: ReplyWindow, hours: i64| {
            let now = last + chrono::Duration::hours(hours);
            let mut facts = reply("Hej");
            facts.case.as_mut().unwrap().client = Some(ClientChannel {
                label: "WhatsApp",
                window: Some(window.verdict(Some(last), now, Author::Person)),
                ..sms()
            });
            plan(facts)
        };
        assert!(matches!(on(ReplyWindow::WHATSAPP, 23), RoomPlan::Reply(_)));
        let closed = |since: chrono::DateTime<Utc>, templates: bool| Text::WindowClosed {
            label: "WhatsApp".into(),
            since: Some(since),
            templates,
        };
        assert_eq!(
            notice(on(ReplyWindow::WHATSAPP, 25)),
            closed(last + chrono::Duration::hours(24), true)
        );
        // Messenger: a person's reply still goes (tagged by the bridge) for seven days.
        assert!(matches!(on(ReplyWindow::MESSENGER, 25), RoomPlan::Reply(_)));
        assert_eq!(
            notice(on(ReplyWindow::MESSENGER, 7 * 24)),
            closed(last + chrono::Duration::days(7), false)
        );
        // A client who never wrote on the channel.
        let mut never = reply("Hej");
        never.case.as_mut().unwrap().client = Some(ClientChannel {
            label: "WhatsApp",
            window: Some(WindowVerdict::Closed {
                since: None,
                templates: true,
            }),
            ..sms()
        });
        assert_eq!(
            notice(plan(never)),
            Text::WindowClosed {
                label: "WhatsApp".into(),
                since: None,
                templates: true
            }
        );
    }

    #[test]
    fn a_channel_this_gateway_does_not_run_gets_nothing() {
        let mut stopped = reply("Hello");
        stopped.case.as_mut().unwrap().client = Some(ClientChannel {
            running: false,
            ..sms()
        });
        assert_eq!(
            notice(plan(stopped)),
            Text::ChannelNotRunning {
                instance: "sms".into()
            }
        );
    }
}
