"""Generators register themselves on import: ``builtin`` (offline, CPU) and ``sdxl-ip-adapter``."""

from mindsight.generate.generators import (
    builtin,  # noqa: F401
    sdxl,  # noqa: F401
)
