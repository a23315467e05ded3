"""Real-time decoding on Lab Streaming Layer: ``mindsight stream`` and ``mindsight replay``.

The run's offline pipeline applied online (:mod:`~mindsight.stream.pipeline`), live samples and
markers through mne-lsl (:mod:`~mindsight.stream.source`), anytime decoding at growing windows
(:mod:`~mindsight.stream.decoder`), outputs to JSON lines, an LSL outlet and live views
(:mod:`~mindsight.stream.sinks`, :mod:`~mindsight.stream.web`, :mod:`~mindsight.stream.terminal`),
one session tying them together (:mod:`~mindsight.stream.session`), and a recording replayed as
a live stream (:mod:`~mindsight.stream.replay`).
"""
