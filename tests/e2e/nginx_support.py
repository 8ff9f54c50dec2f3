"""A real nginx (Debian's, see scripts/install-services.sh) started by the tests on a free loopback
port, with ``examples/nginx/litellm-edge-cache.conf`` in front of a proxy.

The example is used as documented: only its three site-specific values (cache directory, upstream
address, listen address) are replaced. The main nginx.conf around it keeps the pid file, temp paths
and logs inside a temporary directory, runs in the foreground (``daemon off``), and works as root
or not.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tools.runner import free_port, stop_process_group

TEMPLATE = Path(__file__).resolve().parents[2] / "examples" / "nginx" / "litellm-edge-cache.conf"
_SITE_VALUES = {
    "cache": "/var/cache/nginx/litellm",
    "upstream": "server 127.0.0.1:4000;",
    "listen": "listen 127.0.0.1:8080;",
}


def nginx_binary() -> str:
    """The nginx binary; skips (fails in CI) when it is not installed."""
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.access(path, os.X_OK)), None
    )
    if found is None:
        reason = "nginx is not installed (scripts/install-services.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def render_site(template: str, *, cache_dir: Path, upstream_port: int, listen_port: int) -> str:
    """The example with this test's cache directory, upstream and listen port."""
    for value in _SITE_VALUES.values():
        assert template.count(value) == 1, f"the example no longer contains {value!r}"
    return (
        template.replace(_SITE_VALUES["cache"], str(cache_dir))
        .replace(_SITE_VALUES["upstream"], f"server 127.0.0.1:{upstream_port};")
        .replace(_SITE_VALUES["listen"], f"listen 127.0.0.1:{listen_port};")
    )


def main_config(prefix: Path, site: Path) -> str:
    # nginx started as root switches its workers to `nobody`, which cannot enter pytest's 0700 dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""daemon off;
worker_processes 1;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    include {site};
}}
"""


class NginxProcess:
    """nginx with the example edge-cache config in front of ``upstream_port``."""

    def __init__(self, prefix: Path, upstream_port: int) -> None:
        self.binary = nginx_binary()
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "cache").mkdir(exist_ok=True)
        site = prefix / "litellm-edge-cache.conf"
        site.write_text(
            render_site(
                TEMPLATE.read_text(encoding="utf-8"),
                cache_dir=prefix / "cache",
                upstream_port=upstream_port,
                listen_port=self.port,
            ),
            encoding="utf-8",
        )
        self.config = prefix / "nginx.conf"
        self.config.write_text(main_config(prefix, site), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def _argv(self, *extra: str) -> list[str]:
        return [
            self.binary,
            "-e",
            str(self.prefix / "error.log"),
            "-p",
            str(self.prefix),
            "-c",
            str(self.config),
            *extra,
        ]

    def start(self, timeout: float = 15.0) -> NginxProcess:
        check = subprocess.run(self._argv("-t"), capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
        log = (self.prefix / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            self._argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}:\n{self.error_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"nginx not listening after {timeout}s:\n{self.error_log()}")

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(encoding="utf-8", errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        stop_process_group(self.process, timeout=10)
