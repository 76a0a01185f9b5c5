//! A client's mail as the case room shows it: sender, subject, the new text (quoted history
//! trimmed), HTML cut down to what Matrix clients render with nothing remote left in it, files
//! within the office's size limit, and whether a machine sent it (RFC 3834).

use casebridge_policies::outbound::escape_html as escape;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use mail_parser::{Message, MessageParser, MimeHeaders};

use crate::{Attachment, DeliveryStatus, InboundMessage, RemoteAddress, RemoteMessageId};

/// What the parser needs to know besides the mail.
pub struct Context<'a> {
    /// The office's own address: mail from it is never answered.
    pub office: &'a str,
    /// Files larger than this are named, not carried.
    pub max_attachment_bytes: usize,
    /// A stable id when the mail has no Message-ID (`imap-UIDVALIDITY-UID@MAILBOX`).
    pub fallback_id: String,
}

/// A delivery status notification (RFC 3464) about one of the office's own mails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The Message-ID of the office's mail it is about.
    pub original: String,
    /// What became of it.
    pub status: DeliveryStatus,
}

/// Reads a delivery status notification about a mail whose Message-ID ends with `@domain`:
/// `None` for every other mail.
pub fn bounce(raw: &[u8], domain: &str) -> Option<Bounce> {
    let mail = MessageParser::default().parse(raw)?;
    let is_report = mail.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    if !is_report {
        return None;
    }
    let mut original = None;
    let mut action = None;
    let mut diagnostic = None;
    let mut status_code = None;
    for part in &mail.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let kind = format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase()
        );
        match kind.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                let text = String::from_utf8_lossy(part.contents()).into_owned();
                for line in text.lines() {
                    let Some((name, value)) = line.split_once(':') else {
                        continue;
                    };
                    let value = value.trim().to_owned();
                    match name.trim().to_ascii_lowercase().as_str() {
                        "action" => action = Some(value.to_ascii_lowercase()),
                        "diagnostic-code" => diagnostic = Some(value),
                        "status" => status_code = Some(value),
                        _ => {}
                    }
                }
            }
            "text/rfc822-headers" | "message/rfc822-headers" => {
                let text = String::from_utf8_lossy(part.contents()).into_owned();
                original = original.or_else(|| header_value(&text, "message-id"));
            }
            "message/rfc822" | "message/global" => {
                if let Some(inner) = part.message() {
                    original = original.or_else(|| inner.message_id().map(str::to_owned));
                }
            }
            _ => {}
        }
    }
    let original = original?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    if !original.ends_with(&format!("@{domain}")) {
        return None;
    }
    let status = match action.as_deref() {
        Some("delivered" | "relayed" | "expanded") => DeliveryStatus::Delivered,
        Some("delayed") => DeliveryStatus::Sent,
        _ => DeliveryStatus::Failed {
            reason: match (diagnostic, status_code) {
                (Some(d), _) => format!("the mail server answered: {d}"),
                (None, Some(s)) => format!("the mail server reports status {s}"),
                (None, None) => "the mail bounced".to_owned(),
            },
        },
    };
    Some(Bounce { original, status })
}

/// A header's value in a block of header lines (unfolded).
fn header_value(headers: &str, name: &str) -> Option<String> {
    let mut lines = headers.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some((n, v)) = line.split_once(':') {
            if n.trim().eq_ignore_ascii_case(name) {
                let mut value = v.trim().to_owned();
                while lines.peek().is_some_and(|l| l.starts_with([' ', '\t'])) {
                    value.push(' ');
                    value.push_str(lines.next().unwrap_or_default().trim());
                }
                return Some(value);
            }
        }
    }
    None
}

