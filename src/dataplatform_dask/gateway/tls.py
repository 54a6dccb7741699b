# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-cluster TLS keys on elliptic curves.

dask-gateway gives every new cluster a self-signed certificate (the scheduler's, its workers'
and its clients' credential) from an RSA-2048 key it generates in the gateway's event loop,
under the lock that admits clusters: about 80 ms each, so the 30th of 30 concurrent users waits
over 2 s for key generation alone. A P-256 key takes well under a millisecond; the
certificate's names, lifetime and use are dask-gateway's own (``dask_gateway_server.tls``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def new_keypair(sni: str) -> tuple[bytes, bytes]:
    """A self-signed certificate and key for cluster ``sni``, as dask_gateway_server.tls's, on P-256."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    key_bytes = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    altnames = x509.SubjectAlternativeName(
        [x509.DNSName(sni), x509.DNSName("dask-internal"), x509.DNSName("skein-internal")]
    )
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .add_extension(altnames, critical=False)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_bytes


def use_ec_cluster_keys() -> None:
    """Make dask-gateway's database backends issue P-256 cluster keys (they look the name up
    in their module at each new cluster)."""
    from dask_gateway_server.backends import db_base

    db_base.new_keypair = new_keypair
