"""The cluster's private PKI: one CA per cluster, one certificate per node or client.

Theory of operation. `p2pq init` makes a cluster directory holding the CA
certificate (`ca.pem`), its key (`ca.key`, 0600) and an API token (`token`,
0600). Every node and every CLI invocation issues itself a certificate from
that CA the first time it runs (`ensure_identity`) and reuses it afterwards.
Peers authenticate each other with mutual TLS 1.3 against the CA only: the
certificate's CN is the node id (or client name) and its OU says whether
the holder is a "node" or a "client", so a node never mistakes a CLI for a
peer. Machines without a shared cluster directory join with a bundle file
(`export_bundle` / `import_bundle`) that carries the CA and the token.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import re
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:  # POSIX advisory locks keep concurrent `p2pq node` starts from racing
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX platforms
    fcntl = None  # type: ignore[assignment]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
TOKEN_FILE = "token"
KINDS = ("node", "client")
CA_VALIDITY = datetime.timedelta(days=3650)
IDENTITY_VALIDITY = datetime.timedelta(days=5 * 365)
# Lab machines' clocks drift; back-date certificates so a peer whose clock is
# a little behind ours does not reject a certificate as "not yet valid".
CLOCK_SKEW = datetime.timedelta(days=1)
# Reissue an identity that would expire soon rather than fail mid-run.
RENEW_BEFORE = datetime.timedelta(days=30)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}$")
_BUNDLE_HEADER = (
    "# p2pq cluster bundle: CA certificate, CA KEY and API token.\n"
    "# SECRET: whoever holds this file can join the cluster. Keep it 0600.\n"
)
_TOKEN_PEM = "P2PQ CLUSTER TOKEN"
_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


class PKIError(Exception):
    """A cluster or identity problem, with a one-line message for the user."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Where one holder's certificate, key and the cluster CA live on disk."""

    cert_path: Path
    key_path: Path
    ca_path: Path
    name: str
    kind: str = "node"


def default_cluster_dir() -> Path:
    """`$P2PQ_CLUSTER_DIR`, else `$XDG_CONFIG_HOME/p2pq/cluster`, else ~/.config/p2pq/cluster."""
    explicit = os.environ.get("P2PQ_CLUSTER_DIR")
    if explicit:
        return Path(explicit).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home).expanduser() / "p2pq" / "cluster"


def init_cluster(cluster_dir: Path) -> bool:
    """Create the cluster CA and token in cluster_dir; True if created, False if present."""
    cluster_dir = Path(cluster_dir)
    cluster_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(cluster_dir):
        cert_path, key_path = cluster_dir / CA_CERT_FILE, cluster_dir / CA_KEY_FILE
        created = False
        if not cert_path.exists() and not key_path.exists():
            ca_key, ca_cert = _make_ca()
            _write_private(key_path, _key_pem(ca_key))
            _write_public(cert_path, ca_cert.public_bytes(serialization.Encoding.PEM))
            created = True
        elif not cert_path.exists():
            raise PKIError(f"{key_path} exists without {CA_CERT_FILE}: the cluster dir is damaged")
        if not (cluster_dir / TOKEN_FILE).exists():
            _write_private(cluster_dir / TOKEN_FILE, secrets.token_urlsafe(32).encode() + b"\n")
        return created


def ca_fingerprint(cluster_dir: Path) -> str:
    """SHA-256 (hex) of the CA certificate's DER: safe to publish, e.g. in mDNS TXT records."""
    cert = _load_ca_cert(Path(cluster_dir))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def read_token(cluster_dir: Path) -> str:
    """The cluster's HTTP API token (a secret)."""
    path = Path(cluster_dir) / TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise PKIError(f"no API token in {cluster_dir}: run `p2pq init`") from None


