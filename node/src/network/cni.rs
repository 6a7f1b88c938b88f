//! Running CNI plugins as the CNI spec 1.0.0 says a runtime must
//! (<https://github.com/containernetworking/cni/blob/spec-v1.0.0/SPEC.md>), the way libcni does.
//!
//! [`CniInvoker`] execs `<bin_dir>/<type>` with `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH` in the environment and the plugin's configuration on
//! stdin, under a timeout. For a [`NetworkConfigList`] it runs ADD in order, feeding each
//! plugin's result to the next as `prevResult`, and DEL in reverse with the cached ADD result;
//! [`plugin_config`] builds each plugin's stdin. [`CniResult`] reads the parts of a result the
//! agent needs (the pod's IPs); a plugin's error output becomes [`NetworkError::Plugin`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::NetworkError;

/// The newest version the Debian plugins (containernetworking-plugins 1.1.1) support.
pub const CNI_VERSION: &str = "1.0.0";

/// How long one plugin may run before it is killed.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The Debian package that ships the standard plugins, named in errors.
pub const PLUGINS_PACKAGE: &str = "containernetworking-plugins";

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
}

impl CniCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

impl std::fmt::Display for CniCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A network configuration list (a `.conflist` file): the spec's "network configuration".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfigList {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    /// Each plugin's own configuration object; `type` names its binary.
    pub plugins: Vec<Value>,
}

impl NetworkConfigList {
    /// The plugin binary names, in order; each must be a plain file name.
    pub fn plugin_types(&self) -> Result<Vec<&str>, NetworkError> {
        self.plugins
            .iter()
            .enumerate()
            .map(|(index, p)| match p.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => Ok(t),
                _ => Err(NetworkError::PluginType {
                    network: self.name.clone(),
                    index,
                }),
            })
            .collect()
    }
}

/// What the runtime tells the plugins about one attachment (the spec's runtime parameters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConf {
    pub container_id: String,
    /// `None` passes an empty `CNI_NETNS`, which DEL accepts once the namespace is gone.
    pub netns: Option<PathBuf>,
    pub if_name: String,
    /// `CNI_ARGS`, `K=V` pairs joined with `;`.
    pub args: Vec<(String, String)>,
    /// Values for the `capabilities` a plugin declares (e.g. `portMappings`), passed to it as
    /// `runtimeConfig`.
    pub capability_args: Map<String, Value>,
}

/// The stdin of one plugin of `list`: its own config plus the list's `cniVersion` and `name`,
/// `prevResult` when given, and `runtimeConfig` with only the capabilities the plugin declares
/// (libcni `injectRuntimeConfig`).
pub fn plugin_config(
    list: &NetworkConfigList,
    plugin: &Value,
    rt: &RuntimeConf,
    prev_result: Option<&Value>,
) -> Value {
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("cniVersion".into(), list.cni_version.clone().into());
    conf.insert("name".into(), list.name.clone().into());
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let mut runtime = Map::new();
    if let Some(caps) = conf.get("capabilities").and_then(Value::as_object) {
        for (cap, enabled) in caps {
            if enabled == &Value::Bool(true)
                && let Some(value) = rt.capability_args.get(cap)
            {
                runtime.insert(cap.clone(), value.clone());
            }
        }
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(conf)
}

/// The parts of an ADD result the agent reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<CniInterface>,
    #[serde(default)]
    pub ips: Vec<CniIp>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CniInterface {
    pub name: String,
    /// Set for interfaces inside the pod's namespace.
    #[serde(default)]
    pub sandbox: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CniIp {
    /// Index into `interfaces`.
    #[serde(default)]
    pub interface: Option<usize>,
    /// CIDR notation, `10.244.0.2/24`.
    pub address: String,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

impl CniResult {
    pub fn parse(result: &Value) -> Result<Self, serde_json::Error> {
        CniResult::deserialize(result)
    }

    /// The addresses on `if_name` (an IP with no interface index counts too: the spec makes the
    /// index optional). Unparsable addresses are skipped.
    pub fn ips_on(&self, if_name: &str) -> Vec<IpAddr> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(i) => self
                    .interfaces
                    .get(i)
                    .is_some_and(|itf| itf.name == if_name),
                None => true,
            })
            .filter_map(|ip| ip.address.split('/').next()?.parse().ok())
            .collect()
    }
}

/// A plugin's error output (spec "Error").
#[derive(Debug, Deserialize)]
struct CniErrorOutput {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Reads a failed plugin's stdout as the spec's error object.
pub fn parse_error(plugin: &str, command: CniCommand, stdout: &[u8]) -> Option<NetworkError> {
    let e: CniErrorOutput = serde_json::from_slice(stdout).ok()?;
    Some(NetworkError::Plugin {
        plugin: plugin.to_string(),
        command: command.as_str(),
        code: e.code,
        msg: e.msg,
        details: e.details,
    })
}

/// Runs plugins from one directory.
#[derive(Clone, Debug)]
pub struct CniInvoker {
    bin_dir: PathBuf,
    timeout: Duration,
    /// The plugins' scheduling niceness: work done ahead runs behind pods starting now.
    nice: i32,
}

impl CniInvoker {
    pub fn new(bin_dir: impl Into<PathBuf>) -> Self {
        CniInvoker {
            bin_dir: bin_dir.into(),
            timeout: PLUGIN_TIMEOUT,
            nice: 0,
        }
    }

