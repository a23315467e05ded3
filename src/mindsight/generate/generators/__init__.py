"""Generators register themselves on import: ``builtin`` and ``builtin-var`` (offline, CPU) and
``sdxl-ip-adapter``."""

from mindsight.generate.generators import (
    builtin,  # noqa: F401
    builtin_var,  # noqa: F401
    sdxl,  # noqa: F401
)
