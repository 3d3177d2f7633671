"""The listener's AE: its title, presentation contexts, timeouts, and TLS.

``build_ae`` makes the pynetdicom AE that every listener process serves with (Verification
and every storage SOP class, in every transfer syntax we can store without decoding);
``tls_context`` the server TLS context from ``[scp]``'s certificate settings. Both are
pure set-up: nothing here opens a socket.
"""

from __future__ import annotations

import ssl
from typing import Any

from ivcontrast.config import ScpSettings


def transfer_syntaxes() -> list[str]:
    """Everything we accept for storage; we never decode, so compressed ones cost nothing."""
    from pydicom import uid

    return [
        uid.ExplicitVRLittleEndian,
        uid.ImplicitVRLittleEndian,
        uid.DeflatedExplicitVRLittleEndian,
        uid.ExplicitVRBigEndian,
        uid.JPEGBaseline8Bit,
        uid.JPEGExtended12Bit,
        uid.JPEGLossless,
        uid.JPEGLosslessSV1,
        uid.JPEGLSLossless,
        uid.JPEGLSNearLossless,
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.HTJ2KLossless,
        uid.HTJ2KLosslessRPCL,
        uid.HTJ2K,
        uid.RLELossless,
    ]


def build_ae(scp: ScpSettings) -> Any:
    """A pynetdicom AE with Verification and every storage SOP class."""
    from pydicom import uid
    from pynetdicom import AE, AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(scp.ae_title)
    ae.maximum_pdu_size = scp.max_pdu
    ae.maximum_associations = scp.max_associations
    ae.acse_timeout = scp.acse_timeout
    ae.dimse_timeout = scp.dimse_timeout
    ae.network_timeout = scp.network_timeout
    # The access policy (scp.access) decides, in the EVT_REQUESTED handler.
    ae.require_called_aet = False
    ae.require_calling_aet = []
    syntaxes = transfer_syntaxes()
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(str(cx.abstract_syntax), syntaxes)
    ae.add_supported_context(
        Verification,
        [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian],
    )
    return ae


def tls_context(scp: ScpSettings) -> ssl.SSLContext | None:
    """The server TLS context, or None when no certificate is configured."""
    if scp.tls_cert is None and scp.tls_key is None:
        if scp.tls_ca is not None:
            raise ValueError("scp.tls_ca is set but scp.tls_cert and scp.tls_key are not")
        return None
    if scp.tls_cert is None or scp.tls_key is None:
        raise ValueError("scp.tls_cert and scp.tls_key must be set together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(scp.tls_cert, scp.tls_key)
    if scp.tls_ca is not None:
        ctx.load_verify_locations(cafile=scp.tls_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
