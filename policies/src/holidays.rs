//! Closed days from iCalendar files (RFC 5545), such as a country's public holidays: all-day
//! events close whole days, timed events close their span; recurring events (`RRULE`, `RDATE`,
//! `EXDATE`) are expanded over a window of dates.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use icalendar::{Calendar, CalendarDateTime, Component, DatePerhapsTime, Event, EventLike};

/// Most occurrences taken from one recurring event.
const MAX_OCCURRENCES: u16 = 2_000;

/// Closed days and spans read from calendars, in the office's local time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holidays {
    /// Whole days closed.
    pub days: BTreeSet<NaiveDate>,
    /// Closed spans of local time, from timed events.
    pub spans: Vec<(NaiveDateTime, NaiveDateTime)>,
}

/// What is wrong with a calendar.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IcsError {
    /// The text is not iCalendar.
    #[error("not an iCalendar file: {0}")]
    Syntax(String),
    /// An event cannot be read.
    #[error("event {event}: {message}")]
    Event {
        /// The event's SUMMARY or UID.
        event: String,
        /// What is wrong.
        message: String,
    },
}

impl Holidays {
    /// Reads the events of `text` that fall within `from..to`, with timed events converted to
    /// `tz`, the office's time zone.
    pub fn from_ics(text: &str, tz: Tz, from: NaiveDate, to: NaiveDate) -> Result<Self, IcsError> {
        let calendar: Calendar = text.parse().map_err(IcsError::Syntax)?;
        let mut out = Self::default();
        let mut events = 0;
        for event in calendar.events() {
            events += 1;
            out.add_event(event, tz, from, to)?;
        }
        if events == 0 && !text.contains("BEGIN:VCALENDAR") {
            return Err(IcsError::Syntax("no BEGIN:VCALENDAR".into()));
        }
        Ok(out)
    }

    /// Adds another calendar's days and spans.
    pub fn extend(&mut self, other: Self) {
        self.days.extend(other.days);
        self.spans.extend(other.spans);
    }

