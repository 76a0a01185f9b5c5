//! The texts of automatic replies: built-in ones in Swedish, English, Hungarian and Ukrainian,
//! replaceable per team, with placeholders filled in at the moment of sending.

use casebridge_config::{team::TemplateOverrides, Language};
use chrono::{DateTime, Locale, Utc};
use chrono_tz::Tz;

/// The kinds of automatic text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Outside office hours.
    Closed,
    /// Outside office hours, short enough for one SMS part.
    ClosedSms,
    /// Inside office hours.
    Acknowledgement,
    /// After an emergency word.
    Emergency,
    /// After an emergency word, short enough for one SMS part.
    EmergencySms,
    /// To a blocked client: neutral, nothing about the case.
    Blocked,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::Closed,
        Self::ClosedSms,
        Self::Acknowledgement,
        Self::Emergency,
        Self::EmergencySms,
        Self::Blocked,
    ];

    /// The key in `[teams.KEY.templates.LANG]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::ClosedSms => "closed_sms",
            Self::Acknowledgement => "acknowledgement",
            Self::Emergency => "emergency",
            Self::EmergencySms => "emergency_sms",
            Self::Blocked => "blocked",
        }
    }

    /// Whether this text goes out as one SMS part, with short dates.
    pub fn is_short(self) -> bool {
        matches!(self, Self::ClosedSms | Self::EmergencySms)
    }

    fn of(self, o: &TemplateOverrides) -> Option<&String> {
        match self {
            Self::Closed => o.closed.as_ref(),
            Self::ClosedSms => o.closed_sms.as_ref(),
            Self::Acknowledgement => o.acknowledgement.as_ref(),
            Self::Emergency => o.emergency.as_ref(),
            Self::EmergencySms => o.emergency_sms.as_ref(),
            Self::Blocked => o.blocked.as_ref(),
        }
    }
}

/// The built-in text of `kind` in `language`.
pub fn builtin(language: Language, kind: Kind) -> &'static str {
    use Kind::*;
    use Language::*;
    match (language, kind) {
        (Sv, Closed) => "{office}: tack för ditt meddelande (ärende {case_number}). Vi har stängt nu och svarar från {next_open}. Om du eller någon annan är i fara, ring {emergency_numbers}.",
        (Sv, ClosedSms) => "Vi har stängt och svarar från {next_open}. Akut: ring {emergency_numbers}",
        (Sv, Acknowledgement) => "{office}: tack för ditt meddelande (ärende {case_number}). Vi svarar inom två arbetsdagar. Om du eller någon annan är i fara, ring {emergency_numbers}.",
        (Sv, Emergency) => "Om du eller någon annan är i fara just nu, ring {emergency_numbers}. Ditt meddelande har nått {office} och lämnas till personal i jour.",
        (Sv, EmergencySms) => "Är du i fara nu? Ring {emergency_numbers}. Jouren har fått ditt meddelande.",
        (En, Closed) => "{office}: thank you for your message (case {case_number}). We are closed now and answer from {next_open}. If you or someone else is in danger, call {emergency_numbers}.",
        (En, ClosedSms) => "We are closed and answer from {next_open}. Emergency: call {emergency_numbers}",
        (En, Acknowledgement) => "{office}: thank you for your message (case {case_number}). We answer within two working days. If you or someone else is in danger, call {emergency_numbers}.",
        (En, Emergency) => "If you or someone else is in danger right now, call {emergency_numbers}. Your message has reached {office} and is passed to staff on call.",
        (En, EmergencySms) => "In danger now? Call {emergency_numbers}. Staff on call have your message.",
        (Hu, Closed) => "{office}: köszönjük üzenetét (ügyszám: {case_number}). Most zárva vagyunk, ekkor válaszolunk: {next_open}. Ha Ön vagy más veszélyben van, hívja: {emergency_numbers}.",
        (Hu, ClosedSms) => "Zárva vagyunk, válasz: {next_open}. Vész esetén: {emergency_numbers}",
        (Hu, Acknowledgement) => "{office}: köszönjük üzenetét (ügyszám: {case_number}). Két munkanapon belül válaszolunk. Ha Ön vagy más veszélyben van, hívja: {emergency_numbers}.",
        (Hu, Emergency) => "Ha Ön vagy más most veszélyben van, hívja: {emergency_numbers}. Üzenete megérkezett ide: {office}, és továbbítjuk az ügyeletes munkatársnak.",
        (Hu, EmergencySms) => "Veszélyben van? Hívja: {emergency_numbers}. Az ügyelet megkapta.",
        (Uk, Closed) => "{office}: дякуємо за повідомлення (справа {case_number}). Зараз ми не працюємо; відповімо після відкриття: {next_open}. Якщо вам або комусь іншому загрожує небезпека, телефонуйте {emergency_numbers}.",
        (Uk, ClosedSms) => "Зачинено до {next_open}. Екстрено: {emergency_numbers}",
        (Uk, Acknowledgement) => "{office}: дякуємо за повідомлення (справа {case_number}). Ми відповімо протягом двох робочих днів. Якщо вам або комусь іншому загрожує небезпека, телефонуйте {emergency_numbers}.",
        (Uk, Emergency) => "Якщо вам або комусь іншому зараз загрожує небезпека, телефонуйте {emergency_numbers}. Ваше повідомлення отримала служба {office}, його передано черговому працівнику.",
        (Uk, EmergencySms) => "Небезпека? Дзвоніть {emergency_numbers}",
        (Sv, Blocked) => "Ditt meddelande har tagits emot och registrerats. Vid akut fara, ring {emergency_numbers}.",
        (En, Blocked) => "Your message has been received and registered. In an emergency, call {emergency_numbers}.",
        (Hu, Blocked) => "Üzenetét megkaptuk és nyilvántartásba vettük. Sürgős esetben hívja: {emergency_numbers}.",
        (Uk, Blocked) => "Ваше повідомлення отримано та зареєстровано. У разі небезпеки телефонуйте {emergency_numbers}.",
    }
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 4] = ["office", "next_open", "emergency_numbers", "case_number"];

