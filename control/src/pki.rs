//! The cluster's PKI: a CA generated on first start and kept under `DATA_DIR/pki`, the API server's
//! serving certificate (re-issued at every start, so new listen addresses are covered), client
//! certificates (the admin's, kept; the control plane's own, in memory) and the admin kubeconfig.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertifiedKey {
    /// This certificate as the issuer of others (it must be a CA).
    pub fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(gen_err("CA key"))?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(gen_err("CA issuer"))
    }
}

/// What the control plane needs of its PKI at run time.
pub struct Pki {
    pub ca: CertifiedKey,
    pub serving: CertifiedKey,
    pub admin: CertifiedKey,
    /// The API server's identity towards node agents (proxied logs, exec, port-forward).
    pub kubelet_client: CertifiedKey,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn gen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

fn subject(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

/// Reads the CA from `dir`, or creates it, then issues the serving and client certificates.
pub fn load_or_create(dir: &Path, listen: SocketAddr) -> Result<Pki, PkiError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let ca = load_or_create_ca(dir)?;
    let issuer = ca.issuer()?;

    let serving = issue_serving(&issuer, listen)?;
    let admin_cert = dir.join("admin.crt");
    let admin_key = dir.join("admin.key");
    let admin = if admin_cert.exists() && admin_key.exists() {
        CertifiedKey {
            cert_pem: std::fs::read_to_string(&admin_cert).map_err(io_err(&admin_cert))?,
            key_pem: std::fs::read_to_string(&admin_key).map_err(io_err(&admin_key))?,
        }
    } else {
        let admin = issue_client(&issuer, "kubernetes-admin", Some("system:masters"))?;
        write_private(&admin_key, &admin.key_pem)?;
        std::fs::write(&admin_cert, &admin.cert_pem).map_err(io_err(&admin_cert))?;
        admin
    };
    let kubelet_client = issue_client(
        &issuer,
        "skiff-apiserver-kubelet-client",
        Some("system:masters"),
    )?;
    Ok(Pki {
        ca,
        serving,
        admin,
        kubelet_client,
    })
}

fn load_or_create_ca(dir: &Path) -> Result<CertifiedKey, PkiError> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    if cert_path.exists() && key_path.exists() {
        return Ok(CertifiedKey {
            cert_pem: std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?,
            key_pem: std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?,
        });
    }
    let key = KeyPair::generate().map_err(gen_err("CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject("skiff-ca", None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params
        .self_signed(&key)
        .map_err(gen_err("CA certificate"))?;
    let ca = CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    // Key first: a crash in between leaves no certificate without its key.
    write_private(&key_path, &ca.key_pem)?;
    std::fs::write(&cert_path, &ca.cert_pem).map_err(io_err(&cert_path))?;
    Ok(ca)
}

fn issue_serving(
    issuer: &Issuer<'_, KeyPair>,
    listen: SocketAddr,
) -> Result<CertifiedKey, PkiError> {
    let mut names: Vec<String> = vec![
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
    ];
    if !listen.ip().is_unspecified() && !ips.contains(&listen.ip()) {
        ips.push(listen.ip());
    }
    issue_server(issuer, "kube-apiserver", None, names, ips)
}

/// A node agent's serving certificate, signed by the cluster CA `ca`: the API server verifies
/// it when proxying to the node, so it names the node and every address the Node reports.
pub fn issue_node_serving(
    ca: &CertifiedKey,
    node_name: &str,
    ips: &[IpAddr],
) -> Result<CertifiedKey, PkiError> {
    issue_server(
        &ca.issuer()?,
        &format!("system:node:{node_name}"),
        Some("system:nodes"),
        vec![node_name.to_string()],
        ips.to_vec(),
    )
}

/// A serving certificate for `names` and `ips`, its subject `common_name` (in `organization`).
pub fn issue_server(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    organization: Option<&str>,
    names: Vec<String>,
    ips: Vec<IpAddr>,
) -> Result<CertifiedKey, PkiError> {
    let mut params = CertificateParams::new(names).map_err(gen_err("serving certificate"))?;
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    params.distinguished_name = subject(common_name, organization);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate().map_err(gen_err("serving key"))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(gen_err("serving certificate"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A client certificate: the common name is the user, the organization its group.
pub fn issue_client(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    group: Option<&str>,
) -> Result<CertifiedKey, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(user, group);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate().map_err(gen_err("client key"))?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(gen_err("client certificate"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

/// A kubeconfig for `user`'s client certificate against `server` (`https://host:port`).
pub fn kubeconfig(ca: &CertifiedKey, user: &CertifiedKey, server: &str, user_name: &str) -> String {
    skiff_api::join::kubeconfig(
        server,
        &ca.cert_pem,
        &user.cert_pem,
        &user.key_pem,
        user_name,
    )
}

/// Writes the kubeconfig with owner-only permissions: it holds a private key.
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_private(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_survives_restart_and_serving_cert_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let first = load_or_create(dir.path(), addr).unwrap();
        let second = load_or_create(dir.path(), addr).unwrap();
        assert_eq!(first.ca.cert_pem, second.ca.cert_pem);
        assert_eq!(first.admin.cert_pem, second.admin.cert_pem);
        assert_ne!(first.serving.cert_pem, second.serving.cert_pem);
        let kc = kubeconfig(&first.ca, &first.admin, "https://127.0.0.1:6443", "admin");
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        assert!(kc.contains("client-key-data: "));
    }
}
