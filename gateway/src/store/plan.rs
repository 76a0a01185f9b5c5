//! What a batch of client messages causes, decided without I/O: the store reads the facts,
//! these functions answer with a plan, and the store applies the plan in the batch's one
//! transaction and decides nothing itself.
//!
//! Two steps, because the database numbers new rows: [`admit`] says who each new sender is (an
//! invited or answering address that joins a case, or a new client with a new case); once the
//! new cases and identities have their ids, [`plan`] says what each message causes (its
//! record, where the case's replies go, notices, automatic replies, emergency alerts) and what
//! each bridge is answered.

use std::collections::{BTreeMap, HashMap, HashSet};

use casebridge_bridges::Accepted;
use casebridge_policies::inbound::Incoming;
use chrono::{DateTime, Datelike, Utc};

use super::{
    case, invitation, CaseId, IdentityId, MessageKind, MessageState, NewInbound, StoreError,
};
use crate::{
    policy::{self, Policies},
    texts::{TeamNotice, Text},
};

/// A bridge instance and a client's address on it.
pub(super) type Address = (String, String);

/// A bridge instance and a message's id there.
pub(super) type Upstream = (String, String);

/// Where a known client address leads. An identity never moves to another case, so this is
/// safe to remember.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Contact {
    pub identity_id: IdentityId,
    pub case_id: CaseId,
    pub case_number: String,
}

/// The address a message came from.
pub(super) fn address(item: &NewInbound) -> Address {
    (item.instance.clone(), item.message.from.as_str().to_owned())
}

/// The message's id on its instance.
pub(super) fn upstream(item: &NewInbound) -> Upstream {
    (
        item.instance.clone(),
        item.message.message_id.as_str().to_owned(),
    )
}

/// Which messages of `batch` are new (`true`): not among those `recorded` before, and not a
/// repeat of an earlier message of the batch.
pub(super) fn fresh(batch: &[NewInbound], recorded: &HashSet<Upstream>) -> Vec<bool> {
    let mut seen = recorded.clone();
    batch
        .iter()
        .map(|item| seen.insert(upstream(item)))
        .collect()
}

/// For each address of a new message that no contact knows, the index of its first new
/// message, in batch order: the store looks up where that message leads.
pub(super) fn unknown_senders(
    batch: &[NewInbound],
    fresh: &[bool],
    contacts: &HashMap<Address, Contact>,
) -> Vec<usize> {
    let mut asked = HashSet::new();
    (0..batch.len())
        .filter(|&i| fresh[i])
        .filter(|&i| {
            let from = address(&batch[i]);
            !contacts.contains_key(&from) && asked.insert(from)
        })
        .collect()
}

/// Whether invitation `found` (if the office knows the token) lets an address on `instance`
/// join its case at `now`: the case's id, or why not. `used_by_batch`: an earlier message of
/// this batch used it.
pub(super) fn check_invitation(
    found: Option<&invitation::Model>,
    instance: &str,
    used_by_batch: bool,
    now: DateTime<Utc>,
) -> Result<CaseId, InvitationProblem> {
    let Some(found) = found else {
        return Err(InvitationProblem::Unknown);
    };
    if found.instance != instance {
        return Err(InvitationProblem::OtherChannel);
    }
    if found.used_at.is_some() || used_by_batch {
        return Err(InvitationProblem::Used);
    }
    if found.expires_at < now {
        return Err(InvitationProblem::Expired);
    }
    Ok(found.case_id)
}

/// Why an invitation link opens no case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationProblem {
    /// The office made no invitation with that token.
    Unknown,
    /// It was made for another bridge instance.
    OtherChannel,
    /// It was used already.
    Used,
    /// It has expired.
    Expired,
    /// Its case is no longer in the records.
    CaseGone,
}

/// Where an address nobody knows leads, as the store found it.
#[derive(Clone, Debug, Default)]
pub(super) struct Lead {
    /// The invitation its first message came with: the invitation's token hash and case, or
    /// why it opens none.
    pub invitation: Option<Result<(String, case::Model), InvitationProblem>>,
    /// The case of the office's message it answers; looked up only when no invitation leads.
    pub answered: Option<case::Model>,
}

impl Lead {
    /// The case the address joins, if any: an invitation's before an answered message's.
    pub fn joins(&self) -> Option<&case::Model> {
        match &self.invitation {
            Some(Ok((_, case))) => Some(case),
            _ => self.answered.as_ref(),
        }
    }
}

