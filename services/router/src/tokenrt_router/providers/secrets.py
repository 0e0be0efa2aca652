"""Provider API keys: the shared loader (tokenrt_common.secrets), re-exported under the
router's historical module name."""

from __future__ import annotations

from tokenrt_common.secrets import MASK, Secret, load_key

__all__ = ["MASK", "Secret", "load_key"]
