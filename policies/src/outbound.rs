//! Preparing a case-team message for a client: what of a Matrix event may leave the office.

use ruma::{events::room::message::sanitize::remove_plain_reply_fallback, html};

/// `text` safe inside HTML text and attribute values.
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The text of one case-room message, as a client may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundText {
    /// Plain-text body.
    pub body: String,
    /// HTML body, when the event had one.
    pub html: Option<String>,
}

/// Removes what a Matrix client adds to a reply: the quoted original with its sender's Matrix ID
/// (`> <@anna:office> ...`) in the body and the `<mx-reply>` block in the HTML. Those name a
/// worker and must never reach a client.
pub fn strip_reply_fallback(body: &str, html_body: Option<&str>) -> OutboundText {
    OutboundText {
        body: remove_plain_reply_fallback(body).to_owned(),
        html: html_body.map(html::remove_html_reply_fallback),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reply_fallback_is_removed_from_both_bodies() {
        let text = strip_reply_fallback(
            "> <@anna:office.example> Are you safe?\n> Call us\n\nYes, we can meet at ten.",
            Some(
                "<mx-reply><blockquote><a href=\"https://matrix.to/#/!r:o/$e\">In reply to</a> \
                 <a href=\"https://matrix.to/#/@anna:office.example\">@anna:office.example</a>\
                 <br>Are you safe?</blockquote></mx-reply>Yes, we can meet at ten.",
            ),
        );
        assert_eq!(text.body, "Yes, we can meet at ten.");
        assert_eq!(text.html.as_deref(), Some("Yes, we can meet at ten."));
    }

    #[test]
    fn plain_messages_are_untouched() {
        let text = strip_reply_fallback("> a quote the worker typed\nand text", None);
        assert_eq!(text.body, "> a quote the worker typed\nand text");
        assert_eq!(text.html, None);
    }

    proptest! {
        #[test]
        fn no_reply_fallback_sender_survives(
            localpart in "[a-z][a-z0-9._-]{0,15}",
            quoted in "[^\n<>]{0,40}",
            reply in "[A-Za-z0-9 ,.!?]{1,60}",
        ) {
            let mxid = format!("@{localpart}:office.example");
            let body = format!("> <{mxid}> {quoted}\n\n{reply}");
            let html = format!(
                "<mx-reply><blockquote><a href=\"https://matrix.to/#/{mxid}\">{mxid}</a>\
                 <br>{quoted}</blockquote></mx-reply>{reply}"
            );
            let text = strip_reply_fallback(&body, Some(&html));
            prop_assert!(!text.body.contains(&mxid));
            prop_assert!(!text.html.unwrap().contains(&mxid));
        }
    }
}