/// A case to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NewCase {
    pub number: String,
    pub year: i32,
    pub seq: i32,
    pub team: String,
}

/// The case a new identity belongs to.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum CaseRef {
    /// A case the store has.
    Known(case::Model),
    /// The `n`th case of [`Admission::cases`].
    New(usize),
}

/// An address that becomes an identity.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct NewIdentity {
    /// Its first new message in the batch (name, channel, ghost).
    pub first: usize,
    pub case: CaseRef,
    /// Why it went where it did, told to its case after that message.
    pub notice: Option<Text>,
}

/// Who the new senders of a batch are.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Admission {
    /// Hashes of the invitation tokens used now.
    pub invitations: Vec<String>,
    pub cases: Vec<NewCase>,
    pub identities: Vec<NewIdentity>,
}

/// Who each unknown sender is, from where its first message leads (`leads`, by batch index).
/// New cases are numbered on from `last_seq`, the year's highest number so far (the store reads
/// it when a lead [`joins`](Lead::joins) no case).
pub(super) fn admit(
    batch: &[NewInbound],
    leads: &[(usize, Lead)],
    last_seq: i32,
    now: DateTime<Utc>,
) -> Admission {
    let mut admission = Admission::default();
    for (first, lead) in leads {
        let item = &batch[*first];
        let name = &item.message.display_name;
        let open = |admission: &mut Admission| {
            let seq = last_seq + admission.cases.len() as i32 + 1;
            admission.cases.push(NewCase {
                number: format!("{}-{seq:06}", now.year()),
                year: now.year(),
                seq,
                team: item.team.clone(),
            });
            CaseRef::New(admission.cases.len() - 1)
        };
        let (case, notice) = match (&lead.invitation, &lead.answered) {
            (Some(Ok((token_hash, case))), _) => {
                admission.invitations.push(token_hash.clone());
                (
                    CaseRef::Known(case.clone()),
                    Some(Text::JoinedByInvitation { name: name.clone() }),
                )
            }
            (Some(Err(why)), None) => (
                open(&mut admission),
                Some(Text::InvitationRefused {
                    name: name.clone(),
                    why: *why,
                }),
            ),
            (_, Some(case)) => (
                CaseRef::Known(case.clone()),
                Some(Text::JoinedByAnswer { name: name.clone() }),
            ),
            (None, None) => (
                open(&mut admission),
                item.message
                    .case_hint
                    .as_ref()
                    .map(|named| Text::CaseHintIgnored {
                        name: name.clone(),
                        named: named.clone(),
                    }),
            ),
        };
        admission.identities.push(NewIdentity {
            first: *first,
            case,
            notice,
        });
    }
    admission
}

/// What the planner reads: the batch, what is known of its senders and their cases, now.
pub(super) struct Facts<'a> {
    pub batch: &'a [NewInbound],
    /// From [`fresh`].
    pub fresh: &'a [bool],
    /// The sender of every new message, new identities included.
    pub contacts: &'a HashMap<Address, Contact>,
    /// Their cases, as the batch found or opened them.
    pub cases: &'a HashMap<CaseId, case::Model>,
    /// How a new identity was routed, by the index of its first message.
    pub routed: &'a HashMap<usize, Text>,
    pub policies: &'a Policies,
    pub now: DateTime<Utc>,
}

/// A client's message to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    /// Its index in the batch.
    pub item: usize,
    pub case_id: CaseId,
    pub identity_id: IdentityId,
    /// `Blocked` for a blocked case (recorded, never relayed), else `Received`.
    pub state: MessageState,
}

/// An automatic reply to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    /// Sent only if this mark is new; `None`: always.
    pub once_key: Option<String>,
    pub kind: MessageKind,
    pub text: String,
    /// What the case team is shown when it goes out.
    pub notice: String,
}

/// What the team is told after an emergency word; which notice depends on whether the reply
/// went out (its mark is the one fact known only by writing it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Emergency {
    pub replied: TeamNotice,
    pub unreplied: TeamNotice,
    /// For the team's on-call room, when it has one.
    pub alert: Option<TeamNotice>,
}

/// What the team policy makes of one recorded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PolicyStep {
    /// Its index in the batch (the reply goes out on its instance and channel).
    pub item: usize,
    pub case_id: CaseId,
    pub identity_id: IdentityId,
    pub reply: Option<Reply>,
    pub emergency: Option<Emergency>,
}