/// What the placeholders stand for in one reply.
#[derive(Debug, Clone)]
pub struct Values<'a> {
    /// The team's name.
    pub office: &'a str,
    /// When the office opens next; `None` if not within the horizon.
    pub next_open: Option<DateTime<Utc>>,
    /// The office's time zone, for `next_open`.
    pub time_zone: Tz,
    /// The team's emergency contact information.
    pub emergency_numbers: &'a str,
    /// The case number.
    pub case_number: &'a str,
}

/// A template that names a placeholder that does not exist, or has an unmatched brace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

/// Checks that `template` uses only known placeholders and balanced braces (`{{`/`}}` for
/// literal ones).
pub fn check(template: &str) -> Result<(), TemplateError> {
    render_with(template, |name| {
        PLACEHOLDERS
            .contains(&name)
            .then(String::new)
            .ok_or_else(|| {
                TemplateError(format!(
                    "unknown placeholder {{{name}}} (known: {})",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ))
            })
    })
    .map(|_| ())
}

/// Fills in `template`'s placeholders for `language`. `short` writes dates briefly (for SMS).
pub fn render(
    template: &str,
    language: Language,
    short: bool,
    values: &Values<'_>,
) -> Result<String, TemplateError> {
    render_with(template, |name| match name {
        "office" => Ok(values.office.to_owned()),
        "emergency_numbers" => Ok(values.emergency_numbers.to_owned()),
        "case_number" => Ok(values.case_number.to_owned()),
        "next_open" => Ok(match values.next_open {
            Some(at) => format_time(at, values.time_zone, language, short),
            None => match language {
                Language::Sv => "så snart vi kan",
                Language::En => "as soon as we can",
                Language::Hu => "amint tudunk",
                Language::Uk => "щойно зможемо",
            }
            .to_owned(),
        }),
        other => Err(TemplateError(format!("unknown placeholder {{{other}}}"))),
    })
}