/// Turns raw RFC 5322 bytes into the message for the case room. A mail that cannot be parsed
/// still arrives: as a notice-like text with the original attached, so nothing is lost.
pub fn inbound(raw: &[u8], context: &Context<'_>) -> InboundMessage {
    let Some(mail) = MessageParser::default().parse(raw) else {
        return unreadable(raw, context, "it is not a valid e-mail message");
    };
    let Some(sender) = mail
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| a.trim().to_lowercase())
    else {
        return unreadable(raw, context, "it has no sender address (From)");
    };
    if !is_mailbox(&sender) {
        let why = format!(
            "its sender address (From) {:?} is no e-mail address a reply could go to",
            sender.chars().take(80).collect::<String>()
        );
        return unreadable(raw, context, &why);
    }
    // A Reply-To says where answers go (RFC 5322 3.6.2): a web form sends From its own
    // no-reply address with Reply-To the person who filled it in. That person is the client.
    // Never our own address, which would answer ourselves; never one no reply could reach.
    let reply_to = mail.reply_to().and_then(|a| a.first()).and_then(|a| {
        let address = a.address()?.trim().to_lowercase();
        (is_mailbox(&address) && address != context.office).then(|| (address, a.name()))
    });
    let (from, name) = match reply_to {
        Some((address, name)) => (address, name),
        None => (
            sender.clone(),
            mail.from().and_then(|a| a.first()).and_then(|a| a.name()),
        ),
    };
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    let display_name = match name {
        Some(name) => format!("{name} <{from}>"),
        None => from.clone(),
    };
    let subject = mail.subject().map(|s| s.trim().to_owned());
    let text = mail
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    let text = trim_quoted(&text);
    let raw_html = mail.body_html(0);
    let problems = problems(
        raw,
        &[Some(text.as_str()), raw_html.as_deref(), mail.subject()],
    );
    let html = raw_html.map(|h| sanitise(&trim_quoted_html(&h)));
    let (attachments, too_large) = files(&mail, context.max_attachment_bytes);

    let mut body = String::new();
    let mut html_out = String::new();
    if let Some(subject) = subject.as_deref().filter(|s| !s.is_empty()) {
        body.push_str(&format!("{subject}\n\n"));
        html_out.push_str(&format!("<p><strong>{}</strong></p>", escape(subject)));
    }
    body.push_str(text.trim());
    match &html {
        // A mail with an HTML part shows it; its text part is the plain alternative.
        Some(h) if !h.trim().is_empty() => html_out.push_str(h),
        _ => html_out.push_str(&format!(
            "<p>{}</p>",
            escape(text.trim()).replace('\n', "<br>")
        )),
    }
    for (name, size) in &too_large {
        let note = format!(
            "The attachment {name} ({}) is larger than this office accepts ({}); it stays in \
             the mailbox and is not shown here.",
            human(*size),
            human(context.max_attachment_bytes)
        );
        body.push_str(&format!("\n\n[{note}]"));
        html_out.push_str(&format!("<p><em>{}</em></p>", escape(&note)));
    }
    let sent_at = mail
        .date()
        .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0))
        .unwrap_or_else(Utc::now);
    InboundMessage {
        message_id: RemoteMessageId::new(
            mail.message_id()
                .map(str::to_owned)
                .unwrap_or_else(|| context.fallback_id.clone()),
        ),
        // Our own mail coming back is a machine whatever its Reply-To says.
        automated: sender == context.office || is_automated(&mail, &from, context.office),
        from: RemoteAddress::new(from),
        display_name,
        body,
        html: Some(html_out),
        attachments,
        sent_at,
        references: references(&mail),
        case_hint: subject.as_deref().and_then(case_number),
        subject,
        original: Some(raw.to_vec()),
        problems,
        ..Default::default()
    }
}

/// Longest address a reply can be sent to: RFC 5321 4.5.3.1.3 allows a path of 256 octets
/// with its angle brackets.
const MAX_ADDRESS: usize = 254;

/// An address mail can be sent to (RFC 5321: a local part of at most 64 octets, a domain), of
/// at most [`MAX_ADDRESS`] octets. Anything else (`<script>`, `a@b` with a line break, a
/// megabyte of local part) is no client's address: the mail still arrives, as unreadable.
fn is_mailbox(address: &str) -> bool {
    address.len() <= MAX_ADDRESS && address.parse::<lettre::Address>().is_ok()
}

