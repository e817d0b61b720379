"""Ask a running conformance test to stop or start its pusherd: ``pusherd_ctl.py SOCKET stop``.

The test owns the pusherd process (so its output is collected and it is always cleaned up);
this client is what the suite's ``--stop-command`` / ``--start-command`` run.
"""

from __future__ import annotations

import socket
import sys


def main() -> int:
    path, command = sys.argv[1], sys.argv[2]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(90)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        reply = sock.makefile().readline().strip()
    print(f"pusherd {command}: {reply}")
    return 0 if reply == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
