"""The I/O shell: one asyncio protocol per TCP connection serves HTTP and WebSocket."""
