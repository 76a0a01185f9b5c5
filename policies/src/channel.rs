//! A channel's rules, as data the core enforces for every channel alike: how long after the
//! client's last message the office may still answer (Meta's 24-hour customer-service window),
//! which kinds of file it carries, and how a text longer than one message is cut.
//!
//! A bridge declares its rules (`Capabilities` in the bridges crate, with defaults that mean
//! "no such rule"); the gateway gathers the facts (when the client last wrote, whether a person
//! or the gateway itself is answering) and asks these functions, so a new channel's rule is one
//! declaration, not a change in the core.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long after the client's last message a channel takes the office's messages.
///
/// WhatsApp: free-form for 24 hours, then approved templates only. Messenger and Instagram:
/// free-form for 24 hours, then a reply a person wrote, tagged `HUMAN_AGENT`, for up to 7 days;
/// never an automatic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyWindow {
    /// Any message (a person's or an automatic one) goes within this long.
    pub open_for: Duration,
    /// After `open_for`, a message a person wrote still goes until this long after the
    /// client's last message, marked as a person's (Meta's `HUMAN_AGENT` tag); `None`: nothing.
    pub human_for: Option<Duration>,
    /// Outside the window the channel still takes the office's pre-approved templates.
    pub templates_outside: bool,
}

impl ReplyWindow {
    /// WhatsApp Business (Cloud API): 24 hours, then templates only.
    pub const WHATSAPP: Self = Self {
        open_for: Duration::from_secs(24 * 3600),
        human_for: None,
        templates_outside: true,
    };

    /// Messenger and Instagram: 24 hours, then a person's reply with the human-agent tag for up
    /// to 7 days.
    pub const MESSENGER: Self = Self {
        open_for: Duration::from_secs(24 * 3600),
        human_for: Some(Duration::from_secs(7 * 24 * 3600)),
        templates_outside: false,
    };

    /// Whether a message by `author` may go now, given when the client last wrote on this
    /// channel (`None`: never, e.g. a case opened from another channel).
    pub fn verdict(
        &self,
        last_client_message: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        author: Author,
    ) -> WindowVerdict {
        let Some(last) = last_client_message else {
            return WindowVerdict::Closed {
                since: None,
                templates: self.templates_outside,
            };
        };
        let open_until = add(last, self.open_for);
        if now < open_until {
            return WindowVerdict::Open { until: open_until };
        }
        if let Some(human_for) = self.human_for {
            let human_until = add(last, human_for);
            if now < human_until {
                return match author {
                    Author::Person => WindowVerdict::PersonOnly { until: human_until },
                    Author::Automatic => WindowVerdict::Closed {
                        since: Some(open_until),
                        templates: self.templates_outside,
                    },
                };
            }
            return WindowVerdict::Closed {
                since: Some(human_until),
                templates: self.templates_outside,
            };
        }
        WindowVerdict::Closed {
            since: Some(open_until),
            templates: self.templates_outside,
        }
    }

    /// When the window closes for a person's reply, the moment to tell the team about, given
    /// the client's last message: the end of the human-agent time if the channel has one, else
    /// the end of the free window.
    pub fn closes_at(&self, last_client_message: DateTime<Utc>) -> DateTime<Utc> {
        add(
            last_client_message,
            self.human_for.unwrap_or(self.open_for).max(self.open_for),
        )
    }
}

/// `at + by`, saturating at the end of time instead of panicking on absurd windows.
fn add(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|by| at.checked_add_signed(by))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Who is writing: the window treats a person's reply and the gateway's own differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// A worker of the case team.
    Person,
    /// The gateway itself: an auto-reply out of hours, an emergency answer.
    Automatic,
}

/// What [`ReplyWindow::verdict`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowVerdict {
    /// Any message goes, until `until`.
    Open {
        /// When the free window closes.
        until: DateTime<Utc>,
    },
    /// Only a person's reply goes, marked as such (the human-agent tag), until `until`.
    PersonOnly {
        /// When that closes too.
        until: DateTime<Utc>,
    },
    /// Nothing free-form goes.
    Closed {
        /// Since when (`None`: the client never wrote on this channel).
        since: Option<DateTime<Utc>>,
        /// Whether a pre-approved template still goes.
        templates: bool,
    },
}

impl WindowVerdict {
    /// Whether a free-form message goes.
    pub fn allows_free_form(&self) -> bool {
        !matches!(self, Self::Closed { .. })
    }
}

/// Which kinds of file a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaKinds {
    /// Pictures (`image/*`).
    pub images: bool,
    /// Sound and voice (`audio/*`).
    pub audio: bool,
    /// Films (`video/*`).
    pub video: bool,
    /// Every other file (documents, archives ...).
    pub documents: bool,
}

impl MediaKinds {
    /// No files at all (SMS).
    pub const NONE: Self = Self {
        images: false,
        audio: false,
        video: false,
        documents: false,
    };

    /// Every kind of file (e-mail, Telegram).
    pub const ALL: Self = Self {
        images: true,
        audio: true,
        video: true,
        documents: true,
    };

    /// Whether the channel carries any file.
    pub fn any(&self) -> bool {
        *self != Self::NONE
    }

