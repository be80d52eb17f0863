"""The personal-data check on Presidio: offline, reversible, streaming-safe."""

from ._guardrail import PiiGuardrail, PiiSettings
from ._vault import PlaceholderVault, VaultFull

__all__ = ["PiiGuardrail", "PiiSettings", "PlaceholderVault", "VaultFull"]
