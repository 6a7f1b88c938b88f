//! Pseudo-terminals for tty containers and tty exec sessions: [`open`] a raw pair,
//! [`ConsoleSocket`] for the master runc makes for a tty container, [`set_size`], and
//! [`AsyncPty`], a master for tokio whose reader and writer halves share it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use skiff_sandbox::TerminalSize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CONSOLE_SOCKET: &str = "console.sock";
/// How long after `runc run` the pty master may take to arrive.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A new pty pair, `(master, slave)`, both close-on-exec, the slave in raw mode: whoever holds
/// the slave (runc) sets its own modes, and nothing written before then is echoed back.
pub(crate) fn open() -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills both descriptors on success; the null pointers ask for defaults.
    check(unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    })?;
    // SAFETY: freshly created descriptors, owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on a descriptor we own.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    }
    // SAFETY: a zeroed termios is a valid out-buffer for tcgetattr, which fills it.
    let mut modes: libc::termios = unsafe { std::mem::zeroed() };
    check(unsafe { libc::tcgetattr(slave.as_raw_fd(), &mut modes) })?;
    // SAFETY: cfmakeraw edits the struct in place; tcsetattr reads it.
    unsafe { libc::cfmakeraw(&mut modes) };
    check(unsafe { libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &modes) })?;
    Ok((master, slave))
}

/// Sets the terminal size of the pty behind `fd` (either end); the kernel signals SIGWINCH to
/// its foreground process group.
pub(crate) fn set_size(fd: BorrowedFd<'_>, size: TerminalSize) -> io::Result<()> {
    let winsize = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &winsize) }).map(|_| ())
}

/// Receives one descriptor sent with `SCM_RIGHTS` (runc's `--console-socket` sends the pty
/// master with its name as the data).
fn receive_fd(stream: &UnixStream) -> io::Result<OwnedFd> {
    let mut name = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: name.as_mut_ptr().cast(),
        iov_len: name.len(),
    };
    // Room for one control message carrying one descriptor, aligned as cmsghdr requires.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: recvmsg fills the buffers msg points to.
    check(unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } as i32)?;
    // SAFETY: CMSG_FIRSTHDR and CMSG_DATA walk the control buffer recvmsg filled.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd: RawFd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
            return Ok(OwnedFd::from_raw_fd(fd));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no descriptor in the console socket message",
    ))
}

/// Where runc sends a tty container's pty master (`runc run --console-socket`):
/// `DIR/console.sock`.
pub(crate) struct ConsoleSocket {
    listener: UnixListener,
    /// A path to it short enough for a socket address, and valid in runc's process.
    path: PathBuf,
    /// Keeps `path` resolvable.
    _dir: File,
}

impl ConsoleSocket {
    pub(crate) fn listen(dir: &Path) -> io::Result<ConsoleSocket> {
        let _ = std::fs::remove_file(dir.join(CONSOLE_SOCKET));
        let (handle, own_path) = crate::shim::short_path(dir, CONSOLE_SOCKET)?;
        let listener = UnixListener::bind(&own_path)?;
        // `/proc/self` would be runc's own; name the shim's descriptor by its PID.
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}/{CONSOLE_SOCKET}",
            std::process::id(),
            handle.as_raw_fd()
        ));
        Ok(ConsoleSocket {
            listener,
            path,
            _dir: handle,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The master runc sent: it has by the time `runc run` has succeeded.
    pub(crate) fn receive(self) -> io::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let deadline = Instant::now() + CONSOLE_TIMEOUT;
        let stream = loop {
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        receive_fd(&stream)
    }
}

/// A pty master for tokio. [`AsyncPty::split`] gives a reader and a writer that share it; the
/// end of the other side (every holder of the slave gone) reads as EOF, not as `EIO`.
pub(crate) struct AsyncPty(Arc<AsyncFd<OwnedFd>>);

impl AsyncPty {
    pub(crate) fn new(master: OwnedFd) -> io::Result<AsyncPty> {
        // SAFETY: fcntl on a descriptor we own.
        let flags = check(unsafe { libc::fcntl(master.as_raw_fd(), libc::F_GETFL) })?;
        check(unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        // SAFETY: the OwnedFd is valid and stays owned, unreplaced, by the AsyncFd.
        let fd = unsafe { AsyncFd::register(master)? };
        Ok(AsyncPty(Arc::new(fd)))
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.get_ref().as_fd()
    }

    pub(crate) fn split(&self) -> (PtyReader, PtyWriter) {
        (PtyReader(self.0.clone()), PtyWriter(self.0.clone()))
    }
}

pub(crate) struct PtyReader(Arc<AsyncFd<OwnedFd>>);
pub(crate) struct PtyWriter(Arc<AsyncFd<OwnedFd>>);

impl AsyncRead for PtyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let result = guard.try_io(|fd| {
                // SAFETY: read into the initialized, unfilled part of the buffer.
                let n = unsafe {
                    libc::read(
                        fd.get_ref().as_raw_fd(),
                        unfilled.as_mut_ptr().cast(),
                        unfilled.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Linux reports a master whose slave is closed everywhere as EIO: that is EOF.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            let result = guard.try_io(|fd| {
                // SAFETY: write from a valid slice.
                let n = unsafe {
                    libc::write(fd.get_ref().as_raw_fd(), data.as_ptr().cast(), data.len())
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(done) => return Poll::Ready(done),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// A terminal has no half-close: the client's end of input changes nothing.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_pty_pair_carries_bytes_and_sizes_and_ends_as_eof() {
        let (master, slave) = open().unwrap();
        let pty = AsyncPty::new(master).unwrap();
        set_size(
            pty.as_fd(),
            TerminalSize {
                width: 100,
                height: 30,
            },
        )
        .unwrap();
        let mut winsize: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills the valid out-pointer.
        assert_eq!(
            unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut winsize) },
            0
        );
        assert_eq!((winsize.ws_col, winsize.ws_row), (100, 30));

        let (mut reader, mut writer) = pty.split();
        writer.write_all(b"in\n").await.unwrap();
        let mut slave = std::fs::File::from(slave);
        let mut got = [0u8; 3];
        std::io::Read::read_exact(&mut slave, &mut got).unwrap();
        assert_eq!(&got, b"in\n", "raw mode: no echo, no translation");
        std::io::Write::write_all(&mut slave, b"out").unwrap();
        drop(slave);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"out");
    }
}
