//! Pods waiting for a node, and where each stands: ready to try ([`State::Active`]), waiting
//! out its back-off, parked as unschedulable until the cluster changes, or being bound.
//! Back-off follows kube-scheduler's defaults: 1 s doubling per attempt, at most 10 s.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Backoff(Instant),
    /// Fit nowhere at `since`; waits for a cluster change (or the periodic backstop).
    Unschedulable {
        since: Instant,
    },
    /// A bind is in flight.
    Binding,
    /// The bind succeeded; the watch has yet to show it.
    Bound,
}

#[derive(Debug)]
pub struct Pending {
    pub pod: Pod,
    pub state: State,
    pub attempts: u32,
    /// When its last Unschedulable verdict was written (condition and Event).
    pub reported: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Queue {
    pending: HashMap<String, Pending>,
    active: VecDeque<String>,
    backoff: BinaryHeap<Reverse<(Instant, String)>>,
}

fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

impl Queue {
    pub fn get(&self, key: &str) -> Option<&Pending> {
        self.pending.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Pending> {
        self.pending.get_mut(key)
    }

    /// A pending pod seen on the watch: new ones become active, known ones get the newer object.
    pub fn upsert(&mut self, key: &str, pod: Pod) {
        match self.pending.get_mut(key) {
            Some(p) => p.pod = pod,
            None => {
                self.pending.insert(
                    key.to_string(),
                    Pending {
                        pod,
                        state: State::Active,
                        attempts: 0,
                        reported: None,
                    },
                );
                self.active.push_back(key.to_string());
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Pending> {
        self.pending.remove(key)
    }

    /// The next pod to try, now marked as attempted.
    pub fn pop_active(&mut self) -> Option<String> {
        while let Some(key) = self.active.pop_front() {
            if let Some(p) = self.pending.get_mut(&key)
                && p.state == State::Active
            {
                p.attempts += 1;
                p.state = State::Binding;
                return Some(key);
            }
        }
        None
    }

    pub fn set_state(&mut self, key: &str, state: State) {
        if let Some(p) = self.pending.get_mut(key) {
            p.state = state;
        }
    }

    /// Tries the pod again after its back-off (a failed bind, say).
    pub fn back_off(&mut self, key: &str, now: Instant) {
        if let Some(p) = self.pending.get_mut(key) {
            let due = now + backoff(p.attempts);
            p.state = State::Backoff(due);
            self.backoff.push(Reverse((due, key.to_string())));
        }
    }

    /// The cluster changed: every unschedulable pod parked at least `min_age` is retried once
    /// its back-off from its last attempt has passed.
    pub fn retry_unschedulable(&mut self, now: Instant, min_age: Duration) {
        for (key, p) in &mut self.pending {
            let State::Unschedulable { since } = p.state else {
                continue;
            };
            if now.duration_since(since) < min_age {
                continue;
            }
            let due = since + backoff(p.attempts);
            if due <= now {
                p.state = State::Active;
                self.active.push_back(key.clone());
            } else {
                p.state = State::Backoff(due);
                self.backoff.push(Reverse((due, key.clone())));
            }
        }
    }

    /// When the earliest back-off ends.
    pub fn next_wake(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((due, _))| *due)
    }

    /// Pods whose back-off has ended become active.
    pub fn release_due(&mut self, now: Instant) {
        while let Some(Reverse((due, _))) = self.backoff.peek()
            && *due <= now
        {
            let Some(Reverse((due, key))) = self.backoff.pop() else {
                break;
            };
            if let Some(p) = self.pending.get_mut(&key)
                && p.state == State::Backoff(due)
            {
                p.state = State::Active;
                self.active.push_back(key);
            }
        }
    }

    /// After a relist: pods not listed are gone, unless a bind for them is under way.
    pub fn retain_seen(&mut self, seen: &HashSet<String>) {
        self.pending.retain(|key, p| {
            seen.contains(key) || matches!(p.state, State::Binding | State::Bound)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_one_second_to_ten() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_their_back_off() {
        let mut q = Queue::default();
        q.upsert("ns/a", Pod::default());
        q.upsert("ns/a", Pod::default());
        assert_eq!(q.pop_active().as_deref(), Some("ns/a"));
        assert_eq!(q.pop_active(), None, "each pod is queued once");
        let t0 = Instant::now();
        q.set_state("ns/a", State::Unschedulable { since: t0 });
        q.release_due(t0 + Duration::from_secs(60));
        assert_eq!(q.pop_active(), None, "nothing changed, nothing retried");

        q.retry_unschedulable(t0 + Duration::from_millis(300), Duration::ZERO);
        assert_eq!(q.pop_active(), None, "still within its 1 s back-off");
        assert_eq!(q.next_wake(), Some(t0 + Duration::from_secs(1)));
        q.release_due(t0 + Duration::from_secs(1));
        assert_eq!(q.pop_active().as_deref(), Some("ns/a"));
        assert_eq!(q.get("ns/a").map(|p| p.attempts), Some(2));
    }

    #[test]
    fn relist_keeps_binds_in_flight() {
        let mut q = Queue::default();
        q.upsert("ns/gone", Pod::default());
        q.upsert("ns/binding", Pod::default());
        q.set_state("ns/binding", State::Binding);
        q.retain_seen(&HashSet::new());
        assert!(q.get("ns/gone").is_none());
        assert!(q.get("ns/binding").is_some());
    }
}
