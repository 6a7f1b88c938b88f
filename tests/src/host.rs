//! What a node leaves on the host outside its data dir's files, seen and removed the way an
//! operator would: mounts (`/proc/self/mountinfo`), runc containers (`runc --root … list`),
//! `skiff shim` processes (`/proc/*/cmdline`), links (`ip`), NAT rules (`iptables`) and cgroup
//! directories (every cgroup mount). [`NodeFootprint`] is one node's share of it: the cleanup a
//! test's `Drop` runs as a safety net, and the leftovers a test asserts skiff removed itself.
//!
//! Nothing here panics: cleanup runs in `Drop`, so problems come back as lines to print.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The runc the node agents run (their `--runc` default).
const RUNC: &str = "runc";
/// A process just killed leaves its cgroup a moment later; rmdir retries this long.
const CGROUP_BUSY_BOUND: Duration = Duration::from_secs(5);

/// One node agent's footprint on the host.
#[derive(Clone, Debug)]
pub(crate) struct NodeFootprint {
    /// Everything the node owns on disk is below this (the test's temporary directory): its
    /// mounts and its shims' directories.
    pub scope: PathBuf,
    /// The node agent's data dir (`DATA/node` under `skiff up`, `--data-dir` of `skiff node`).
    pub node_dir: PathBuf,
    /// `--cgroup-root`: a directory name below each cgroup hierarchy's root.
    pub cgroup_root: String,
}

impl NodeFootprint {
    /// runc's state directory (`--root`) of the node's containers.
    fn runc_root(&self) -> PathBuf {
        self.node_dir.join("oci/runc")
    }

    /// Removes what the (already killed) node left: shims, runc containers, mounts, then its
    /// cgroup tree. Returns what could not be removed.
    pub fn clean(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Shims first, so none starts or restarts a container behind our back.
        for (pid, _) in shims_under(&self.scope) {
            problems.extend(kill(pid));
        }
        match runc_containers(&self.runc_root()) {
            Ok(ids) => {
                for id in ids {
                    problems.extend(run(Command::new(RUNC)
                        .arg("--root")
                        .arg(self.runc_root())
                        .args(["delete", "--force", &id])));
                }
            }
            Err(e) => problems.push(e),
        }
        problems.extend(unmount_all_under(&self.scope));
        for mount in cgroup_mounts() {
            let tree = mount.join(&self.cgroup_root);
            if tree.exists() {
                problems.extend(remove_cgroup_tree(&tree));
            }
        }
        problems
    }

    /// What skiff itself should have removed once every pod of this node is gone: mounts under
    /// the node's directory, pod network namespaces, IP leases, runc containers, container
    /// bundles, pod state directories, live shims and pod cgroups. One human-readable line each.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for point in mounts_under(&self.scope) {
            found.push(format!("mount {}", point.display()));
        }
        let listed = [
            (
                "network namespace file",
                self.node_dir.join("network/netns"),
            ),
            ("pod network state", self.node_dir.join("network/pods")),
            ("pod directory", self.node_dir.join("pods")),
            ("container bundle", self.node_dir.join("oci/containers")),
        ];
        for (what, dir) in listed {
            for entry in entries(&dir) {
                found.push(format!("{what} {}", entry.display()));
            }
        }
        // host-local keeps one file per leased address, named by the address.
        for network in entries(&self.node_dir.join("network/ipam")) {
            for lease in entries(&network) {
                let name = lease.file_name().unwrap_or_default().to_string_lossy();
                if name.parse::<std::net::IpAddr>().is_ok() {
                    found.push(format!("IP lease {}", lease.display()));
                }
            }
        }
        match runc_containers(&self.runc_root()) {
            Ok(ids) => found.extend(ids.into_iter().map(|id| format!("runc container {id}"))),
            Err(e) => found.push(e),
        }
        for (pid, argv) in shims_under(&self.scope) {
            found.push(format!("shim process {pid}: {argv}"));
        }
        for mount in cgroup_mounts() {
            for dir in pod_cgroups(&mount.join(&self.cgroup_root)) {
                found.push(format!("pod cgroup {}", dir.display()));
            }
        }
        found
    }
}

/// One line of `/proc/self/mountinfo`: where, and what filesystem type.
struct Mount {
    point: PathBuf,
    fstype: String,
}

/// The mount table of our mount namespace (which skiff shares), in mount order.
fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// `id parent major:minor root MOUNT_POINT options [optional…] - FSTYPE source super-options`
/// (proc(5)).
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let point = fields.get(4)?;
    let separator = fields.iter().position(|f| *f == "-")?;
    let fstype = fields.get(separator + 1)?;
    Some(Mount {
        point: PathBuf::from(unescape_octal(point)),
        fstype: fstype.to_string(),
    })
}