    /// Whether the channel carries a file of this MIME type.
    pub fn accepts(&self, mime: &str) -> bool {
        let top = mime.split('/').next().unwrap_or_default().trim();
        if top.eq_ignore_ascii_case("image") {
            self.images
        } else if top.eq_ignore_ascii_case("audio") {
            self.audio
        } else if top.eq_ignore_ascii_case("video") {
            self.video
        } else {
            self.documents
        }
    }
}

/// `text` cut into parts of at most `max` characters each, for a channel that carries at most
/// `max` characters per message and cannot cut text itself. Cuts fall after a paragraph, else a
/// line, else a space, in the second half of a part where one is found there, else at `max`
/// characters; joined again the parts are exactly `text`. A text that fits is one part.
pub fn fit_length(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        // Byte offset of the character just past `max` characters.
        let limit = rest
            .char_indices()
            .nth(max)
            .map_or(rest.len(), |(at, _)| at);
        let window = &rest[..limit];
        let half = window
            .char_indices()
            .nth(max / 2)
            .map_or(window.len(), |(at, _)| at);
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| {
                window
                    .rfind(sep)
                    .map(|at| at + sep.len())
                    .filter(|&at| at > half)
            })
            .unwrap_or(limit);
        parts.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0).unwrap() + chrono::Duration::hours(hours)
    }

    #[test]
    fn whatsapp_is_open_for_a_day_then_takes_templates_only() {
        let w = ReplyWindow::WHATSAPP;
        let last = Some(at(0));
        assert_eq!(
            w.verdict(last, at(23), Author::Person),
            WindowVerdict::Open { until: at(24) }
        );
        assert_eq!(
            w.verdict(last, at(23), Author::Automatic),
            WindowVerdict::Open { until: at(24) }
        );
        for author in [Author::Person, Author::Automatic] {
            assert_eq!(
                w.verdict(last, at(24), author),
                WindowVerdict::Closed {
                    since: Some(at(24)),
                    templates: true
                }
            );
        }
        assert_eq!(w.closes_at(at(0)), at(24));
    }

    #[test]
    fn messenger_takes_a_persons_reply_for_seven_days_never_an_automatic_one() {
        let w = ReplyWindow::MESSENGER;
        let last = Some(at(0));
        assert!(w.verdict(last, at(1), Author::Automatic).allows_free_form());
        assert_eq!(
            w.verdict(last, at(25), Author::Person),
            WindowVerdict::PersonOnly { until: at(7 * 24) }
        );
        assert_eq!(
            w.verdict(last, at(25), Author::Automatic),
            WindowVerdict::Closed {
                since: Some(at(24)),
                templates: false
            }
        );
        assert_eq!(
            w.verdict(last, at(7 * 24), Author::Person),
            WindowVerdict::Closed {
                since: Some(at(7 * 24)),
                templates: false
            }
        );
        assert_eq!(w.closes_at(at(0)), at(7 * 24));
    }

    #[test]
    fn a_client_who_never_wrote_on_the_channel_has_no_window() {
        let v = ReplyWindow::WHATSAPP.verdict(None, at(0), Author::Person);
        assert_eq!(
            v,
            WindowVerdict::Closed {
                since: None,
                templates: true
            }
        );
        assert!(!v.allows_free_form());
    }

    #[test]
    fn absurd_windows_saturate_instead_of_panicking() {
        let w = ReplyWindow {
            open_for: Duration::MAX,
            human_for: None,
            templates_outside: false,
        };
        assert!(w
            .verdict(Some(at(0)), at(1), Author::Person)
            .allows_free_form());
        assert_eq!(w.closes_at(at(0)), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn media_kinds_follow_the_mime_type() {
        let images = MediaKinds {
            images: true,
            ..MediaKinds::NONE
        };
        assert!(images.accepts("image/jpeg") && images.accepts("IMAGE/png"));
        assert!(!images.accepts("video/mp4") && !images.accepts("application/pdf"));
        assert!(!images.accepts("") && images.any());
        assert!(MediaKinds::ALL.accepts("application/pdf") && MediaKinds::ALL.accepts("audio/ogg"));
        assert!(!MediaKinds::NONE.any() && !MediaKinds::NONE.accepts("image/png"));
    }

    #[test]
    fn long_text_is_cut_at_paragraphs_lines_or_spaces_and_loses_nothing() {
        let text = format!("{}\n\n{}", "a".repeat(30), "b ".repeat(40));
        let parts = fit_length(&text, 40);
        assert_eq!(parts[0], format!("{}\n\n", "a".repeat(30)));
        assert!(parts.iter().all(|p| p.chars().count() <= 40), "{parts:?}");
        assert_eq!(parts.concat(), text);
        // No space to cut at: hard cuts, on character boundaries.
        let dense = "ä".repeat(95);
        let parts = fit_length(&dense, 40);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            [40, 40, 15]
        );
        assert_eq!(parts.concat(), dense);
        // A text that fits, and the empty text, are one part.
        assert_eq!(fit_length("kort", 40), ["kort"]);
        assert_eq!(fit_length("", 40), [""]);
        // A space early in the part is not worth a tiny part.
        let parts = fit_length(&format!("ab {}", "c".repeat(60)), 40);
        assert_eq!(parts[0].chars().count(), 40);
    }
}
