//! Signing identities: loading a PEM key and certificate (checked against
//! each other and the clock), signing a manifest as RAUC's verity bundles
//! carry it (CMS SignedData with the manifest inside), and making a
//! development CA and signing certificate (`builder keygen`).
//!
//! Keys are ECDSA P-256 or RSA (PKCS#8, SEC1 or PKCS#1 PEM, unencrypted).
//! Both sign deterministically (RFC 6979, PKCS#1 v1.5), and no signing time
//! is added, so the same key signs the same manifest to the same bytes.

use anyhow::{Context as _, Result, anyhow, bail};
use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use der::asn1::OctetString;
use der::{Any, Encode as _, EncodePem as _, Tag};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use sha2_10::Sha256;
use spki::{AlgorithmIdentifierOwned, EncodePublicKey as _, SubjectPublicKeyInfoOwned};
use std::path::Path;
use std::str::FromStr as _;
use std::time::{Duration, SystemTime};
use x509_cert::Certificate;
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// A private key that can sign bundles.
enum Key {
    Ecdsa(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
}

/// A key and the certificate that vouches for it.
pub struct Signer {
    key: Key,
    certificate: Certificate,
    /// Further certificates from the certificate file (intermediate CAs),
    /// carried in the signature so the device can build the chain.
    chain: Vec<Certificate>,
}

impl Signer {
    /// Loads `key` and `cert` (PEM), checking that the certificate is for
    /// this key and valid at `now`.
    pub fn load(key: &Path, cert: &Path, now: SystemTime) -> Result<Signer> {
        let key_text = std::fs::read_to_string(key)
            .with_context(|| format!("--key {}: cannot read the file", key.display()))?;
        let key_loaded =
            parse_key(&key_text).map_err(|e| anyhow!("--key {}: {e}", key.display()))?;
        let mut certificates = read_certificates(cert, "--cert")?;
        let certificate = certificates.remove(0);
        let key_spki = match &key_loaded {
            Key::Ecdsa(key) => key.verifying_key().to_public_key_der(),
            Key::Rsa(key) => rsa::RsaPublicKey::from((**key).as_ref()).to_public_key_der(),
        }
        .map_err(|e| anyhow!("--key {}: {e}", key.display()))?;
        let cert_spki = certificate
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .context("encoding the certificate's public key")?;
        if key_spki.as_bytes() != cert_spki.as_slice() {
            bail!(
                "--key {} does not match --cert {} (the certificate is for another key); \
                 pass the key the certificate was issued for",
                key.display(),
                cert.display()
            );
        }
        check_validity(&certificate, now).map_err(|e| anyhow!("--cert {}: {e}", cert.display()))?;
        Ok(Signer {
            key: key_loaded,
            certificate,
            chain: certificates,
        })
    }

    /// The CMS SignedData (DER) over `content`, with the content inside —
    /// what RAUC reads the manifest of a verity bundle from.
    pub fn sign(&self, content: &[u8]) -> Result<Vec<u8>> {
        let encapsulated = EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: Some(Any::new(
                Tag::OctetString,
                OctetString::new(content)?.as_bytes(),
            )?),
        };
        let digest = AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::ID_SHA_256,
            parameters: None,
        };
        let tbs = &self.certificate.tbs_certificate;
        let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer.clone(),
            serial_number: tbs.serial_number.clone(),
        });
        let mut builder = SignedDataBuilder::new(&encapsulated);
        builder
            .add_digest_algorithm(digest.clone())
            .map_err(|e| anyhow!("signing: {e}"))?;
        for certificate in std::iter::once(&self.certificate).chain(&self.chain) {
            builder
                .add_certificate(CertificateChoices::Certificate(certificate.clone()))
                .map_err(|e| anyhow!("signing: {e}"))?;
        }
        match &self.key {
            Key::Ecdsa(key) => {
                let info = SignerInfoBuilder::new(key, sid, digest, &encapsulated, None)
                    .map_err(|e| anyhow!("signing: {e}"))?;
                builder
                    .add_signer_info::<_, p256::ecdsa::DerSignature>(info)
                    .map_err(|e| anyhow!("signing: {e}"))?;
            }
            Key::Rsa(key) => {
                let info = SignerInfoBuilder::new(&**key, sid, digest, &encapsulated, None)
                    .map_err(|e| anyhow!("signing: {e}"))?;
                builder
                    .add_signer_info::<_, rsa::pkcs1v15::Signature>(info)
                    .map_err(|e| anyhow!("signing: {e}"))?;
            }
        }
        let signed = builder.build().map_err(|e| anyhow!("signing: {e}"))?;
        Ok(signed.to_der()?)
    }
}

