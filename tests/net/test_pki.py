"""The cluster PKI: CA creation, identities, bundles, TLS contexts."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from p2pq.net import pki
from p2pq.net.pki import (
    PKIError,
    ca_fingerprint,
    client_context,
    default_cluster_dir,
    ensure_identity,
    export_bundle,
    import_bundle,
    init_cluster,
    peer_name,
    read_token,
    server_context,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_is_idempotent_and_keeps_secrets_private(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster"
    assert init_cluster(cluster) is True
    first = ca_fingerprint(cluster)
    token = read_token(cluster)
    assert init_cluster(cluster) is False
    assert ca_fingerprint(cluster) == first
    assert read_token(cluster) == token
    assert len(first) == 64 and int(first, 16) >= 0
    assert len(token) >= 43
    assert _mode(cluster / "ca.key") == 0o600
    assert _mode(cluster / "token") == 0o600
    assert _cert(cluster / "ca.pem").extensions.get_extension_for_class(
        x509.BasicConstraints).value.ca


def test_two_clusters_have_different_cas(tmp_path: Path) -> None:
    init_cluster(tmp_path / "a")
    init_cluster(tmp_path / "b")
    assert ca_fingerprint(tmp_path / "a") != ca_fingerprint(tmp_path / "b")


def test_identities_are_signed_by_the_ca_and_carry_name_and_kind(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster"
    init_cluster(cluster)
    ca = _cert(cluster / "ca.pem")
    for name, kind in [("node-1", "node"), ("client-1234", "client")]:
        identity = ensure_identity(cluster, tmp_path / "ids", name, kind)
        cert = _cert(identity.cert_path)
        cert.verify_directly_issued_by(ca)  # raises if not
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert cert.subject.get_attributes_for_oid(
            NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == kind
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [name]
        assert identity.kind == kind and identity.ca_path == cluster / "ca.pem"
        assert _mode(identity.key_path) == 0o600
        years = (cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365
        assert 4.9 < years < 5.1


def test_identity_is_reused_then_reissued_when_the_ca_changes(tmp_path: Path) -> None:
    cluster, other = tmp_path / "cluster", tmp_path / "other"
    init_cluster(cluster)
    init_cluster(other)
    first = ensure_identity(cluster, tmp_path / "ids", "n1", "node")
    pem = first.cert_path.read_bytes()
    assert ensure_identity(cluster, tmp_path / "ids", "n1", "node").cert_path.read_bytes() == pem
    # Same name as a client: different kind, so a new certificate.
    ensure_identity(cluster, tmp_path / "ids", "n1", "client")
    assert first.cert_path.read_bytes() != pem
    export_bundle(other, tmp_path / "other.bundle")
    import_bundle(tmp_path / "other.bundle", cluster, force=True)
    again = ensure_identity(cluster, tmp_path / "ids", "n1", "node")
    _cert(again.cert_path).verify_directly_issued_by(_cert(other / "ca.pem"))


def test_bundle_round_trip(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    init_cluster(source)
    bundle = tmp_path / "cluster.bundle"
    export_bundle(source, bundle)
    assert _mode(bundle) == 0o600
    assert "SECRET" in bundle.read_text()
    assert import_bundle(bundle, target) is True
    assert ca_fingerprint(target) == ca_fingerprint(source)
    assert read_token(target) == read_token(source)
    assert _mode(target / "ca.key") == 0o600
    assert import_bundle(bundle, target) is False  # same CA: nothing to do
    assert init_cluster(target) is False
    identity = ensure_identity(target, tmp_path / "ids", "n1", "node")
    _cert(identity.cert_path).verify_directly_issued_by(_cert(source / "ca.pem"))


def test_import_refuses_to_replace_a_different_ca(tmp_path: Path) -> None:
    init_cluster(tmp_path / "a")
    init_cluster(tmp_path / "b")
    export_bundle(tmp_path / "a", tmp_path / "a.bundle")
    with pytest.raises(PKIError, match="different cluster CA"):
        import_bundle(tmp_path / "a.bundle", tmp_path / "b")
    assert ca_fingerprint(tmp_path / "b") != ca_fingerprint(tmp_path / "a")
    assert import_bundle(tmp_path / "a.bundle", tmp_path / "b", force=True) is True
    assert ca_fingerprint(tmp_path / "b") == ca_fingerprint(tmp_path / "a")


def test_garbage_bundle_is_a_pki_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bundle"
    bad.write_text("not a bundle\n")
    with pytest.raises(PKIError, match="not a p2pq cluster bundle"):
        import_bundle(bad, tmp_path / "c")
    with pytest.raises(PKIError, match="cannot read bundle"):
        import_bundle(tmp_path / "missing.bundle", tmp_path / "c")


def test_missing_ca_gives_one_line_pki_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for call in (
        lambda: ensure_identity(missing, tmp_path / "ids", "n1", "node"),
        lambda: ca_fingerprint(missing),
        lambda: export_bundle(missing, tmp_path / "x.bundle"),
    ):
        with pytest.raises(PKIError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert f"no cluster CA in {missing}: run `p2pq init`" == message
    with pytest.raises(PKIError, match="run `p2pq init`"):
        read_token(missing)


def test_bad_identity_arguments(tmp_path: Path) -> None:
    init_cluster(tmp_path / "c")
    with pytest.raises(ValueError):
        ensure_identity(tmp_path / "c", tmp_path / "ids", "n1", "admin")
    with pytest.raises(PKIError, match="invalid identity name"):
        ensure_identity(tmp_path / "c", tmp_path / "ids", "bad name/..", "node")


def test_default_cluster_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("P2PQ_CLUSTER_DIR", str(tmp_path / "explicit"))
    assert default_cluster_dir() == tmp_path / "explicit"
    monkeypatch.delenv("P2PQ_CLUSTER_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_cluster_dir() == tmp_path / "xdg" / "p2pq" / "cluster"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cluster_dir() == tmp_path / "home" / ".config" / "p2pq" / "cluster"


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext):
    """Run a TLS handshake over memory BIOs; return (client, server) SSLObjects."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(bios[0], bios[1], server_side=False)
    server = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    done = {client: False, server: False}
    for _ in range(10):
        for obj in (client, server):
            if not done[obj]:
                try:
                    obj.do_handshake()
                    done[obj] = True
                except ssl.SSLWantReadError:
                    pass
        bios[2].write(bios[1].read())  # client -> server
        bios[0].write(bios[3].read())  # server -> client
        if all(done.values()):
            # TLS 1.3: the server sees the client certificate now; the client
            # learns of a rejection only when it reads.
            break
    return client, server


