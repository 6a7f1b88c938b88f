//! What the node knows of a pod beyond its spec: its sandboxes and, per container, the current run,
//! the last termination, restart count, back-off and why it is waiting. Pod status is computed from
//! this alone ([`super::status`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use skiff_sandbox::{ContainerId, ExitStatus, PodSandbox, SandboxId};
use tokio::sync::watch;

/// Kubernetes' container back-off: 10 s doubling to 5 min (the kubelet's `backOffPeriod` and
/// `MaxContainerBackOff`); a run that lasted twice the maximum resets it.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Back-off between restarts (and between image pulls), as the kubelet's `flowcontrol.Backoff`:
/// the first retry is immediate, each later one waits twice as long as the one before.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    delay: Duration,
    last_try: Option<Instant>,
}

impl Backoff {
    /// `None` if a retry may go now (and records it), else how long to wait.
    pub fn try_now(&mut self, now: Instant) -> Option<Duration> {
        if let Some(last) = self.last_try
            && !self.delay.is_zero()
        {
            let ready_at = last + self.delay;
            if now < ready_at {
                return Some(ready_at - now);
            }
        }
        self.delay = if self.delay.is_zero() {
            INITIAL_BACKOFF
        } else {
            (self.delay * 2).min(MAX_BACKOFF)
        };
        self.last_try = Some(now);
        None
    }

    /// How long until a retry may go, without recording one.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        let ready_at = self.last_try? + self.delay;
        (now < ready_at).then(|| ready_at - now)
    }

    /// The wait the message quotes (`back-off 20s restarting failed container`).
    pub fn current(&self) -> Duration {
        self.delay
    }

    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// Why a container is not running, as `state.waiting` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: &'static str,
    pub message: Option<String>,
}

/// One run of a container.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: ContainerId,
    pub started_at: SystemTime,
    pub exit: Option<ExitStatus>,
    /// Becomes true when the run exits (log followers stop then).
    pub exited: watch::Receiver<bool>,
    /// What the run's probes found.
    pub health: super::probes::Health,
    /// The run's probe workers, stopped when it exits.
    pub probes: Vec<tokio::task::AbortHandle>,
}

#[derive(Debug, Clone, Default)]
pub struct ContainerState {
    pub restart_count: u32,
    pub run: Option<Run>,
    /// The run before `run`: `lastState.terminated`.
    pub last_termination: Option<(ContainerId, ExitStatus)>,
    pub waiting: Option<Waiting>,
    pub restart_backoff: Backoff,
    pub pull_backoff: Backoff,
    /// Why the last pull failed, quoted while its back-off lasts.
    pub pull_error: Option<String>,
    /// `sha256:…` of the image the current run uses.
    pub image_id: Option<String>,
    /// The runtime handler that runs this container.
    pub handler: Option<&'static str>,
}

impl ContainerState {
    pub fn running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.exit.is_none())
    }

    pub fn exit(&self) -> Option<&ExitStatus> {
        self.run.as_ref().and_then(|r| r.exit.as_ref())
    }

    pub fn succeeded(&self) -> bool {
        self.exit().is_some_and(|e| e.exit_code == 0)
    }
}

/// A pod as this node runs it.
pub struct PodState {
    pub uid: String,
    /// One sandbox per runtime the pod's containers use.
    pub sandboxes: HashMap<&'static str, (Arc<dyn PodSandbox>, SandboxId)>,
    pub containers: HashMap<String, ContainerState>,
    /// The pod's volumes, once prepared.
    pub volumes: Option<crate::volumes::PodVolumes>,
    /// When the volumes were last brought up to date.
    pub volumes_synced: Option<Instant>,
    /// The pod's network, once a container needed it.
    pub network: Option<super::sandbox::PodNetworkInfo>,
    /// The pod's cgroup, once a container needed it (`Some(None)`: the node has no cgroups).
    pub cgroup: Option<Option<std::path::PathBuf>>,
    pub start_time: Option<jiff::Timestamp>,
    /// Whether the runtimes were asked for containers an earlier agent left running.
    pub adopted: bool,
}

impl PodState {
    pub fn new(uid: String) -> PodState {
        PodState {
            uid,
            sandboxes: HashMap::new(),
            containers: HashMap::new(),
            volumes: None,
            volumes_synced: None,
            network: None,
            cgroup: None,
            start_time: None,
            adopted: false,
        }
    }

    pub fn container(&mut self, name: &str) -> &mut ContainerState {
        self.containers.entry(name.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_then_doubles_to_five_minutes() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.try_now(t0), None, "the first restart is immediate");
        assert_eq!(
            b.try_now(t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(b.current(), Duration::from_secs(10));
        assert_eq!(b.try_now(t0 + Duration::from_secs(10)), None);
        assert_eq!(b.current(), Duration::from_secs(20));
        let mut t = t0 + Duration::from_secs(10);
        for _ in 0..10 {
            t += b.current();
            assert_eq!(b.try_now(t), None);
        }
        assert_eq!(b.current(), MAX_BACKOFF);
        b.reset();
        assert_eq!(b.try_now(t), None);
    }
}
