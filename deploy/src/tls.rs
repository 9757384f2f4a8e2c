//! TLS for a run whose processes talk across machines (ssh, Slurm, Kubernetes): a certificate
//! authority of the run's own and a certificate for its coordinator, made once by the launcher
//! into `RUN/deploy/tls/` (the private key readable by its owner only, kept across requeues and
//! resumes like the token), so that the token and the ring secret never cross the network in
//! clear. The certificate names [`SERVER_NAME`] (and the hosts the launcher knows), and workers
//! verify that name whatever address they dial, so that a Slurm coordinator's node need not be
//! known when the job is submitted. The authority's own key is not kept: nothing else can be
//! signed with it.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::error::{DeployError, Result};
use crate::run::write_secret;

/// The name in the coordinator's certificate that workers verify (`--tls-domain`).
pub const SERVER_NAME: &str = "rosetta-coordinator";

/// The TLS files of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTls {
    /// The run's certificate authority (PEM): what workers trust (`--tls-ca`).
    pub ca: PathBuf,
    /// The coordinator's certificate (PEM, `--tls-cert`).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600, `--tls-key`).
    pub key: PathBuf,
}

impl RunTls {
    /// The files under `dir` (made or not).
    pub fn in_dir(dir: &Path) -> Self {
        Self { ca: dir.join("ca.pem"), cert: dir.join("coordinator.pem"), key: dir.join("coordinator-key.pem") }
    }

    /// Makes the authority and the coordinator's certificate in `dir` unless they are there;
    /// `hosts` are further names the certificate covers (it always covers [`SERVER_NAME`]).
    pub fn ensure(dir: &Path, hosts: &[String]) -> Result<Self> {
        let files = Self::in_dir(dir);
        if files.ca.is_file() && files.cert.is_file() && files.key.is_file() {
            return Ok(files);
        }
        let failed = |e: rcgen::Error| DeployError::Tls(e.to_string());
        let mut authority = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        authority.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        authority.distinguished_name.push(DnType::CommonName, "rosetta run authority");
        authority.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let authority_key = KeyPair::generate().map_err(failed)?;
        let authority_cert = authority.self_signed(&authority_key).map_err(failed)?;
        let issuer = Issuer::new(authority, authority_key);
        let mut names = vec![SERVER_NAME.to_string()];
        names.extend(hosts.iter().filter(|h| !h.is_empty() && h.as_str() != SERVER_NAME).cloned());
        let mut server = CertificateParams::new(names).map_err(failed)?;
        server.distinguished_name.push(DnType::CommonName, SERVER_NAME);
        let server_key = KeyPair::generate().map_err(failed)?;
        let server_cert = server.signed_by(&server_key, &issuer).map_err(failed)?;
        write_secret(&files.key, server_key.serialize_pem().as_bytes())?;
        for (path, pem) in [(&files.cert, server_cert.pem()), (&files.ca, authority_cert.pem())] {
            rosetta_common::atomic::write_atomic(path, pem.as_bytes()).map_err(|e| DeployError::Process {
                what: format!("writing {}", e.path.display()),
                source: e.source,
            })?;
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_run_authority_is_made_once_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let tls = RunTls::ensure(dir.path(), &["10.0.0.1".into(), "node-1".into()]).unwrap();
        let key_mode = std::fs::metadata(&tls.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(key_mode, 0o600);
        for path in [&tls.ca, &tls.cert] {
            assert!(std::fs::read_to_string(path).unwrap().contains("BEGIN CERTIFICATE"));
        }
        assert!(std::fs::read_to_string(&tls.key).unwrap().contains("PRIVATE KEY"));
        let cert = std::fs::read(&tls.cert).unwrap();
        assert_eq!(RunTls::ensure(dir.path(), &[]).unwrap(), tls);
        assert_eq!(std::fs::read(&tls.cert).unwrap(), cert, "kept, not made again");
    }
}
