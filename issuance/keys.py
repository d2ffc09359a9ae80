"""Signing keys of issuers: a self-signed root CA and a signer certificate per issuer,
used to sign certificate PDFs (PAdES, issuance.pdf.sign_pdf).

Keys live on disk under settings.SIGNING_KEYS_DIR/<issuer.code>/ (directory 0700, key
file 0600), never in the database. `make run` and the demo create self-signed ones
(`manage.py issuer_keys`); a production deployment puts the issuer's real signer
certificate, key and CA certificate there under the same names.

    root.pem         the issuer's root CA certificate (the trust root for validation)
    signer.pem       the signer certificate, issued by the root
    signer-key.pem   the signer's private key (PKCS#8, unencrypted: the directory's mode
                     is the protection, as for any TLS key on a server)
"""

import os
import shutil
import tempfile
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from pyhanko.sign import signers

ROOT = "root.pem"
SIGNER = "signer.pem"
SIGNER_KEY = "signer-key.pem"
FILES = (ROOT, SIGNER, SIGNER_KEY)

ROOT_YEARS = 20
SIGNER_YEARS = 10


def issuer_keys_dir(issuer) -> Path:
    return Path(settings.SIGNING_KEYS_DIR) / issuer.code


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, digital_signature=False, content_commitment=False, cert_sign=False):
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _generate(issuer, directory: Path) -> None:
    """Write a fresh root CA, signer certificate and signer key into `directory`."""
    now = timezone.now()
    # Back-date a little: a signature made right after creation must not fall before
    # notBefore on a machine whose clock is a few seconds behind.
    not_before = now - timedelta(days=1)

    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{issuer.name} 电子签章根证书", issuer.name)
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + timedelta(days=365 * ROOT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )

    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(_name(issuer.name, issuer.name))
        .issuer_name(root_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + timedelta(days=365 * SIGNER_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # contentCommitment (non-repudiation): the seal on a certificate is a commitment
        # to its content, which is what PAdES validators look for.
        .add_extension(_key_usage(digital_signature=True, content_commitment=True), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )

    (directory / ROOT).write_bytes(_pem(root))
    (directory / SIGNER).write_bytes(_pem(signer))
    key_pem = signer_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(directory / SIGNER_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)


def issuer_keys_ensure(issuer) -> Path:
    """The issuer's key directory, creating a self-signed root and signer when it does
    not exist yet. Idempotent and safe when several workers race: the files are written
    into a private temporary directory that is renamed into place atomically, and the
    loser of the rename discards its own and uses the winner's."""
    directory = issuer_keys_dir(issuer)
    if directory.is_dir():
        missing = [name for name in FILES if not (directory / name).is_file()]
        if missing:
            # Never silently replace a key someone put there: it may be a real one.
            raise ImproperlyConfigured(
                f"signing key directory {directory} lacks {', '.join(missing)}"
            )
        return directory
    base = Path(settings.SIGNING_KEYS_DIR)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{issuer.code}-", dir=base))  # mode 0700
    try:
        _generate(issuer, staging)
        try:
            staging.rename(directory)
        except OSError:
            if not directory.is_dir():
                raise
            # Another process created the keys first: theirs stand.
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def trust_root(issuer) -> Path:
    """The issuer's root CA certificate (PEM): the trust anchor for validating its PDFs."""
    return issuer_keys_ensure(issuer) / ROOT


@lru_cache(maxsize=64)
def _load_signer(directory: str, mtime_ns: int) -> signers.SimpleSigner:
    # mtime_ns is part of the key so replaced key files are picked up without a restart.
    signer = signers.SimpleSigner.load(
        os.path.join(directory, SIGNER_KEY),
        os.path.join(directory, SIGNER),
        ca_chain_files=(os.path.join(directory, ROOT),),
    )
    if signer is None:
        raise ImproperlyConfigured(f"cannot load the signing key in {directory}")
    return signer


def signer_for(issuer) -> signers.SimpleSigner:
    """The issuer's pyHanko signer (key, certificate and chain loaded once per process)."""
    directory = issuer_keys_ensure(issuer)
    return _load_signer(str(directory), (directory / SIGNER_KEY).stat().st_mtime_ns)
