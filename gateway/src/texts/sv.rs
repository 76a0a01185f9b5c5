//! The team's texts in Swedish.

use casebridge_policies::{
    commands::CommandError, inbound::ReplyKind, outbound::escape_html as escape,
};

use super::{mentions, minute, pills, SummaryWords, Text};
use crate::store::InvitationProblem;

/// `text` in Swedish. One `match` over every text, long by design: the whole table of a
/// language in one place, where a translator reads it.
pub(super) fn say(text: &Text) -> String {
    match text {
        Text::CommandsOnlyForTeam { team } => format!(
            "Bara medlemmar i enheten {team} kan använda kommandon i ett ärenderum. Inget gjordes."
        ),
        Text::WritingOnlyForTeam { team } => format!(
            "Bara medlemmar i enheten {team} kan skriva till klienten. Meddelandet skickades inte."
        ),
        Text::EditNotSent => "Ändringar skickas inte till klienten: den första versionen \
                              skickades. Skicka ett nytt meddelande för att rätta den."
            .to_owned(),
        Text::FileNotFetched => "Filen kunde inte hämtas från hemservern (eller är krypterad, \
                                 eller en bild som inte går att läsa). Inget skickades."
            .to_owned(),
        Text::MessageTypeNotSent { msgtype } => format!(
            "Meddelanden av typen {msgtype} kan inte skickas till klienten ännu. Inget skickades."
        ),
        Text::ChannelNotRunning { instance } => format!(
            "Klientens kanal ({instance}) körs inte på den här gatewayen. Inget skickades."
        ),
        Text::NoFilesOn { label } => {
            format!("Filer kan inte skickas till klienten via {label}. Inget skickades.")
        }
        Text::FileTypeNotCarried {
            label,
            mime,
            filename,
        } => format!("{label} tar inte filer av typen {mime} ({filename}). Inget skickades."),
        Text::WindowClosed {
            label,
            since,
            templates,
        } => {
            let when = match since {
                Some(since) => format!("stängdes {}", minute(since)),
                None => "är inte öppet: klienten har inte skrivit via den här kanalen".to_owned(),
            };
            let what = if *templates {
                "Bara kontorets godkända mallar kan skickas tills klienten skriver igen."
            } else {
                "Inget kan skickas förrän klienten skriver igen."
            };
            format!("Svarsfönstret för {label} {when}. {what} Inget skickades.")
        }
        Text::Held { found } => format!(
            "Stoppat, inte skickat: svaret innehåller {}, som inte är ett av kontorets nummer \
             eller adresser. Ett privat nummer eller en privat adress får inte nå en klient. \
             Skriv !send för att skicka det som det är, eller skriv svaret igen.",
            found.join(", ")
        ),
        Text::NotDelivered {
            label,
            reason,
            unreachable,
        } => {
            let notice = format!("Inte levererat till klienten ({label}): {reason}");
            if *unreachable {
                format!(
                    "{notice}\nÄrendet är markerat: klienten kan inte nås via {label} förrän \
                     hen skriver därifrån igen. !via en annan kanal, om klienten har en."
                )
            } else {
                notice
            }
        }
        Text::DeliveryDelayed { label, reason } => format!(
            "Leveransen till klienten ({label}) är försenad: {reason}. casebridge fortsätter \
             försöka och inget går förlorat; svaren efter det väntar på sin tur."
        ),
        Text::Delivered { label, at } => {
            format!("Levererat till klienten ({label}) {}.", minute(at))
        }
        Text::SentInParts { parts, label } => format!(
            "Skickat som {parts} meddelanden ({label}): svaret är längre än ett meddelande får \
             vara här."
        ),
        Text::ImageWithheld {
            filename,
            mime,
            reason,
        } => format!(
            "Klienten skickade {filename} ({mime}), en bild som inte kunde rensas från dolda \
             uppgifter som en plats: {reason}. Den sparas i ärendets poster och visas inte här."
        ),
        Text::FileTooLarge {
            filename,
            mime,
            size,
        } => format!(
            "Klienten skickade {filename} ({mime}, {size} byte), större än hemservern tar \
             emot. Den sparas i ärendets poster."
        ),
        Text::JoinedByInvitation { name } => format!(
            "{name} öppnade inbjudan som gjordes för det här ärendet, så adressen har lagts \
             till i ärendet. Svar går nu till den här adressen, där klienten skrev senast."
        ),
        Text::InvitationRefused { name, why } => {
            let why = match why {
                InvitationProblem::Unknown => "kontoret inte känner till",
                InvitationProblem::OtherChannel => "gjordes för en annan kanal",
                InvitationProblem::Used => "redan har använts",
                InvitationProblem::Expired => "har gått ut",
                InvitationProblem::CaseGone => "hör till ett ärende som inte längre finns",
            };
            format!(
                "{name} kom med en inbjudningslänk som {why}, så det här är ett nytt ärende. Om \
                 klienten hör till ett annat ärende: !merge det här ärendet där, eller !invite \
                 klienten igen."
            )
        }
        Text::JoinedByAnswer { name } => format!(
            "{name} skrev för första gången, som svar på kontorets meddelande i det här \
             ärendet, så adressen har lagts till i ärendet. Svar går nu till den här adressen, \
             där klienten skrev senast."
        ),
        Text::CaseHintIgnored { name, named } => format!(
            "Meddelandet nämner ärende {named}, men {name} är ingen adress i det ärendet, så \
             ett nytt ärende öppnades. Om det hör till ärende {named}, hantera det där."
        ),
        Text::PartUnreadable { name, problem } => format!(
            "En del av meddelandet från {name} kunde inte läsas: {problem}. Posten sparar \
             originalet i sin helhet (casebridge records export)."
        ),
        Text::AutoReplySent { label, kind, text } => {
            let kind = match kind {
                ReplyKind::OutsideHours => "utanför öppettid",
                ReplyKind::Acknowledgement => "mottagningsbekräftelse",
                ReplyKind::Emergency => "information vid akut fara",
                ReplyKind::Blocked => "blockerad klient",
            };
            format!("Automatiskt svar skickat till klienten ({label}, {kind}):\n\n{text}")
        }
        Text::Emergency {
            keyword,
            replied,
            on_call,
        } => format!(
            "⚠ Akut: klientens meddelande innehåller «{keyword}». {}{}",
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
            "⚠ Akut i ärende {case} ({label}): klientens meddelande innehåller «{keyword}». \
             Ärenderum: https://matrix.to/#/{alias}{}",
            mentions(on_call)
        ),
        Text::Help => HELP.to_owned(),
        Text::CommandRefused(error) => refused(error),
        Text::Summary(summary) => summary.lines(&SUMMARY),
        Text::Closed { case, by } => format!("Ärende {case} stängt av {by}."),
        Text::Reopened { case, by } => format!("Ärende {case} öppnat igen av {by}."),
        Text::Hold { on: true, by } => format!(
            "Gallringsspärr på, satt av {by}: inget i ärendet gallras förrän !hold off."
        ),
        Text::Hold { on: false, by } => {
            format!("Gallringsspärr av, hävd av {by}: gallringsreglerna gäller igen.")
        }
        Text::Blocked => "Blockerad: klientens meddelanden registreras men visas inte längre \
                          här, och klienten får bara enhetens neutrala svar (högst en gång per \
                          dygn). Akuta ord larmar fortfarande enheten. !unblock häver det."
            .to_owned(),
        Text::Unblocked => "Blockeringen hävd: klientens meddelanden visas här igen.".to_owned(),
        Text::NoteRecorded => {
            "Intern anteckning registrerad; den skickas inte till klienten.".to_owned()
        }
        Text::HeldReplySent { by } => {
            format!("Det stoppade svaret skickas som det är, bekräftat av {by}.")
        }
        Text::NoHeldReply => "Inget svar är stoppat i det här ärendet.".to_owned(),
        Text::DiscreetOn {
            sender_name,
            subject,
        } => format!(
            "Diskret läge på: inget automatiskt går till klienten, avsändaren visas som \
             «{sender_name}» med ämnet «{subject}», och texterna har inget ärendenummer."
        ),
        Text::DiscreetOff => {
            "Diskret läge av: automatiska svar och kontorets avsändarnamn är tillbaka.".to_owned()
        }
        Text::ChannelRefused {
            channel,
            instance,
            what,
        } => format!(
            "Kanalen {channel} (bridges.{instance}) kan inte logga in: {what}. Tills IT har \
             åtgärdat det läses inte det klienter skriver där, och svar till dem väntar. Be de \
             klienter ni når på annat sätt att använda en annan kanal."
        ),
        Text::ChannelWorksAgain { channel, instance } => format!(
            "Kanalen {channel} (bridges.{instance}) fungerar igen: det klienter skrev under \
             tiden läses nu och de väntande svaren skickas."
        ),
        Text::IncidentNowhere { team } => format!(
            "Incidentrapporten är registrerad. Inget incidentrum är inställt \
             (teams.{team}.incident_room), så den postades inte någon annanstans."
        ),
        Text::IncidentPosted => {
            "Incidentrapporten är registrerad och postad i incidentrummet.".to_owned()
        }
        Text::IncidentReport {
            case,
            by,
            text,
            alias,
        } => format!(
            "Incidentrapport i ärende {case} av {by}: {text}\nÄrenderum: https://matrix.to/#/{alias}"
        ),
        Text::NotOnTeam { user, team } => {
            format!("{user} är inte medlem i enheten {team}; ärendet är oförändrat.")
        }
        Text::Assigned { case, user, by } => {
            format!("Ärende {case} tilldelat {user} av {by}.")
        }
        Text::NoAddressOn { channel, known } => format!(
            "Klienten har ingen adress via {channel} i det här ärendet (kända: {}).",
            known.join(", ")
        ),
        Text::RepliesGoTo { name, label } => format!("Svar går nu till {name} ({label})."),
        Text::NoBridgeFor { channel } => format!(
            "Ingen brygga för {channel} körs på den här gatewayen: det finns inget att bjuda in \
             klienten till."
        ),
        Text::Invitation {
            label,
            link,
            case,
            expires,
        } => format!(
            "Inbjudan för klienten via {label}: {link}\nSkicka den till klienten. När klienten \
             öppnar den (och trycker Start) läggs klientens {label}-konto till i ärende {case}. \
             Den fungerar en gång, till {}.",
            minute(expires)
        ),
        Text::NoInvitationLinks { label } => format!(
            "{label} kan inte bära inbjudningslänkar (eller känner inte sin egen adress än). \
             Ingen länk gjordes."
        ),
        Text::MergeSelf { number } => format!("{number} är det här ärendet."),
        Text::MergeUnknown { number } => {
            format!("Det finns inget ärende {number}; inget slogs samman.")
        }
        Text::MergeOtherTeam {
            number,
            theirs,
            ours,
        } => format!(
            "Ärende {number} hör till enheten {theirs}, inte {ours}: bara en enhets egna ärenden \
             kan slås samman."
        ),
        Text::MergedAlready { number, into } => {
            format!("Ärende {number} är redan sammanslaget med ärende {into}.")
        }
        Text::MergedAway { into, by, names } => format!(
            "Sammanslaget med ärende {into} av {by}: {} hör nu till ärende {into}, och deras nya \
             meddelanden går dit. Det här ärendet är stängt; dess poster finns kvar här.",
            names.join(", ")
        ),
        Text::MergedHere {
            number,
            by,
            names,
            replies_stay,
        } => format!(
            "Ärende {number} sammanslaget med det här ärendet av {by}: {} skriver nu hit{}. \
             Tidigare meddelanden i ärende {number} finns kvar i dess egna poster.",
            if names.is_empty() {
                "inga adresser".to_owned()
            } else {
                names.join(", ")
            },
            if *replies_stay {
                "; svar går fortfarande dit klienten skrev senast (!via för att välja)"
            } else {
                ""
            }
        ),
        Text::RoomName { case } => format!("Ärende {case}"),
        Text::RoomTopic { case, label, team } => {
            format!("Ärende {case} · {label} · besvaras av enheten {team}")
        }
        Text::Purged => "Borttaget enligt kontorets gallringsregler".to_owned(),
    }
}