/// What a batch causes, in the order the store applies it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct InboundPlan {
    /// One per message of the batch, in order.
    pub answers: Vec<Accepted>,
    /// The new messages, in batch order.
    pub records: Vec<Record>,
    /// The identity each case's client wrote from last in the batch: replies go there, and it
    /// is reachable again.
    pub wrote_from: BTreeMap<CaseId, IdentityId>,
    /// The cases of `wrote_from` whose replies went elsewhere until now (most batches move
    /// none: the client writes from where they wrote before).
    pub replies_move: BTreeMap<CaseId, IdentityId>,
    /// Notices for the case teams, after the messages: routing and unreadable parts.
    pub notices: Vec<(CaseId, String)>,
    /// The team policies' answers, after the notices.
    pub policy: Vec<PolicyStep>,
}

/// What the batch causes. Fails only if `facts` lack a new message's sender or case (a bug in
/// the reading, not a state of the records).
pub(super) fn plan(facts: &Facts) -> Result<InboundPlan, StoreError> {
    let mut plan = InboundPlan::default();
    for (i, item) in facts.batch.iter().enumerate() {
        if !facts.fresh[i] {
            plan.answers.push(Accepted::Duplicate);
            continue;
        }
        let contact = facts
            .contacts
            .get(&address(item))
            .ok_or_else(|| StoreError::Missing(format!("contact of message {i} of the batch")))?;
        let case = facts
            .cases
            .get(&contact.case_id)
            .ok_or_else(|| StoreError::Missing(format!("case {}", contact.case_id)))?;
        plan.wrote_from.insert(case.id, contact.identity_id);
        plan.records.push(Record {
            item: i,
            case_id: case.id,
            identity_id: contact.identity_id,
            state: if case.blocked {
                MessageState::Blocked
            } else {
                MessageState::Received
            },
        });
        let say = |text: &Text| facts.policies.say(&case.team, text);
        if let Some(notice) = facts.routed.get(&i) {
            plan.notices.push((case.id, say(notice)));
        }
        for problem in &item.message.problems {
            plan.notices.push((
                case.id,
                say(&Text::PartUnreadable {
                    name: item.message.display_name.clone(),
                    problem: problem.clone(),
                }),
            ));
        }
        plan.policy
            .extend(policy_step(facts, i, contact.identity_id, case));
        plan.answers.push(Accepted::Recorded {
            case_number: contact.case_number.clone(),
        });
    }
    plan.replies_move = plan
        .wrote_from
        .iter()
        .filter(|(case, identity)| {
            facts.cases.get(case).and_then(|c| c.last_identity_id) != Some(**identity)
        })
        .map(|(case, identity)| (*case, *identity))
        .collect();
    Ok(plan)
}

/// What the team policy of message `i` makes of it, if the team has a policy.
fn policy_step(
    facts: &Facts,
    i: usize,
    identity_id: IdentityId,
    case: &case::Model,
) -> Option<PolicyStep> {
    let item = &facts.batch[i];
    let policy = facts.policies.team(&item.team)?;
    let decision = policy.decide(&Incoming {
        at: facts.now,
        text: &item.message.body,
        channel: &item.channel,
        automated: item.message.automated,
        discreet: case.discreet,
        blocked: case.blocked,
        case_number: &case.number,
        contact: &identity_id.to_string(),
    });
    // Every automatic reply is shown, so the team knows what the client was told; a blocked
    // client's (at most once a day) without their message, which stays unshown.
    let language = facts.policies.language(&item.team);
    let reply = decision.reply.map(|reply| Reply {
        notice: policy::auto_reply_notice(&reply, &item.label).say(language),
        kind: reply.kind.into(),
        once_key: reply.once_key,
        text: reply.text,
    });
    let emergency = decision.emergency.map(|keyword| Emergency {
        replied: policy::emergency_notice(policy, &keyword, true).notice(language),
        unreplied: policy::emergency_notice(policy, &keyword, false).notice(language),
        alert: policy.alert_room.is_some().then(|| {
            policy::emergency_alert(facts.policies, policy, &case.number, &item.label, &keyword)
                .notice(language)
        }),
    });
    if reply.is_none() && emergency.is_none() {
        return None;
    }
    Some(PolicyStep {
        item: i,
        case_id: case.id,
        identity_id,
        reply,
        emergency,
    })
}

#[cfg(test)]
mod tests;
