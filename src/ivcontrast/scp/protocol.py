"""What the listener refuses at the PDU, association and DIMSE levels, and how (PS3.7, PS3.8).

Pure functions over what a peer sent; ``reactor`` calls them and answers:

- a PDU whose length exceeds what we negotiated (``pdu_limit``), an A-ASSOCIATE-RQ that
  is malformed (``rq_pdu_problem``, ``rq_contexts_problem``), a P-DATA fragment on a
  context we did not accept, with reserved control bits set, or out of its message's
  order (``PdvOrder``): A-ABORT, source service-provider,
  reason invalid-PDU-parameter value (PS3.8 9.3.8), before anything is allocated for it
  (a PDU of an unknown type: reason unrecognized-PDU);
- a well-formed A-ASSOCIATE-RQ we cannot serve (``rq_rejection``): A-ASSOCIATE-RJ with
  the result, source and reason of PS3.8 9.3.4;
- a complete DIMSE message that is no request we serve (``message_problem``): A-ABORT,
  source service-provider, reason not specified. The sender would otherwise wait for a
  response that cannot come (there is no response to an unknown command, and none to a
  C-STORE whose Affected SOP Instance UID it did not say).
"""

from __future__ import annotations

from typing import Any

# PDU types (PS3.8 9.3.1)
A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07
PDU_TYPES = frozenset(range(0x01, 0x08))

# A-ABORT (PS3.8 9.3.8): source and reasons
SERVICE_PROVIDER = 0x02
REASON_NOT_SPECIFIED = 0x00
UNRECOGNIZED_PDU = 0x01
INVALID_PARAMETER = 0x06  # invalid-PDU-parameter value

# A-ASSOCIATE-RJ (PS3.8 9.3.4): (result, source, reason)
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # permanent, service-user, no-reason-given
REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)  # application-context-name-not-supported
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)  # transient, service-provider, local-limit-exceeded

DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"

# An A-ASSOCIATE-RQ of 128 presentation contexts with a dozen transfer syntaxes each and
# a user identity item is well under 128 KiB; no other PDU but P-DATA-TF comes near it.
ASSOCIATION_PDU_MAX = 256 * 1024
# A P-DATA-TF may exceed the maximum length we announced by the PDV item header when the
# sender counts the fragment, not the PDU's variable field (PS3.8 D.1); tolerate that.
P_DATA_SLACK = 16
PDU_LENGTH_MAX = 0xFFFFFFFF
# States in which an association exists and P-DATA-TF may arrive (PS3.8 9.2).
DATA_STATES = frozenset({"Sta6", "Sta7", "Sta8", "Sta9", "Sta10", "Sta11", "Sta12"})

IGNORE = "ignore"  # message_problem: a message that needs no answer (C-CANCEL)


def pdu_limit(pdu_type: int, state: str, max_pdu: int) -> int:
    """The largest PDU body (the header's length field) we read in ``state``.

    ``max_pdu``: the Maximum Length we announced (0: unlimited, as in PS3.8 D.1).
    """
    if pdu_type == P_DATA_TF and state in DATA_STATES:
        return max_pdu + P_DATA_SLACK if max_pdu else PDU_LENGTH_MAX
    return ASSOCIATION_PDU_MAX


def rq_pdu_problem(pdu: Any) -> str | None:
    """Why a decoded A-ASSOCIATE-RQ PDU is invalid (PS3.8 9.3.2), or None.

    Presentation context IDs shall be odd integers from 1 to 255, each used once; each
    context has one abstract syntax and at least one transfer syntax (PS3.8 9.3.2.2).
    """
    seen: set[int] = set()
    for item in pdu.presentation_context:
        cid = item.context_id
        if cid is None or not 1 <= cid <= 255 or cid % 2 == 0:
            return f"presentation context ID {cid} is not an odd number from 1 to 255"
        if cid in seen:
            return f"presentation context ID {cid} is proposed twice"
        seen.add(cid)
        if not item.abstract_syntax or not item.transfer_syntax:
            return f"presentation context {cid} lacks its abstract or transfer syntax"
    return None


def rq_contexts_problem(primitive: Any) -> str | None:
    """Why the presentation contexts of an A-ASSOCIATE-RQ cannot be negotiated, or None:
    each needs an abstract syntax and a transfer syntax that decode as UIDs."""
    for context in primitive.presentation_context_definition_list:
        if not context.abstract_syntax or not context.transfer_syntax:
            cid = context.context_id
            return f"presentation context {cid} has no usable abstract or transfer syntax"
    return None


def rq_rejection(primitive: Any) -> tuple[int, int, int] | None:
    """(result, source, reason) of the A-ASSOCIATE-RJ a request gets, or None to go on.

    The protocol version is pynetdicom's check (rejected-permanent, service-provider ACSE,
    protocol-version-not-supported); the AE titles are the access policy's.
    """
    context_name = str(primitive.application_context_name or "").strip("\0 ")
    if context_name != DICOM_APPLICATION_CONTEXT:
        return REJECT_APPLICATION_CONTEXT
    if not primitive.presentation_context_definition_list:
        return REJECT_NO_REASON
    return None


class PdvOrder:
    """Where the DIMSE message being received stands, to check each fragment's place.

    A message is its command fragments, then (if the command says so) its data set
    fragments, all on one presentation context (PS3.7 6.3.1, PS3.8 E.2).
    """

    def __init__(self) -> None:
        self.context_id: int | None = None
        self.command_done = False

    def reset(self) -> None:
        self.context_id = None
        self.command_done = False

    def problem(self, context_id: int, control: int, accepted: Any) -> str | None:
        """Why this fragment is out of place, or None (and then it is counted)."""
        if context_id not in accepted:
            return f"presentation context ID {context_id} was not accepted"
        if control & 0xFC:
            return f"message control header 0x{control:02X} has reserved bits set"
        if self.context_id is not None and context_id != self.context_id:
            return (
                f"a fragment on presentation context {context_id} within a message "
                f"on context {self.context_id}"
            )
        is_command = bool(control & 0x01)
        if is_command and self.command_done:
            return "a command fragment after the command set was complete"
        if not is_command and not self.command_done:
            return "a data set fragment before the command set was complete"
        self.context_id = context_id
        if is_command and control & 0x02:
            self.command_done = True
        return None


def message_problem(request: Any, abstract_syntax: str) -> str | None:
    """Why a complete DIMSE message gets an A-ABORT, IGNORE, or None to serve it.

    We serve C-ECHO on the Verification context and C-STORE on storage contexts, each
    for the SOP Class of its context (PS3.7 9.1.1.1, 9.1.5.1).
    """
    from pynetdicom.dimse_primitives import C_CANCEL, C_ECHO, C_STORE

    name = type(request).__name__.replace("_", "-")
    if isinstance(request, C_CANCEL):
        return IGNORE  # nothing we do can be cancelled, and C-CANCEL has no response
    if request.MessageIDBeingRespondedTo is not None:
        return f"an unexpected {name} response"
    if not isinstance(request, (C_ECHO, C_STORE)):
        return f"{name} is not a service of this node"
    if not request.is_valid_request:
        missing = [k for k in request.REQUEST_KEYWORDS if getattr(request, k) is None]
        return f"a {name} request without {', '.join(missing)}"
    if isinstance(request, C_ECHO) != (abstract_syntax == VERIFICATION):
        return f"{name} on a presentation context for {abstract_syntax}"
    affected = str(request.AffectedSOPClassUID).strip("\0 ")
    if affected != abstract_syntax:
        return f"{name} for SOP Class {affected[:64]!r} on a context for {abstract_syntax}"
    return None
