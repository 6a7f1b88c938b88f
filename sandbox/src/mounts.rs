//! This mount namespace's mount points, as `/proc/self/mountinfo` lists them, and detaching
//! them: what the runtimes (container root filesystems) and the node (Memory emptyDirs) need
//! before deleting a directory, so that a deletion never reaches through a mount.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Mount points at or below `path` (canonical, as mountinfo shows them), in mountinfo order:
/// a mount comes after the one it sits on.
pub fn mount_points_below(path: &Path) -> io::Result<Vec<PathBuf>> {
    let table = std::fs::read("/proc/self/mountinfo")?;
    Ok(table
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|point| PathBuf::from(OsString::from_vec(unescape_octal(point))))
        .filter(|point| point.starts_with(path))
        .collect())
}

/// Detaches the mount at `path` (`MNT_DETACH`: a process holding a file open below it must not
/// wedge removal; the kernel frees it once unused). Nothing mounted there any more (EINVAL,
/// ENOENT: a parent's detach took it along) is not an error.
pub fn detach(path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(e);
        }
    }
    Ok(())
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_octal(br"/a\040b\011c\134d\\"), b"/a b\tc\\d\\\\");
        assert_eq!(unescape_octal(br"/x\09"), br"/x\09");
    }

    #[test]
    fn mount_points_are_listed_below_a_path_only() {
        let all = mount_points_below(Path::new("/")).expect("mountinfo");
        assert!(all.contains(&PathBuf::from("/proc")), "{all:?}");
        let proc = mount_points_below(Path::new("/proc")).expect("mountinfo");
        assert!(proc.iter().all(|p| p.starts_with("/proc")), "{proc:?}");
        assert!(detach(Path::new("/nonexistent-mount-point")).is_ok());
    }
}
