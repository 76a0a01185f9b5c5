//! Office hours: whether a team is open at an instant, and when that next changes.
//!
//! Every rule is in the office's wall-clock time (the way offices write their hours), so a
//! DST change moves the UTC instants but never the local ones. Precedence: a one-off closure,
//! then a one-off opening, then a holiday, then the weekday's intervals.

use std::collections::BTreeSet;

use casebridge_config::team::{HoursConfig, Interval};
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// How far ahead [`OfficeHours::next_change`] looks: an office closed longer than this is
/// treated as closed for good.
const HORIZON_DAYS: i64 = 400;

/// A team's opening hours, ready to answer questions about any instant.
#[derive(Debug, Clone)]
pub struct OfficeHours {
    tz: Tz,
    week: [Vec<Interval>; 7],
    holidays: BTreeSet<NaiveDate>,
    closed: Vec<(NaiveDateTime, NaiveDateTime)>,
    open: Vec<(NaiveDateTime, NaiveDateTime)>,
}

/// Whether the office is open at an instant, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Open at the instant asked about.
    pub open: bool,
    /// When that changes; `None` when it does not within the horizon (about a year).
    pub until: Option<DateTime<Utc>>,
}

impl OfficeHours {
    /// Hours from a team's configuration, with holidays read from its calendars.
    pub fn new(config: &HoursConfig, calendar_holidays: &crate::holidays::Holidays) -> Self {
        let week = config.week().map(|day| {
            let mut day = day.to_vec();
            day.sort_by_key(|i| i.start);
            day
        });
        let mut closed: Vec<_> = config.closed.iter().map(|e| (e.from.0, e.to.0)).collect();
        closed.extend(calendar_holidays.spans.iter().copied());
        Self {
            tz: config.time_zone,
            week,
            holidays: config
                .holidays
                .iter()
                .map(|d| d.0)
                .chain(calendar_holidays.days.iter().copied())
                .collect(),
            closed,
            open: config.open.iter().map(|e| (e.from.0, e.to.0)).collect(),
        }
    }

