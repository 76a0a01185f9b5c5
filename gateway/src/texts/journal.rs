//! The journal's own words (`casebridge records export`), in each language it is written in:
//! its labels, column heads and the words for stored states. What was recorded keeps its own
//! words; only these change with the team's language.

use casebridge_config::Language;
use casebridge_policies::outbound::escape_html as escape;

/// The journal's own words in one language. `{}` stands for a value, which is escaped when it
/// is filled in.
pub(crate) struct Texts {
    /// The language the table is written in (the page's `lang`).
    pub language: Language,
    pub title: &'static str,
    pub case: &'static str,
    pub team: &'static str,
    pub status: &'static str,
    pub opened: &'static str,
    pub discreet: &'static str,
    pub assigned_to: &'static str,
    pub merged_into: &'static str,
    pub zone: &'static str,
    pub contacts: &'static str,
    pub first_written: &'static str,
    pub now_in_case: &'static str,
    pub another_case: &'static str,
    pub unreachable: &'static str,
    pub records: &'static str,
    pub column_no: &'static str,
    pub column_when: &'static str,
    pub column_entry: &'static str,
    pub column_text: &'static str,
    pub column_state: &'static str,
    pub from_client: &'static str,
    pub part: &'static str,
    pub automatic: &'static str,
    pub outside_hours: &'static str,
    pub acknowledgement: &'static str,
    pub emergency_information: &'static str,
    pub blocked_client: &'static str,
    pub reply: &'static str,
    pub note: &'static str,
    pub incident: &'static str,
    pub purge: &'static str,
    pub command: &'static str,
    pub alert: &'static str,
    pub emergency: &'static str,
    pub notice: &'static str,
    pub by: &'static str,
    pub by_gateway: &'static str,
    pub file: &'static str,
    pub bytes: &'static str,
    pub purged: &'static str,
    pub thread: &'static str,
    /// Before the command that checks the hashes.
    pub footer: &'static str,
    /// After it.
    pub footer_checks: &'static str,
    /// Case statuses and record states as stored, and what the reader calls them.
    pub words: &'static [(&'static str, &'static str)],
}

const EN: Texts = Texts {
    language: Language::En,
    title: "Case {} — journal",
    case: "Case {}",
    team: "Team: {}",
    status: "status: {}",
    opened: "opened {}",
    discreet: "discreet",
    assigned_to: "assigned to {}",
    merged_into: "merged into case {}",
    zone: "Times in {}, with the offset from UTC after each time.",
    contacts: "Contacts",
    first_written: "first written {}",
    now_in_case: "now in case {}",
    another_case: "another case",
    unreachable: "unreachable: {}",
    records: "Records",
    column_no: "No.",
    column_when: "When ({})",
    column_entry: "Entry",
    column_text: "Text",
    column_state: "State",
    from_client: "From the client",
    part: "Part of a reply",
    automatic: "Automatic reply: {}",
    outside_hours: "outside office hours",
    acknowledgement: "acknowledgement",
    emergency_information: "emergency information",
    blocked_client: "blocked client",
    reply: "Reply to the client",
    note: "Internal note",
    incident: "Incident report",
    purge: "Retention purge",
    command: "Command",
    alert: "Alert to the on-call room",
    emergency: "Emergency escalation",
    notice: "Notice to the case team",
    by: "by {}",
    by_gateway: "by the gateway",
    file: "file",
    bytes: "bytes",
    purged: "(content removed under the retention rules)",
    thread: "In the thread: {}",
    footer: "{} records. Generated {} by casebridge. Each record's hash covers its content and \
             the record before it:",
    footer_checks: "checks them.",
    words: &[],
};

const SV: Texts = Texts {
    language: Language::Sv,
    title: "Ärende {} — journal",
    case: "Ärende {}",
    team: "Enhet: {}",
    status: "status: {}",
    opened: "öppnat {}",
    discreet: "diskret",
    assigned_to: "handläggare {}",
    merged_into: "sammanslaget med ärende {}",
    zone: "Tider i {}, med skillnaden mot UTC efter varje tid.",
    contacts: "Kontaktvägar",
    first_written: "skrev först {}",
    now_in_case: "nu i ärende {}",
    another_case: "ett annat ärende",
    unreachable: "nås inte: {}",
    records: "Poster",
    column_no: "Nr",
    column_when: "Tid ({})",
    column_entry: "Post",
    column_text: "Text",
    column_state: "Status",
    from_client: "Från klienten",
    part: "Del av ett svar",
    automatic: "Automatiskt svar: {}",
    outside_hours: "utanför öppettid",
    acknowledgement: "mottagningsbekräftelse",
    emergency_information: "information vid akut fara",
    blocked_client: "blockerad klient",
    reply: "Svar till klienten",
    note: "Intern anteckning",
    incident: "Incidentrapport",
    purge: "Gallring",
    command: "Kommando",
    alert: "Larm till jourrummet",
    emergency: "Akut eskalering",
    notice: "Meddelande till handläggarna",
    by: "av {}",
    by_gateway: "av casebridge",
    file: "fil",
    bytes: "byte",
    purged: "(innehållet är gallrat enligt reglerna för gallring)",
    thread: "I tråden: {}",
    footer: "{} poster. Skapad {} av casebridge. Varje posts hash omfattar dess innehåll och \
             posten före:",
    footer_checks: "kontrollerar dem.",
    words: &[
        ("open", "öppet"),
        ("closed", "stängt"),
        ("received", "mottaget"),
        ("blocked", "blockerat"),
        ("relayed", "vidarebefordrat"),
        ("held", "hållet"),
        ("split", "delat"),
        ("queued", "i kö"),
        ("sent", "skickat"),
        ("delivered", "levererat"),
        ("failed", "misslyckat"),
        ("recorded", "registrerat"),
    ],
};

/// The journal's words in `language`: English where there is no table of its own yet.
pub(crate) fn texts(language: Language) -> &'static Texts {
    match language {
        Language::Sv => &SV,
        Language::En | Language::Hu | Language::Uk => &EN,
    }
}

impl Texts {
    /// A stored status or state word as the reader says it.
    pub(crate) fn word(&self, stored: &str) -> String {
        escape(
            self.words
                .iter()
                .find(|(s, _)| *s == stored)
                .map_or(stored, |(_, w)| w),
        )
    }
}
