//! TLS for the server: the certificate and key from PEM files or a self-signed
//! pair kept in the data directory, and the acceptor built from them.
//!
//! One crypto provider, ring, chosen here explicitly rather than installed as a
//! process-wide default: an embedder's own rustls set-up is left alone.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use baatkaro_proto::transport::Fingerprint;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

/// Where the server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// A certificate chain and its private key, as PEM files (`--tls-cert`,
    /// `--tls-key`).
    Files {
        /// The certificate chain, the server's own first.
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// A self-signed certificate made on first start and kept in the data
    /// directory (`--tls-self-signed`); clients pin it by its fingerprint.
    SelfSigned,
}

/// The file names of a self-signed pair, under the data directory.
pub const SELF_SIGNED_CERT: &str = "tls-self-signed.crt";
/// The private key of the self-signed pair (mode 0600).
pub const SELF_SIGNED_KEY: &str = "tls-self-signed.key";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        why: String,
    },
    /// rustls refused the certificate and key together.
    #[error("the TLS certificate and key do not work together: {0}")]
    Config(#[from] rustls::Error),
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
}

/// A loaded certificate, ready to accept connections.
#[derive(Clone)]
pub struct Tls {
    /// Wraps an accepted TCP stream.
    pub acceptor: TlsAcceptor,
    /// The SHA-256 of the server's own certificate, what clients pin.
    pub fingerprint: Fingerprint,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// The SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(cert: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(cert).into())
}

impl Tls {
    /// Loads (or, for [`TlsSource::SelfSigned`], makes on first use) the
    /// certificate and key. `listen` goes into a new self-signed certificate's
    /// names, beside `localhost`.
    pub fn load(source: &TlsSource, data_dir: &Path, listen: SocketAddr) -> Result<Tls, TlsError> {
        let (chain, key) = match source {
            TlsSource::Files { cert, key } => (read_chain(cert)?, read_key(key)?),
            TlsSource::SelfSigned => {
                let (cert, key) = (data_dir.join(SELF_SIGNED_CERT), data_dir.join(SELF_SIGNED_KEY));
                if !cert.exists() && !key.exists() {
                    generate(&cert, &key, listen)?;
                }
                (read_chain(&cert)?, read_key(&key)?)
            }
        };
        let fingerprint = fingerprint(&chain[0]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), fingerprint })
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |why: String| TlsError::File { path: path.to_path_buf(), why };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE block in the file".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                key = %path.display(),
                "the TLS private key is readable by other users: chmod 600 it"
            );
        }
    }
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::File { path: path.to_path_buf(), why: e.to_string() })
}

/// Makes a self-signed pair. The key is written first, to a file created with
/// mode 0600 (never readable by others, not even for a moment), then the
/// certificate; a start that dies between the two leaves a key without a
/// certificate, which the next start refuses rather than replace silently.
fn generate(cert_path: &Path, key_path: &Path, listen: SocketAddr) -> Result<(), TlsError> {
    let mut names = vec!["localhost".to_string()];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    let pair =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_new(key_path, pair.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert_path, pair.cert.pem().as_bytes(), 0o644)?;
    // The names too must survive a crash: a pair lost and made again would
    // change the fingerprint every client pinned.
    if let Some(dir) = cert_path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| TlsError::File { path: dir.to_path_buf(), why: e.to_string() })?;
    }
    tracing::info!(
        cert = %cert_path.display(),
        fingerprint = %fingerprint(pair.cert.der()),
        "made a self-signed TLS certificate"
    );
    Ok(())
}

/// Writes a file that must not exist yet, created with `mode`, and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let bad = |e: std::io::Error| TlsError::File { path: path.to_path_buf(), why: e.to_string() };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bad)?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = open.open(path).map_err(bad)?;
    file.write_all(bytes).map_err(bad)?;
    file.sync_all().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        "127.0.0.1:7667".parse().unwrap()
    }

    #[test]
    fn a_self_signed_pair_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = Tls::load(&TlsSource::SelfSigned, dir.path(), listen()).unwrap();
        let again = Tls::load(&TlsSource::SelfSigned, dir.path(), listen()).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint, "the same certificate after a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SELF_SIGNED_KEY)).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_key_without_its_certificate_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        Tls::load(&TlsSource::SelfSigned, dir.path(), listen()).unwrap();
        std::fs::remove_file(dir.path().join(SELF_SIGNED_CERT)).unwrap();
        let e = Tls::load(&TlsSource::SelfSigned, dir.path(), listen()).unwrap_err();
        assert!(e.to_string().contains(SELF_SIGNED_CERT), "{e}");
    }

    #[test]
    fn pem_files_load_and_garbage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["example.org".into()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        let tls = Tls::load(
            &TlsSource::Files { cert: cert.clone(), key: key.clone() },
            dir.path(),
            listen(),
        )
        .unwrap();
        assert_eq!(tls.fingerprint, fingerprint(pair.cert.der()));
        std::fs::write(&key, "not a key").unwrap();
        let e = Tls::load(&TlsSource::Files { cert, key: key.clone() }, dir.path(), listen())
            .unwrap_err();
        assert!(e.to_string().contains("k.pem"), "{e}");
    }
}