def test_mutual_tls_names_both_sides(tmp_path: Path) -> None:
    init_cluster(tmp_path / "c")
    node = ensure_identity(tmp_path / "c", tmp_path / "ids", "n1", "node")
    client = ensure_identity(tmp_path / "c", tmp_path / "ids", "client-1", "client")
    c, s = _handshake(client_context(client), server_context(node))
    assert c.version() == "TLSv1.3"
    assert peer_name(c) == ("n1", "node")
    assert peer_name(s) == ("client-1", "client")
    assert server_context(node).verify_mode == ssl.CERT_REQUIRED


def test_tls_rejects_a_certificate_from_another_cluster(tmp_path: Path) -> None:
    init_cluster(tmp_path / "c")
    init_cluster(tmp_path / "evil")
    node = ensure_identity(tmp_path / "c", tmp_path / "ids", "n1", "node")
    intruder = ensure_identity(tmp_path / "evil", tmp_path / "evil-ids", "n2", "node")
    with pytest.raises(ssl.SSLError):
        _handshake(client_context(intruder), server_context(node))


def test_unreadable_identity_is_a_pki_error(tmp_path: Path) -> None:
    init_cluster(tmp_path / "c")
    identity = ensure_identity(tmp_path / "c", tmp_path / "ids", "n1", "node")
    identity.key_path.write_text("garbage")
    with pytest.raises(PKIError, match="cannot load TLS identity n1"):
        server_context(identity)
    assert pki.Identity(identity.cert_path, identity.key_path, identity.ca_path, "n1").kind == "node"
