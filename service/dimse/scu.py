"""C-STORE SCU: send files to a remote SCP (result delivery)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pydicom
from pynetdicom import AE

from service.errors import FedsegError


class DeliveryError(FedsegError):
    """Results could not be sent to a destination (the message says which and why)."""


def send_files(
    paths: Sequence[Path], host: str, port: int, called_ae: str, calling_ae: str
) -> None:
    """C-STORE every file over one association.

    Raises
    ------
    DeliveryError
        If the association is refused or any store does not succeed.
    """
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    for ds in datasets:
        pair = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
        if pair not in {(c.abstract_syntax, c.transfer_syntax[0]) for c in ae.requested_contexts}:
            ae.add_requested_context(pair[0], pair[1])
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise DeliveryError(f"association with {called_ae}@{host}:{port} was not accepted")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None or code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise DeliveryError(
                    f"{called_ae}@{host}:{port} answered C-STORE of a "
                    f"{ds.get('Modality', '?')} instance with status "
                    f"{'none' if code is None else hex(code)}"
                )
    finally:
        assoc.release()
