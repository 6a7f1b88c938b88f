//! Streaming end to end: `kubectl exec`, `attach`, `port-forward`, `cp` and `run -it --rm`
//! against busybox pods run by runc, through the API server's relay to the node, with the real
//! kubectl (WebSocket first, and its SPDY fallback); and the refusals for Wasm pods.
//!
//! kubectl with `-t` needs a terminal: [`Terminal`] runs it in a pseudo-terminal of a known
//! size, as a person at a terminal would.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use skiff_tests::{Cluster, KUBECTL, Registry};

/// How long a terminal session may take to show what a test waits for.
const TERMINAL_BOUND: Duration = Duration::from_secs(90);
/// The size of every test terminal, as `stty size` prints it.
const ROWS: u16 = 37;
const COLS: u16 = 101;

struct Env {
    cluster: Cluster,
    registry: Registry,
}

impl Env {
    fn start() -> Env {
        let (cluster, registry) = Cluster::start_with_registry();
        Env { cluster, registry }
    }

    fn busybox(&self) -> String {
        self.registry
            .push_busybox("test/busybox:v1")
            .expect("pushing busybox")
    }

    /// Creates pod `name` whose one container `app` runs `sh -c script`, with `extra` fields
    /// merged into the container, and waits until it is Ready.
    fn running(&self, name: &str, image: &str, script: &str, extra: serde_json::Value) {
        let mut container = json!({
            "name": "app",
            "image": image,
            "command": ["sh", "-c", script],
        });
        if let (Some(container), Some(extra)) = (container.as_object_mut(), extra.as_object()) {
            container.extend(extra.clone());
        }
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [container]},
        });
        self.cluster.apply(&pod.to_string());
        self.cluster.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=90s",
        ]);
    }

    /// kubectl in a pseudo-terminal.
    fn terminal(&self, args: &[&str]) -> Terminal {
        Terminal::spawn(&self.cluster, args)
    }
}

#[test]
fn exec_separates_streams_passes_stdin_gives_a_terminal_and_exits_with_the_code() {
    let env = Env::start();
    let image = env.busybox();
    env.running("box", &image, "sleep 3600", json!({}));

    let run = env.cluster.kubectl(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(run.status.code(), Some(7), "{run}");
    assert_eq!(run.stdout, "out\n", "{run}");
    assert!(run.stderr.starts_with("err\n"), "{run}");
    assert!(
        run.stderr.contains("command terminated with exit code 7"),
        "{run}"
    );

    let echoed = env
        .cluster
        .cmd(&["exec", "-i", "box", "--", "cat"])
        .stdin("line one\nline two\n")
        .ok();
    assert_eq!(echoed, "line one\nline two\n");

    // kubectl's SPDY fallback, for clients without WebSocket.
    let run = env
        .cluster
        .cmd(&[
            "exec",
            "-i",
            "box",
            "--",
            "sh",
            "-c",
            "cat; echo spdy-err >&2; exit 3",
        ])
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .stdin("over spdy\n")
        .run();
    assert_eq!(run.status.code(), Some(3), "{run}");
    assert_eq!(run.stdout, "over spdy\n", "{run}");
    assert!(run.stderr.starts_with("spdy-err\n"), "{run}");

    let terminal = env.terminal(&["exec", "-it", "box", "--", "sh", "-c", "tty; stty size"]);
    let (status, shown) = terminal.finish();
    assert!(status.success(), "{shown}");
    assert!(shown.contains("/dev/pts/"), "not a terminal: {shown:?}");
    assert!(
        shown.contains(&format!("{ROWS} {COLS}")),
        "the client's size: {shown:?}"
    );

    let err = env
        .cluster
        .kubectl_err(&["exec", "box", "--", "no-such-command"]);
    assert!(
        err.contains("executable file not found in $PATH"),
        "runc's reason: {err}"
    );
    let err = env
        .cluster
        .kubectl_err(&["exec", "box", "-c", "nope", "--", "ls"]);
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): container nope is not valid for pod box"
    );
}