def ensure_identity(cluster_dir: Path, identity_dir: Path, name: str, kind: str) -> Identity:
    """name's identity in identity_dir, issued from the cluster CA if missing or stale."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not _NAME_RE.match(name):
        raise PKIError(f"invalid identity name {name!r}: use letters, digits and ._:@- (max 63)")
    cluster_dir, identity_dir = Path(cluster_dir), Path(identity_dir)
    ca_cert = _load_ca_cert(cluster_dir)
    identity_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity(
        cert_path=identity_dir / f"{name}.pem",
        key_path=identity_dir / f"{name}.key",
        ca_path=cluster_dir / CA_CERT_FILE,
        name=name,
        kind=kind,
    )
    with _locked(identity_dir):
        if not _identity_is_valid(identity, ca_cert):
            _issue(identity, ca_cert, _load_ca_key(cluster_dir))
    return identity


def export_bundle(cluster_dir: Path, out_path: Path) -> None:
    """Write the CA certificate, CA key and token into one file (mode 0600).

    The bundle is a SECRET: it lets its holder issue certificates for the
    cluster. Copy it over a trusted channel and delete it after the import.
    """
    cluster_dir = Path(cluster_dir)
    ca_pem = _load_ca_cert(cluster_dir).public_bytes(serialization.Encoding.PEM)
    key_pem = _key_pem(_load_ca_key(cluster_dir))
    token_pem = _pem_block(_TOKEN_PEM, read_token(cluster_dir).encode())
    _write_private(Path(out_path), _BUNDLE_HEADER.encode() + ca_pem + key_pem + token_pem)


def import_bundle(bundle_path: Path, cluster_dir: Path, *, force: bool = False) -> bool:
    """Install a bundle made by export_bundle into cluster_dir; True if anything changed.

    Refuses to replace a different existing CA unless force=True. The bundle
    and the files written from it are SECRETS (written 0600).
    """
    ca_cert, ca_key, token = _parse_bundle(Path(bundle_path))
    cluster_dir = Path(cluster_dir)
    cluster_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(cluster_dir):
        cert_path = cluster_dir / CA_CERT_FILE
        new_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        if cert_path.exists() and _same_ca(cert_path, ca_cert):
            if (cluster_dir / CA_KEY_FILE).exists() and (cluster_dir / TOKEN_FILE).exists():
                return False
        elif cert_path.exists() and not force:
            raise PKIError(
                f"{cluster_dir} already holds a different cluster CA: use --force to replace it"
            )
        _write_private(cluster_dir / CA_KEY_FILE, _key_pem(ca_key))
        _write_public(cert_path, new_pem)
        _write_private(cluster_dir / TOKEN_FILE, token.encode() + b"\n")
        return True


def server_context(identity: Identity) -> ssl.SSLContext:
    """A TLS 1.3 server context that requires a client certificate from the cluster CA."""
    return _context(ssl.PROTOCOL_TLS_SERVER, identity)


def client_context(identity: Identity) -> ssl.SSLContext:
    """A TLS 1.3 client context that presents identity and trusts only the cluster CA."""
    return _context(ssl.PROTOCOL_TLS_CLIENT, identity)


def peer_name(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[str, str]:
    """(CN, kind) of the verified peer certificate on a TLS connection."""
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        raise PKIError("the peer presented no certificate")
    fields = {key: value for rdn in cert.get("subject", ()) for key, value in rdn}
    cn, kind = fields.get("commonName"), fields.get("organizationalUnitName")
    if not cn or kind not in KINDS:
        raise PKIError("the peer certificate has no p2pq name or kind")
    return cn, kind


# --- TLS -------------------------------------------------------------------


def _context(protocol: int, identity: Identity) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # Peers are named by their certificate CN, not by DNS: addresses come
    # from mDNS or --peer and may be bare IPs, so hostname checks are off.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cafile=str(identity.ca_path))
        ctx.load_cert_chain(str(identity.cert_path), str(identity.key_path))
    except (OSError, ssl.SSLError) as exc:
        raise PKIError(f"cannot load TLS identity {identity.name}: {exc}") from None
    return ctx


# --- issuing ---------------------------------------------------------------


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A random suffix makes two clusters' CAs distinguishable by name too.
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "p2pq"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"p2pq cluster CA {secrets.token_hex(4)}"),
    ])
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    identity: Identity, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    # Nodes both dial and accept; clients only dial, so their certificate
    # cannot be used to impersonate a node's server side.
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if identity.kind == "node":
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "p2pq"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.kind),
            x509.NameAttribute(NameOID.COMMON_NAME, identity.name),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + IDENTITY_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(identity.name)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Key first: a certificate without its key would look valid but be useless.
    _write_private(identity.key_path, _key_pem(key))
    _write_public(identity.cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _identity_is_valid(identity: Identity, ca_cert: x509.Certificate) -> bool:
    """True if the stored identity can be reused: same CA, name, kind, key; not expiring."""
    try:
        cert = x509.load_pem_x509_certificate(identity.cert_path.read_bytes())
        key = serialization.load_pem_private_key(identity.key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    expected_subject = {
        NameOID.COMMON_NAME: identity.name,
        NameOID.ORGANIZATIONAL_UNIT_NAME: identity.kind,
    }
    for oid, value in expected_subject.items():
        attrs = cert.subject.get_attributes_for_oid(oid)
        if not attrs or attrs[0].value != value:
            return False
    if key.public_key() != cert.public_key():
        return False
    now = datetime.datetime.now(datetime.timezone.utc)
    return cert.not_valid_after_utc - RENEW_BEFORE > now


# --- files -----------------------------------------------------------------


def _load_ca_cert(cluster_dir: Path) -> x509.Certificate:
    path = cluster_dir / CA_CERT_FILE
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise PKIError(f"no cluster CA in {cluster_dir}: run `p2pq init`") from None
    except (OSError, ValueError) as exc:
        raise PKIError(f"cannot read the cluster CA {path}: {exc}") from None


def _load_ca_key(cluster_dir: Path) -> ec.EllipticCurvePrivateKey:
    path = cluster_dir / CA_KEY_FILE
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise PKIError(
            f"no cluster CA key in {cluster_dir}: import the cluster bundle or run `p2pq init`"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise PKIError(f"cannot read the cluster CA key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path} is not an EC key")
    return key


def _same_ca(cert_path: Path, ca_cert: x509.Certificate) -> bool:
    try:
        return x509.load_pem_x509_certificate(cert_path.read_bytes()) == ca_cert
    except (OSError, ValueError):
        return False


def _parse_bundle(path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PKIError(f"cannot read bundle {path}: {exc}") from None
    blocks = {match.group(1): match for match in _PEM_RE.finditer(text)}
    try:
        cert = x509.load_pem_x509_certificate(blocks["CERTIFICATE"].group(0).encode())
        key_pem = blocks["PRIVATE KEY"].group(0).encode()
        key = serialization.load_pem_private_key(key_pem, password=None)
        token_body = blocks[_TOKEN_PEM].group(2)
    except (KeyError, ValueError, TypeError):
        raise PKIError(f"{path} is not a p2pq cluster bundle") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise PKIError(f"{path}: the CA key does not match the CA certificate")
    return cert, key, "".join(token_body.split())


def _pem_block(label: str, payload: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n".encode() + payload + f"\n-----END {label}-----\n".encode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    _write_atomic(path, data, 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temp file + rename so readers never see half a key."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise PKIError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, mode)  # mkstemp already makes it 0600; public files widen
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise creators in one directory (several nodes may start at once)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
