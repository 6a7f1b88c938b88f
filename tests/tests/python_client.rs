//! A second real client: the official Python `kubernetes` package against the same server.

use std::process::Command;

use skiff_tests::{Cluster, test_file};

/// The interpreter with the `kubernetes` package: `SKIFF_PYTHON` (scripts/test.sh sets it to its
/// venv), else `python3`.
fn python() -> String {
    let python = std::env::var("SKIFF_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let probe = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "the Python package `kubernetes` is not importable by {python}: run scripts/test.sh (or \
             `pip install kubernetes`)\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("`{python}` cannot run ({e}): install python3 or set SKIFF_PYTHON"),
    }
}

#[test]
fn python_kubernetes_client_lists_creates_and_reads() {
    let cluster = Cluster::start();
    let out = Command::new(python())
        .arg(test_file("python/client.py"))
        .arg(cluster.kubeconfig())
        .output()
        .expect("running the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "namespaces: default kube-node-lease kube-public kube-system\n\
         created: from-python\n\
         read: from-python greeting=hello from python\n\
         conflict: 409 Conflict\n\
         missing: 404 NotFound\n"
    );
    // What one client wrote, the other reads.
    let value = cluster.kubectl_ok(&[
        "get",
        "cm",
        "from-python",
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(value, "hello from python");
}
