//! `limits.cpu` for one container: [`CpuThrottled`] wraps a run's future and, like CFS bandwidth
//! control (`cpu.cfs_period_us`/`cpu.cfs_quota_us`), lets it use at most its quota of CPU time
//! per 100 ms period. The CPU time of each poll is the polling thread's own
//! (`CLOCK_THREAD_CPUTIME_ID`); once the quota is spent, the next poll waits for the period to
//! end. Epoch yields keep each poll short, so a busy loop cannot run far past its quota.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The CFS default period.
pub(crate) const PERIOD: Duration = Duration::from_millis(100);

pub(crate) struct CpuThrottled<F> {
    inner: F,
    /// `None`: no limit below one core, which one run cannot exceed anyway.
    quota: Option<Duration>,
    period_end: Option<Instant>,
    used: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<F: Future + Unpin> CpuThrottled<F> {
    pub(crate) fn new(inner: F, cpu_limit_millis: Option<u64>) -> CpuThrottled<F> {
        let quota = cpu_limit_millis
            .filter(|m| *m < 1000)
            .map(|m| PERIOD * u32::try_from(m).unwrap_or(u32::MAX) / 1000);
        CpuThrottled {
            inner,
            quota,
            period_end: None,
            used: Duration::ZERO,
            sleep: None,
        }
    }
}

impl<F: Future + Unpin> Future for CpuThrottled<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let Some(quota) = this.quota else {
            return Pin::new(&mut this.inner).poll(cx);
        };
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let now = Instant::now();
        let period_end = *this.period_end.get_or_insert(now + PERIOD);
        if now >= period_end {
            // Each elapsed period refills one quota; what a poll overran is paid back, so the
            // long-run share is the quota even though a poll can run past it by a tick.
            let periods = 1 + (now - period_end).as_nanos() / PERIOD.as_nanos();
            let periods = u32::try_from(periods).unwrap_or(u32::MAX);
            this.used = this.used.saturating_sub(quota.saturating_mul(periods));
            this.period_end = Some(period_end + PERIOD * periods);
        }
        if this.used >= quota {
            let until = this.period_end.unwrap_or(now + PERIOD);
            let mut sleep = Box::pin(tokio::time::sleep_until(until));
            // Registers the wake-up; the deadline is in the future, so this is pending.
            if sleep.as_mut().poll(cx).is_pending() {
                this.sleep = Some(sleep);
                return Poll::Pending;
            }
        }
        let before = thread_cpu_time();
        let out = Pin::new(&mut this.inner).poll(cx);
        this.used += thread_cpu_time().saturating_sub(before);
        out
    }
}

/// CPU time the calling thread has used.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    /// Burns about 1 ms of CPU per poll and asks to be polled again at once, forever: what an
    /// epoch-yielding busy loop looks like to the executor.
    struct Spin;

    impl Future for Spin {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let start = thread_cpu_time();
            while thread_cpu_time() - start < Duration::from_millis(1) {
                std::hint::spin_loop();
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn share_of_a_core(limit: Option<u64>, wall: Duration) -> f64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let start_cpu = thread_cpu_time();
        let start = StdInstant::now();
        rt.block_on(async {
            let _ = tokio::time::timeout(wall, CpuThrottled::new(Spin, limit)).await;
        });
        (thread_cpu_time() - start_cpu).as_secs_f64() / start.elapsed().as_secs_f64()
    }

    #[test]
    fn a_busy_future_at_100m_gets_a_tenth_of_a_core() {
        let share = share_of_a_core(Some(100), Duration::from_millis(800));
        assert!((0.07..=0.14).contains(&share), "share {share:.3}");
    }

    #[test]
    fn a_limit_of_a_core_or_more_does_not_throttle() {
        assert_eq!(CpuThrottled::new(Spin, Some(1000)).quota, None);
        assert_eq!(
            CpuThrottled::new(Spin, Some(250)).quota,
            Some(Duration::from_millis(25))
        );
        let share = share_of_a_core(None, Duration::from_millis(200));
        // Well above the 10% a limit would allow, with room for a busy shared machine.
        assert!(share > 0.3, "share {share:.3}");
    }
}