impl Signer {
    /// Checks that the signing certificate leads, through the certificate
    /// file's chain, to a certificate of the image's keyring — otherwise
    /// every device refuses the bundle, so the build does too.
    pub fn check_trusted(&self, keyring: &[Certificate], keyring_path: &Path) -> Result<()> {
        let mut current = &self.certificate;
        for _ in 0..=self.chain.len() {
            let issued_by = |issuer: &Certificate| {
                issuer.tbs_certificate.subject == current.tbs_certificate.issuer
                    && verifies(issuer, current) != Some(false)
            };
            if keyring.iter().any(issued_by) {
                return Ok(());
            }
            match self.chain.iter().find(|c| issued_by(c)) {
                Some(next) => current = next,
                None => break,
            }
        }
        bail!(
            "the signing certificate {} was not issued by a CA in the keyring {}: devices \
             would refuse its bundles. Sign with a key from that CA, or build the image with \
             that CA in its keyring (--keyring or [update] keyring)",
            self.certificate.tbs_certificate.subject,
            keyring_path.display()
        )
    }
}

/// Whether `issuer`'s key signed `cert` (`None`: an algorithm this check
/// does not know; the device still checks it).
fn verifies(issuer: &Certificate, cert: &Certificate) -> Option<bool> {
    use signature::Verifier as _;
    let tbs = cert.tbs_certificate.to_der().ok()?;
    let signature = cert.signature.raw_bytes();
    let spki = issuer
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .ok()?;
    let algorithm = cert.signature_algorithm.oid;
    if algorithm == const_oid::db::rfc5912::ECDSA_WITH_SHA_256 {
        use p256::pkcs8::DecodePublicKey as _;
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).ok()?;
        let signature = p256::ecdsa::DerSignature::from_bytes(signature).ok()?;
        Some(key.verify(&tbs, &signature).is_ok())
    } else if algorithm == const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION {
        use rsa::pkcs8::DecodePublicKey as _;
        let key = rsa::RsaPublicKey::from_public_key_der(&spki).ok()?;
        let signature = rsa::pkcs1v15::Signature::try_from(signature).ok()?;
        Some(
            rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
                .verify(&tbs, &signature)
                .is_ok(),
        )
    } else {
        None
    }
}

fn parse_key(text: &str) -> Result<Key> {
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        bail!(
            "the key is encrypted; write an unencrypted copy for the build \
             (openssl pkey -in KEY -out KEY.plain) and keep it where only you can read it"
        );
    }
    if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(text) {
        return Ok(Key::Ecdsa(key));
    }
    if let Ok(key) = p256::SecretKey::from_sec1_pem(text) {
        return Ok(Key::Ecdsa(key.into()));
    }
    let rsa = rsa::RsaPrivateKey::from_pkcs8_pem(text)
        .or_else(|_| <rsa::RsaPrivateKey as rsa::pkcs1::DecodeRsaPrivateKey>::from_pkcs1_pem(text));
    if let Ok(key) = rsa {
        return Ok(Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key))));
    }
    bail!(
        "not an unencrypted PEM private key for ECDSA P-256 or RSA \
         (PKCS#8 \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\"); \
         make one with `builder keygen DIR`"
    )
}

