"""``python -m tests.fuzz``: the live-server fuzzing campaign (see docs/fuzzing.md).

Starts pusherd from this checkout on 127.0.0.1 (port 0), sends the generated client
frames, malformed framing and HTTP requests, prints a summary and every problem with its
input, and exits 0 only if every answer was protocol-correct, the observer received every
trigger, the server stayed up and its log shows no unhandled exception.
"""

from __future__ import annotations

import argparse
import sys

from tests.fuzz.live import Options, run_fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split(
        "\n\n")[0])
    defaults = Options()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--frames", type=int, default=100_000,
                        help="client messages on open WebSocket connections")
    parser.add_argument("--framing", type=int, default=None,
                        help="connections with malformed framing (default frames / 20)")
    parser.add_argument("--http", type=int, default=10_000, help="HTTP requests")
    parser.add_argument("--fallback", type=int, default=5_000,
                        help="requests to the HTTP fallback transports")
    parser.add_argument("--frame-workers", type=int, default=defaults.frame_workers)
    parser.add_argument("--http-workers", type=int, default=defaults.http_workers)
    args = parser.parse_args(argv)
    options = Options(seed=args.seed, frames=args.frames, framing=args.framing, http=args.http,
                      fallback=args.fallback,
                      frame_workers=args.frame_workers, http_workers=args.http_workers)
    print(f"fuzzing with seed {options.seed}: {options.frames} frames, {options.http} HTTP "
          f"requests, {options.fallback} fallback requests", flush=True)
    report = run_fuzz(options)
    print(report.summary())
    print("OK" if report.ok else "FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