/// `text`'s HTML in Swedish, for a text with links that highlight people.
pub(super) fn html(text: &Text) -> Option<String> {
    match text {
        Text::Emergency {
            keyword,
            replied,
            on_call,
        } => Some(format!(
            "<strong>⚠ Akut</strong>: klientens meddelande innehåller «{}». {}{}",
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
            "<strong>⚠ Akut i ärende {case}</strong> ({}): klientens meddelande innehåller \
             «{}». Ärenderum: <a href=\"https://matrix.to/#/{alias}\">{alias}</a>{}",
            escape(label),
            escape(keyword),
            pills(on_call)
        )),
        _ => None,
    }
}

fn emergency_after(replied: bool) -> &'static str {
    if replied {
        "Klienten fick larmnumren."
    } else {
        "Inget skickades automatiskt till klienten."
    }
}

fn on_call_line(who: &str) -> String {
    if who.is_empty() {
        String::new()
    } else {
        format!(" I jour: {who}.")
    }
}

fn refused(error: &CommandError) -> String {
    match error {
        CommandError::TakesNoArgument { word } => format!("!{word} tar inget argument"),
        CommandError::NeedsText { word } => format!("!{word} behöver en text: !{word} TEXT"),
        CommandError::NeedsUser => "!assign behöver ett Matrix-ID: !assign @user:server".to_owned(),
        CommandError::ViaNeedsChannel => {
            "!via behöver en kanal: !via sms, !via email, !via telegram".to_owned()
        }
        CommandError::InviteNeedsChannel => "!invite behöver en kanal: !invite telegram".to_owned(),
        CommandError::NeedsCaseNumber => {
            "!merge behöver ett ärendenummer: !merge 2026-000123".to_owned()
        }
        CommandError::NeedsOnOff { word } => format!("!{word} behöver on eller off"),
        CommandError::Unknown { word } => {
            format!("okänt kommando !{word}; inget skickades. !help visar kommandona")
        }
    }
}