#[test]
fn cp_copies_files_into_and_out_of_a_container() {
    let env = Env::start();
    let image = env.busybox();
    env.running("box", &image, "sleep 3600", json!({}));
    let local = env
        .cluster
        .write_file("upload.txt", "uploaded through tar\n");
    env.cluster
        .kubectl_ok(&["cp", &local.to_string_lossy(), "box:/tmp/upload.txt"]);
    assert_eq!(
        env.cluster
            .kubectl_ok(&["exec", "box", "--", "cat", "/tmp/upload.txt"]),
        "uploaded through tar\n"
    );
    env.cluster.kubectl_ok(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/out && echo made in the pod > /tmp/out/a.txt && seq 1 20000 > /tmp/out/b.txt",
    ]);
    let into = env.cluster.scratch().join("downloaded");
    env.cluster
        .kubectl_ok(&["cp", "box:/tmp/out", &into.to_string_lossy()]);
    assert_eq!(
        std::fs::read_to_string(into.join("a.txt")).unwrap(),
        "made in the pod\n"
    );
    let numbers = std::fs::read_to_string(into.join("b.txt")).unwrap();
    assert_eq!(numbers.lines().count(), 20000);
    assert_eq!(numbers.lines().last(), Some("20000"));
}

#[test]
fn attach_follows_output_takes_stdin_and_run_it_rm_gives_a_shell() {
    let env = Env::start();
    let image = env.busybox();
    env.running(
        "ticker",
        &image,
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done",
        json!({}),
    );
    env.running(
        "reader",
        &image,
        "echo ready; read line; echo got $line; exit 2",
        json!({"stdin": true}),
    );

    let mut ticks = env.cluster.cmd(&["attach", "ticker"]).spawn();
    let first = ticks.expect_stdout("a tick", |l| l.starts_with("tick "));
    let next = ticks.expect_stdout("another tick", |l| l.starts_with("tick "));
    assert_ne!(first, next, "live output, line after line");
    drop(ticks);

    let run = env
        .cluster
        .cmd(&["attach", "-i", "reader"])
        .stdin("hello attach\n")
        .run();
    assert!(
        run.success(),
        "an attach ends well with its container: {run}"
    );
    assert!(run.stdout.contains("got hello attach"), "{run}");
    let pod = env.cluster.wait_pod_phase("reader", "Failed");
    let state = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(state["exitCode"], 2, "{state}");
    assert!(
        env.cluster
            .kubectl_ok(&["logs", "reader"])
            .contains("got hello attach"),
        "attached input and output also reach the log"
    );

    let mut shell = env.terminal(&[
        "run",
        "-it",
        "--rm",
        &format!("--image={image}"),
        "--restart=Never",
        "shell",
        "--",
        "sh",
    ]);
    shell.expect("/ # ");
    shell.type_text("stty size; tty; echo marker-$((6*7))\r");
    let shown = shell.expect("marker-42\r\n");
    assert!(shown.contains(&format!("{ROWS} {COLS}")), "{shown:?}");
    assert!(shown.contains("/dev/pts/"), "{shown:?}");
    shell.type_text("exit 3\r");
    let (status, shown) = shell.finish();
    assert_eq!(status.code(), Some(3), "the shell's exit code: {shown:?}");
    assert!(shown.contains("pod \"shell\" deleted"), "{shown:?}");
    let gone = env.cluster.kubectl_err(&["get", "pod", "shell"]);
    assert!(gone.contains("NotFound"), "{gone}");
}

/// `GET path` over HTTP/1.0 to `127.0.0.1:port`; the body.
fn http_get(port: u16, path: &str) -> Vec<u8> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the forward");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).expect("reading the answer");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]);
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    answer[split + 4..].to_vec()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

