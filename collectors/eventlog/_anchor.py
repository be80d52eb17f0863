"""anchor_event_log: the log's head, to be kept somewhere the log's writers cannot reach.

Whoever can rewrite the log's files can cut its newest records and the writers' head marker
together. An anchor kept elsewhere (a ticket, a WORM bucket, an auditor's mailbox) names
the last record written (seq and hash) and the last digest; ``verify_event_log(...,
anchor=...)`` then checks that the log still holds that record unchanged. With a signing
key the anchor is signed too, so it cannot be forged by whoever stores it.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from ._format import ANCHOR_SCHEMA, format_ts, last_record, list_digests, list_segments, read_valid_digest
from ._signing import Signer

__all__ = ["anchor_event_log", "anchored_value"]


def anchored_value(anchor: dict[str, Any]) -> str:
    """The text an anchor's signature covers: what it attests, in a fixed order."""
    digest = anchor.get("last_digest") or {}
    return f"{anchor.get('last_seq')}:{anchor.get('last_hash')}:{digest.get('digest_hash')}:{anchor.get('anchored_at')}"


def anchor_event_log(directory: str | os.PathLike[str], signer: Signer | None = None) -> dict[str, Any]:
    """The head of the log in ``directory``: the last whole record and the newest digest."""
    segments = list_segments(Path(directory))
    seq, head = -1, None
    for segment in reversed(segments):
        with open(segment.path, "rb") as handle:
            _, record = last_record(handle, os.fstat(handle.fileno()).st_size)
        if record is not None:
            seq, head = record.seq, record.hash
            break
    digests = list_digests(Path(directory))
    newest = read_valid_digest(digests[max(digests)]) if digests else None
    anchor: dict[str, Any] = {
        "schema": ANCHOR_SCHEMA,
        "last_seq": seq,
        "last_hash": head,
        "last_digest": {"segment": newest["segment"], "last_seq": newest["last_seq"], "digest_hash": newest["digest_hash"]} if newest else None,
        "anchored_at": format_ts(dt.datetime.now(dt.UTC)),
    }
    if signer is not None:
        anchor["signature"] = signer.sign(ANCHOR_SCHEMA, anchored_value(anchor))
    return anchor