/// The words of `!case`.
const SUMMARY: SummaryWords = SummaryWords {
    case: "Ärende",
    team: "enhet",
    open: "öppet",
    closed: "stängt",
    opened: "Öppnat",
    contacts: "Kontaktvägar",
    replies_here: "svar går hit",
    unreachable: "nås inte",
    messages: |s| {
        format!(
            "Meddelanden: {} från klienten, {} svar, {} automatiska svar, {} anteckningar",
            s.from_client, s.replies, s.automatic, s.notes
        )
    },
    assigned: "Handläggare:",
    discreet: "Diskret läge är på",
    blocked: "Klienten är blockerad",
    merged_into: "Sammanslaget med ärende",
};

/// What `!help` says.
const HELP: &str = "Kommandon i ett ärenderum (bara ärendets enhet kan använda dem):
!case — sammanfattning av ärendet
!close / !reopen — stäng ärendet, eller öppna det igen
!assign @user:server — lämna ärendet till en kollega (hen bjuds in)
!via sms|email|telegram — kanalen som svaren går ut via
!discreet on|off — inget automatiskt till klienten, neutral avsändare, inget ärendenummer
!block / !unblock — sluta visa en klients meddelanden (klienten får enhetens neutrala svar)
!note TEXT — en intern anteckning: registreras, skickas aldrig
!incident TEXT — en incidentrapport: registreras och postas i incidentrummet
!hold on|off — gallringsspärr: inget i ärendet gallras
!invite telegram — en engångslänk för klienten: klientens Telegram-chatt läggs till i ärendet
!merge 2026-000123 — samma klient skrev från en annan adress: det ärendets adresser läggs till här
!send — skicka ett stoppat svar (som nämner ett nummer eller en adress utanför kontorets lista) som det är
!help — den här listan";
