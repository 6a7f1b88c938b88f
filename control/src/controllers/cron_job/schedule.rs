//! When a CronJob is due (`mostRecentScheduleTime`, `nextScheduleTimeDuration` in Kubernetes'
//! `cronjob/utils.go`): the most recent scheduled time not yet started, whether too many were
//! missed, and how long until the next one.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use skiff_api::cron::Schedule;

/// More missed times than this and the controller warns (it still starts the latest).
const TOO_MANY_MISSED: i64 = 100;
/// Wake this long after a scheduled time, so that it is surely in the past.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// A schedule read in a time zone.
pub struct Times<'a> {
    pub sched: &'a Schedule,
    pub tz: &'a TimeZone,
}

/// The scheduled time due, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    pub time: Option<Timestamp>,
    pub too_many_missed: bool,
}

/// A schedule whose consecutive times are less than a second apart cannot be run.
#[derive(Debug, thiserror::Error)]
#[error("time difference between two schedules is less than 1 second")]
pub struct TooFrequent;

impl Times<'_> {
    fn next(&self, after: Timestamp) -> Option<Timestamp> {
        self.sched.next_after(after, self.tz)
    }

    /// The latest scheduled time in (`earliest`, `now`], where `earliest` is the last scheduled
    /// time (or the CronJob's creation), moved up to `now - starting_deadline` if given.
    pub fn most_recent(
        &self,
        earliest: Timestamp,
        starting_deadline: Option<i64>,
        now: Timestamp,
    ) -> Result<Due, TooFrequent> {
        let earliest = match starting_deadline {
            Some(d) => earliest.max(now - Duration::from_secs(d.max(0) as u64)),
            None => earliest,
        };
        self.latest_since(earliest, now).map(|(time, missed)| Due {
            time,
            too_many_missed: missed > TOO_MANY_MISSED,
        })
    }

    /// The latest time in (`earliest`, `now`] and about how many there were. Rather than
    /// stepping through each (an hourly schedule down for a year has thousands), it jumps
    /// by the gap between the first two and steps only the last stretch, as Kubernetes does.
    fn latest_since(
        &self,
        earliest: Timestamp,
        now: Timestamp,
    ) -> Result<(Option<Timestamp>, i64), TooFrequent> {
        let Some(t1) = self.next(earliest).filter(|t1| *t1 <= now) else {
            return Ok((None, 0));
        };
        let Some(t2) = self.next(t1).filter(|t2| *t2 <= now) else {
            return Ok((Some(t1), 1));
        };
        let gap = (t2.as_millisecond() - t1.as_millisecond() + 500) / 1000;
        if gap < 1 {
            return Err(TooFrequent);
        }
        let missed = now.as_second().saturating_sub(t1.as_second()) / gap + 1;
        let from = t1.as_second() + (missed - 2) * gap;
        let mut latest = None;
        let mut t = Timestamp::from_second(from).ok().and_then(|f| self.next(f));
        while let Some(at) = t.filter(|at| *at <= now) {
            latest = Some(at);
            t = self.next(at);
        }
        Ok((latest, missed))
    }

    /// How long until the scheduled time after the last one (`earliest`, without the starting
    /// deadline) has passed; `None` if the schedule never fires again.
    pub fn until_next(&self, earliest: Timestamp, now: Timestamp) -> Option<Duration> {
        let from = match self.latest_since(earliest, now) {
            Ok((Some(latest), _)) => latest,
            Ok((None, 0)) => earliest,
            Ok((None, _)) | Err(TooFrequent) => now,
        };
        let next = self.next(from)?;
        let wait = Duration::try_from(next.duration_since(now)).unwrap_or_default();
        Some(wait + NEXT_SCHEDULE_DELTA)
    }
}

/// Go's `time.RFC3339` of `t` in `tz`: `Z` for a zero offset, else `±hh:mm`.
pub fn rfc3339(t: Timestamp, tz: TimeZone) -> String {
    let zoned = t.to_zoned(tz);
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn due(spec: &str, earliest: &str, deadline: Option<i64>, now: &str) -> Due {
        let sched = Schedule::parse(spec).unwrap();
        let times = Times {
            sched: &sched,
            tz: &TimeZone::UTC,
        };
        times.most_recent(at(earliest), deadline, at(now)).unwrap()
    }

    #[test]
    fn the_latest_missed_time_is_due() {
        let d = due(
            "*/5 * * * *",
            "2024-01-01T00:00:00Z",
            None,
            "2024-01-01T00:17:00Z",
        );
        assert_eq!(d.time, Some(at("2024-01-01T00:15:00Z")));
        assert!(!d.too_many_missed);
        let d = due(
            "*/5 * * * *",
            "2024-01-01T00:00:00Z",
            None,
            "2024-01-01T00:04:59Z",
        );
        assert_eq!(d.time, None);
        let d = due(
            "0 * * * *",
            "2024-01-01T00:00:00Z",
            None,
            "2024-01-01T01:00:00Z",
        );
        assert_eq!(d.time, Some(at("2024-01-01T01:00:00Z")));
    }

    #[test]
    fn irregular_schedules_step_the_last_stretch() {
        // 06:30, 10:30, 14:30 on weekdays: the gap between the first two says little.
        let d = due(
            "30 6-16/4 * * 1-5",
            "2024-01-05T07:00:00Z",
            None,
            "2024-01-09T12:00:00Z",
        );
        assert_eq!(d.time, Some(at("2024-01-09T10:30:00Z")));
    }

    #[test]
    fn too_many_missed_times_are_reported_but_the_latest_still_runs() {
        let d = due(
            "* * * * *",
            "2024-01-01T00:00:00Z",
            None,
            "2024-01-01T03:00:30Z",
        );
        assert_eq!(d.time, Some(at("2024-01-01T03:00:00Z")));
        assert!(d.too_many_missed);
        // A starting deadline bounds how far back to look.
        let d = due(
            "* * * * *",
            "2024-01-01T00:00:00Z",
            Some(200),
            "2024-01-01T03:00:30Z",
        );
        assert_eq!(d.time, Some(at("2024-01-01T03:00:00Z")));
        assert!(!d.too_many_missed);
    }

    #[test]
    fn the_next_wake_is_just_after_the_next_time() {
        let sched = Schedule::parse("* * * * *").unwrap();
        let times = Times {
            sched: &sched,
            tz: &TimeZone::UTC,
        };
        let wait = times.until_next(at("2024-01-01T00:00:00Z"), at("2024-01-01T00:00:20Z"));
        assert_eq!(wait, Some(Duration::from_millis(40_100)));
        // The last run was long ago: the next time after now.
        let wait = times.until_next(at("2024-01-01T00:00:00Z"), at("2024-01-01T00:05:20Z"));
        assert_eq!(wait, Some(Duration::from_millis(40_100)));
        let never = Schedule::parse("0 0 31 2 *").unwrap();
        let times = Times {
            sched: &never,
            tz: &TimeZone::UTC,
        };
        assert_eq!(
            times.until_next(at("2024-01-01T00:00:00Z"), at("2024-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn scheduled_timestamps_read_as_go_writes_them() {
        let t = at("2024-07-01T13:00:00Z");
        assert_eq!(rfc3339(t, TimeZone::UTC), "2024-07-01T13:00:00Z");
        let eastern = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(rfc3339(t, eastern), "2024-07-01T09:00:00-04:00");
    }
}