/// A local time as a client of `language` would write it.
pub fn format_time(at: DateTime<Utc>, tz: Tz, language: Language, short: bool) -> String {
    let local = at.with_timezone(&tz);
    let (locale, format) = match (language, short) {
        (Language::Sv, false) => (Locale::sv_SE, "%A %-d %B kl. %H:%M"),
        (Language::Sv, true) => (Locale::sv_SE, "%a %-d/%-m %H:%M"),
        (Language::En, false) => (Locale::en_GB, "%A %-d %B at %H:%M"),
        (Language::En, true) => (Locale::en_GB, "%a %-d/%-m %H:%M"),
        (Language::Hu, false) => (Locale::hu_HU, "%B %-d., %A %H:%M"),
        (Language::Hu, true) => (Locale::hu_HU, "%m.%d. %H:%M"),
        (Language::Uk, false) => (Locale::uk_UA, "%A, %-d %B о %H:%M"),
        (Language::Uk, true) => (Locale::uk_UA, "%d.%m %H:%M"),
    };
    local.format_localized(format, locale).to_string()
}

fn render_with(
    template: &str,
    mut value: impl FnMut(&str) -> Result<String, TemplateError>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if tail.starts_with('}') {
            return Err(TemplateError(
                "a lone '}' (write '}}' for a brace)".to_owned(),
            ));
        } else {
            let end = tail.find('}').ok_or_else(|| {
                TemplateError("a '{' without its '}' (write '{{' for a brace)".to_owned())
            })?;
            out.push_str(&value(tail[1..end].trim())?);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A team's texts: its overrides over the built-in ones.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    overrides: std::collections::BTreeMap<Language, TemplateOverrides>,
}

impl Templates {
    /// The team's overrides.
    pub fn new(overrides: std::collections::BTreeMap<Language, TemplateOverrides>) -> Self {
        Self { overrides }
    }

    /// The text of `kind` in `language`: the team's own, or the built-in one.
    pub fn get(&self, language: Language, kind: Kind) -> &str {
        self.overrides
            .get(&language)
            .and_then(|o| kind.of(o))
            .map_or_else(|| builtin(language, kind), String::as_str)
    }

    /// Checks every override, naming the first bad one as `LANG.KEY`.
    pub fn check(&self) -> Result<(), (String, TemplateError)> {
        for (language, overrides) in &self.overrides {
            for kind in Kind::ALL {
                if let Some(text) = kind.of(overrides) {
                    check(text).map_err(|e| (format!("{}.{}", language.code(), kind.key()), e))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn values() -> Values<'static> {
        Values {
            office: "Socialtjänsten",
            next_open: Some(Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap()),
            time_zone: chrono_tz::Europe::Stockholm,
            emergency_numbers: "112, socialjouren 08-123 456 78",
            case_number: "2026-000042",
        }
    }

    #[test]
    fn every_builtin_renders_in_every_language() {
        for language in [Language::Sv, Language::En, Language::Hu, Language::Uk] {
            for kind in Kind::ALL {
                let text = builtin(language, kind);
                check(text).unwrap();
                let out = render(text, language, kind.is_short(), &values()).unwrap();
                assert!(!out.contains('{'), "{language:?} {kind:?}: {out}");
                assert!(out.contains("112"), "{language:?} {kind:?}: {out}");
            }
        }
    }

    #[test]
    fn dates_read_as_each_language_writes_them() {
        let v = values();
        let render = |l, short| render("{next_open}", l, short, &v).unwrap();
        assert_eq!(render(Language::Sv, false), "tisdag 24 november kl. 08:00");
        assert_eq!(render(Language::En, false), "Tuesday 24 November at 08:00");
        assert_eq!(render(Language::Hu, false), "november 24., kedd 08:00");
        assert_eq!(render(Language::Sv, true), "tis 24/11 08:00");
        assert_eq!(render(Language::Uk, true), "24.11 08:00");
        let uk = super::render("{next_open}", Language::Uk, false, &v).unwrap();
        assert!(uk.starts_with("вівторок, 24 листопада о 08:00"), "{uk}");
    }

    #[test]
    fn bad_templates_are_named() {
        assert_eq!(
            check("Ring {emergency_number}").unwrap_err().to_string(),
            "unknown placeholder {emergency_number} (known: {office}, {next_open}, {emergency_numbers}, {case_number})"
        );
        assert!(check("Stängt {office").is_err());
        assert!(check("Stängt } nu").is_err());
        assert_eq!(
            render("{{literal}} {office}", Language::En, false, &values()).unwrap(),
            "{literal} Socialtjänsten"
        );
    }
}
