"""The installed aimsguard version (looked up at the bottom layer, where the report needs it too)."""

from aimsguard.collectors._version import __version__

__all__ = ["__version__"]
