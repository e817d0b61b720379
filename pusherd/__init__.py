"""pusherd: a self-hosted server for the Pusher Channels protocol 7 and its HTTP API.

Layers (imports point one way): ``cli`` -> ``server`` -> ``adapters`` / ``apps`` / ``config``
-> ``core`` -> ``errors``. ``core`` is pure and synchronous: no I/O, no clock, no randomness.
"""

__version__ = "0.1.0"
