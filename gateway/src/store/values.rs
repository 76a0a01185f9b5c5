//! The closed sets of words the records store keeps in its text columns, as Rust enums, and
//! the ids of its rows, as newtypes that keep a case's id from being taken for a message's.
//!
//! Each variant is stored as exactly the word written before these types existed, so existing
//! stores read back unchanged (no data migration) and the record hash, which covers the
//! direction and the kind, hashes the same bytes.

use std::fmt;

use sea_orm::entity::prelude::*;

/// An enum stored as a string column: one word per variant, `as_str` and `Display` give it.
macro_rules! stored_words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $word:tt, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
        pub enum $name {
            $( $(#[$variant_meta])* #[sea_orm(string_value = $word)] $variant, )+
        }

        impl $name {
            /// The word as stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $word, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

stored_words! {
    /// Whether a case is being worked on (`cases.status`).
    pub enum CaseStatus {
        /// Open: the default, and after `!reopen`.
        Open = "open",
        /// Closed by `!close`.
        Closed = "closed",
    }
}

stored_words! {
    /// Who a message is from and to (`messages.direction`).
    pub enum Direction {
        /// From a client.
        Inbound = "inbound",
        /// To a client.
        Outbound = "outbound",
        /// From the gateway to the case team.
        Notice = "notice",
        /// From the gateway to a team's on-call or incident room.
        Alert = "alert",
        /// From a worker, for the record only (notes, commands).
        Internal = "internal",
    }
}

stored_words! {
    /// Where a message is on its way (`messages.state`). Changes in place; not hashed.
    pub enum MessageState {
        /// Recorded, not yet in the case room (inbound, notices, alerts).
        Received = "received",
        /// From a blocked client: recorded, never relayed.
        Blocked = "blocked",
        /// In the case room.
        Relayed = "relayed",
        /// A reply held for a worker's `!send`.
        Held = "held",
        /// A reply sent as its parts (each a record of its own, kind `part`).
        Split = "split",
        /// Waiting for its bridge.
        Queued = "queued",
        /// Handed to the channel.
        Sent = "sent",
        /// The channel reported it delivered.
        Delivered = "delivered",
        /// Could not be delivered.
        Failed = "failed",
        /// For the record only (internal messages).
        Recorded = "recorded",
    }
}

stored_words! {
    /// What made a message beyond its direction (`messages.kind`); hashed.
    pub enum MessageKind {
        /// A client's edit of an earlier message.
        Edit = "edit",
        /// One of the messages a long reply was sent as.
        Part = "part",
        /// A worker's `!note`.
        Note = "note",
        /// A worker's `!incident` report, and its alert.
        Incident = "incident",
        /// Any other worker command.
        Command = "command",
        /// An emergency word's notice and alert.
        Emergency = "emergency",
        /// A retention purge's record.
        Purge = "purge",
        /// The automatic reply outside office hours.
        AutoReply = "auto-reply",
        /// The automatic acknowledgement.
        Acknowledgement = "acknowledgement",
        /// The automatic reply with emergency information.
        EmergencyReply = "emergency-reply",
        /// The neutral answer to a blocked client.
        BlockedReply = "blocked-reply",
    }
}

impl MessageKind {
    /// Whether a message of this kind was sent by a rule rather than a person.
    pub fn is_automatic(self) -> bool {
        matches!(
            self,
            Self::AutoReply | Self::Acknowledgement | Self::EmergencyReply | Self::BlockedReply
        )
    }
}

impl From<casebridge_policies::inbound::ReplyKind> for MessageKind {
    fn from(kind: casebridge_policies::inbound::ReplyKind) -> Self {
        use casebridge_policies::inbound::ReplyKind;
        match kind {
            ReplyKind::OutsideHours => Self::AutoReply,
            ReplyKind::Acknowledgement => Self::Acknowledgement,
            ReplyKind::Emergency => Self::EmergencyReply,
            ReplyKind::Blocked => Self::BlockedReply,
        }
    }
}

stored_words! {
    /// Where a queue item goes (`queue.target`).
    pub enum Target {
        /// Relay into the case room.
        Matrix = "matrix",
        /// Deliver to the client through a bridge instance.
        Bridge = "bridge",
    }
}

/// A row id: an `i64` in the database, a type of its own in Rust; shown as the bare number.
macro_rules! row_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            DeriveValueType,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        /// What the database returns for an inserted row's key.
        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(n: u64) -> Result<Self, DbErr> {
                i64::try_from_u64(n).map(Self)
            }
        }
    };
}

row_id! {
    /// A case (`cases.id`).
    CaseId
}

row_id! {
    /// A client's address on one bridge instance (`identities.id`).
    IdentityId
}

row_id! {
    /// A record (`messages.id`).
    MessageId
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use super::*;

    /// The words are what stores written before these enums hold: changing one needs a data
    /// migration and breaks the record hash of every record that has it.
    #[test]
    fn the_stored_words_are_unchanged() {
        fn words<E: ActiveEnum<Value = String> + Iterable>() -> Vec<String> {
            E::iter().map(|e| e.to_value()).collect()
        }
        assert_eq!(words::<CaseStatus>(), ["open", "closed"]);
        assert_eq!(
            words::<Direction>(),
            ["inbound", "outbound", "notice", "alert", "internal"]
        );
        assert_eq!(
            words::<MessageState>(),
            [
                "received",
                "blocked",
                "relayed",
                "held",
                "split",
                "queued",
                "sent",
                "delivered",
                "failed",
                "recorded"
            ]
        );
        assert_eq!(
            words::<MessageKind>(),
            [
                "edit",
                "part",
                "note",
                "incident",
                "command",
                "emergency",
                "purge",
                "auto-reply",
                "acknowledgement",
                "emergency-reply",
                "blocked-reply"
            ]
        );
        assert_eq!(words::<Target>(), ["matrix", "bridge"]);
        for kind in MessageKind::iter() {
            assert_eq!(kind.as_str(), kind.to_value());
            assert_eq!(MessageKind::try_from_value(&kind.to_value()).unwrap(), kind);
        }
        for reply in [
            casebridge_policies::inbound::ReplyKind::OutsideHours,
            casebridge_policies::inbound::ReplyKind::Acknowledgement,
            casebridge_policies::inbound::ReplyKind::Emergency,
            casebridge_policies::inbound::ReplyKind::Blocked,
        ] {
            assert_eq!(MessageKind::from(reply).as_str(), reply.as_str());
            assert!(MessageKind::from(reply).is_automatic());
        }
    }
}
