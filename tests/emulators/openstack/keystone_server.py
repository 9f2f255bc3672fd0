"""Runs the real OpenStack Keystone (PyPI ``keystone``) on 127.0.0.1, for tests.

This file is executed by a Python that has ``keystone`` installed (it need not be
talprov's own virtualenv): ``python keystone_server.py WORKDIR`` with the admin password on stdin.
It writes a keystone.conf (SQLite, fernet tokens, cheap bcrypt rounds), runs
``keystone-manage db_sync``, ``fernet_setup``, ``credential_setup`` and
``bootstrap``, then serves Keystone's WSGI application with wsgiref on an
ephemeral port and prints ``READY <url>`` on stdout.

It only imports Keystone and the standard library: no talprov code.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on stderr."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(workdir: str, admin_password: str) -> None:
    root = Path(workdir)
    for sub in ("fernet-keys", "credential-keys", "receipt-keys"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    conf = root / "keystone.conf"
    conf.write_text(
        "[DEFAULT]\n"
        "use_stderr = false\n"
        f"log_file = {root / 'keystone.log'}\n"
        "[database]\n"
        f"connection = sqlite:///{root / 'keystone.db'}\n"
        "[token]\n"
        "provider = fernet\n"
        "[fernet_tokens]\n"
        f"key_repository = {root / 'fernet-keys'}\n"
        "[fernet_receipts]\n"
        f"key_repository = {root / 'receipt-keys'}\n"
        "[credential]\n"
        f"key_repository = {root / 'credential-keys'}\n"
        "[identity]\n"
        # bcrypt's floor: tests authenticate often and protect nothing.
        "password_hash_rounds = 4\n"
    )
    manage = [str(Path(sys.executable).with_name("keystone-manage")), "--config-file", str(conf)]
    user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    subprocess.run([*manage, "db_sync"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*manage, "fernet_setup", *user], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*manage, "credential_setup", *user], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [*manage, "bootstrap", "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
         "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
         "--bootstrap-region-id", "RegionOne", "--bootstrap-public-url", f"{url}/v3"],
        # The password goes through the environment, not the command line.
        env={**os.environ, "OS_BOOTSTRAP_PASSWORD": admin_password}, stdout=subprocess.DEVNULL,
        check=True,
    )
    os.environ["OS_KEYSTONE_CONFIG_FILES"] = str(conf)
    # oslo.config would otherwise parse this script's own arguments.
    sys.argv = sys.argv[:1]
    # Imported by name: Keystone lives in this interpreter only, not in talprov's.
    wsgi = importlib.import_module("keystone.server.wsgi")
    app = wsgi.initialize_public_application()
    server = make_server("127.0.0.1", port, app, handler_class=_QuietHandler)
    print(f"READY {url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], sys.stdin.readline().strip())
