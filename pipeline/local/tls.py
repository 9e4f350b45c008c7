"""A throwaway certificate authority and broker certificate for the local broker's TLS listener.

:func:`write_broker_tls` makes a self-signed CA and a broker certificate for ``127.0.0.1`` and
``localhost`` (EC P-256), signed by it, and writes two PEM files: the CA certificate (what clients
trust: ``ssl_cafile``) and the broker's key store (its PKCS#8 private key, then its certificate chain),
which Kafka reads with ``ssl.keystore.type=PEM``. The CA's private key is never written: once the
broker certificate is signed, nobody can issue another certificate under this CA.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> files = write_broker_tls(folder)
>>> files.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
True
>>> files.keystore_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
True
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = 3650  # a development broker; delete the folder to get new certificates


@dataclass(frozen=True)
class BrokerTlsFiles:
    """Where the CA certificate (for clients) and the broker's PEM key store lie."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore_file(self) -> Path:
        return self.folder / "broker-keystore.pem"

    def exist(self) -> bool:
        return self.ca_file.is_file() and self.keystore_file.is_file()


def write_broker_tls(folder: Path) -> BrokerTlsFiles:
    """Create the CA and broker certificate in ``folder`` unless both files are there already."""
    files = BrokerTlsFiles(folder)
    if files.exist():
        return files
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, broker_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moodshift local broker CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = broker_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(files.keystore_file, key_pem + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    files.ca_file.write_bytes(ca_cert.public_bytes(pem))  # written last: its presence means "complete"
    return files


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner may read (created so, never widened)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
