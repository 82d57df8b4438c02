//! The deployment window calendar (seed: "Deployment Schedule").
//!
//! An instant is allowed when it falls inside one of the allowed weekly
//! windows (local time in the configured zone) and on none of the avoided
//! days: never-days (Fridays by default), holidays, freeze periods and the
//! last N days of the month.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use crate::settings::{Day, WindowSettings};

/// Why an instant is not inside an allowed deployment window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    OutsideWindows { local: String },
    NeverDay { day: String },
    Holiday { date: NaiveDate },
    Freeze { name: String },
    EndOfMonth { date: NaiveDate, last_days: u32 },
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::OutsideWindows { local } => {
                write!(f, "{local} is outside every allowed deployment window")
            }
            Blocked::NeverDay { day } => write!(f, "deployments are not allowed on {day}"),
            Blocked::Holiday { date } => write!(f, "{date} is a configured holiday"),
            Blocked::Freeze { name } => write!(f, "the freeze period \"{name}\" is in effect"),
            Blocked::EndOfMonth { date, last_days } => {
                write!(f, "{date} is within the last {last_days} days of the month")
            }
        }
    }
}

/// The calendar of one configuration.
pub struct Calendar<'a> {
    settings: &'a WindowSettings,
    tz: Tz,
}

fn day_name(d: chrono::Weekday) -> &'static str {
    match d {
        chrono::Weekday::Mon => "Mondays",
        chrono::Weekday::Tue => "Tuesdays",
        chrono::Weekday::Wed => "Wednesdays",
        chrono::Weekday::Thu => "Thursdays",
        chrono::Weekday::Fri => "Fridays",
        chrono::Weekday::Sat => "Saturdays",
        chrono::Weekday::Sun => "Sundays",
    }
}

fn last_day_of_month(date: NaiveDate) -> u32 {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(28)
}

impl<'a> Calendar<'a> {
    pub fn new(settings: &'a WindowSettings) -> Self {
        Calendar {
            settings,
            tz: settings.time_zone.parse().unwrap_or(chrono_tz::UTC),
        }
    }

    /// Whether `at` may start a production deployment, and if not, why.
    pub fn check(&self, at: DateTime<Utc>) -> Result<(), Blocked> {
        if let Some(f) = self.settings.freezes.iter().find(|f| f.start <= at && at < f.end) {
            return Err(Blocked::Freeze { name: f.name.clone() });
        }
        let local = at.with_timezone(&self.tz);
        let date = local.date_naive();
        let weekday = local.weekday();
        if self.settings.never_days.iter().any(|d: &Day| d.weekday() == weekday) {
            return Err(Blocked::NeverDay {
                day: day_name(weekday).to_string(),
            });
        }
        if self.settings.holidays.contains(&date) {
            return Err(Blocked::Holiday { date });
        }
        let n = self.settings.end_of_month_days;
        if n > 0 && date.day() + n > last_day_of_month(date) {
            return Err(Blocked::EndOfMonth { date, last_days: n });
        }
        let time = local.time();
        let inside = self
            .settings
            .allowed
            .iter()
            .any(|w| w.days.iter().any(|d| d.weekday() == weekday) && w.start <= time && time < w.end);
        if inside {
            Ok(())
        } else {
            Err(Blocked::OutsideWindows {
                local: local.format("%a %Y-%m-%d %H:%M %Z").to_string(),
            })
        }
    }

