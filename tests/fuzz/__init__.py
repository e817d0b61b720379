"""The fuzzing campaign (issue 14 §3): property-based tests of the core parsers in process
(``test_core_properties.py``) and a live-server fuzzer over real sockets (``live.py``, run
short in CI by ``test_live_fuzz.py`` and long by ``python -m tests.fuzz``; see
docs/fuzzing.md)."""
