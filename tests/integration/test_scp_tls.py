"""The listener over TLS, with and without client certificates."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.support import dicom_factory
from tests.support.scp_harness import InProcessListener, Scu, spool_path


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def client_context(cert: Path, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    if key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_tls_store(
    make_listener: Callable[..., InProcessListener], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    node = make_listener(tls_cert=str(cert), tls_key=str(key))
    # A client that connects and says nothing must not hold up the others.
    silent = socket.create_connection(("127.0.0.1", node.port))
    ds = dicom_factory.ct_image(rows=8, columns=8)
    scu = Scu()
    scu.ae.add_requested_context(ds.SOPClassUID, [ExplicitVRLittleEndian])
    assoc = scu.ae.associate(
        "127.0.0.1", node.port, ae_title="IVCONTRAST", tls_args=(client_context(cert), "localhost")
    )
    assert assoc.is_established
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    assert spool_path(node.spool, ds).exists()
    silent.close()
    # Plain TCP to a TLS port gets nowhere.
    plain = Scu()
    with plain.associate(node.port, [(Verification, [ExplicitVRLittleEndian])]) as assoc:
        assert not assoc.is_established


def test_tls_client_certificates_required_with_a_ca(
    make_listener: Callable[..., InProcessListener], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    node = make_listener(tls_cert=str(cert), tls_key=str(key), tls_ca=str(cert))
    for client_key, accepted in ((key, True), (None, False)):
        scu = Scu()
        scu.ae.add_requested_context(Verification, [ExplicitVRLittleEndian])
        try:
            assoc = scu.ae.associate(
                "127.0.0.1",
                node.port,
                ae_title="IVCONTRAST",
                tls_args=(client_context(cert, client_key), "localhost"),
            )
        except (ssl.SSLError, OSError):
            established = False
        else:
            established = assoc.is_established
            if established:
                assert assoc.send_c_echo().Status == 0x0000
                assoc.release()
        assert established is accepted
