"""TFTP for the iPXE binaries that firmware PXE chainloads (read-only, one directory)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class TftpServer:
    """Serves files of ``root`` (Debian's /usr/lib/ipxe by default) over TFTP, read-only."""

    def __init__(self, root: str | Path, host: str, port: int) -> None:
        import tftpy

        # tftpy logs every packet at INFO.
        logging.getLogger("tftpy").setLevel(logging.WARNING)
        self.root = Path(root)
        self.host, self.port = host, port
        self._server = tftpy.TftpServer(str(self.root))
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening in a background thread. Raises ``OSError`` if the port is taken."""
        if not self.root.is_dir():
            raise OSError(f"TFTP root {self.root} does not exist (install Debian's 'ipxe')")
        # tftpy checks for stop() only between select() calls: a short select
        # timeout makes stopping quick (it is also the per-packet resend timeout).
        self._thread = threading.Thread(
            target=self._server.listen, args=(self.host, self.port),
            kwargs={"timeout": 1}, name="tftp", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.stop(now=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
