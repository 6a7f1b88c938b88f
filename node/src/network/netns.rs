//! Network namespaces kept alive by a bind mount on a file, as `ip netns` does under
//! `/run/netns`, but at any path (the agent uses `<data>/network/netns/<pod uid>`).
//!
//! [`create`] makes one, [`remove`] unmounts and deletes it, [`is_netns`] tells whether a path
//! still holds one, and [`run_in`] / [`tcp_connect_in`] run code inside one. Linux network
//! namespaces are per *thread*, so everything here happens on a fresh, short-lived thread that
//! is thrown away afterwards: no thread of the process, and never a pooled tokio worker, is
//! left in a pod's namespace. A socket keeps the namespace it was created in, so a socket made
//! by [`run_in`] can be used from any thread (or handed to tokio) afterwards.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use tracing::debug;

use super::NetworkError;

/// `statfs(2)` `f_type` of nsfs, the filesystem of `/proc/*/ns/*` and of their bind mounts.
const NSFS_MAGIC: u64 = 0x6e73_6673;

/// Creates a new network namespace and bind-mounts it at `path` (the file is created). The
/// namespace has only a `lo` that is down; the CNI loopback plugin brings it up.
///
/// Fails with [`NetworkError::NetnsExists`] when `path` already holds a namespace.
pub fn create(path: &Path) -> Result<(), NetworkError> {
    if is_netns(path) {
        return Err(NetworkError::NetnsExists {
            path: path.to_path_buf(),
        });
    }
    // A bind mount needs an existing target file.
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| NetworkError::Netns {
            action: "creating the mount point for",
            path: path.to_path_buf(),
            source,
        })?;
    let target = c_path(path)?;
    // unshare(CLONE_NEWNET) moves only the calling thread, so do it on a thread of our own
    // that ends right after the mount; the mount keeps the namespace alive.
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), (&'static str, io::Error)> {
            // SAFETY: plain syscalls on this thread; the pointers are valid C strings.
            unsafe {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(("creating", io::Error::last_os_error()));
                }
                if libc::mount(
                    c"/proc/thread-self/ns/net".as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(("bind-mounting", io::Error::last_os_error()));
                }
            }
            Ok(())
        })
        .join()
    });
    let failure = match made {
        Ok(Ok(())) => {
            debug!(netns = %path.display(), "network namespace created");
            return Ok(());
        }
        Ok(Err((action, source))) => NetworkError::Netns {
            action,
            path: path.to_path_buf(),
            source,
        },
        Err(_) => NetworkError::NetnsThread {
            path: path.to_path_buf(),
        },
    };
    // Leave no empty mount point behind.
    let _ = std::fs::remove_file(path);
    Err(failure)
}

/// Unmounts the namespace at `path` (lazily, so a process still inside keeps it until it
/// leaves) and deletes the file. Idempotent: a missing file or a file that is not mounted is
/// fine.
pub fn remove(path: &Path) -> Result<(), NetworkError> {
    let target = c_path(path)?;
    // Mounts can be stacked if something mounted twice; peel them all (bounded, to be safe).
    for _ in 0..8 {
        // SAFETY: a valid C string; umount2 does not keep the pointer.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // EINVAL: not a mount point (any more); ENOENT: no file at all.
            Some(libc::EINVAL) | Some(libc::ENOENT) => break,
            _ => {
                return Err(NetworkError::Netns {
                    action: "unmounting",
                    path: path.to_path_buf(),
                    source: err,
                });
            }
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            debug!(netns = %path.display(), "network namespace removed");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Netns {
            action: "deleting",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether `path` is a mounted namespace (after a reboot the file may still be there, empty).
pub fn is_netns(path: &Path) -> bool {
    let Ok(target) = c_path(path) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(target.as_ptr(), &mut st) == 0 && st.f_type as u64 == NSFS_MAGIC
    }
}

/// Runs `f` on a fresh thread that has joined the network namespace at `path`, and returns
/// what it returns. Sockets `f` creates stay in that namespace. A panic in `f` is resumed on
/// the caller's thread.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetworkError> {
    let ns = File::open(path).map_err(|source| NetworkError::Netns {
        action: "opening",
        path: path.to_path_buf(),
        source,
    })?;
    let joined = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `ns` is an open file for the life of this scope.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(NetworkError::Netns {
                    action: "entering",
                    path: path.to_path_buf(),
                    source: io::Error::last_os_error(),
                });
            }
            // This thread now lives in the pod's namespace; it ends with `f`.
            Ok(f())
        })
        .join()
    });
    match joined {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Opens a TCP connection from inside the namespace at `path` (a tcpSocket/httpGet probe to the
/// pod's own address or `127.0.0.1`). The stream is usable from any thread; for tokio, call
/// `set_nonblocking(true)` and `tokio::net::TcpStream::from_std`.
pub fn tcp_connect_in(
    path: &Path,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, NetworkError> {
    run_in(path, || TcpStream::connect_timeout(&addr, timeout))?.map_err(|source| {
        NetworkError::Connect {
            netns: path.to_path_buf(),
            addr,
            source,
        }
    })
}

fn c_path(path: &Path) -> Result<CString, NetworkError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| NetworkError::Netns {
        action: "naming",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn own_netns() -> String {
        std::fs::read_link("/proc/thread-self/ns/net")
            .unwrap()
            .display()
            .to_string()
    }

    fn mounted(path: &Path) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let needle = format!(" {} ", path.display());
        info.lines().any(|l| l.contains(&needle))
    }

    #[test]
    fn create_run_in_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        create(&path).unwrap();
        assert!(is_netns(&path));
        assert!(mounted(&path));
        assert!(matches!(
            create(&path),
            Err(NetworkError::NetnsExists { .. })
        ));

        let host = own_netns();
        let inside = run_in(&path, own_netns).unwrap();
        assert_ne!(inside, host, "run_in must switch namespaces");
        assert_eq!(own_netns(), host, "the caller's thread must stay put");
        assert_eq!(
            run_in(&path, own_netns).unwrap(),
            inside,
            "same namespace each time"
        );

        // Only lo exists, and it is down: a socket made inside cannot reach the host's lo.
        let host_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = tcp_connect_in(
            &path,
            host_listener.local_addr().unwrap(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, NetworkError::Connect { .. }), "{err}");

        remove(&path).unwrap();
        assert!(!path.exists());
        assert!(!mounted(&path));
        assert!(!is_netns(&path));
        remove(&path).unwrap();
    }

    #[test]
    fn remove_plain_file_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale");
        std::fs::write(&path, b"").unwrap();
        assert!(!is_netns(&path));
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&dir.path().join("never")).unwrap();
    }

    #[test]
    fn run_in_missing_namespace_names_the_path() {
        let err = run_in(Path::new("/nonexistent/skiff-ns"), || ()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/skiff-ns"), "{err}");
    }
}
