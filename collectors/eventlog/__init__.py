"""The tamper-evident event log: hash-chained segment files with chained digests.

``SegmentEventLog`` writes (an event exporter), ``read_events`` reads the events back
in order, ``verify_event_log`` checks the chain and names what was changed, removed,
reordered, truncated or deleted, and checks the digests' signatures (``_signing``) and an
anchor kept elsewhere (``anchor_event_log``). The file format is described in ``_format``.
"""

from ._anchor import anchor_event_log
from ._format import GENESIS, Segment, list_segments
from ._read import read_events
from ._signing import SIGNING_KEY_ENV, Signer, SigningKeyError, generate_key_pair, load_public_key, load_signer
from ._verify import Problem, VerificationReport, verify_event_log
from ._writer import DEFAULT_MAX_SEGMENT_BYTES, SegmentEventLog

__all__ = [
    "DEFAULT_MAX_SEGMENT_BYTES",
    "GENESIS",
    "Problem",
    "SIGNING_KEY_ENV",
    "Segment",
    "SegmentEventLog",
    "Signer",
    "SigningKeyError",
    "VerificationReport",
    "anchor_event_log",
    "generate_key_pair",
    "list_segments",
    "load_public_key",
    "load_signer",
    "read_events",
    "verify_event_log",
]