    fn add_event(
        &mut self,
        event: &Event,
        tz: Tz,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<(), IcsError> {
        let name = event
            .get_summary()
            .or_else(|| event.get_uid())
            .unwrap_or("without SUMMARY or UID")
            .to_owned();
        let fail = |message: String| IcsError::Event {
            event: name.clone(),
            message,
        };
        let start = event
            .get_start()
            .ok_or_else(|| fail("has no DTSTART".into()))?;
        let recurring =
            event.property_value("RRULE").is_some() || event.property_value("RDATE").is_some();
        match start {
            DatePerhapsTime::Date(first) => {
                let days = match event.get_end() {
                    Some(DatePerhapsTime::Date(end)) if end > first => (end - first).num_days(),
                    Some(DatePerhapsTime::Date(_)) | None => 1,
                    Some(DatePerhapsTime::DateTime(_)) => {
                        return Err(fail("DTSTART is a date but DTEND has a time".into()))
                    }
                };
                let starts = if recurring {
                    self::occurrences(event, from, to)
                        .map_err(fail)?
                        .into_iter()
                        .map(|t| t.date_naive())
                        .collect()
                } else {
                    vec![first]
                };
                for start in starts {
                    for day in 0..days {
                        let day = start + Duration::days(day);
                        if from <= day && day < to {
                            self.days.insert(day);
                        }
                    }
                }
            }
            DatePerhapsTime::DateTime(first) => {
                let first = instant(&first, tz).map_err(fail)?;
                let length = match event.get_end() {
                    Some(DatePerhapsTime::DateTime(end)) => {
                        instant(&end, tz).map_err(fail)? - first
                    }
                    Some(DatePerhapsTime::Date(_)) => {
                        return Err(fail("DTSTART has a time but DTEND is a date".into()))
                    }
                    None => Duration::zero(),
                };
                if length <= Duration::zero() {
                    return Ok(());
                }
                let starts = if recurring {
                    occurrences(event, from, to).map_err(fail)?
                } else {
                    vec![first]
                };
                let window = (from.and_time(NaiveTime::MIN), to.and_time(NaiveTime::MIN));
                for start in starts {
                    let local = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local();
                    let span = (local(start), local(start + length));
                    if span.1 > window.0 && span.0 < window.1 {
                        self.spans.push(span);
                    }
                }
            }
        }
        Ok(())
    }
}

/// When a recurring event starts within the window (a day before and after it, so that no
/// time zone loses an edge).
fn occurrences(
    event: &Event,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DateTime<Utc>>, String> {
    let set = event.get_recurrence().map_err(|e| e.to_string())?;
    let edge = |d: NaiveDate| icalendar::Tz::UTC.from_utc_datetime(&d.and_time(NaiveTime::MIN));
    let result = set
        .after(edge(from - Duration::days(1)))
        .before(edge(to + Duration::days(1)))
        .all(MAX_OCCURRENCES);
    Ok(result
        .dates
        .into_iter()
        .map(|t| t.with_timezone(&Utc))
        .collect())
}

/// The UTC instant of an iCalendar date-time: floating times are the office's own.
fn instant(t: &CalendarDateTime, office: Tz) -> Result<DateTime<Utc>, String> {
    let local = |tz: Tz, naive: &NaiveDateTime| {
        tz.from_local_datetime(naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("{naive} does not exist in {tz}"))
    };
    match t {
        CalendarDateTime::Utc(t) => Ok(*t),
        CalendarDateTime::Floating(naive) => local(office, naive),
        CalendarDateTime::WithTimezone { date_time, tzid } => {
            let tz: Tz = tzid
                .parse()
                .map_err(|_| format!("unknown time zone TZID={tzid}"))?;
            local(tz, date_time)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    const SWEDEN: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//holidays//SV\r\n\
BEGIN:VEVENT\r\nUID:juldagen@test\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20151225\r\n\
DTEND;VALUE=DATE:20151226\r\nRRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25\r\nSUMMARY:Juldagen\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:midsommar-2026@test\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20260619\r\n\
DTEND;VALUE=DATE:20260621\r\nSUMMARY:Midsommarafton och midsommardagen\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:kickoff@test\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20261106T120000Z\r\n\
DTEND:20261106T150000Z\r\nSUMMARY:Personaldag\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:trettondag@test\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20200106\r\n\
RRULE:FREQ=YEARLY\r\nEXDATE;VALUE=DATE:20270106\r\nSUMMARY:Trettondedag jul\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n";

    #[test]
    fn reads_dates_spans_and_yearly_rules() {
        let h = Holidays::from_ics(
            SWEDEN,
            chrono_tz::Europe::Stockholm,
            date("2026-01-01"),
            date("2028-01-01"),
        )
        .unwrap();
        let days: Vec<String> = h.days.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            days,
            [
                "2026-01-06",
                "2026-06-19",
                "2026-06-20",
                "2026-12-25",
                // 2027-01-06 is excluded by EXDATE.
                "2027-12-25"
            ]
        );
        // 12:00Z on 6 November is 13:00 in Stockholm (CET).
        assert_eq!(
            h.spans,
            vec![(
                date("2026-11-06").and_hms_opt(13, 0, 0).unwrap(),
                date("2026-11-06").and_hms_opt(16, 0, 0).unwrap()
            )]
        );
    }

    #[test]
    fn broken_calendars_are_named() {
        let err = Holidays::from_ics(
            "hello",
            chrono_tz::UTC,
            date("2026-01-01"),
            date("2027-01-01"),
        )
        .unwrap_err();
        assert!(matches!(err, IcsError::Syntax(_)), "{err}");
        let no_start = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Nyårsdagen\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(
            Holidays::from_ics(
                no_start,
                chrono_tz::UTC,
                date("2026-01-01"),
                date("2027-01-01")
            )
            .unwrap_err()
            .to_string(),
            "event Nyårsdagen: has no DTSTART"
        );
    }
}
