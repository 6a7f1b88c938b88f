//! The pod failure back-off (`backoff_utils.go`): after `n` failures since the last success, a
//! Job waits 10 s × 2ⁿ⁻¹ (at most 10 minutes) from the last failure before creating pods again.
//!
//! Kubernetes keeps the failure count in memory and loses it on restart; here it is read from the
//! Job's pods themselves (they stay until the Job is deleted), so a restarted controller keeps
//! backing off.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// `DefaultJobPodFailureBackOff`.
const BASE: Duration = Duration::from_secs(10);
/// `MaxJobPodFailureBackOff`.
const MAX: Duration = Duration::from_secs(10 * 60);

/// The delay after `failures` consecutive failures.
pub fn delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    BASE.checked_mul(1 << (failures - 1).min(16))
        .unwrap_or(MAX)
        .min(MAX)
}

/// How long from `now` until pods may be created, given the Job's pods.
pub fn remaining(pods: &[Arc<Pod>], now: Timestamp) -> Duration {
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    let last_success = pods
        .iter()
        .filter(|p| phase(p).as_deref() == Some("Succeeded"))
        .map(|p| finished_at(p))
        .max();
    let failures: Vec<Timestamp> = pods
        .iter()
        .filter(|p| phase(p).as_deref() == Some("Failed"))
        .map(|p| finished_at(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let Some(last_failure) = failures.iter().max() else {
        return Duration::ZERO;
    };
    let elapsed = Duration::try_from(now.duration_since(*last_failure)).unwrap_or_default();
    delay(failures.len() as u32).saturating_sub(elapsed)
}

/// When a pod finished (`getFinishedTime`): its containers' last termination, else when it
/// stopped being ready, else its deletion, else its creation.
fn finished_at(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let from_containers = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let unready = || {
        status?
            .conditions
            .as_deref()?
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    };
    from_containers
        .or_else(unready)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, finished: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"phase": phase, "containerStatuses": [{
                    "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 1, "finishedAt": finished}},
                }]},
            }))
            .unwrap(),
        )
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_delay_doubles_from_ten_seconds_up_to_ten_minutes() {
        let secs: Vec<u64> = (0..9).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(delay(1000), MAX);
    }

    #[test]
    fn failures_since_the_last_success_count_from_the_last_failure() {
        let pods = vec![
            pod("Failed", "2024-01-01T00:00:00Z"),
            pod("Succeeded", "2024-01-01T00:01:00Z"),
            pod("Failed", "2024-01-01T00:02:00Z"),
            pod("Failed", "2024-01-01T00:03:00Z"),
        ];
        // Two failures after the success: 20 s from 00:03:00.
        assert_eq!(
            remaining(&pods, at("2024-01-01T00:03:05Z")),
            Duration::from_secs(15)
        );
        assert_eq!(remaining(&pods, at("2024-01-01T00:04:00Z")), Duration::ZERO);
        let running = vec![pod("Running", "2024-01-01T00:00:00Z")];
        assert_eq!(
            remaining(&running, at("2024-01-01T00:00:00Z")),
            Duration::ZERO
        );
    }
}