    /// The same plugins run at `nice` (background work).
    pub fn with_nice(mut self, nice: i32) -> Self {
        self.nice = nice;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The plugin's binary, or [`NetworkError::PluginNotFound`] naming the package to install.
    pub fn plugin_path(&self, plugin: &str) -> Result<PathBuf, NetworkError> {
        let path = self.bin_dir.join(plugin);
        if path.is_file() {
            Ok(path)
        } else {
            Err(NetworkError::PluginNotFound {
                plugin: plugin.to_string(),
                bin_dir: self.bin_dir.clone(),
            })
        }
    }

    /// ADD on every plugin of `list` in order; returns the last plugin's result.
    pub async fn add_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Value, NetworkError> {
        let types = list.plugin_types()?;
        let mut prev: Option<Value> = None;
        for (plugin, conf) in types.iter().zip(&list.plugins) {
            let stdin = plugin_config(list, conf, rt, prev.as_ref());
            let out = self.exec(CniCommand::Add, plugin, &stdin, rt).await?;
            let result =
                serde_json::from_slice(&out).map_err(|source| NetworkError::PluginOutput {
                    plugin: plugin.to_string(),
                    command: CniCommand::Add.as_str(),
                    source,
                })?;
            prev = Some(result);
        }
        prev.ok_or_else(|| NetworkError::PluginType {
            network: list.name.clone(),
            index: 0,
        })
    }

    /// DEL on every plugin of `list` in reverse order, each given the cached ADD result as
    /// `prevResult` (libcni `DelNetworkList`).
    pub async fn del_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
        cached: Option<&Value>,
    ) -> Result<(), NetworkError> {
        let types = list.plugin_types()?;
        for (plugin, conf) in types.iter().zip(&list.plugins).rev() {
            let stdin = plugin_config(list, conf, rt, cached);
            self.exec(CniCommand::Del, plugin, &stdin, rt).await?;
        }
        Ok(())
    }

    /// CHECK on every plugin of `list` in order, each given the cached ADD result.
    pub async fn check_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
        cached: &Value,
    ) -> Result<(), NetworkError> {
        let types = list.plugin_types()?;
        for (plugin, conf) in types.iter().zip(&list.plugins) {
            let stdin = plugin_config(list, conf, rt, Some(cached));
            self.exec(CniCommand::Check, plugin, &stdin, rt).await?;
        }
        Ok(())
    }

    /// Runs one plugin and returns its stdout; a non-zero exit becomes an error.
    pub async fn exec(
        &self,
        command: CniCommand,
        plugin: &str,
        config: &Value,
        rt: &RuntimeConf,
    ) -> Result<Vec<u8>, NetworkError> {
        let path = self.plugin_path(plugin)?;
        let netns = rt
            .netns
            .as_ref()
            .map(|p| p.as_os_str().to_owned())
            .unwrap_or_default();
        let args: Vec<String> = rt.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        debug!(
            plugin,
            command = %command,
            container_id = %rt.container_id,
            if_name = %rt.if_name,
            "running CNI plugin"
        );
        let mut cmd = tokio::process::Command::new(&path);
        cmd.env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &rt.container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", &rt.if_name)
            .env("CNI_ARGS", args.join(";"))
            .env("CNI_PATH", &self.bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropping the wait on timeout kills the plugin.
            .kill_on_drop(true);
        if self.nice != 0 {
            let nice = self.nice;
            // SAFETY: setpriority is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                    Ok(())
                });
            }
        }
        let mut attempts = 0;
        let mut child = loop {
            match cmd.spawn() {
                Ok(child) => break child,
                // ETXTBSY: a plugin file this process just wrote can still be open for writing
                // in a child another thread forked meanwhile; that child execs within moments.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 10 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => {
                    return Err(NetworkError::PluginSpawn {
                        path: path.clone(),
                        source,
                    });
                }
            }
        };
        let input = serde_json::to_vec(config).unwrap_or_default();
        let mut stdin = child.stdin.take();
        let write = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A plugin that fails early may exit without reading; its status says why.
                let _ = stdin.write_all(&input).await;
            }
            drop(stdin);
        };
        let run = async { tokio::join!(write, child.wait_with_output()).1 };
        let output = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| NetworkError::PluginTimeout {
                plugin: plugin.to_string(),
                command: command.as_str(),
                timeout: self.timeout,
            })?
            .map_err(|source| NetworkError::PluginSpawn {
                path: path.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(
            parse_error(plugin, command, &output.stdout).unwrap_or_else(|| {
                NetworkError::PluginExit {
                    plugin: plugin.to_string(),
                    command: command.as_str(),
                    status: output.status,
                    output: String::from_utf8_lossy(if output.stderr.is_empty() {
                        &output.stdout
                    } else {
                        &output.stderr
                    })
                    .trim()
                    .to_string(),
                }
            }),
        )
    }
}

#[cfg(test)]
#[path = "cni_tests.rs"]
mod tests;
