"""Per-cluster keys on P-256: a scheduler and a client that trust the cluster's certificate
(dask-gateway's scheme) complete a TLS handshake with the cluster's name; generation is cheap."""

from __future__ import annotations

import socket
import ssl
import threading

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from dataplatform_dask.gateway import tls


def contexts(tmp_path, cert, key):
    (tmp_path / "dask.crt").write_bytes(cert)
    (tmp_path / "dask.pem").write_bytes(key)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "dask.crt"))
    server.load_cert_chain(str(tmp_path / "dask.crt"), str(tmp_path / "dask.pem"))
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tmp_path / "dask.crt"))
    client.load_cert_chain(str(tmp_path / "dask.crt"), str(tmp_path / "dask.pem"))
    return server, client


def test_the_cluster_certificate_is_p256_and_names_the_cluster():
    cert, _key = tls.new_keypair("abc123")
    c = x509.load_pem_x509_certificate(cert)
    assert isinstance(c.public_key(), ec.EllipticCurvePublicKey)
    assert c.public_key().curve.name == "secp256r1"
    names = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert names == ["abc123", "dask-internal", "skein-internal"]


def test_mutual_tls_with_the_cluster_name_as_sni(tmp_path):
    server_ctx, client_ctx = contexts(tmp_path, *tls.new_keypair("abc123"))
    a, b = socket.socketpair()
    seen = {}

    def serve():
        with server_ctx.wrap_socket(a, server_side=True) as s:
            seen["client"] = s.getpeercert()["subject"]
            s.sendall(s.recv(5))

    t = threading.Thread(target=serve)
    t.start()
    with client_ctx.wrap_socket(b, server_hostname="abc123") as c:
        c.sendall(b"hello")
        assert c.recv(5) == b"hello"
    t.join(10)
    assert seen["client"] == ((("commonName", "dask-internal"),),)


def test_another_clusters_certificate_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    server_ctx = contexts(tmp_path / "a", *tls.new_keypair("one"))[0]
    client_ctx = contexts(tmp_path / "b", *tls.new_keypair("two"))[1]
    a, b = socket.socketpair()
    errors = []

    def serve():
        try:
            with server_ctx.wrap_socket(a, server_side=True):
                pass
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    try:
        client_ctx.wrap_socket(b, server_hostname="one").close()
    except ssl.SSLError as exc:
        errors.append(exc)
    t.join(10)
    assert errors


def test_the_gateway_backends_use_it_once_configured():
    from dask_gateway_server.backends import db_base

    tls.use_ec_cluster_keys()
    assert db_base.new_keypair is tls.new_keypair