/// The kernel writes space, tab, newline and backslash in mountinfo paths as `\NNN` octal.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `dir`, with symlinks resolved when it still exists: mountinfo shows resolved paths.
fn resolved(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// Mount points at or below `dir`, each once, in mount order.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = resolved(dir);
    let mut points: Vec<PathBuf> = Vec::new();
    for mount in mounts() {
        if mount.point.starts_with(&dir) && !points.contains(&mount.point) {
            points.push(mount.point);
        }
    }
    points
}

/// Lazily unmounts everything at or below `dir`, deepest first, until nothing is left (mounts
/// stacked on one point take one round each).
fn unmount_all_under(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for _ in 0..8 {
        let mut points = mounts_under(dir);
        if points.is_empty() {
            return Vec::new();
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        problems.clear();
        for point in points {
            problems.extend(run(Command::new("umount").arg("-l").arg(&point)));
        }
    }
    problems.extend(
        mounts_under(dir)
            .into_iter()
            .map(|p| format!("{} is still mounted", p.display())),
    );
    problems
}

/// Every cgroup hierarchy's mount point (v1 controllers and the v2 tree alike).
pub(crate) fn cgroup_mounts() -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = Vec::new();
    for mount in mounts() {
        if (mount.fstype == "cgroup" || mount.fstype == "cgroup2") && !points.contains(&mount.point)
        {
            points.push(mount.point);
        }
    }
    points
}

/// Every directory in the tree at `root`, root included, deepest first.
fn dirs_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        let children: Vec<PathBuf> = entries(&dirs[i])
            .into_iter()
            .filter(|p| p.is_dir())
            .collect();
        dirs.extend(children);
        i += 1;
    }
    dirs.reverse();
    dirs
}

/// Removes a cgroup tree, deepest first (a cgroup with children cannot be removed), retrying a
/// moment while killed processes leave it.
pub(crate) fn remove_cgroup_tree(root: &Path) -> Vec<String> {
    let deadline = Instant::now() + CGROUP_BUSY_BOUND;
    loop {
        let mut problems = Vec::new();
        for dir in dirs_deepest_first(root) {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!("rmdir {}: {e}", dir.display())),
            }
        }
        if problems.is_empty() || Instant::now() >= deadline {
            return problems;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Pod cgroups (`pod<uid>` directories) anywhere below `root`.
pub(crate) fn pod_cgroups(root: &Path) -> Vec<PathBuf> {
    if !root.exists() {
        return Vec::new();
    }
    dirs_deepest_first(root)
        .into_iter()
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pod"))
        })
        .collect()
}