    /// The office's time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Whether the office is open at `at`.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        self.is_open_local(at.with_timezone(&self.tz).naive_local())
    }

    /// Whether the office is open at local wall-clock time `t`.
    pub fn is_open_local(&self, t: NaiveDateTime) -> bool {
        let within = |spans: &[(NaiveDateTime, NaiveDateTime)]| {
            spans.iter().any(|(from, to)| *from <= t && t < *to)
        };
        if within(&self.closed) {
            return false;
        }
        if within(&self.open) {
            return true;
        }
        if self.holidays.contains(&t.date()) {
            return false;
        }
        let second = t.time().num_seconds_from_midnight();
        self.week[t.weekday().num_days_from_monday() as usize]
            .iter()
            .any(|i| i.start <= second && second < i.end)
    }

    /// Whether the office is open at `at` and until when.
    pub fn status(&self, at: DateTime<Utc>) -> Status {
        Status {
            open: self.is_open(at),
            until: self.next_change(at),
        }
    }

    /// The first instant after `at` where open turns to closed or back.
    pub fn next_change(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let now_open = self.is_open(at);
        let first_day = at.with_timezone(&self.tz).date_naive();
        for offset in 0..=HORIZON_DAYS {
            let day = first_day + Duration::days(offset);
            let mut candidates: Vec<DateTime<Utc>> = self
                .boundaries(day)
                .into_iter()
                .flat_map(|t| self.instants(t))
                .chain(self.clock_change(day))
                .filter(|i| *i > at)
                .collect();
            candidates.sort();
            if let Some(change) = candidates
                .into_iter()
                .find(|i| self.is_open(*i) != now_open)
            {
                return Some(change);
            }
        }
        None
    }

    /// The next instant the office opens: `at` itself when it is open.
    pub fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(at) {
            Some(at)
        } else {
            self.next_change(at)
        }
    }

    /// Local times on `day` where the answer may change.
    fn boundaries(&self, day: NaiveDate) -> Vec<NaiveDateTime> {
        let midnight = day.and_time(NaiveTime::MIN);
        let next_midnight = midnight + Duration::days(1);
        let mut out = vec![midnight];
        for interval in &self.week[day.weekday().num_days_from_monday() as usize] {
            out.push(midnight + Duration::seconds(interval.start.into()));
            out.push(midnight + Duration::seconds(interval.end.into()));
        }
        for (from, to) in self.closed.iter().chain(&self.open) {
            for t in [*from, *to] {
                if midnight <= t && t < next_midnight {
                    out.push(t);
                }
            }
        }
        out
    }

    /// The instant the clocks change on `day`, if they do: when they go back, wall-clock time
    /// re-enters hours it has left, which no local boundary marks.
    fn clock_change(&self, day: NaiveDate) -> Option<DateTime<Utc>> {
        let start = *self.instants(day.and_time(NaiveTime::MIN)).first()?;
        let end = *self
            .instants((day + Duration::days(1)).and_time(NaiveTime::MIN))
            .first()?;
        let offset = |t: DateTime<Utc>| t.with_timezone(&self.tz).offset().fix();
        if offset(start) == offset(end) {
            return None;
        }
        // Whole seconds: offsets change on the second.
        let (mut before, mut after) = (start.timestamp(), end.timestamp());
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or(start);
        while after - before > 1 {
            let middle = before + (after - before) / 2;
            if offset(at(middle)) == offset(at(before)) {
                before = middle;
            } else {
                after = middle;
            }
        }
        Some(at(after))
    }

    /// The instants a local time happens at: none is never the answer (a time skipped by a
    /// DST change happens, in effect, at the end of the gap), two when the clock goes back.
    fn instants(&self, t: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&t) {
            LocalResult::Single(x) => vec![x.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
            LocalResult::None => {
                let mut probe = t;
                for _ in 0..24 * 60 {
                    probe += Duration::minutes(1);
                    if let Some(x) = self.tz.from_local_datetime(&probe).earliest() {
                        // The gap's end, on the minute.
                        let x = x.with_timezone(&Utc);
                        return vec![x - Duration::seconds(x.second().into())];
                    }
                }
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use casebridge_config::team::HoursConfig;
    use chrono::{DateTime, TimeZone, Utc};
    use proptest::prelude::*;

    use super::OfficeHours;
    use crate::holidays::Holidays;

    fn hours(toml_text: &str) -> OfficeHours {
        let config: HoursConfig = toml::from_str(toml_text).unwrap();
        OfficeHours::new(&config, &Holidays::default())
    }

    fn stockholm() -> OfficeHours {
        hours(
            r#"
            time_zone = "Europe/Stockholm"
            monday = ["08:00-12:00", "13:00-16:30"]
            tuesday = ["08:00-12:00", "13:00-16:30"]
            wednesday = ["08:00-12:00", "13:00-16:30"]
            thursday = ["08:00-12:00", "13:00-16:30"]
            friday = ["08:00-15:00"]
            sunday = ["01:00-02:30"]
            holidays = ["2026-12-24", "2026-12-25"]
            closed = [{ from = "2026-12-23 12:00", to = "2026-12-23 17:00", reason = "julfika" }]
            open = [{ from = "2026-12-19 10:00", to = "2026-12-19 14:00" },
                    { from = "2026-12-25 10:00", to = "2026-12-25 12:00" }]
            "#,
        )
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn split_shifts_and_lunch() {
        let h = stockholm();
        // Monday 2026-11-23, CET = UTC+1.
        assert!(!h.is_open(utc("2026-11-23T06:59:59Z")));
        assert!(h.is_open(utc("2026-11-23T07:00:00Z")));
        assert!(!h.is_open(utc("2026-11-23T11:00:00Z")), "lunch");
        assert!(h.is_open(utc("2026-11-23T12:00:00Z")));
        assert!(!h.is_open(utc("2026-11-23T15:30:00Z")));
        assert_eq!(
            h.next_change(utc("2026-11-23T10:00:00Z")),
            Some(utc("2026-11-23T11:00:00Z"))
        );
        // Friday evening -> Monday morning (Sunday night's interval is its own).
        assert_eq!(
            h.next_change(utc("2026-11-27T14:00:00Z")),
            Some(utc("2026-11-29T00:00:00Z"))
        );
    }

    #[test]
    fn holidays_and_exceptions() {
        let h = stockholm();
        // Wednesday 23 Dec: closed from 12:00 local (not reopening at 13:00).
        assert!(h.is_open(utc("2026-12-23T10:00:00Z")));
        assert!(!h.is_open(utc("2026-12-23T12:30:00Z")));
        assert!(!h.is_open(utc("2026-12-23T15:00:00Z")));
        // Christmas Eve is a Thursday holiday; Christmas Day opens 10-12 by exception.
        assert!(!h.is_open(utc("2026-12-24T09:00:00Z")));
        assert_eq!(
            h.next_open(utc("2026-12-23T12:30:00Z")),
            Some(utc("2026-12-25T09:00:00Z"))
        );
        // An extra Saturday opening.
        assert!(h.is_open(utc("2026-12-19T09:30:00Z")));
        assert!(!h.is_open(utc("2026-12-19T13:00:00Z")));
    }

    #[test]
    fn dst_weekends_move_utc_but_not_local_hours() {
        let h = stockholm();
        // Before the spring change (CET, +1) Monday opens 07:00 UTC; after it (CEST, +2) 06:00.
        assert_eq!(
            h.next_open(utc("2026-03-22T20:00:00Z")),
            Some(utc("2026-03-23T07:00:00Z"))
        );
        assert_eq!(
            h.next_open(utc("2026-03-29T20:00:00Z")),
            Some(utc("2026-03-30T06:00:00Z"))
        );
        // Sunday 29 March: 02:00-03:00 local does not exist. 01:00-02:30 opens at 00:00 UTC
        // and closes when the clock jumps from 02:00 to 03:00 (01:00 UTC).
        assert!(h.is_open(utc("2026-03-29T00:30:00Z")));
        assert_eq!(
            h.next_change(utc("2026-03-29T00:30:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // Sunday 25 October: 02:00-03:00 happens twice. Open 01:00-02:30 local: from 23:00 UTC
        // (CEST) until the first 02:30 (00:30 UTC), then again for the repeated half hour
        // 02:00-02:30 CET (01:00-01:30 UTC).
        assert!(h.is_open(utc("2026-10-24T23:30:00Z")));
        assert_eq!(
            h.next_change(utc("2026-10-24T23:30:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            h.next_change(utc("2026-10-25T00:30:00Z")),
            Some(utc("2026-10-25T01:00:00Z"))
        );
        assert_eq!(
            h.next_change(utc("2026-10-25T01:00:00Z")),
            Some(utc("2026-10-25T01:30:00Z"))
        );
    }

    #[test]
    fn never_open_has_no_next_change() {
        let h = hours(r#"time_zone = "Europe/Budapest""#);
        assert!(!h.is_open(Utc::now()));
        assert_eq!(h.next_change(Utc::now()), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the instant, the answer holds until the reported change and flips there.
        #[test]
        fn next_change_is_the_first_flip(
            start in 1_767_225_600i64..1_830_297_600i64, // 2026-01-01 .. 2028-01-01
            samples in proptest::collection::vec(0.0f64..1.0, 20),
            zone in prop::sample::select(vec!["Europe/Stockholm", "Europe/Kyiv", "Europe/Budapest", "America/New_York"]),
        ) {
            let mut config: HoursConfig = toml::from_str(&format!(
                r#"time_zone = "{zone}"
                monday = ["08:00-12:00", "13:00-16:30"]
                wednesday = ["00:00-02:30", "22:00-24:00"]
                thursday = ["00:00-03:00"]
                sunday = ["01:30-02:30"]"#
            )).unwrap();
            config.holidays = vec!["2026-12-24".parse().unwrap(), "2027-12-24".parse().unwrap()];
            let h = OfficeHours::new(&config, &Holidays::default());
            let at = Utc.timestamp_opt(start, 0).unwrap();
            let open = h.is_open(at);
            let change = h.next_change(at).expect("opens and closes every week");
            prop_assert!(change > at);
            prop_assert!(change - at <= chrono::Duration::days(8));
            prop_assert_ne!(h.is_open(change), open);
            let span = (change - at).num_seconds();
            for f in samples {
                let t = at + chrono::Duration::seconds((span as f64 * f) as i64);
                if t < change {
                    prop_assert_eq!(h.is_open(t), open, "at {} (change {})", t, change);
                }
            }
            // Just before the change the answer is still the old one.
            prop_assert_eq!(h.is_open(change - chrono::Duration::seconds(1)), open);
        }
    }
}
