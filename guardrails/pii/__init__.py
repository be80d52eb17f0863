"""The personal-data check on Presidio: offline, reversible, streaming-safe."""

from ._guardrail import PiiGuardrail, PiiSettings
from ._vault import SHARED_VAULT, PlaceholderVault, SharedVault, SharedVaultConfig, VaultFull

__all__ = ["SHARED_VAULT", "PiiGuardrail", "PiiSettings", "PlaceholderVault", "SharedVault", "SharedVaultConfig", "VaultFull"]