    /// The earliest instant at or after `from` that may start a deployment,
    /// looking at most 400 days ahead.
    pub fn next_allowed(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.check(from).is_ok() {
            return Some(from);
        }
        // Candidates are the window starts and the ends of freezes; checking
        // each candidate in time order finds the first allowed instant.
        let start_date = from.with_timezone(&self.tz).date_naive();
        let mut candidates: Vec<DateTime<Utc>> = Vec::new();
        for offset in 0..=400 {
            let date = start_date + Duration::days(offset);
            for w in &self.settings.allowed {
                if !w.days.iter().any(|d| d.weekday() == date.weekday()) {
                    continue;
                }
                if let Some(t) = self.tz.from_local_datetime(&date.and_time(w.start)).earliest() {
                    let t = t.with_timezone(&Utc);
                    if t > from {
                        candidates.push(t);
                    }
                }
            }
        }
        for f in &self.settings.freezes {
            if f.end > from {
                candidates.push(f.end);
            }
        }
        candidates.sort();
        candidates.into_iter().find(|t| self.check(*t).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Freeze, Settings};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn default_windows_are_tue_to_thu_ten_to_noon() {
        let s = Settings::builtin();
        let c = Calendar::new(&s.windows);
        // 2026-12-01 is a Tuesday.
        assert!(c.check(at("2026-12-01T10:00:00Z")).is_ok());
        assert!(c.check(at("2026-12-03T11:59:00Z")).is_ok());
        assert!(matches!(
            c.check(at("2026-12-01T12:00:00Z")),
            Err(Blocked::OutsideWindows { .. })
        ));
        assert!(matches!(
            c.check(at("2026-11-30T10:30:00Z")),
            Err(Blocked::OutsideWindows { .. })
        ));
        assert!(matches!(
            c.check(at("2026-12-04T10:30:00Z")),
            Err(Blocked::NeverDay { .. })
        ));
    }

    #[test]
    fn fridays_are_refused_even_inside_a_window() {
        let mut s = Settings::builtin();
        s.windows.allowed[0].days.push(Day::Fri);
        let c = Calendar::new(&s.windows);
        let e = c.check(at("2026-12-04T10:30:00Z")).unwrap_err();
        assert_eq!(e.to_string(), "deployments are not allowed on Fridays");
    }

    #[test]
    fn holidays_freezes_and_end_of_month() {
        let mut s = Settings::builtin();
        s.windows.holidays.push("2026-12-01".parse().unwrap());
        s.windows.freezes.push(Freeze {
            name: "Year end".into(),
            start: at("2026-12-08T00:00:00Z"),
            end: at("2026-12-10T11:00:00Z"),
        });
        s.windows.end_of_month_days = 3;
        let c = Calendar::new(&s.windows);
        assert!(matches!(
            c.check(at("2026-12-01T10:30:00Z")),
            Err(Blocked::Holiday { .. })
        ));
        assert!(matches!(
            c.check(at("2026-12-09T10:30:00Z")),
            Err(Blocked::Freeze { .. })
        ));
        // 2026-12-29 is a Tuesday within the last 3 days of December.
        assert!(matches!(
            c.check(at("2026-12-29T10:30:00Z")),
            Err(Blocked::EndOfMonth { .. })
        ));
        // The next window after the holiday is Wednesday 10:00.
        assert_eq!(
            c.next_allowed(at("2026-12-01T10:30:00Z")),
            Some(at("2026-12-02T10:00:00Z"))
        );
        // A freeze ending inside a window releases the deployment at its end.
        assert_eq!(
            c.next_allowed(at("2026-12-08T09:00:00Z")),
            Some(at("2026-12-10T11:00:00Z"))
        );
    }

    #[test]
    fn next_allowed_waits_over_the_weekend_and_respects_time_zones() {
        let mut s = Settings::builtin();
        let c = Calendar::new(&s.windows);
        assert_eq!(
            c.next_allowed(at("2026-12-03T12:00:00Z")),
            Some(at("2026-12-08T10:00:00Z"))
        );
        assert_eq!(
            c.next_allowed(at("2026-12-01T10:15:00Z")),
            Some(at("2026-12-01T10:15:00Z"))
        );
        s.windows.time_zone = "America/New_York".into();
        let c = Calendar::new(&s.windows);
        // 10:00 in New York in December is 15:00 UTC.
        assert_eq!(
            c.next_allowed(at("2026-12-01T12:00:00Z")),
            Some(at("2026-12-01T15:00:00Z"))
        );
    }

    #[test]
    fn no_allowed_window_at_all_gives_none() {
        let mut s = Settings::builtin();
        s.windows.allowed.clear();
        assert_eq!(Calendar::new(&s.windows).next_allowed(at("2026-12-01T10:00:00Z")), None);
    }
}
