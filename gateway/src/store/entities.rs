//! The tables of the records store, as sea-orm entities.

/// A client case: one client, one room, one or more channel identities.
pub mod case {
    use sea_orm::entity::prelude::*;

    use crate::store::{CaseId, CaseStatus, IdentityId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cases")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: CaseId,
        /// Human case number, `2026-000123`.
        #[sea_orm(unique)]
        pub number: String,
        pub year: i32,
        pub seq: i32,
        /// The team key that answers this case.
        pub team: String,
        pub status: CaseStatus,
        /// The case room, once created.
        pub room_id: Option<String>,
        /// The identity the client wrote from last: replies go out there.
        pub last_identity_id: Option<IdentityId>,
        pub created_at: DateTimeUtc,
        /// Nothing automatic goes to the client; neutral sender; no case number outbound.
        pub discreet: bool,
        /// The client's messages are recorded but not relayed.
        pub blocked: bool,
        /// The worker the case is handed to, if any.
        pub assignee: Option<String>,
        /// When the case was closed (last `!close`), if it is.
        pub closed_at: Option<DateTimeUtc>,
        /// Retention never purges a case on legal hold.
        pub legal_hold: bool,
        /// The case this one was merged into (`!merge`): its addresses moved there.
        pub merged_into: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A client's address on one bridge instance, and the ghost that speaks for it.
pub mod identity {
    use sea_orm::entity::prelude::*;

    use crate::store::{CaseId, IdentityId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "identities")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: IdentityId,
        pub case_id: CaseId,
        pub instance: String,
        pub channel: String,
        pub address: String,
        pub display_name: String,
        pub ghost_localpart: String,
        /// Set once the ghost has joined the case room.
        pub joined_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        /// Why the client cannot be reached here (they blocked the bot, …), until they write
        /// again or a reply gets through.
        pub unreachable: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A one-time invitation (`!invite telegram`): the first new address that brings its token
/// joins the case. Only the token's SHA-256 is stored.
pub mod invitation {
    use sea_orm::entity::prelude::*;

    use crate::store::CaseId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invitations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub case_id: CaseId,
        /// The bridge instance the token is for.
        pub instance: String,
        /// The worker who asked for it.
        pub created_by: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A value a bridge instance keeps between runs.
pub mod bridge_state {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bridge_state")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub instance: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A redaction or media deletion a purge still owes the homeserver (one of `event_id` or
/// `mxc_uri`), kept until it is done.
pub mod purge_followup {
    use sea_orm::entity::prelude::*;

    use crate::store::CaseId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "purge_followups")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub case_id: CaseId,
        /// The case room the event is in.
        pub room_id: Option<String>,
        /// An event to redact.
        pub event_id: Option<String>,
        /// A file to delete from the media repository.
        pub mxc_uri: Option<String>,
        pub attempts: i32,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub done_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every message of a case: inbound, outbound, and the gateway's notices to the team.
pub mod message {
    use sea_orm::entity::prelude::*;

    use crate::store::{CaseId, Direction, IdentityId, MessageId, MessageKind, MessageState};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: MessageId,
        pub case_id: CaseId,
        pub identity_id: Option<IdentityId>,
        pub direction: Direction,
        /// Bridge instance and channel (empty for notices).
        pub instance: String,
        pub channel: String,
        /// The channel's id: of the client's message (inbound) or of our sent one (outbound).
        pub upstream_id: Option<String>,
        /// The Matrix event: the ghost's (inbound), the worker's (outbound), the bot's (notice).
        pub event_id: Option<String>,
        /// The worker's Matrix ID for outbound messages; internal, never sent.
        pub sender: Option<String>,
        pub body: String,
        pub html: Option<String>,
        /// Attachment metadata (name, type, size) as JSON.
        pub attachments: Option<Json>,
        pub state: MessageState,
        pub error: Option<String>,
        pub sent_at: Option<DateTimeUtc>,
        pub received_at: DateTimeUtc,
        pub relayed_at: Option<DateTimeUtc>,
        pub delivered_at: Option<DateTimeUtc>,
        /// What made the row beyond its direction, if anything.
        pub kind: Option<MessageKind>,
        /// Matrix IDs a notice mentions (highlights), as a JSON array.
        pub mentions: Option<Json>,
        /// The subject, on channels that have one (mail).
        pub subject: Option<String>,
        /// Registration number within the case: 1, 2, 3, …
        pub seq: Option<i32>,
        /// The previous record's `hash` (none for the first).
        pub prev_hash: Option<String>,
        /// SHA-256 of the content: text, HTML, subject, files, original.
        pub content_hash: Option<String>,
        /// SHA-256 of the record and `prev_hash`: the chain.
        pub hash: Option<String>,
        /// For an edit: the channel's id of the message it edits.
        pub replaces: Option<String>,
        /// When retention removed the content (the hashes stay, so the chain still verifies).
        pub purged_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Durable outbound work: a message to relay into Matrix or to deliver on a channel.
pub mod queue_item {
    use sea_orm::entity::prelude::*;

    use crate::store::{CaseId, MessageId, Target};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "queue")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub target: Target,
        /// For `bridge`: the instance; empty for `matrix`.
        pub instance: String,
        pub message_id: MessageId,
        pub case_id: CaseId,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Appservice transactions already processed: a replay is acknowledged, not processed again.
pub mod transaction {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "transactions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub txn_id: String,
        pub received_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The files of a message, kept whole: the room gets a copy through the media repository.
pub mod attachment {
    use sea_orm::entity::prelude::*;

    use crate::store::MessageId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "attachments")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub message_id: MessageId,
        /// Order within the message, from 0.
        pub position: i32,
        pub filename: String,
        pub mime: String,
        pub size: i64,
        pub data: Vec<u8>,
        /// The homeserver's copy, once uploaded.
        pub mxc_uri: Option<String>,
        /// The event that shows it in the case room.
        pub event_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// "Once per period" marks: an automatic reply whose key is here was sent before.
pub mod mark {
    use sea_orm::entity::prelude::*;

    use crate::store::CaseId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "marks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub case_id: CaseId,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A message exactly as its channel delivered it (mail: the RFC 5322 bytes), for the record.
pub mod original {
    use sea_orm::entity::prelude::*;

    use crate::store::MessageId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "originals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: MessageId,
        pub data: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
