//! Cron schedules as Kubernetes reads a CronJob's `spec.schedule`: `robfig/cron` v3's
//! `ParseStandard` (five fields `minute hour day-of-month month day-of-week`, month and weekday
//! names, `*`, `?`, ranges, steps and lists, or a descriptor `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly`, `@every <duration>`), with robfig's error
//! messages, which the API returns verbatim. [`Schedule::next_after`] is robfig's `Next`, walked
//! in the CronJob's time zone: a time skipped by a DST change never fires that day, and one that
//! happens twice fires twice, as in Kubernetes.
//!
//! A `TZ=`/`CRON_TZ=` prefix is not part of this syntax: validation refuses it separately.

use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Why a schedule does not parse; the text is robfig/cron's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty spec string")]
    Empty,
    #[error("unrecognized descriptor: {0}")]
    UnrecognizedDescriptor(String),
    #[error("failed to parse duration {spec}: time: invalid duration \"{duration}\"")]
    Duration { spec: String, duration: String },
    #[error("expected exactly 5 fields, found {}: [{}]", .0.len(), .0.join(" "))]
    FieldCount(Vec<String>),
    #[error("too many hyphens: {0}")]
    Hyphens(String),
    #[error("too many slashes: {0}")]
    Slashes(String),
    #[error("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: {why}")]
    Int { text: String, why: &'static str },
    #[error("negative number ({number}) not allowed: {text}")]
    Negative { number: i64, text: String },
    #[error("beginning of range ({start}) below minimum ({min}): {expr}")]
    BelowMinimum { start: u64, min: u32, expr: String },
    #[error("end of range ({end}) above maximum ({max}): {expr}")]
    AboveMaximum { end: u64, max: u32, expr: String },
    #[error("beginning of range ({start}) beyond end of range ({end}): {expr}")]
    BeyondEnd { start: u64, end: u64, expr: String },
    #[error("step of range should be a positive number: {0}")]
    Step(String),
}

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// The five fields, each a bit set of the values it allows.
    Fields(Fields),
    /// `@every <duration>`: a fixed period (whole seconds, at least one).
    Every(Duration),
}

/// Bit `n` is set when value `n` matches. [`STAR`] marks a field written `*` or `?`, which changes
/// how the two day fields combine (robfig's `starBit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minute: u64,
    hour: u64,
    day_of_month: u64,
    month: u64,
    day_of_week: u64,
}

const STAR: u64 = 1 << 63;

/// Bounds and names of the five fields, in order.
const BOUNDS: [(u32, u32, &[&str]); 5] = [
    (0, 59, &[]),
    (0, 23, &[]),
    (1, 31, &[]),
    (
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];

/// robfig gives up looking for a matching time this many years ahead (`59 23 31 2 *` never fires).
const YEARS_AHEAD: i16 = 5;

impl Schedule {
    /// `cron.ParseStandard`.
    pub fn parse(spec: &str) -> Result<Schedule, ScheduleError> {
        if spec.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if let Some(descriptor) = spec.strip_prefix('@') {
            return Self::descriptor(spec, descriptor);
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount(
                fields.iter().map(|f| f.to_string()).collect(),
            ));
        }
        let mut bits = [0u64; 5];
        for ((field, (min, max, names)), bits) in fields.iter().zip(BOUNDS).zip(&mut bits) {
            for expr in field.split(',') {
                *bits |= range(expr, min, max, names)?;
            }
        }
        let [minute, hour, day_of_month, month, day_of_week] = bits;
        Ok(Schedule::Fields(Fields {
            minute,
            hour,
            day_of_month,
            month,
            day_of_week,
        }))
    }

    fn descriptor(spec: &str, descriptor: &str) -> Result<Schedule, ScheduleError> {
        let fields = match descriptor {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            d => {
                let Some(text) = d.strip_prefix("every ") else {
                    return Err(ScheduleError::UnrecognizedDescriptor(spec.to_string()));
                };
                let period = go_duration(text).ok_or_else(|| ScheduleError::Duration {
                    spec: spec.to_string(),
                    duration: text.to_string(),
                })?;
                // robfig's `Every`: at least a second, whole seconds.
                let secs = period.as_secs().max(1);
                return Ok(Schedule::Every(Duration::from_secs(secs)));
            }
        };
        Schedule::parse(fields)
    }

    /// The first time strictly after `after` that the schedule fires, read on the wall clock of
    /// `tz`; `None` if there is none within five years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Every(period) => {
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                whole.checked_add(*period).ok()
            }
            Schedule::Fields(fields) => fields.next_after(after, tz),
        }
    }
}