/// The ids a mail answers: In-Reply-To first, then References newest first.
fn references(mail: &Message<'_>) -> Vec<String> {
    let ids = |v: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        match v.as_text_list() {
            Some(list) => list.iter().map(|s| s.to_string()).collect(),
            None => v.as_text().map(|s| vec![s.to_owned()]).unwrap_or_default(),
        }
    };
    let mut out = ids(mail.in_reply_to());
    for id in ids(mail.references()).into_iter().rev() {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// The case number in a subject, `[2026-000123]`.
pub fn case_number(subject: &str) -> Option<String> {
    let mut rest = subject;
    while let Some(start) = rest.find('[') {
        let candidate = &rest[start + 1..];
        if let Some(end) = candidate.find(']') {
            let inner = &candidate[..end];
            let bytes = inner.as_bytes();
            if bytes.len() == 11
                && bytes[4] == b'-'
                && bytes[..4].iter().chain(&bytes[5..]).all(u8::is_ascii_digit)
            {
                return Some(inner.to_owned());
            }
        }
        rest = candidate;
    }
    None
}

fn unreadable(raw: &[u8], context: &Context<'_>, why: &str) -> InboundMessage {
    InboundMessage {
        message_id: RemoteMessageId::new(context.fallback_id.clone()),
        from: RemoteAddress::new("unknown-sender@invalid"),
        display_name: "Unreadable e-mail".into(),
        body: format!(
            "An e-mail arrived that cannot be read: {why}. The original is attached as it came."
        ),
        attachments: vec![Attachment {
            filename: "original.eml".into(),
            mime: "message/rfc822".into(),
            data: raw.to_vec(),
        }],
        sent_at: Utc::now(),
        automated: true,
        original: Some(raw.to_vec()),
        ..Default::default()
    }
}

/// What a lenient parse papered over, for the team: characters no character set could decode.
fn problems(raw: &[u8], decoded: &[Option<&str>]) -> Vec<String> {
    const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
    let replaced = decoded
        .iter()
        .flatten()
        .any(|text| text.contains('\u{FFFD}'));
    let sent_so = raw.windows(REPLACEMENT.len()).any(|w| w == REPLACEMENT);
    if replaced && !sent_so {
        vec![
            "its character set is broken or unknown, so some characters show as \u{FFFD}"
                .to_owned(),
        ]
    } else {
        Vec::new()
    }
}

/// RFC 3834 and common practice: never answer machines.
fn is_automated(mail: &Message<'_>, from: &str, office: &str) -> bool {
    let header = |name: &str| mail.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    let auto_submitted = header("Auto-Submitted").is_some_and(|v| !v.starts_with("no"));
    let precedence = header("Precedence")
        .is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk" | "auto_reply"));
    let list =
        mail.header_raw("List-Id").is_some() || mail.header_raw("List-Unsubscribe").is_some();
    let autoreply_headers = ["X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"]
        .iter()
        .any(|h| mail.header_raw(*h).is_some());
    let local = from.split('@').next().unwrap_or_default();
    let daemon = matches!(
        local,
        "mailer-daemon"
            | "postmaster"
            | "noreply"
            | "no-reply"
            | "donotreply"
            | "bounce"
            | "bounces"
    ) || local.starts_with("bounce")
        || local.starts_with("owner-");
    let null_sender = header("Return-Path").is_some_and(|v| v == "<>");
    let report = mail.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    auto_submitted
        || precedence
        || list
        || autoreply_headers
        || daemon
        || null_sender
        || report
        || from.eq_ignore_ascii_case(office)
}

/// The files of a mail within `max` bytes, and the names and sizes of those over it.
fn files(mail: &Message<'_>, max: usize) -> (Vec<Attachment>, Vec<(String, usize)>) {
    let mut kept = Vec::new();
    let mut too_large = Vec::new();
    let mut names = HashSet::new();
    for (i, part) in mail.attachments().enumerate() {
        let data = part.contents();
        let mime = part
            .content_type()
            .map(|c| match c.subtype() {
                Some(sub) => format!("{}/{}", c.ctype(), sub),
                None => c.ctype().to_owned(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        let mut name = part
            .attachment_name()
            .map(|n| n.replace(['/', '\\'], "_"))
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("attachment-{}", i + 1));
        if !names.insert(name.clone()) {
            name = format!("{}-{name}", i + 1);
        }
        if data.len() > max {
            too_large.push((name, data.len()));
        } else {
            kept.push(Attachment {
                filename: name,
                mime,
                data: data.to_vec(),
            });
        }
    }
    (kept, too_large)
}

/// The HTML subset Matrix clients render (the spec's list for `m.room.message`), with links
/// kept and everything that fetches or runs anything removed: images, scripts, styles, forms,
/// frames, event handlers, remote fonts.
pub fn sanitise(html: &str) -> String {
    let tags: HashSet<&str> = [
        "font",
        "del",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "p",
        "a",
        "ul",
        "ol",
        "sup",
        "sub",
        "li",
        "b",
        "i",
        "u",
        "strong",
        "em",
        "strike",
        "s",
        "code",
        "hr",
        "br",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "caption",
        "pre",
        "span",
        "details",
        "summary",
    ]
    .into_iter()
    .collect();
    ammonia::Builder::default()
        .tags(tags)
        .generic_attributes(HashSet::new())
        .tag_attributes(
            [
                ("a", ["href"].into_iter().collect()),
                ("ol", ["start"].into_iter().collect()),
            ]
            .into_iter()
            .collect(),
        )
        .url_schemes(["http", "https", "mailto", "tel"].into_iter().collect())
        .link_rel(Some("noopener noreferrer"))
        .clean(html)
        .to_string()
}

/// Cuts the quoted history a mail client appends (`> ` lines, "On … wrote:" and its
/// translations, "-----Original Message-----"), keeping what the client wrote now. A mail that
/// is nothing but a quote is left as it is.
pub fn trim_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut cut = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim();
        let lower = l.to_lowercase();
        // "On …, Anna <a@b> wrote:", "Den … skrev Anna <a@b>:", "… írta:", "… написав:".
        let attribution = lower.ends_with(':')
            && ["wrote", "skrev", "írta", "написав", "написала", "пише"]
                .iter()
                .any(|w| lower.contains(w))
            && lines[i + 1..]
                .iter()
                .find(|n| !n.trim().is_empty())
                .is_some_and(|n| n.trim_start().starts_with('>'));
        let original = lower.starts_with("-----original message-----")
            || lower.starts_with("-------- originalmeddelande --------")
            || lower.starts_with("-------- original message --------")
            || lower.starts_with("-------- eredeti üzenet --------");
        let quote_to_end = l.starts_with('>')
            && lines[i..]
                .iter()
                .all(|n| n.trim().is_empty() || n.trim_start().starts_with('>'));
        if attribution || original || quote_to_end {
            cut = i;
            break;
        }
    }
    let kept = lines[..cut].join("\n");
    if kept.trim().is_empty() {
        text.to_owned()
    } else {
        kept.trim_end().to_owned()
    }
}

/// Cuts the quoted history mail programs append to HTML (Gmail, Outlook, Apple Mail,
/// Thunderbird mark it), keeping what the client wrote now; ammonia closes what the cut leaves
/// open. HTML that is nothing but a quote is left as it is.
pub fn trim_quoted_html(html: &str) -> String {
    const MARKERS: [&str; 7] = [
        "<div class=\"gmail_quote",
        "<blockquote class=\"gmail_quote",
        "<blockquote type=\"cite\"",
        "<div id=\"divRplyFwdMsg\"",
        "<div id=\"appendonsend\"",
        "<div class=\"moz-cite-prefix\"",
        "<div style=\"border:none;border-top:solid #e1e1e1",
    ];
    let lower = html.to_ascii_lowercase();
    let cut = MARKERS
        .iter()
        .filter_map(|m| lower.find(&m.to_ascii_lowercase()))
        .min();
    match cut {
        Some(at) if !strip_tags(&html[..at]).trim().is_empty() => html[..at].to_owned(),
        _ => html.to_owned(),
    }
}

fn strip_tags(html: &str) -> String {
    ammonia::Builder::empty().clean(html).to_string()
}

fn human(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} kB", bytes.div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context<'static> {
        Context {
            office: "office@office.test",
            max_attachment_bytes: 1024,
            fallback_id: "imap-1-7@INBOX".into(),
        }
    }

    #[test]
    fn a_plain_mail_in_swedish() {
        let raw = "From: =?utf-8?q?=C3=85sa_Berg?= <Asa@Client.test>\r\nTo: office@office.test\r\n\
                   Subject: =?iso-8859-1?q?Fr=E5ga_om_bidrag?=\r\nMessage-ID: <abc@client.test>\r\n\
                   Date: Mon, 23 Nov 2026 21:00:00 +0100\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\nHej! N=E4r f=E5r jag svar?\r\n\r\n\
                   Den 20 nov. 2026 skrev Mottagningen <office@office.test>:\r\n> Vi har tagit emot din ans=F6kan.\r\n";
        let m = inbound(raw.as_bytes(), &context());
        assert_eq!(m.from.as_str(), "asa@client.test");
        assert_eq!(m.display_name, "Åsa Berg <asa@client.test>");
        assert_eq!(m.subject.as_deref(), Some("Fråga om bidrag"));
        assert_eq!(m.body, "Fråga om bidrag\n\nHej! När får jag svar?");
        assert_eq!(m.message_id.as_str(), "abc@client.test");
        assert!(!m.automated);
        assert_eq!(m.sent_at.to_rfc3339(), "2026-11-23T20:00:00+00:00");
        assert!(m.references.is_empty());
        assert_eq!(m.case_hint, None);
    }

    #[test]
    fn replies_carry_what_they_answer() {
        let raw = "From: a@client.test\r\nSubject: Re: Hyran [2026-000042]\r\n\
                   In-Reply-To: <cb.7.2026-000042@office.test>\r\n\
                   References: <c1@client.test> <cb.7.2026-000042@office.test>\r\n\r\nTack\r\n";
        let m = inbound(raw.as_bytes(), &context());
        assert_eq!(
            m.references,
            ["cb.7.2026-000042@office.test", "c1@client.test"]
        );
        assert_eq!(m.case_hint.as_deref(), Some("2026-000042"));
        assert_eq!(
            case_number("[x] Re: [2026-12] [2026-000001]"),
            Some("2026-000001".into())
        );
    }

    #[test]
    fn tracking_pixels_scripts_and_big_files_never_reach_the_room() {
        let raw = "From: client@client.test\r\nSubject: Kvitto\r\nMIME-Version: 1.0\r\n\
                   Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\
                   Content-Type: text/html; charset=utf-8\r\n\r\n<p onclick=\"x()\">Se <b>bilagan</b>\
                   <img src=\"https://tracker.example/p.gif\" width=1 height=1></p><script>alert(1)</script>\
                   <style>p{background:url(https://x.example/a)}</style><a href=\"javascript:evil()\">x</a>\
                   <a href=\"https://kommun.example/info\">info</a>\r\n--b1\r\n\
                   Content-Type: application/pdf; name=stor.pdf\r\nContent-Disposition: attachment; filename=stor.pdf\r\n\
                   Content-Transfer-Encoding: base64\r\n\r\n"
            .to_owned()
            + &"QUFB".repeat(400)
            + "\r\n--b1\r\nContent-Type: text/plain; name=liten.txt\r\nContent-Disposition: attachment; filename=liten.txt\r\n\r\nhej\r\n--b1--\r\n";
        let m = inbound(raw.as_bytes(), &context());
        let html = m.html.unwrap();
        for bad in [
            "<img",
            "tracker.example",
            "<script",
            "alert(",
            "onclick",
            "javascript:",
            "x.example",
            "<style",
        ] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        assert!(
            html.contains(
                "<a href=\"https://kommun.example/info\" rel=\"noopener noreferrer\">info</a>"
            ),
            "{html}"
        );
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].filename, "liten.txt");
        assert!(
            m.body.contains(
                "The attachment stor.pdf (2 kB) is larger than this office accepts (1 kB)"
            ),
            "{}",
            m.body
        );
        // No Message-ID: the IMAP fallback id.
        assert_eq!(m.message_id.as_str(), "imap-1-7@INBOX");
    }

    #[test]
    fn machines_are_recognised() {
        let base = "To: office@office.test\r\nSubject: x\r\n";
        for (headers, automated) in [
            ("From: a@client.test\r\nAuto-Submitted: auto-replied\r\n", true),
            ("From: a@client.test\r\nAuto-Submitted: no\r\n", false),
            ("From: a@client.test\r\nPrecedence: bulk\r\n", true),
            ("From: a@client.test\r\nList-Id: <news.client.test>\r\n", true),
            ("From: MAILER-DAEMON@client.test\r\n", true),
            ("From: a@client.test\r\nReturn-Path: <>\r\n", true),
            ("From: Office@office.test\r\n", true),
            ("From: a@client.test\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\r\n", true),
            ("From: a@client.test\r\n", false),
        ] {
            let raw = format!("{headers}{base}\r\nbody\r\n");
            assert_eq!(inbound(raw.as_bytes(), &context()).automated, automated, "{headers}");
        }
    }

    #[test]
    fn bounces_of_our_mail_are_reports() {
        // As Postfix writes them.
        let raw = "From: MAILER-DAEMON@mail.test (Mail Delivery System)\r\nTo: office@office.test\r\n\
                   Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n\
                   MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\
                   \tboundary=\"B1\"\r\n\r\n--B1\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n\
                   --B1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.test\r\n\r\n\
                   Final-Recipient: rfc822; gone@client.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                   Diagnostic-Code: smtp; 550 5.1.1 <gone@client.test> User doesn't exist\r\n\r\n\
                   --B1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Office <office@office.test>\r\n\
                   Message-ID:\r\n <cb.9.2026-000003@office.test>\r\nSubject: Re: x\r\n\r\n--B1--\r\n";
        let b = bounce(raw.as_bytes(), "office.test").unwrap();
        assert_eq!(b.original, "cb.9.2026-000003@office.test");
        assert_eq!(
            b.status,
            DeliveryStatus::Failed {
                reason: "the mail server answered: smtp; 550 5.1.1 <gone@client.test> User doesn't exist".into()
            }
        );
        // Someone else's bounce, and an ordinary mail, are not ours.
        assert!(bounce(raw.as_bytes(), "other.test").is_none());
        assert!(bounce(b"From: a@b.test\r\nSubject: x\r\n\r\nhi", "office.test").is_none());
    }

    #[test]
    fn garbage_is_kept_whole() {
        let m = inbound(b"\x00\x01 not a mail", &context());
        assert!(
            m.body.starts_with("An e-mail arrived that cannot be read"),
            "{}",
            m.body
        );
        assert_eq!(m.attachments[0].data, b"\x00\x01 not a mail");
        assert_eq!(m.original.as_deref(), Some(&b"\x00\x01 not a mail"[..]));
        assert!(m.automated);
    }

    #[test]
    fn senders_that_are_no_address_make_the_mail_unreadable_not_a_case() {
        let long = format!("{}@client.test", "a".repeat(10_000));
        for from in [
            "<script>",
            "abc",
            "@anna:localhost",
            "../../etc/passwd",
            "a b@client.test",
            long.as_str(),
        ] {
            let raw = format!("From: {from}\r\nSubject: Hej\r\n\r\nHej!\r\n");
            let m = inbound(raw.as_bytes(), &context());
            assert_eq!(m.from.as_str(), "unknown-sender@invalid", "{from}");
            assert!(
                m.body.starts_with("An e-mail arrived that cannot be read"),
                "{from}: {}",
                m.body
            );
            assert!(m.automated, "{from}: never answered");
            assert_eq!(m.original.as_deref(), Some(raw.as_bytes()), "kept whole");
        }
        // A Reply-To that is no address leaves the sender as the client.
        let raw = b"From: a@client.test\r\nReply-To: <script>\r\nSubject: x\r\n\r\nx\r\n";
        assert_eq!(inbound(raw, &context()).from.as_str(), "a@client.test");
        // Real addresses stay what they are.
        for from in [
            "klara@client.test",
            "k.l+case@sub.client.test",
            "o'neil@xn--k-gka.test",
        ] {
            let raw = format!("From: {from}\r\nSubject: x\r\n\r\nx\r\n");
            assert_eq!(inbound(raw.as_bytes(), &context()).from.as_str(), from);
        }
    }

    #[test]
    fn reply_to_names_the_client() {
        let form = b"From: Webbformul\xc3\xa4r <noreply@kommun.test>\r\n\
                     Reply-To: Klara Klient <Klara@Client.test>\r\nSubject: Kontakt\r\n\r\nHej!\r\n";
        let m = inbound(form, &context());
        assert_eq!(m.from.as_str(), "klara@client.test");
        assert_eq!(m.display_name, "Klara Klient <klara@client.test>");
        assert!(
            !m.automated,
            "a person wrote it, and answers go to that person"
        );
        // A Reply-To of the office's own would answer ourselves: the sender stays.
        let ours =
            b"From: a@client.test\r\nReply-To: office@office.test\r\nSubject: x\r\n\r\nx\r\n";
        assert_eq!(inbound(ours, &context()).from.as_str(), "a@client.test");
    }

    #[test]
    fn undecodable_characters_are_named_for_the_team() {
        let broken = b"From: a@client.test\r\nSubject: Hej\r\n\
                       Content-Type: text/plain; charset=utf-8\r\n\r\nTrasig \xff\xfe text\r\n";
        let m = inbound(broken, &context());
        assert!(m.body.contains('\u{FFFD}'), "{}", m.body);
        assert_eq!(
            m.problems,
            ["its character set is broken or unknown, so some characters show as \u{FFFD}"]
        );
        assert_eq!(m.original.as_deref(), Some(&broken[..]));
        // The client's own replacement character is no problem of ours.
        let sent = "From: a@client.test\r\nSubject: Hej\r\n\
                    Content-Type: text/plain; charset=utf-8\r\n\r\nSå här: \u{FFFD}\r\n";
        assert!(inbound(sent.as_bytes(), &context()).problems.is_empty());
        let fine = "From: a@client.test\r\nSubject: Hej\r\n\
                    Content-Type: text/plain; charset=iso-8859-1\r\n\r\nS\u{e5} h\u{e4}r\r\n";
        assert!(inbound(fine.as_bytes(), &context()).problems.is_empty());
    }

    #[test]
    fn quoted_html_is_trimmed_too() {
        let gmail = "<div dir=\"ltr\">Tack, det passar!</div><br><div class=\"gmail_quote\"><div>On Mon wrote:</div>\
                     <blockquote class=\"gmail_quote\">Hej Klara!</blockquote></div>";
        assert_eq!(
            sanitise(&trim_quoted_html(gmail)),
            "<div>Tack, det passar!</div><br>"
        );
        let only_quote = "<blockquote type=\"cite\">gammalt</blockquote>";
        assert_eq!(trim_quoted_html(only_quote), only_quote);
    }

    #[test]
    fn quoted_history_is_trimmed() {
        assert_eq!(
            trim_quoted("Tack!\n\nOn Mon, 23 Nov 2026, Office <o@o.test> wrote:\n> old\n> older"),
            "Tack!"
        );
        assert_eq!(
            trim_quoted("Svar\n-----Original Message-----\nFrom: x\nold"),
            "Svar"
        );
        assert_eq!(trim_quoted("> only a quote"), "> only a quote");
        assert_eq!(
            trim_quoted("I said:\n> a quote\nand then my answer"),
            "I said:\n> a quote\nand then my answer"
        );
    }
}
