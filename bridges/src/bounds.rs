//! Bounds the core keeps on whatever a bridge hands in, whichever channel it came from: a
//! channel checks its own fields by its own rules first (an SMS body, an e-mail address), and
//! this is the floor under all of them, so that no client's input can make a key, a name or
//! a log line grow without end.
//!
//! - A message id longer than [`MAX_ID_BYTES`] becomes `sha256:` and its digest: still one key
//!   per message, so a retried message is still recognised, and bounded.
//! - A display name loses control characters (a newline in a name would start a new line in
//!   the team's view and the journal) and is cut to [`MAX_NAME_CHARS`] characters: Matrix
//!   homeservers refuse longer display names, and the ghost would never be named.
//! - A file's name keeps no folders or control characters and at most [`MAX_FILENAME_BYTES`]
//!   bytes, its extension kept; a MIME type that is no `type/subtype` becomes
//!   `application/octet-stream`.

use sha2::{Digest, Sha256};

use crate::{Attachment, InboundMessage, RemoteMessageId};

/// Longest message id kept as given: longer ones are kept as their digest.
pub const MAX_ID_BYTES: usize = 255;

/// Longest display name kept, in characters; longer ones end in `…`. Synapse takes 256.
pub const MAX_NAME_CHARS: usize = 128;

/// Longest file name kept, in bytes (what most file systems take).
pub const MAX_FILENAME_BYTES: usize = 255;

/// `message` within the bounds above.
pub fn bounded(mut message: InboundMessage) -> InboundMessage {
    message.message_id = bounded_id(message.message_id);
    message.replaces = message.replaces.map(bounded_id);
    message.display_name = bounded_name(&message.display_name);
    for Attachment { filename, mime, .. } in &mut message.attachments {
        *filename = bounded_filename(filename);
        if !is_mime(mime) {
            *mime = "application/octet-stream".into();
        }
    }
    message
}

/// `name` without folders, control characters or line breaks, at most
/// [`MAX_FILENAME_BYTES`] bytes with its extension (of up to 16 bytes) kept; `file` if nothing
/// is left.
pub fn bounded_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let (stem, extension) = match base.rsplit_once('.') {
        Some((stem, e))
            if !e.is_empty() && e.len() <= 16 && e.chars().all(char::is_alphanumeric) =>
        {
            (stem, Some(e))
        }
        _ => (base, None),
    };
    let keep = MAX_FILENAME_BYTES - extension.map_or(0, |e| e.len() + 1);
    let mut clean = String::new();
    for c in stem.chars() {
        let c = if c.is_control() { '_' } else { c };
        if clean.len() + c.len_utf8() > keep {
            break;
        }
        clean.push(c);
    }
    let clean = clean.trim().trim_start_matches('.');
    match (clean.is_empty(), extension) {
        (true, None) => "file".into(),
        (true, Some(e)) => format!("file.{e}"),
        (false, None) => clean.to_owned(),
        (false, Some(e)) => format!("{clean}.{e}"),
    }
}

/// A MIME type as RFC 6838 writes them: `type/subtype` of letters, digits and `!#$&-^_.+`,
/// parameters allowed, at most 255 bytes.
fn is_mime(mime: &str) -> bool {
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.len() <= 127
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    mime.len() <= 255
        && !mime.chars().any(char::is_control)
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s))
}

/// `id` as given if short, else `sha256:` and the hex digest of it.
pub fn bounded_id(id: RemoteMessageId) -> RemoteMessageId {
    if id.as_str().len() <= MAX_ID_BYTES {
        return id;
    }
    RemoteMessageId::new(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(id.as_str().as_bytes()))
    ))
}

/// `name` on one line, runs of white space and control characters as one space, at most
/// [`MAX_NAME_CHARS`] characters.
pub fn bounded_name(name: &str) -> String {
    // Cut first, so a name of a megabyte costs no more than a short one.
    let head: String = name.chars().take(MAX_NAME_CHARS * 8).collect();
    let one_line = head
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if one_line.chars().count() <= MAX_NAME_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_NAME_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_on_one_line_and_short() {
        assert_eq!(bounded_name("Anna Svensson"), "Anna Svensson");
        assert_eq!(bounded_name("  Anna\n\tSvensson\u{0}x "), "Anna Svensson x");
        assert_eq!(bounded_name("Olena (@olena_k)"), "Olena (@olena_k)");
        let long = "ä".repeat(10_000);
        let name = bounded_name(&long);
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);
        assert!(name.ends_with('…'));
        let longest = "a".repeat(MAX_NAME_CHARS);
        assert_eq!(bounded_name(&longest), longest);
        assert!(bounded_name(&format!("{longest} b")).ends_with("a…"));
    }

    #[test]
    fn long_ids_become_their_digest_and_short_ones_stay() {
        let short = RemoteMessageId::new("s8f2a");
        assert_eq!(bounded_id(short.clone()), short);
        let long = RemoteMessageId::new("x".repeat(500_000));
        let digest = bounded_id(long.clone());
        assert!(digest.as_str().starts_with("sha256:"));
        assert_eq!(digest.as_str().len(), 7 + 64);
        // The same id twice is still one message.
        assert_eq!(bounded_id(long), digest);
        assert_ne!(
            bounded_id(RemoteMessageId::new("y".repeat(500_000))),
            digest
        );
    }

    #[test]
    fn file_names_lose_folders_and_length_but_keep_their_extension() {
        assert_eq!(bounded_filename("photo-12.jpg"), "photo-12.jpg");
        assert_eq!(bounded_filename("../../etc/passwd"), "passwd");
        assert_eq!(bounded_filename("C:\\Users\\x\\brev.pdf"), "brev.pdf");
        assert_eq!(bounded_filename("a\nb.txt"), "a_b.txt");
        assert_eq!(bounded_filename(".."), "file");
        assert_eq!(bounded_filename(""), "file");
        let long = format!("{}.pdf", "å".repeat(5_000));
        let name = bounded_filename(&long);
        assert!(name.len() <= MAX_FILENAME_BYTES, "{}", name.len());
        assert!(name.ends_with("å.pdf"), "{name}");
    }

    #[test]
    fn mime_types_are_type_and_subtype() {
        for good in [
            "image/jpeg",
            "application/vnd.ms-excel",
            "text/plain; charset=utf-8",
        ] {
            assert!(is_mime(good), "{good}");
        }
        for bad in [
            "",
            "jpeg",
            "image/",
            "<script>/x",
            "image/jpeg\nX: y",
            "a/b c",
        ] {
            assert!(!is_mime(bad), "{bad}");
        }
    }

    #[test]
    fn a_message_is_bounded_whole() {
        let message = bounded(InboundMessage {
            message_id: RemoteMessageId::new("m".repeat(300)),
            replaces: Some(RemoteMessageId::new("r".repeat(300))),
            display_name: "n\n".repeat(300),
            attachments: vec![Attachment {
                filename: "/x/".repeat(100),
                mime: "nonsense".into(),
                data: vec![1],
            }],
            ..Default::default()
        });
        assert_eq!(message.attachments[0].filename, "file");
        assert_eq!(message.attachments[0].mime, "application/octet-stream");
        assert!(message.message_id.as_str().len() <= MAX_ID_BYTES);
        assert!(message.replaces.unwrap().as_str().len() <= MAX_ID_BYTES);
        assert!(message.display_name.chars().count() <= MAX_NAME_CHARS);
        assert!(!message.display_name.contains('\n'));
    }
}
