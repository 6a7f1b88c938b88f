//! Host isolation between concurrent test clusters. Tests run in parallel, one process each,
//! and a node's pod network (a Linux bridge and a pod subnet) and its cgroup tree are host-wide:
//! two clusters must never share them. A [`Slot`] is a number `n` in `0..SLOTS`, held through an
//! exclusive `flock` on `/tmp/skiff-e2e-slots/<n>.lock` for the cluster's life, from which every
//! host-wide name of the cluster is derived ([`Slot::cluster_cidr`], [`Slot::bridge`],
//! [`Slot::cgroup_root`]).
//!
//! The kernel drops the lock when its holder dies, however it dies; what a killed test process
//! left behind under its slot's names is swept when the slot is next taken, and in any case when
//! the slot is released ([`Drop`]): the bridge is deleted and the slot's cgroup trees removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use crate::host;

/// How many clusters can run at once on one host: pod subnets are `10.{50+n}.0.0/16`.
pub const SLOTS: u16 = 200;
const LOCK_DIR: &str = "/tmp/skiff-e2e-slots";

/// One cluster's share of the host. Shared (through an `Arc`) by the cluster and the nodes that
/// join it, so the bridge goes when the last of them does, whichever that is.
#[derive(Debug)]
pub struct Slot {
    n: u16,
    /// Held (locked) until the slot is dropped; closing it releases the lock.
    _lock: File,
}

impl Slot {
    /// Takes the lowest free slot; panics when all [`SLOTS`] are taken.
    pub fn acquire() -> Slot {
        std::fs::create_dir_all(LOCK_DIR).unwrap_or_else(|e| panic!("creating {LOCK_DIR}: {e}"));
        for n in 0..SLOTS {
            let path = PathBuf::from(LOCK_DIR).join(format!("{n}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening {path:?}: {e}"));
            match file.try_lock() {
                Ok(()) => {
                    let slot = Slot { n, _lock: file };
                    // A holder killed before its Drop ran may have left these behind.
                    slot.sweep();
                    return slot;
                }
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => panic!("locking {path:?}: {e}"),
            }
        }
        panic!("all {SLOTS} test cluster slots in {LOCK_DIR} are taken")
    }

    pub fn number(&self) -> u16 {
        self.n
    }

    /// The cluster's pod range (`--cluster-cidr`); each node gets a /24 of it.
    pub fn cluster_cidr(&self) -> String {
        format!("10.{}.0.0/16", 50 + self.n)
    }

    /// The first two octets of every pod address in this slot, with the dot: `10.{50+n}.`
    pub fn pod_address_prefix(&self) -> String {
        format!("10.{}.", 50 + self.n)
    }

    /// The Linux bridge every node of the cluster attaches its pods to (`--bridge`; the kernel
    /// allows 15 bytes).
    pub fn bridge(&self) -> String {
        format!("skiffe2e{}", self.n)
    }

    /// The cgroup (below each hierarchy's root) a node puts its pods in (`--cgroup-root`):
    /// `skiff-e2e-{n}` for the cluster's own node, `skiff-e2e-{n}-{node}` for a joined one.
    pub fn cgroup_root(&self, joined_node: Option<&str>) -> String {
        match joined_node {
            None => format!("skiff-e2e-{}", self.n),
            Some(node) => format!("skiff-e2e-{}-{node}", self.n),
        }
    }

    /// Whether `name`, a cgroup directory directly below a hierarchy's root, belongs to this slot.
    fn owns_cgroup(&self, name: &str) -> bool {
        let own = self.cgroup_root(None);
        name == own || name.starts_with(&format!("{own}-"))
    }

    /// The cgroup trees of this slot's nodes that exist, in every cgroup hierarchy.
    pub(crate) fn cgroup_trees(&self) -> Vec<PathBuf> {
        let mut trees = Vec::new();
        for mount in host::cgroup_mounts() {
            let Ok(entries) = std::fs::read_dir(&mount) else {
                continue;
            };
            for entry in entries.flatten() {
                if self.owns_cgroup(&entry.file_name().to_string_lossy()) {
                    trees.push(entry.path());
                }
            }
        }
        trees
    }

    /// Deletes the bridge and every cgroup tree of this slot; reports what it could not remove.
    fn sweep(&self) {
        // The pods' NAT rules outlive a killed node (no CNI DEL ran); its netns and veths do not.
        let mut problems = host::remove_nat_rules(&self.pod_address_prefix());
        problems.extend(host::delete_link(&self.bridge()));
        for tree in self.cgroup_trees() {
            problems.extend(host::remove_cgroup_tree(&tree));
        }
        for problem in problems {
            eprintln!("test cleanup (slot {}): {problem}", self.n);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.sweep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_within_kernel_and_address_limits() {
        // Never dropped: its Drop would sweep a slot another test process may hold.
        let slot = std::mem::ManuallyDrop::new(Slot {
            n: SLOTS - 1,
            _lock: tempfile::tempfile().expect("a file"),
        });
        assert!(slot.bridge().len() <= 15, "{}", slot.bridge());
        assert_eq!(slot.cluster_cidr(), "10.249.0.0/16");
        assert!(slot.owns_cgroup("skiff-e2e-199"));
        assert!(slot.owns_cgroup("skiff-e2e-199-node-b"));
        assert!(!slot.owns_cgroup("skiff-e2e-1990"));
        assert!(!slot.owns_cgroup("skiff"));
    }
}