/// The certificates in a PEM file, in order; at least one.
pub fn read_certificates(path: &Path, flag: &str) -> Result<Vec<Certificate>> {
    let text = std::fs::read(path)
        .with_context(|| format!("{flag} {}: cannot read the file", path.display()))?;
    let certificates = Certificate::load_pem_chain(&text)
        .map_err(|e| anyhow!("{flag} {}: not a PEM certificate file: {e}", path.display()))?;
    if certificates.is_empty() {
        bail!(
            "{flag} {}: holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certificates)
}

/// Refuses a certificate that is not valid at `now`: a device would refuse
/// every bundle it signed.
pub fn check_validity(certificate: &Certificate, now: SystemTime) -> Result<()> {
    let validity = &certificate.tbs_certificate.validity;
    let subject = &certificate.tbs_certificate.subject;
    if validity.not_after.to_system_time() < now {
        bail!(
            "certificate {subject} expired on {}; devices refuse bundles it signs. \
             Issue a new signing certificate from your CA (or `builder keygen` a new \
             development set and put its CA into the next image's keyring)",
            validity.not_after
        );
    }
    if validity.not_before.to_system_time() > now {
        bail!(
            "certificate {subject} is not valid before {}; check this machine's clock",
            validity.not_before
        );
    }
    Ok(())
}

/// What `builder keygen` wrote.
pub struct DevelopmentKeys {
    pub ca_cert: std::path::PathBuf,
    pub ca_key: std::path::PathBuf,
    pub signing_cert: std::path::PathBuf,
    pub signing_key: std::path::PathBuf,
}

/// How long development certificates are valid: long, because an expired
/// signing certificate stops every update of a device in the field.
const CA_YEARS: u64 = 30;
const SIGNING_YEARS: u64 = 20;
/// Devices without a real-time clock (every Raspberry Pi) may check a
/// bundle before NTP has set the clock: certificates are valid from here.
const NOT_BEFORE: u64 = 1_577_836_800; // 2020-01-01T00:00:00Z

/// Makes a development CA and a signing key and certificate in `dir`
/// (created if missing; existing files are never overwritten). `name`
/// goes into the subjects.
pub fn keygen(dir: &Path, name: &str, now: SystemTime) -> Result<DevelopmentKeys> {
    let keys = DevelopmentKeys {
        ca_cert: dir.join("ca.cert.pem"),
        ca_key: dir.join("ca.key.pem"),
        signing_cert: dir.join("signing.cert.pem"),
        signing_key: dir.join("signing.key.pem"),
    };
    for path in [
        &keys.ca_cert,
        &keys.ca_key,
        &keys.signing_cert,
        &keys.signing_key,
    ] {
        if path.exists() {
            bail!(
                "{} already exists; keygen never overwrites keys. Choose an empty directory",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let years = |n: u64| since_epoch + Duration::from_secs(n * 365 * 86_400);
    let validity = |years_valid: u64| -> Result<Validity> {
        Ok(Validity {
            not_before: Time::GeneralTime(der::asn1::GeneralizedTime::from_unix_duration(
                Duration::from_secs(NOT_BEFORE),
            )?),
            not_after: Time::GeneralTime(der::asn1::GeneralizedTime::from_unix_duration(years(
                years_valid,
            ))?),
        })
    };
    let ca_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let ca_name = Name::from_str(&format!("CN={name} development CA,O=vinyl"))
        .map_err(|e| anyhow!("keygen name {name:?}: {e}"))?;
    let ca_cert = CertificateBuilder::new(
        Profile::Root,
        random_serial()?,
        validity(CA_YEARS)?,
        ca_name.clone(),
        SubjectPublicKeyInfoOwned::from_key(*ca_key.verifying_key())?,
        &ca_key,
    )
    .map_err(|e| anyhow!("making the CA certificate: {e}"))?
    .build::<p256::ecdsa::DerSignature>()
    .map_err(|e| anyhow!("making the CA certificate: {e}"))?;
    let signing_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let signing_cert = CertificateBuilder::new(
        Profile::Leaf {
            issuer: ca_name,
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        random_serial()?,
        validity(SIGNING_YEARS)?,
        Name::from_str(&format!("CN={name} bundle signing,O=vinyl"))
            .map_err(|e| anyhow!("keygen name {name:?}: {e}"))?,
        SubjectPublicKeyInfoOwned::from_key(*signing_key.verifying_key())?,
        &ca_key,
    )
    .map_err(|e| anyhow!("making the signing certificate: {e}"))?
    .build::<p256::ecdsa::DerSignature>()
    .map_err(|e| anyhow!("making the signing certificate: {e}"))?;

    write_new(
        &keys.ca_key,
        ca_key.to_pkcs8_pem(LineEnding::LF)?.as_bytes(),
        0o600,
    )?;
    write_new(
        &keys.signing_key,
        signing_key.to_pkcs8_pem(LineEnding::LF)?.as_bytes(),
        0o600,
    )?;
    write_new(
        &keys.ca_cert,
        ca_cert.to_pem(LineEnding::LF)?.as_bytes(),
        0o644,
    )?;
    write_new(
        &keys.signing_cert,
        signing_cert.to_pem(LineEnding::LF)?.as_bytes(),
        0o644,
    )?;
    Ok(keys)
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x40; // and without a leading zero byte
    Ok(SerialNumber::new(&bytes)?)
}

/// A new file, written whole (temp + link), never over an existing one;
/// private keys get mode 0600.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| {
            temp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
        })
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist_noclobber(path)
        .map_err(|e| anyhow!("writing {}: {}", path.display(), e.error))?;
    Ok(())
}