impl Fields {
    fn day_matches(&self, date: Date) -> bool {
        let dom = self.day_of_month & (1 << date.day()) != 0;
        let dow = self.day_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.day_of_month & STAR != 0 || self.day_of_week & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// robfig's `SpecSchedule.Next` with the seconds field fixed at 0: the month, day, hour and
    /// minute are advanced in turn, by absolute hours and minutes (so DST gaps and folds behave
    /// as robfig's do), starting over when a larger unit wraps.
    fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let at = |dt: DateTime| dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
        // The first whole minute after `after`.
        let mut t = Timestamp::from_second(after.as_second().div_euclid(60) * 60 + 60).ok()?;
        let year_limit = t.to_zoned(tz.clone()).year() + YEARS_AHEAD;
        let mut reset = false;
        'wrap: loop {
            let mut civil = t.to_zoned(tz.clone()).datetime();
            if civil.year() > year_limit {
                return None;
            }
            while self.month & (1 << civil.month()) == 0 {
                if !reset {
                    reset = true;
                    civil = civil.date().first_of_month().to_datetime(Time::midnight());
                }
                t = at(civil.checked_add(1.month()).ok()?)?;
                civil = t.to_zoned(tz.clone()).datetime();
                if civil.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(civil.date()) {
                reset = true;
                // The next day at midnight, or just after where DST skips midnight.
                let day = civil.date().checked_add(1.day()).ok()?;
                t = at(day.to_datetime(Time::midnight()))?;
                civil = t.to_zoned(tz.clone()).datetime();
                if civil.day() == 1 {
                    continue 'wrap;
                }
            }
            while self.hour & (1 << civil.hour()) == 0 {
                if !reset {
                    reset = true;
                    t = t.checked_sub(i64::from(civil.minute()).minutes()).ok()?;
                }
                t = t.checked_add(1.hour()).ok()?;
                civil = t.to_zoned(tz.clone()).datetime();
                if civil.hour() == 0 {
                    continue 'wrap;
                }
            }
            while self.minute & (1 << civil.minute()) == 0 {
                reset = true;
                t = t.checked_add(1.minute()).ok()?;
                civil = t.to_zoned(tz.clone()).datetime();
                if civil.minute() == 0 {
                    continue 'wrap;
                }
            }
            return Some(t);
        }
    }
}

/// One comma-separated term of a field: `*`, `?`, `N`, `N-M`, each optionally `/step`.
fn range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, ScheduleError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let mut extra = 0;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        extra = STAR;
        (u64::from(min), u64::from(max))
    } else {
        let start = int_or_name(low_high[0], names, min)?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, int_or_name(low_high[1], names, min)?),
            _ => return Err(ScheduleError::Hyphens(expr.to_string())),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            if low_high.len() == 1 {
                end = u64::from(max);
            }
            let step = must_parse_int(range_and_step[1])?;
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(ScheduleError::Slashes(expr.to_string())),
    };
    if start < u64::from(min) {
        return Err(ScheduleError::BelowMinimum {
            start,
            min,
            expr: expr.to_string(),
        });
    }
    if end > u64::from(max) {
        return Err(ScheduleError::AboveMaximum {
            end,
            max,
            expr: expr.to_string(),
        });
    }
    if start > end {
        return Err(ScheduleError::BeyondEnd {
            start,
            end,
            expr: expr.to_string(),
        });
    }
    if step == 0 {
        return Err(ScheduleError::Step(expr.to_string()));
    }
    Ok((start..=end)
        .step_by(step as usize)
        .fold(extra, |bits, v| bits | 1 << v))
}

fn int_or_name(s: &str, names: &[&str], base: u32) -> Result<u64, ScheduleError> {
    let lower = s.to_lowercase();
    match names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u64 + u64::from(base)),
        None => must_parse_int(s),
    }
}

fn must_parse_int(s: &str) -> Result<u64, ScheduleError> {
    let n: i64 = s.parse().map_err(|e: std::num::ParseIntError| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        ScheduleError::Int {
            text: s.to_string(),
            why,
        }
    })?;
    u64::try_from(n).map_err(|_| ScheduleError::Negative {
        number: n,
        text: s.to_string(),
    })
}

