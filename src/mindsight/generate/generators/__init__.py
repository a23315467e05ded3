"""Generators register themselves on import: ``builtin`` and ``builtin-var`` (offline, CPU),
``sdxl-ip-adapter`` and ``var-d16``."""

from mindsight.generate.generators import (
    builtin,  # noqa: F401
    builtin_var,  # noqa: F401
    sdxl,  # noqa: F401
    var_d16,  # noqa: F401
)
