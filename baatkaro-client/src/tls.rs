//! TLS for the client: how a server's certificate is trusted (SPEC.md 11.7).
//!
//! In order: a fingerprint the user gave (`--fingerprint`) must match exactly;
//! otherwise a certificate the trust store vouches for (the system's, or only
//! `--ca FILE`) is accepted, and the known-hosts file remembers that this host
//! is vouched for; otherwise — with no `--ca`, and a known-hosts file that does
//! not say the host was vouched for — the server is pinned by its certificate's
//! SHA-256 on first use, like SSH's `known_hosts`, and refused loudly if it ever
//! presents another one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use baatkaro_proto::transport::{Address, Fingerprint, Host};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How to reach a server safely: trust for TLS, whether plain text may carry
/// secrets beyond loopback, how long connecting may take, and whether to come
/// back after the connection drops.
///
/// ```
/// use baatkaro_client::ConnectOptions;
/// let options = ConnectOptions::default().reconnect(true).known_hosts("known_hosts");
/// assert!(options.reconnect && options.ca.is_none());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Trust only the CAs in this PEM file, not the system's trust store; no
    /// server is then pinned on first use.
    pub ca: Option<PathBuf>,
    /// Accept exactly the certificate with this SHA-256, whoever signed it.
    pub fingerprint: Option<Fingerprint>,
    /// Pin servers whose certificate no CA vouches for in this file, on first
    /// use; `None` refuses such servers unless `fingerprint` names them.
    pub known_hosts: Option<PathBuf>,
    /// Send passwords and tokens over plain text to an address other than
    /// loopback. They cross the network readable by anyone on the path.
    pub insecure_plaintext: bool,
    /// How long connecting, the TLS handshake and HELLO may take in all.
    pub timeout: Duration,
    /// Reconnect after the connection drops (SPEC.md 9): see
    /// [`Client`](crate::Client)'s docs for what comes back by itself.
    pub reconnect: bool,
}

impl ConnectOptions {
    /// Trusts only the CAs in this PEM file.
    pub fn ca(mut self, file: impl Into<PathBuf>) -> Self {
        self.ca = Some(file.into());
        self
    }

    /// Accepts exactly the certificate with this SHA-256.
    pub fn fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// Pins servers no CA vouches for in this file, on first use.
    pub fn known_hosts(mut self, file: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(file.into());
        self
    }

    /// Lets passwords and tokens cross plain text beyond loopback.
    pub fn insecure_plaintext(mut self, allowed: bool) -> Self {
        self.insecure_plaintext = allowed;
        self
    }

    /// Gives connecting, TLS and HELLO this long in all.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reconnects after the connection drops.
    pub fn reconnect(mut self, on: bool) -> Self {
        self.reconnect = on;
        self
    }
}

impl Default for ConnectOptions {
    /// The system's trust store, nothing pinned, no plain text beyond loopback,
    /// ten seconds to connect, no reconnect.
    fn default() -> Self {
        ConnectOptions {
            ca: None,
            fingerprint: None,
            known_hosts: None,
            insecure_plaintext: false,
            timeout: Duration::from_secs(10),
            reconnect: false,
        }
    }
}

/// What the known-hosts file says of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// A certificate authority vouched for the host before: a certificate no
    /// authority vouches for is refused.
    Authority,
    /// The host is pinned to the certificate with this fingerprint.
    Certificate(Fingerprint),
}

