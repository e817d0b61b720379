"""Black-box Pusher Channels protocol 7 conformance suite (see README.md)."""
