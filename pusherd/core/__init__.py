"""The pure protocol core: parsing, encoding, signatures, channel state, per-connection rules.

Nothing here performs I/O, reads the clock or the environment, or draws random numbers:
time and randomness are passed in. ``tests/pusherd/test_core_purity.py`` enforces the
import rule.
"""