/// Why a server's certificate was not trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The server presented another certificate than the one pinned for it.
    #[error(
        "THE CERTIFICATE OF {host} HAS CHANGED: {pinned} is pinned in {}, the server \
         presented {presented}. Someone may be intercepting the connection. If you know \
         the server's certificate was replaced, delete the line for {host} from that file.",
        .file.display()
    )]
    Changed {
        /// `host:port`.
        host: String,
        /// What the known-hosts file holds.
        pinned: Fingerprint,
        /// What the server showed.
        presented: Fingerprint,
        /// The known-hosts file.
        file: PathBuf,
    },
    /// An authority vouched for the host before; now none does.
    #[error(
        "THE CERTIFICATE OF {host} HAS CHANGED: a certificate authority vouched for it \
         before, and none vouches for the one it presented now ({presented}: {why}). \
         Someone may be intercepting the connection. If you know the server now uses a \
         self-signed certificate, delete the line for {host} from {}.",
        .file.display()
    )]
    LostAuthority {
        /// `host:port`.
        host: String,
        /// What the server showed.
        presented: Fingerprint,
        /// Why no authority vouches for it.
        why: String,
        /// The known-hosts file.
        file: PathBuf,
    },
    /// The certificate is not the one `--fingerprint` named.
    #[error("the server's certificate is {presented}, not the {expected} given")]
    Mismatch {
        /// The fingerprint given.
        expected: Fingerprint,
        /// What the server showed.
        presented: Fingerprint,
    },
    /// No CA vouches for the certificate and nothing pins it.
    #[error(
        "the server's certificate ({presented}) is not trusted: {why}. Give --ca FILE, or \
         --fingerprint with the fingerprint the server logged"
    )]
    Untrusted {
        /// What the server showed.
        presented: Fingerprint,
        /// Why the trust store refused it.
        why: String,
    },
    /// `--ca` or `--fingerprint` with an address that is not `baatkaros://`: they
    /// would protect nothing.
    #[error("--ca and --fingerprint are for TLS: give the address as baatkaros://host:port")]
    NotTls,
    /// The CA file or the known-hosts file could not be used.
    #[error("{}: {why}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// Why the server's certificate was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// A CA in the trust store vouches for it.
    Authority,
    /// It is the certificate `--fingerprint` named.
    Given,
    /// It matches the fingerprint pinned in the known-hosts file.
    Pinned,
    /// It was seen for the first time and is now pinned.
    FirstUse,
}

/// The TLS side of a connection, once established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// The SHA-256 of the server's certificate.
    pub fingerprint: Fingerprint,
    /// Why it was accepted.
    pub trust: Trust,
}

/// The SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(der).into())
}

/// Performs the TLS handshake over `tcp` to `addr`, trusting the server as
/// `options` say; on a first use, pins it in the known-hosts file.
pub(crate) async fn handshake(
    tcp: TcpStream,
    addr: &Address,
    options: &ConnectOptions,
) -> Result<(TlsStream<TcpStream>, TlsInfo), crate::ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Verifier::new(addr, options, provider.clone())?);
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = match &addr.host {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(name) => ServerName::try_from(name.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
    };
    let result = TlsConnector::from(Arc::new(config)).connect(name, tcp).await;
    let outcome = verifier.outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (result, outcome) {
        (Ok(stream), Some(Ok(info))) => {
            // Remembered only once the server proved it holds the key.
            if let (Some(file), None) = (&options.known_hosts, verifier.pin()) {
                match info.trust {
                    Trust::FirstUse => {
                        KnownHosts::add(
                            file,
                            &addr.host_port(),
                            Pin::Certificate(info.fingerprint),
                        )?;
                    }
                    Trust::Authority => KnownHosts::add(file, &addr.host_port(), Pin::Authority)?,
                    Trust::Given | Trust::Pinned => {}
                }
            }
            Ok((stream, info))
        }
        (_, Some(Err(refused))) => Err(refused.into()),
        (Err(e), _) => Err(e.into()),
        // rustls always asks the verifier before it completes a handshake.
        (Ok(_), None) => Err(std::io::Error::other("TLS handshake without a certificate").into()),
    }
}

/// Decides whether to trust the server's certificate, and remembers why.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    /// `None` when no trust anchor could be loaded: only pins can vouch.
    authority: Option<Arc<WebPkiServerVerifier>>,
    given: Option<Fingerprint>,
    /// Whether `--ca` named the authorities: then nothing is pinned on first use.
    named_authorities: bool,
    known_hosts: Option<(PathBuf, Option<Pin>)>,
    host: String,
    outcome: Mutex<Option<Result<TlsInfo, TrustError>>>,
}

impl Verifier {
    fn new(
        addr: &Address,
        options: &ConnectOptions,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TrustError> {
        let mut roots = RootCertStore::empty();
        match &options.ca {
            Some(path) => {
                let bad = |why: String| TrustError::File { path: path.clone(), why };
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(bad("no usable CA certificate in the file".into()));
                }
            }
            None => roots = system_roots().clone(),
        }
        let authority = if roots.is_empty() {
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .ok()
        };
        let host = addr.host_port();
        let known_hosts = match &options.known_hosts {
            Some(file) => Some((file.clone(), KnownHosts::lookup(file, &host)?)),
            None => None,
        };
        Ok(Verifier {
            provider,
            authority,
            given: options.fingerprint,
            named_authorities: options.ca.is_some(),
            known_hosts,
            host,
            outcome: Mutex::new(None),
        })
    }

