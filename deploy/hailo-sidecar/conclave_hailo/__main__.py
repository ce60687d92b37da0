"""`python3 -m conclave_hailo --socket PATH`: the sidecar's command line.

Exit codes: 0 after SIGTERM/SIGINT, 2 for bad arguments, a missing dependency or a socket path
it cannot take (restarting does not fix those).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import List, Optional

from .log import LEVELS, Logger

EXIT_CONFIG = 2


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="conclave-hailo-sidecar", description="Serves HailoRT to the Conclave node agent.")
    parser.add_argument("--socket", required=True, help="unix socket path to create (mode 0600)")
    parser.add_argument("--default-timeout-ms", type=_positive, default=5000,
                        help="inference timeout when a request gives none (default 5000)")
    parser.add_argument("--max-frame-bytes", type=_positive, default=64 * 1024 * 1024,
                        help="largest request frame; a larger one closes that connection (default 67108864)")
    parser.add_argument("--log-level", choices=LEVELS, default="info", help="default info")
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="exit when stdin reaches EOF: the agent that runs the sidecar holds its other end, "
                             "so the sidecar never outlives it, kill -9 included (not under systemd: stdin is /dev/null)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    log = Logger(args.log_level)
    try:
        import numpy  # noqa: F401
    except ImportError:
        log.log("STATE", "error", "numpy is missing; install it: sudo apt-get install python3-numpy")
        return EXIT_CONFIG
    try:
        from . import server
    except ImportError as err:
        log.log("STATE", "error", "hailo_platform is missing; install HailoRT: sudo apt install hailo-all", error=str(err))
        return EXIT_CONFIG

    options = server.ServerOptions(args.socket, args.default_timeout_ms, args.max_frame_bytes)
    sidecar = server.Server(options, log)
    info = sidecar.try_open_device()
    try:
        sidecar.bind()
    except OSError as err:
        log.log("STATE", "error", "cannot listen on the socket", socket=args.socket, error=str(err))
        return EXIT_CONFIG

    def stop(signum: int, _frame: object) -> None:
        sidecar.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_with_stdin:
        threading.Thread(target=_stop_at_stdin_eof, args=(sidecar, log), name="stdin-watch", daemon=True).start()
    log.log("HEALTH", "info", "hailo sidecar listening", socket=args.socket, arch=info.arch if info else "unknown",
            hailort=info.hailort_version if info else None, board=info.board_name if info else None)
    # The agent waits for this exact line on stdout; logs go to stderr.
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    sidecar.serve()
    return 0


def _stop_at_stdin_eof(sidecar, log: Logger) -> None:
    # The agent never writes: EOF (or an error) means it is gone.
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    log.log("STATE", "info", "agent gone (stdin closed); stopping")
    sidecar.request_stop()


if __name__ == "__main__":
    sys.exit(main())
