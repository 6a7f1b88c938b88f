//! Pod networking: a component that imports `wasi:sockets` asks for the pod's network namespace
//! and, in a sandbox that has one, gets real sockets there (`http-hello` serves in it, `net-probe`
//! connects out of it); everything else asks for none, and without a namespace sockets stay
//! denied with a line in the log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use skiff_runtime_wasm::NETWORK_DENIED;
use skiff_sandbox::cri_log::Stream;
use skiff_sandbox::{ExitReason, PodResources, PodSandbox, SandboxError};

use crate::common::{Pod, lines, sample};
use crate::netns::NetNs;

const ANSWER: &str = "hello from wasm\n";

/// One `GET /` to `addr` from the calling thread's namespace: the whole response.
fn get(addr: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: http-hello\r\nUser-Agent: skiff-test\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn assert_hello(response: &str) {
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response:?}");
    assert!(
        response.contains(&format!("\r\nContent-Length: {}\r\n", ANSWER.len())),
        "{response:?}"
    );
    assert!(
        response.ends_with(&format!("\r\n\r\n{ANSWER}")),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_components_importing_sockets_need_the_pods_network() {
    let pod = Pod::new().await;
    let resources = |name: &str| {
        let spec = pod.spec(name, &sample(name), &[]);
        pod.sandbox.pod_resources(&spec.image)
    };
    let none = PodResources {
        network: false,
        cgroup: false,
    };
    let network = PodResources {
        network: true,
        cgroup: false,
    };
    assert_eq!(resources("hello"), none, "a preview 1 module");
    assert_eq!(resources("sleeper"), none, "a preview 1 module");
    assert_eq!(
        resources("hello-component"),
        none,
        "a component without sockets"
    );
    assert_eq!(resources("http-hello"), network);
    assert_eq!(resources("net-probe"), network);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_hello_listens_in_the_pods_namespace_and_not_the_nodes() {
    let ns = NetNs::new();
    let pod = Pod::in_network_namespace(ns.path()).await;
    let spec = pod.spec("http-hello", &sample("http-hello"), &[]);
    pod.sandbox
        .start_container(&pod.id, &spec)
        .await
        .expect("start http-hello");
    pod.wait_for_log(&spec, "listening on 0.0.0.0:8080").await;

    let response = ns
        .run_in(|| get("127.0.0.1:8080"))
        .expect("GET from the pod's namespace");
    assert_hello(&response);
    pod.wait_for_log(&spec, "GET / HTTP/1.1").await;
    let err = get("127.0.0.1:8080").expect_err("the node's 127.0.0.1:8080 answered");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "from the node's namespace: {err} (is something else on this host listening on 8080?)"
    );

    // A stop closes the listener; the next run binds the port again.
    pod.sandbox
        .stop_container(&pod.id, "http-hello", Duration::from_secs(1))
        .await
        .expect("stop");
    let status = pod.wait("http-hello").await;
    assert_eq!(
        (status.exit_code, status.reason),
        (137, ExitReason::Stopped)
    );
    let err = ns
        .run_in(|| get("127.0.0.1:8080"))
        .expect_err("a stopped container still answers");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

    pod.sandbox
        .start_container(&pod.id, &spec)
        .await
        .expect("restart http-hello");
    let response = tokio::time::timeout(crate::common::TIMEOUT, async {
        loop {
            match ns.run_in(|| get("127.0.0.1:8080")) {
                Ok(response) => return response,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the restarted container never answered");
    assert_hello(&response);
    assert!(
        lines(&spec, Stream::Stderr).is_empty(),
        "{:?}",
        lines(&spec, Stream::Stderr)
    );
    pod.sandbox.remove(&pod.id).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_containers_share_its_ip_and_localhost_and_reach_other_pods() {
    let (ns, other) = (NetNs::new(), NetNs::new());
    ns.link("10.251.0.1", &other, "10.251.0.2");
    let pod = Pod::in_network_namespace(ns.path()).await;
    let server = pod.spec("http-hello", &sample("http-hello"), &[]);
    pod.sandbox
        .start_container(&pod.id, &server)
        .await
        .expect("start http-hello");
    pod.wait_for_log(&server, "listening on 0.0.0.0:8080").await;

    // Another pod reaches it at the pod's IP.
    let response = other
        .run_in(|| get("10.251.0.1:8080"))
        .expect("GET from the other pod");
    assert_hello(&response);
    pod.wait_for_log(&server, "10.251.0.2:").await;

    // Another container of the pod reaches it at localhost.
    let probe = pod.spec("net-probe", &sample("net-probe"), &["127.0.0.1:8080"]);
    let status = pod.run(&probe).await;
    assert_eq!(status.exit_code, 0, "{:?}", lines(&probe, Stream::Stderr));
    assert_eq!(
        lines(&probe, Stream::Stdout),
        ["connected to 127.0.0.1:8080"]
    );

    // And a container connects out to another pod's IP.
    let listener = other
        .run_in(|| TcpListener::bind("10.251.0.2:80"))
        .expect("listen in the other pod");
    let probe = pod.spec("egress-probe", &sample("net-probe"), &["10.251.0.2:80"]);
    let status = pod.run(&probe).await;
    assert_eq!(status.exit_code, 0, "{:?}", lines(&probe, Stream::Stderr));
    assert_eq!(
        lines(&probe, Stream::Stdout),
        ["connected to 10.251.0.2:80"]
    );
    listener.set_nonblocking(true).unwrap();
    let (_, peer) = listener.accept().expect("the probe's connection");
    assert_eq!(peer.ip().to_string(), "10.251.0.1");

    pod.sandbox.remove(&pod.id).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_namespace_a_component_is_denied_sockets_with_a_clear_line() {
    let pod = Pod::new().await;
    let spec = pod.spec("http-hello", &sample("http-hello"), &[]);
    assert!(pod.sandbox.pod_resources(&spec.image).network);
    let status = pod.run(&spec).await;
    assert_eq!(status.exit_code, 1);
    let stderr = lines(&spec, Stream::Stderr);
    assert!(stderr.iter().any(|l| l == NETWORK_DENIED), "{stderr:?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.starts_with("cannot listen on 0.0.0.0:8080: ")),
        "{stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_cannot_be_entered_fails_the_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-netns");
    let pod = Pod::in_network_namespace(&missing).await;
    let spec = pod.spec("http-hello", &sample("http-hello"), &[]);
    let err = pod
        .sandbox
        .start_container(&pod.id, &spec)
        .await
        .expect_err("started without its namespace");
    assert!(matches!(err, SandboxError::Runtime { .. }), "{err:?}");
    let message = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(matches!(
        pod.sandbox.wait_container(&pod.id, "http-hello").await,
        Err(SandboxError::UnknownContainer { .. })
    ));

    // A container that cannot open sockets does not need the namespace at all.
    let hello = pod.spec("hello-component", &sample("hello-component"), &[]);
    assert_eq!(pod.run(&hello).await.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_for_a_container_in_the_namespace() {
    let ns = NetNs::new();
    let pod = Pod::in_network_namespace(ns.path()).await;
    let mut spec = pod.spec("http-hello", &sample("http-hello"), &[]);
    // Below the component's initial memory: killed as it instantiates.
    spec.resources.memory_limit_bytes = Some(64 << 10);
    let status = pod.run(&spec).await;
    assert_eq!(
        (status.exit_code, status.reason),
        (137, ExitReason::OomKilled)
    );
}