/// Go's `time.ParseDuration` for the non-negative durations `@every` takes: decimal numbers
/// with units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`, as in `1h30m` or `1.5s`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    Some(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str, tz: &TimeZone) -> String {
        let schedule = Schedule::parse(spec).unwrap();
        let t = schedule.next_after(utc(after), tz).expect("a next time");
        t.to_zoned(tz.clone()).datetime().to_string()
    }

    /// US Eastern time from a POSIX rule, so the tests need no tz database: DST starts at 02:00
    /// on the second Sunday of March and ends at 02:00 on the first Sunday of November.
    fn eastern() -> TimeZone {
        TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap()
    }

    #[test]
    fn fields_and_descriptors_give_the_next_times() {
        let tz = TimeZone::UTC;
        assert_eq!(
            next("* * * * *", "2024-05-01T10:00:00Z", &tz),
            "2024-05-01T10:01:00"
        );
        assert_eq!(
            next("* * * * *", "2024-05-01T10:00:30Z", &tz),
            "2024-05-01T10:01:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-05-01T10:16:00Z", &tz),
            "2024-05-01T10:30:00"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2024-05-01T10:00:00Z", &tz),
            "2024-05-01T13:00:00"
        );
        assert_eq!(
            next("30 6 * * MON-FRI", "2024-05-03T07:00:00Z", &tz),
            "2024-05-06T06:30:00"
        );
        assert_eq!(
            next("0 0 1 jan *", "2024-05-01T00:00:00Z", &tz),
            "2025-01-01T00:00:00"
        );
        assert_eq!(
            next("@hourly", "2024-05-01T10:59:59Z", &tz),
            "2024-05-01T11:00:00"
        );
        assert_eq!(
            next("@daily", "2024-12-31T23:00:00Z", &tz),
            "2025-01-01T00:00:00"
        );
        assert_eq!(
            next("@weekly", "2024-05-01T00:00:00Z", &tz),
            "2024-05-05T00:00:00"
        );
        assert_eq!(
            next("@monthly", "2024-02-15T00:00:00Z", &tz),
            "2024-03-01T00:00:00"
        );
        assert_eq!(
            next("@yearly", "2024-02-15T00:00:00Z", &tz),
            "2025-01-01T00:00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z", &tz),
            "2028-02-29T00:00:00"
        );
        assert_eq!(
            next("@every 90s", "2024-05-01T10:00:00.5Z", &tz),
            "2024-05-01T10:01:30"
        );
    }

    #[test]
    fn day_fields_combine_with_or_unless_one_is_a_star() {
        let tz = TimeZone::UTC;
        // The 13th or any Friday: 2024-09-06 is a Friday before the 13th.
        assert_eq!(
            next("0 0 13 * 5", "2024-09-01T00:00:00Z", &tz),
            "2024-09-06T00:00:00"
        );
        // `*` day of month: only Fridays.
        assert_eq!(
            next("0 0 * * 5", "2024-09-07T00:00:00Z", &tz),
            "2024-09-13T00:00:00"
        );
        // `*/1` keeps the star; `*/2` does not.
        assert_eq!(
            next("0 0 */2 * 5", "2024-09-01T00:00:00Z", &tz),
            "2024-09-03T00:00:00"
        );
    }

    #[test]
    fn a_time_zone_moves_the_wall_clock() {
        let tz = eastern();
        // 09:00 in New York in summer is 13:00 UTC.
        let t = Schedule::parse("0 9 * * *")
            .unwrap()
            .next_after(utc("2024-07-01T12:00:00Z"), &tz)
            .unwrap();
        assert_eq!(t, utc("2024-07-01T13:00:00Z"));
    }

    #[test]
    fn dst_gaps_skip_and_folds_repeat_as_robfig_does() {
        let tz = eastern();
        // 2024-03-10 02:30 does not exist in New York: the next 02:30 is the day after.
        assert_eq!(
            next("30 2 * * *", "2024-03-10T05:00:00Z", &tz),
            "2024-03-11T02:30:00"
        );
        // 2024-11-03 01:30 happens twice: it fires at both.
        let schedule = Schedule::parse("30 1 * * *").unwrap();
        let first = schedule
            .next_after(utc("2024-11-03T04:00:00Z"), &tz)
            .unwrap();
        assert_eq!(first, utc("2024-11-03T05:30:00Z"));
        let second = schedule.next_after(first, &tz).unwrap();
        assert_eq!(second, utc("2024-11-03T06:30:00Z"));
        // An hourly schedule keeps one-hour steps across the change.
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let t = hourly.next_after(utc("2024-03-10T06:30:00Z"), &tz).unwrap();
        assert_eq!(t, utc("2024-03-10T07:00:00Z"));
    }

    #[test]
    fn impossible_dates_never_fire() {
        let s = Schedule::parse("59 23 31 2 *").unwrap();
        assert_eq!(
            s.next_after(utc("2024-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn errors_read_as_robfigs() {
        let err = |s: &str| Schedule::parse(s).unwrap_err().to_string();
        assert_eq!(err(""), "empty spec string");
        assert_eq!(
            err("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(
            err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            err("5-1 * * * *"),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(err("*/2/3 * * * *"), "too many slashes: */2/3");
        assert_eq!(
            err("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(
            err("@every soon"),
            "failed to parse duration @every soon: time: invalid duration \"soon\""
        );
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        assert_eq!(go_duration("10"), None);
        assert_eq!(go_duration("1d"), None);
    }
}
