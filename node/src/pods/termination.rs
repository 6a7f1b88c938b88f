//! `terminationMessagePath`: a file per run that the node mounts into the container (at
//! `/dev/termination-log` unless the spec says otherwise) and reads when the run ends, for the
//! terminated state's `message`; with `FallbackToLogsOnError`, a failed run that wrote none
//! gets the tail of its log instead (the kubelet's limits: 4096 bytes of file, 80 lines or
//! 2048 bytes of log).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Container;
use skiff_sandbox::Mount;
use skiff_sandbox::cri_log::Entry;

const MAX_MESSAGE: usize = 4096;
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

#[derive(Debug, Clone)]
pub(super) struct TerminationMessage {
    /// The file on the node.
    path: PathBuf,
    /// The run's CRI log.
    log: PathBuf,
    fallback_to_logs: bool,
}

impl TerminationMessage {
    /// The message file of run `attempt` of `container` in the pod directory `pod_dir`.
    pub(super) fn new(
        pod_dir: &std::path::Path,
        container: &Container,
        attempt: u32,
        log: PathBuf,
    ) -> Self {
        TerminationMessage {
            path: pod_dir
                .join("containers")
                .join(&container.name)
                .join(format!("{attempt}.termination-log")),
            log,
            fallback_to_logs: container.termination_message_policy.as_deref()
                == Some("FallbackToLogsOnError"),
        }
    }

    /// Creates the empty, world-writable file and the mount that shows it in the container.
    pub(super) fn prepare(&self, container: &Container) -> std::io::Result<Mount> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&self.path, b"")?;
        // Any user the container runs as may write its message.
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o666))?;
        Ok(Mount {
            host_path: self.path.clone(),
            container_path: container
                .termination_message_path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/dev/termination-log".into()),
            read_only: false,
        })
    }

    /// The message of a run that ended with `exit_code`.
    pub(super) fn read(&self, exit_code: i32) -> Option<String> {
        let mut bytes = std::fs::read(&self.path).unwrap_or_default();
        bytes.truncate(MAX_MESSAGE);
        if !bytes.is_empty() {
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        if !self.fallback_to_logs || exit_code == 0 {
            return None;
        }
        let log = std::fs::read(&self.log).ok()?;
        let lines: Vec<Vec<u8>> = log
            .split(|b| *b == b'\n')
            .filter_map(Entry::parse)
            .map(|e| e.content)
            .collect();
        let mut tail = lines[lines.len().saturating_sub(FALLBACK_LINES)..].join(&b'\n');
        if tail.len() > FALLBACK_BYTES {
            tail.drain(..tail.len() - FALLBACK_BYTES);
        }
        (!tail.is_empty()).then(|| String::from_utf8_lossy(&tail).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_from_the_file_else_the_log_tail_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("0.log");
        std::fs::write(
            &log,
            "2026-01-01T00:00:00Z stdout F first\n2026-01-01T00:00:01Z stderr F boom\n",
        )
        .expect("log");
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "terminationMessagePolicy": "FallbackToLogsOnError"
        }))
        .expect("container");
        let message = TerminationMessage::new(dir.path(), &container, 0, log);
        let mount = message.prepare(&container).expect("prepare");
        assert_eq!(mount.container_path, "/dev/termination-log");
        assert_eq!(message.read(0), None, "a success falls back to nothing");
        assert_eq!(message.read(1).as_deref(), Some("first\nboom"));
        std::fs::write(&mount.host_path, "written by the app").expect("write");
        assert_eq!(message.read(1).as_deref(), Some("written by the app"));
    }
}