    /// What the known-hosts file said of the host before this connection.
    fn pin(&self) -> Option<Pin> {
        self.known_hosts.as_ref().and_then(|(_, pin)| *pin)
    }

    fn decide(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<TlsInfo, TrustError> {
        let presented = fingerprint(end_entity);
        let info = |trust| Ok(TlsInfo { fingerprint: presented, trust });
        if let Some(expected) = self.given {
            return if expected == presented {
                info(Trust::Given)
            } else {
                Err(TrustError::Mismatch { expected, presented })
            };
        }
        let why = match &self.authority {
            Some(authority) => {
                match authority.verify_server_cert(end_entity, intermediates, server_name, &[], now)
                {
                    Ok(_) => return info(Trust::Authority),
                    Err(e) => e.to_string(),
                }
            }
            None => "no trust anchors could be loaded".to_string(),
        };
        match &self.known_hosts {
            Some((_, Some(Pin::Certificate(pinned)))) if *pinned == presented => {
                info(Trust::Pinned)
            }
            Some((file, Some(Pin::Certificate(pinned)))) => Err(TrustError::Changed {
                host: self.host.clone(),
                pinned: *pinned,
                presented,
                file: file.clone(),
            }),
            Some((file, Some(Pin::Authority))) => Err(TrustError::LostAuthority {
                host: self.host.clone(),
                presented,
                why,
                file: file.clone(),
            }),
            // Whoever named the authorities wants no other trust.
            Some((_, None)) if !self.named_authorities => info(Trust::FirstUse),
            Some((_, None)) | None => Err(TrustError::Untrusted { presented, why }),
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let decision = self.decide(end_entity, intermediates, server_name, now);
        let verdict = match &decision {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(rustls::Error::General(e.to_string())),
        };
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(decision);
        verdict
    }

    // The handshake's signatures prove the server holds the certificate's key,
    // whichever way the certificate itself was trusted.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The system's trust anchors, loaded once per process (unreadable ones are
/// skipped: pins still work without them).
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
}

/// The known-hosts file: a line per host, `host:port sha256:…` for a pinned
/// certificate or `host:port ca` for a host an authority vouched for; `#`
/// starts a comment. The first line for a host counts.
pub struct KnownHosts;

impl KnownHosts {
    /// What the file says of `host` (`host:port`), if anything.
    pub fn lookup(file: &Path, host: &str) -> Result<Option<Pin>, TrustError> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TrustError::File { path: file.into(), why: e.to_string() }),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || TrustError::File {
                path: file.into(),
                why: format!("line {} is not `host:port sha256:…`", n + 1),
            };
            let (name, fp) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
            if name == host {
                return match fp.trim() {
                    "ca" => Ok(Some(Pin::Authority)),
                    fp => fp.parse().map(|fp| Some(Pin::Certificate(fp))).map_err(|_| bad()),
                };
            }
        }
        Ok(None)
    }

    /// Records `pin` for `host`, appending a line (the file and its directory are
    /// made if need be).
    pub fn add(file: &Path, host: &str, pin: Pin) -> Result<(), TrustError> {
        let bad = |e: std::io::Error| TrustError::File { path: file.into(), why: e.to_string() };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(bad)?;
        }
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(file).map_err(bad)?;
        // One write: two clients pinning at once append whole lines.
        let what = match pin {
            Pin::Authority => "ca".to_string(),
            Pin::Certificate(fp) => fp.to_string(),
        };
        f.write_all(format!("{host} {what}\n").as_bytes()).map_err(bad)?;
        f.sync_all().map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_finds_its_host_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("known_hosts");
        assert_eq!(KnownHosts::lookup(&file, "a:1").unwrap(), None, "no file: nothing pinned");
        let (one, two) = (Pin::Certificate(Fingerprint([1; 32])), Pin::Authority);
        KnownHosts::add(&file, "a:1", one).unwrap();
        KnownHosts::add(&file, "b:1", two).unwrap();
        assert_eq!(KnownHosts::lookup(&file, "a:1").unwrap(), Some(one));
        assert_eq!(KnownHosts::lookup(&file, "b:1").unwrap(), Some(two));
        assert_eq!(KnownHosts::lookup(&file, "a:2").unwrap(), None);
        std::fs::write(&file, "# pins\n\na:1 nonsense\n").unwrap();
        let e = KnownHosts::lookup(&file, "a:1").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
    }
}