/// Live `skiff shim DIR` processes whose DIR is below `scope`: pid and command line.
fn shims_under(scope: &Path) -> Vec<(u32, String)> {
    let scope = resolved(scope);
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in entries(Path::new("/proc")) {
        let Some(pid) = entry
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Gone already, or a zombie (an empty command line): not running.
        let Ok(cmdline) = std::fs::read(entry.join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ours = argv
            .windows(2)
            .any(|w| w[0] == "shim" && Path::new(&w[1]).starts_with(&scope));
        if is_ours {
            found.push((pid, argv.join(" ")));
        }
    }
    found
}

fn kill(pid: u32) -> Option<String> {
    run(Command::new("kill").args(["-KILL", &pid.to_string()]))
}

/// The ids of the containers in runc state directory `root`; none when it does not exist.
fn runc_containers(root: &Path) -> Result<Vec<String>, String> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let out = Command::new(RUNC)
        .arg("--root")
        .arg(root)
        .args(["list", "-q"])
        .output()
        .map_err(|e| format!("cannot run `{RUNC}` (is it installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{RUNC} --root {} list -q` failed: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Deletes network link `name` if it exists.
pub(crate) fn delete_link(name: &str) -> Option<String> {
    if !Path::new("/sys/class/net").join(name).exists() {
        return None;
    }
    run(Command::new("ip").args(["link", "del", name]))
}

/// The links enslaved to `bridge` (pods' host-side veths); none when it does not exist.
pub(crate) fn links_on_bridge(bridge: &str) -> Vec<String> {
    if !Path::new("/sys/class/net").join(bridge).exists() {
        return Vec::new();
    }
    // `ip -o link show master BR` prints `95: vethXXXX@if2: <…> … master BR …` per link.
    match Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .collect(),
        Err(e) => vec![format!("cannot run `ip` (is iproute2 installed?): {e}")],
    }
}

/// The NAT rules (`iptables -t nat -S`) naming an address that starts with `prefix` (`10.57.`):
/// the masquerade and port-mapping rules CNI adds per pod.
pub(crate) fn nat_rules_mentioning(prefix: &str) -> Vec<String> {
    match nat_rules() {
        Ok(rules) => rules
            .into_iter()
            .filter(|line| mentions_address(line, prefix))
            .collect(),
        Err(e) => vec![e],
    }
}

/// `iptables -t nat -S`, one rule or chain per line.
fn nat_rules() -> Result<Vec<String>, String> {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S"])
        .output()
        .map_err(|e| format!("cannot run `iptables` (is it installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`iptables -t nat -S` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Removes the per-pod NAT state CNI added for addresses starting with `prefix`, as a CNI DEL
/// would have: the `CNI-…` chains whose rules name such an address (the bridge plugin's
/// masquerade chains, portmap's `CNI-DN-…`), every rule that jumps to them or names such an
/// address, then the chains. The shared `CNI-HOSTPORT-…` chains stay, as DEL leaves them.
pub(crate) fn remove_nat_rules(prefix: &str) -> Vec<String> {
    let rules = match nat_rules() {
        Ok(rules) => rules,
        Err(e) => return vec![e],
    };
    let parsed: Vec<Vec<String>> = rules.iter().map(|line| shell_words(line)).collect();
    let mut chains: Vec<String> = Vec::new();
    for (line, args) in rules.iter().zip(&parsed) {
        if let [flag, chain, ..] = args.as_slice()
            && flag == "-A"
            && chain.starts_with("CNI-")
            && !chain.starts_with("CNI-HOSTPORT-")
            && mentions_address(line, prefix)
            && !chains.contains(chain)
        {
            chains.push(chain.clone());
        }
    }
    let mut problems = Vec::new();
    for (line, args) in rules.iter().zip(&parsed) {
        let [flag, chain, rest @ ..] = args.as_slice() else {
            continue;
        };
        let jumps_to_ours = rest
            .windows(2)
            .any(|w| (w[0] == "-j" || w[0] == "-g") && chains.contains(&w[1]));
        if flag == "-A"
            && !chains.contains(chain)
            && (jumps_to_ours || mentions_address(line, prefix))
        {
            problems.extend(run(Command::new("iptables")
                .args(["-w", "-t", "nat", "-D", chain])
                .args(rest)));
        }
    }
    for chain in &chains {
        problems.extend(run(
            Command::new("iptables").args(["-w", "-t", "nat", "-F", chain])
        ));
        problems.extend(run(
            Command::new("iptables").args(["-w", "-t", "nat", "-X", chain])
        ));
    }
    problems
}

/// Splits a line as iptables-save quotes it: words separated by spaces, double quotes grouping,
/// backslash escaping the next character.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_default().push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                word.get_or_insert_default();
            }
            ' ' if !quoted => words.extend(word.take()),
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// Whether `line` holds `prefix` where an address starts (not inside a longer number).
fn mentions_address(line: &str, prefix: &str) -> bool {
    line.match_indices(prefix).any(|(i, _)| {
        !line[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
    })
}

/// The entries of `dir`, sorted; none when it cannot be read.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

/// Runs `command` to completion; a line saying what went wrong, if anything did.
fn run(command: &mut Command) -> Option<String> {
    let shown = format!("{command:?}");
    match command.output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "{shown} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_the_unescaped_point_and_the_type() {
        let line = "46 27 0:39 / /tmp/a\\040dir/rootfs rw,relatime shared:5 - overlay overlay rw,lowerdir=0";
        let mount = parse_mountinfo_line(line).expect("parsed");
        assert_eq!(mount.point, Path::new("/tmp/a dir/rootfs"));
        assert_eq!(mount.fstype, "overlay");
        let line = "43 27 0:4 net:[4026532177] /tmp/d/netns/u1 rw - nsfs nsfs rw";
        assert_eq!(parse_mountinfo_line(line).unwrap().fstype, "nsfs");
        assert_eq!(unescape_octal("a\\011b\\134c\\0"), "a\tb\\c\\0");
    }

    #[test]
    fn addresses_match_only_at_their_start() {
        assert!(mentions_address(
            "-A POSTROUTING -s 10.57.0.2/32 -j X",
            "10.57."
        ));
        assert!(!mentions_address("-A X -s 110.57.0.2/32", "10.57."));
        assert!(!mentions_address("-A X -s 10.157.0.2/32", "10.57."));
    }

    #[test]
    fn iptables_lines_split_into_their_arguments() {
        let line = r#"-A POSTROUTING -s 10.50.0.2/32 -m comment --comment "name: \"skiff\" id: \"u1\"" -j CNI-8d4c"#;
        assert_eq!(
            shell_words(line),
            [
                "-A",
                "POSTROUTING",
                "-s",
                "10.50.0.2/32",
                "-m",
                "comment",
                "--comment",
                r#"name: "skiff" id: "u1""#,
                "-j",
                "CNI-8d4c"
            ]
        );
        assert_eq!(shell_words(r#"-X "" a"#), ["-X", "", "a"]);
    }

    #[test]
    fn trees_are_listed_deepest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("a/podx/c")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        let dirs = dirs_deepest_first(dir.path());
        let pos = |p: &str| dirs.iter().position(|d| d == &dir.path().join(p)).unwrap();
        assert!(pos("a/podx/c") < pos("a/podx") && pos("a/podx") < pos("a"));
        assert_eq!(dirs.last().unwrap(), dir.path());
        assert_eq!(pod_cgroups(dir.path()), [dir.path().join("a/podx")]);
    }
}
