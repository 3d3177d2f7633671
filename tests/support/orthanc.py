"""A real Orthanc (Debian's ``orthanc`` package) started by the tests, on loopback ports.

ivcontrast is registered as a DICOM modality; Orthanc checks the called AE title and
accepts C-STORE only from registered modalities, like a PACS configured for a node.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ORTHANC = "/usr/sbin/Orthanc"


def find_orthanc() -> str | None:
    return shutil.which("Orthanc") or (ORTHANC if Path(ORTHANC).exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Certificates:
    """A throw-away CA with a server and a client certificate for 127.0.0.1."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(folder: Path) -> Certificates | None:
    """Made with the openssl command; None where it is not installed."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=ivcontrast test CA",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{who}.key",
            "-out",
            f"{who}.csr",
            "-subj",
            f"/CN={who}",
        )
        run(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{who}.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        )
    return Certificates(
        folder / "ca.crt",
        folder / "server.crt",
        folder / "server.key",
        folder / "client.crt",
        folder / "client.key",
    )


class Orthanc:
    """One Orthanc process; ``stop()`` and ``start()`` again keep its storage and ports."""

    def __init__(
        self,
        root: Path,
        *,
        aet: str = "ORTHANC",
        modality_ae: str = "IVCONTRAST",
        tls: Certificates | None = None,
    ):
        binary = find_orthanc()
        if binary is None:
            raise RuntimeError("Orthanc is not installed (Debian package 'orthanc')")
        self.binary = binary
        self.root = root
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.config_path = root / "orthanc.json"
        self.log_path = root / "orthanc.log"
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "Name": "ivcontrast-test",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "storage"),
            "StorageCompression": False,
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {"ivcontrast": [modality_ae, "127.0.0.1", 104]},
            "SaveJobs": False,
            "StableAge": 1,
            "HttpsVerifyPeers": False,
        }
        if tls is not None:
            # DICOM TLS (Orthanc >= 1.9): clients must present a certificate our CA signed.
            config.update(
                {
                    "DicomTlsEnabled": True,
                    "DicomTlsCertificate": str(tls.server_cert),
                    "DicomTlsPrivateKey": str(tls.server_key),
                    "DicomTlsTrustedCertificates": str(tls.ca),
                    "DicomTlsRemoteCertificateRequired": True,
                }
            )
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [self.binary, str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/system", timeout=1.0).status_code == 200:
                    with socket.create_connection(("127.0.0.1", self.dicom_port), 1.0):
                        return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not start in {timeout} s")

    def stop(self, *, kill: bool = False) -> None:
        """Stop Orthanc; ``kill`` stops it at once, as a crash or a pulled cable would."""
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10.0)
        response.raise_for_status()
        return response.json()

    def lookup(self, uid: str) -> list[dict[str, Any]]:
        """Orthanc's resources (patient, study, series or instance) with this DICOM UID."""
        response = httpx.post(f"{self.url}/tools/lookup", content=uid, timeout=10.0)
        response.raise_for_status()
        return list(response.json())

    def series_by_uid(self, series_uid: str) -> dict[str, Any] | None:
        ids = [item["ID"] for item in self.lookup(series_uid) if item["Type"] == "Series"]
        return self.get(f"/series/{ids[0]}") if ids else None

    def instance_tags(self, orthanc_id: str) -> dict[str, Any]:
        return self.get(f"/instances/{orthanc_id}/simplified-tags")

    def instance_file(self, orthanc_id: str) -> bytes:
        response = httpx.get(f"{self.url}/instances/{orthanc_id}/file", timeout=10.0)
        response.raise_for_status()
        return response.content


@contextmanager
def orthanc_server(root: Path, **kwargs: Any) -> Iterator[Orthanc]:
    server = Orthanc(root, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
