//! One masquerade rule for the whole podCIDR, `POSTROUTING -s CIDR ! -d CIDR -j MASQUERADE` in
//! the nat table, instead of the bridge plugin's `ipMasq` chain per pod: that chain costs
//! several iptables runs on every pod's ADD and DEL (some 25 ms each on a small machine), and
//! one rule does the same for every pod, as flannel and kubenet do it.

use std::process::Command;

use super::NetworkError;

fn rule(pod_cidr: &str, bridge: &str) -> Vec<String> {
    [
        "POSTROUTING",
        "-s",
        pod_cidr,
        "!",
        "-d",
        pod_cidr,
        "-m",
        "comment",
        "--comment",
        &format!("skiff: pods on {bridge} leaving {pod_cidr}"),
        "-j",
        "MASQUERADE",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Adds the rule unless it is there (`-C` first: the node restarts often, rules stay).
pub(super) fn ensure(pod_cidr: &str, bridge: &str) -> Result<(), NetworkError> {
    let iptables = |op: &str| {
        Command::new("iptables")
            .args(["-w", "-t", "nat", op])
            .args(rule(pod_cidr, bridge))
            .output()
            .map_err(|source| NetworkError::Io {
                action: "running iptables (install the iptables package) for",
                path: pod_cidr.into(),
                source,
            })
    };
    if iptables("-C")?.status.success() {
        return Ok(());
    }
    let added = iptables("-A")?;
    if added.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Masquerade {
            pod_cidr: pod_cidr.to_string(),
            output: String::from_utf8_lossy(&added.stderr).trim().to_string(),
        })
    }
}

/// Removes the rule (tests: the node itself leaves it, as CNI leaves its shared chains).
#[cfg(test)]
pub(super) fn remove(pod_cidr: &str, bridge: &str) {
    let _ = Command::new("iptables")
        .args(["-w", "-t", "nat", "-D"])
        .args(rule(pod_cidr, bridge))
        .output();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_covers_traffic_leaving_the_pod_cidr() {
        assert_eq!(
            rule("10.42.0.0/24", "skiff0").join(" "),
            "POSTROUTING -s 10.42.0.0/24 ! -d 10.42.0.0/24 -m comment --comment skiff: pods on skiff0 leaving 10.42.0.0/24 -j MASQUERADE"
        );
    }
}
