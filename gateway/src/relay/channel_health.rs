//! Tells a team when one of its channels stops taking the office's credentials (a password
//! changed at the provider, a revoked token, an account out of credit), and when it works
//! again, in the team's alert room: the workers learn that clients on that channel are not
//! heard before a client finds out, not only the admin reading the logs.

use std::collections::BTreeSet;

use casebridge_bridges::CredentialCheck;
use ruma::{events::room::message::RoomMessageEventContent, OwnedTransactionId};

use super::{Core, RelayError};
use crate::texts::Text;

/// What a team is told of one channel, given whether it was last told that the channel
/// refuses and the channel's check now. A refusal is told once until the channel works
/// again; a channel that cannot be asked right now (a network failure, a check that does not
/// exist) changes nothing.
pub fn channel_news(told_refused: bool, now: &CredentialCheck) -> Option<ChannelNews> {
    match now {
        CredentialCheck::Refused(what) if !told_refused => Some(ChannelNews::Refused(what.clone())),
        CredentialCheck::Accepted(_) if told_refused => Some(ChannelNews::WorksAgain),
        _ => None,
    }
}

/// See [`channel_news`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelNews {
    /// The channel refuses the office's credentials: what it said, with the key to fix.
    Refused(String),
    /// It takes them again.
    WorksAgain,
}

impl Core {
    /// Tells the team of bridge `instance` what `check` means for it, if it is news given
    /// `refused` (the instances whose teams were last told that they refuse; updated once
    /// the team has been told). A team without an alert room is not told (the ERROR in the
    /// log and `/health` remain).
    pub(crate) async fn tell_team_of_channel(
        &self,
        instance: &str,
        check: &CredentialCheck,
        refused: &mut BTreeSet<String>,
    ) -> Result<(), RelayError> {
        let Some(news) = channel_news(refused.contains(instance), check) else {
            return Ok(());
        };
        let (Some(bridge), Some(config)) = (
            self.bridges.get(instance),
            self.config.bridges.get(instance),
        ) else {
            return Ok(());
        };
        let channel = bridge.bridge.capabilities().label.to_owned();
        let text = match &news {
            ChannelNews::Refused(what) => Text::ChannelRefused {
                channel,
                instance: instance.to_owned(),
                what: what.clone(),
            },
            ChannelNews::WorksAgain => Text::ChannelWorksAgain {
                channel,
                instance: instance.to_owned(),
            },
        };
        let team = &config.team;
        let room = self.alert_room(team).await?;
        let notice = text.notice(self.policies.language(team));
        let content = match &notice.html {
            Some(html) => RoomMessageEventContent::notice_html(&notice.body, html),
            None => RoomMessageEventContent::notice_plain(&notice.body),
        };
        let txn_id: OwnedTransactionId = format!(
            "cb-channel-{instance}-{}",
            chrono::Utc::now().timestamp_micros()
        )
        .into();
        self.matrix
            .send_message(&room, &txn_id, &content, None)
            .await?;
        match news {
            ChannelNews::Refused(_) => refused.insert(instance.to_owned()),
            ChannelNews::WorksAgain => refused.remove(instance),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use casebridge_bridges::CredentialCheck;

    use super::{channel_news, ChannelNews};

    #[test]
    fn a_refusal_is_news_once_and_so_is_the_recovery() {
        let refused = CredentialCheck::Refused("bridges.mail.imap.password: refused".into());
        let accepted = CredentialCheck::Accepted("IMAP login as office@office.test".into());
        let unreachable = CredentialCheck::Unreachable("connection refused".into());
        assert_eq!(
            channel_news(false, &refused),
            Some(ChannelNews::Refused(
                "bridges.mail.imap.password: refused".into()
            ))
        );
        assert_eq!(channel_news(true, &refused), None);
        assert_eq!(channel_news(true, &unreachable), None);
        assert_eq!(channel_news(false, &unreachable), None);
        assert_eq!(channel_news(true, &accepted), Some(ChannelNews::WorksAgain));
        assert_eq!(channel_news(false, &accepted), None);
        assert_eq!(
            channel_news(false, &CredentialCheck::Unchecked("no check".into())),
            None
        );
    }
}
