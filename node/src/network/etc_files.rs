//! The pod-level `/etc/hosts` and `/etc/resolv.conf` the agent writes once per pod and
//! bind-mounts into every container, byte for byte as Kubernetes writes them:
//! [`hosts_file`] follows the kubelet's `managedHostsFileContent` and
//! `hostsEntriesFromHostAliases` (`pkg/kubelet/kubelet_pods.go`), [`resolv_conf`] containerd's
//! `parseDNSOptions` (the CRI runtime writes resolv.conf from the kubelet's DNS config), and
//! [`cluster_first_searches`] the kubelet's `generateSearchesForDNSClusterFirst`
//! (`pkg/kubelet/network/dns/dns.go`). Pure functions.

use std::fmt::Write;
use std::net::IpAddr;

pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// The kubelet's `defaultDNSOptions` for ClusterFirst pods.
pub const DEFAULT_DNS_OPTIONS: [&str; 1] = ["ndots:5"];

/// The pod's `/etc/hosts`: localhost entries, one line per pod IP naming the pod's hostname
/// (its FQDN first when `host_domain` is set, see [`host_domain`]), then `spec.hostAliases`
/// as `(ip, hostnames)`.
pub fn hosts_file(
    pod_ips: &[IpAddr],
    hostname: &str,
    host_domain: Option<&str>,
    host_aliases: &[(String, Vec<String>)],
) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match host_domain.filter(|d| !d.is_empty()) {
            Some(domain) => {
                let _ = writeln!(out, "{ip}\t{hostname}.{domain}\t{hostname}");
            }
            None => {
                let _ = writeln!(out, "{ip}\t{hostname}");
            }
        }
    }
    if !host_aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for (ip, hostnames) in host_aliases {
            for name in hostnames {
                let _ = writeln!(out, "{ip}\t{name}");
            }
        }
    }
    out
}

/// The domain part of a pod's FQDN when it has `spec.subdomain`:
/// `<subdomain>.<namespace>.svc.<cluster domain>`.
pub fn host_domain(subdomain: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("{subdomain}.{namespace}.svc.{cluster_domain}")
}

/// `/etc/resolv.conf`: `search`, then one `nameserver` line each, then `options`; empty parts
/// are left out.
pub fn resolv_conf(nameservers: &[String], searches: &[String], options: &[String]) -> String {
    let mut out = String::new();
    if !searches.is_empty() {
        let _ = writeln!(out, "search {}", searches.join(" "));
    }
    for server in nameservers {
        let _ = writeln!(out, "nameserver {server}");
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    out
}

/// The search list of a ClusterFirst pod in `namespace`:
/// `<ns>.svc.<domain> svc.<domain> <domain>`.
pub fn cluster_first_searches(namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        format!("{namespace}.svc.{cluster_domain}"),
        format!("svc.{cluster_domain}"),
        cluster_domain.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCALHOST: &str = "# Kubernetes-managed hosts file.\n\
        127.0.0.1\tlocalhost\n\
        ::1\tlocalhost ip6-localhost ip6-loopback\n\
        fe00::0\tip6-localnet\n\
        fe00::0\tip6-mcastprefix\n\
        fe00::1\tip6-allnodes\n\
        fe00::2\tip6-allrouters\n";

    #[test]
    fn hosts_plain_pod() {
        let ip: IpAddr = "10.42.0.7".parse().unwrap();
        assert_eq!(
            hosts_file(&[ip], "web-0", None, &[]),
            format!("{LOCALHOST}10.42.0.7\tweb-0\n")
        );
    }

    #[test]
    fn hosts_with_subdomain_and_aliases() {
        let ips: [IpAddr; 2] = ["10.42.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
        let domain = host_domain("db", "prod", DEFAULT_CLUSTER_DOMAIN);
        assert_eq!(domain, "db.prod.svc.cluster.local");
        let aliases = vec![
            (
                "127.0.0.1".to_string(),
                vec!["foo.local".to_string(), "bar.local".to_string()],
            ),
            ("10.1.2.3".to_string(), vec!["foo.remote".to_string()]),
        ];
        assert_eq!(
            hosts_file(&ips, "web-0", Some(&domain), &aliases),
            format!(
                "{LOCALHOST}10.42.0.7\tweb-0.db.prod.svc.cluster.local\tweb-0\n\
                 fd00::7\tweb-0.db.prod.svc.cluster.local\tweb-0\n\
                 \n# Entries added by HostAliases.\n\
                 127.0.0.1\tfoo.local\n127.0.0.1\tbar.local\n10.1.2.3\tfoo.remote\n"
            )
        );
    }

    #[test]
    fn hosts_without_ip_has_only_localhost() {
        assert_eq!(hosts_file(&[], "web-0", None, &[]), LOCALHOST);
    }

    #[test]
    fn resolv_conf_cluster_first() {
        let searches = cluster_first_searches("default", DEFAULT_CLUSTER_DOMAIN);
        let options: Vec<String> = DEFAULT_DNS_OPTIONS.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            resolv_conf(&["10.43.0.10".into()], &searches, &options),
            "search default.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.43.0.10\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn resolv_conf_parts_are_optional() {
        assert_eq!(
            resolv_conf(&["1.1.1.1".into(), "1.0.0.1".into()], &[], &[]),
            "nameserver 1.1.1.1\nnameserver 1.0.0.1\n"
        );
        assert_eq!(resolv_conf(&[], &[], &[]), "");
    }
}
