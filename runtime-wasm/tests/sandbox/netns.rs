//! Network namespaces for the tests (needs root, `nsenter` from util-linux and `ip` from
//! iproute2): [`NetNs`] is a fresh namespace bind-mounted on a temp file, as the node's CNI
//! setup leaves one, with `lo` up; dropping it unmounts it. Code runs inside one on a thread of
//! its own ([`NetNs::run_in`]), so no thread of the test is left in it.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct NetNs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NetNs {
    pub fn new() -> NetNs {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "network namespace tests need root"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("netns");
        // A bind mount needs an existing target file.
        File::create(&path).expect("netns mount point");
        let target = CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
        // unshare(CLONE_NEWNET) moves only the calling thread: do it on one that ends right
        // after the mount, which keeps the namespace alive.
        std::thread::spawn(move || {
            // SAFETY: plain syscalls on this thread; the pointers are valid C strings.
            unsafe {
                assert_eq!(
                    libc::unshare(libc::CLONE_NEWNET),
                    0,
                    "unshare(CLONE_NEWNET): {}",
                    std::io::Error::last_os_error()
                );
                assert_eq!(
                    libc::mount(
                        c"/proc/thread-self/ns/net".as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ),
                    0,
                    "bind-mounting the namespace: {}",
                    std::io::Error::last_os_error()
                );
            }
        })
        .join()
        .expect("creating a network namespace");
        let ns = NetNs { path, _dir: dir };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `ip args…` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let status = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .arg("ip")
            .args(args)
            .status()
            .unwrap_or_else(|e| {
                panic!("running `nsenter … ip` (util-linux and iproute2 are needed): {e}")
            });
        assert!(status.success(), "ip {args:?} in the namespace: {status}");
    }

    /// Joins `self` and `other` with a veth pair, `eth0` on both sides, addressed `ip` and
    /// `other_ip` in one /24: two pods on a wire.
    pub fn link(&self, ip: &str, other: &NetNs, other_ip: &str) {
        let peer = other.path.to_str().expect("a UTF-8 path");
        self.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer,
        ]);
        for (ns, addr) in [(self, ip), (other, other_ip)] {
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
        }
    }

    /// Runs `f` on a fresh thread that has entered the namespace; sockets it creates stay there.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = File::open(&self.path).expect("open the namespace");
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: `ns` is an open file for the life of this scope.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.path.as_os_str().as_bytes()) {
            // Lazily: a thread still inside keeps the namespace until it leaves.
            // SAFETY: a valid C string; umount2 does not keep the pointer.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