#[test]
fn port_forward_reaches_a_pods_port_tunnelled_or_over_spdy() {
    let env = Env::start();
    let image = env.busybox();
    env.running(
        "web",
        &image,
        "mkdir -p /www && echo hello from httpd > /www/index.html && \
         seq 1 200000 > /www/big.txt && exec httpd -f -p 8080 -h /www",
        json!({"ports": [{"containerPort": 8080}]}),
    );
    let expected_big: String = (1..=200000).map(|n| format!("{n}\n")).collect();
    for websockets in ["true", "false"] {
        let port = free_port();
        let mut forward = env
            .cluster
            .cmd(&["port-forward", "pod/web", &format!("{port}:8080")])
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
            .spawn();
        forward.expect_stdout("the forward", |l| {
            l.starts_with(&format!("Forwarding from 127.0.0.1:{port} -> 8080"))
        });
        assert_eq!(http_get(port, "/index.html"), b"hello from httpd\n");
        let big = http_get(port, "/big.txt");
        assert_eq!(big.len(), expected_big.len(), "websockets={websockets}");
        assert!(big == expected_big.as_bytes(), "websockets={websockets}");
        // Connections come and go on one forward.
        assert_eq!(http_get(port, "/index.html"), b"hello from httpd\n");
    }

    let port = free_port();
    let mut refused = env
        .cluster
        .cmd(&["port-forward", "pod/web", &format!("{port}:9999")])
        .spawn();
    refused.expect_stdout("the forward", |l| {
        l.starts_with("Forwarding from 127.0.0.1:")
    });
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = conn.read_to_end(&mut Vec::new());
    refused.expect_stderr("the pod side's refusal", |l| {
        l.contains("error forwarding port 9999 to pod web") && l.contains("connection refused")
    });
}

#[test]
fn wasm_pods_refuse_exec_attach_and_port_forward_with_the_reason() {
    let env = Env::start();
    let image = env
        .registry
        .push_sample("sleeper")
        .expect("pushing the sleeper");
    env.cluster.kubectl_ok(&[
        "run",
        "wasm",
        &format!("--image={image}"),
        "--restart=Never",
    ]);
    env.cluster
        .kubectl_ok(&["wait", "--for=condition=Ready", "pod/wasm", "--timeout=90s"]);

    let err = env.cluster.kubectl_err(&["exec", "wasm", "--", "ls"]);
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): exec is not supported for container \"wasm\": it is a WebAssembly module run by wasmtime, which has no shell or processes to run commands in"
    );
    let err = env.cluster.kubectl_err(&["attach", "wasm"]);
    assert!(
        err.contains("Error from server (BadRequest): attach is not supported for container \"wasm\": it is a WebAssembly module run by wasmtime"),
        "{err}"
    );
    let port = free_port().to_string();
    let err = env
        .cluster
        .kubectl_err(&["port-forward", "pod/wasm", &format!("{port}:80")]);
    assert!(
        err.contains("port forwarding is not supported for pod \"wasm\": it has no network"),
        "{err}"
    );
}

/// kubectl in a pseudo-terminal of [`ROWS`]x[`COLS`], its controlling terminal, as a person at
/// a terminal runs it. What it shows is collected as it arrives.
struct Terminal {
    child: Child,
    master: File,
    shown: Arc<Mutex<Vec<u8>>>,
    /// Reads `shown` until the terminal's other side is gone.
    reader: thread::JoinHandle<()>,
    command: String,
}

impl Terminal {
    fn spawn(cluster: &Cluster, args: &[&str]) -> Terminal {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty fills both descriptors; the winsize pointer is valid.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptors owned by nothing else.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup of the pty"));
        let mut command = Command::new(KUBECTL);
        command
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .arg("--cache-dir")
            .arg(cluster.scratch().join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the pty becomes the controlling
        // terminal of kubectl's new session.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {KUBECTL}: {e}"));
        drop(slave);
        let shown = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup of the pty master");
        let sink = shown.clone();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // The pty reads EIO once kubectl and everything it started are gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master,
            shown,
            reader,
            command: format!("kubectl {}", args.join(" ")),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap()).into_owned()
    }

    /// Waits until the terminal has shown `what`; everything shown so far.
    fn expect(&self, what: &str) -> String {
        let deadline = Instant::now() + TERMINAL_BOUND;
        loop {
            let text = self.text();
            if text.contains(what) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` never showed {what:?}; it showed {text:?}",
                self.command
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_text(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("typing into the terminal");
    }

    /// Waits (bounded) for kubectl to exit; its status and everything it showed.
    fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TERMINAL_BOUND;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for kubectl") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "`{}` did not exit; it showed {:?}",
                    self.command,
                    self.text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        };
        // What kubectl wrote last may still be in the pty: read to its end.
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        (status, self.text())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
