"""The package as users get it: a wheel built from the repository, installed into a clean venv.

Steps (README, "Installing"): ``python -m build`` (sdist, then the wheel from the sdist), ``twine check``,
``python -m venv``, ``pip install -c constraints.txt "<wheel>[proxy]"``, then ``litellm --config`` with
``examples/config.yaml`` pointed at the Ollama simulator started from that venv. The request must be a
MISS and then a HIT, and ``litellm_cache_plugin`` must resolve inside the venv, never to this checkout.

Speed (the shared 2-core machine runs at load 2-8, so wall times vary 2-3x; CPU seconds are steadier):
a plain ``pip install`` from the package index took 6 min here: the index proxy sends no cache headers,
so pip's HTTP cache stays empty and every run downloads ~175 MB again. So the wheels that install
resolves to are downloaded once (``pip download``, same requirement and constraints, ~1.5 min) into a
wheelhouse outside the checkout (``~/.cache/litellm-cache-plugin/wheelhouse``, env ``LCP_WHEELHOUSE``),
and every run does the real install from it offline, into a venv created without pip, by this
repository's pip (``pip --python``; Python 3.11's bundled pip 23.2 needs 48 s where pip 26 needs 17 s).
With ``--no-compile``: 15 s CPU (17 s wall), and the proxy's first start compiles what it imports in
memory (41 s CPU instead of 23 s). Byte-compiling everything at install costs 59 s CPU (63 s wall):
26 s CPU more in total, so it is off. Whole module with a warm wheelhouse: 2 min 40 s at load 3 (build
18 s, install 45 s, proxy start 76 s), 3 min 17 s at load 5 (34 s, 52 s, 82 s); a first run adds the
download.
Not chosen: a persistent venv with the dependencies pre-installed plus ``pip install --no-deps`` (faster,
but not a clean venv, shared by concurrent runs, and it would no longer test that the wheel's own
metadata pulls in what the proxy needs), and ``--system-site-packages`` (it would see the development
install).
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tools.runner import ProxyProcess, free_port, running, stop_process_group

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "litellm_cache_plugin"
# Environment of every process started from the new venv: nothing from this checkout or the user's site.
CLEAN_ENV = {"PYTHONPATH": "", "PYTHONNOUSERSITE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

# Run by the venv's interpreter: where the package comes from, and how it was installed.
IMPORT_PROBE = """
import importlib.metadata, json, sys, sysconfig
import litellm_cache_plugin
dist = importlib.metadata.distribution("litellm-cache-plugin")
print(json.dumps({
    "file": litellm_cache_plugin.__file__,
    "version": litellm_cache_plugin.__version__,
    "metadata_version": dist.version,
    "direct_url": dist.read_text("direct_url.json"),
    "purelib": sysconfig.get_path("purelib"),
    "sys_path": sys.path,
    "prefix": sys.prefix,
}))
"""


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path
    seconds: float


@dataclass(frozen=True)
class Venv:
    root: Path
    seconds: float

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name


def _expected_version() -> str:
    """``__version__`` as written in the source (the single source of the version)."""
    tree = ast.parse((REPO / PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError("no __version__ in __init__.py")


def _run(command: list[str], *, timeout: float, cwd: Path | None = None, **kwargs: Any) -> str:
    result: subprocess.CompletedProcess[str] = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    assert result.returncode == 0, (
        f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """``python -m build``: the sdist, then the wheel built from that sdist (as a user would)."""
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out, timeout=600)
    seconds = time.monotonic() - started
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    print(f"\nbuild (sdist + wheel): {seconds:.1f} s")
    return Dists(wheel, sdist, seconds)


def _wheelhouse() -> Path:
    configured = os.environ.get("LCP_WHEELHOUSE")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "litellm-cache-plugin" / "wheelhouse"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer at a time (two test runs may fill the wheelhouse at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pip(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new venv in a temporary directory with ``<wheel>[proxy]`` installed under ``constraints.txt``."""
    root = tmp_path_factory.mktemp("clean") / "venv"
    requirement = f"{dists.wheel}[proxy]"
    constraints = str(REPO / "constraints.txt")
    wheelhouse = _wheelhouse()
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], timeout=120)
    python = str(root / "bin" / "python")
    install = ["--python", python, "install", "--no-compile", "--no-index", "--find-links", str(wheelhouse)]
    install += ["-c", constraints, requirement]
    result = _pip(*install, timeout=600)
    if result.returncode != 0:
        # Cold wheelhouse (or constraints.txt changed): fetch what this install resolves to, then retry.
        with _locked(wheelhouse):
            download = _pip(
                "download", "--dest", str(wheelhouse), "-c", constraints, requirement, timeout=900
            )
            assert download.returncode == 0, f"pip download failed:\n{download.stdout}\n{download.stderr}"
            for own in wheelhouse.glob(f"{PACKAGE}-*"):
                own.unlink()  # always install the wheel just built, never an older copy
        result = _pip(*install, timeout=600)
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    seconds = time.monotonic() - started
    print(f"\nvenv + pip install {requirement.rsplit('/', 1)[-1]}: {seconds:.1f} s")
    return Venv(root, seconds)


def test_distributions_are_complete_and_pass_twine_check(dists: Dists) -> None:
    version = _expected_version()
    assert dists.wheel.name == f"{PACKAGE}-{version}-py3-none-any.whl"
    assert dists.sdist.name == f"{PACKAGE}-{version}.tar.gz"
    _run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.wheel), str(dists.sdist)], timeout=120
    )

    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"{PACKAGE}-{version}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"{PACKAGE}-{version}.dist-info/entry_points.txt").decode()
    # Every file of the package in the source tree (code, py.typed, any data file) is in the wheel...
    source = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}
    }
    missing = source - names
    assert not missing, f"not in the wheel: {sorted(missing)}"
    assert f"{PACKAGE}/py.typed" in names
    # ... and nothing else: no tests, no top-level modules beside the package.
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {PACKAGE, f"{PACKAGE}-{version}.dist-info"}, tops
    assert f"{PACKAGE}-{version}.dist-info/licenses/LICENSE" in names
    # SPDX licence expression (metadata 2.4), not the deprecated free-text License field.
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert f"Version: {version}" in headers
    assert "License-Expression: Apache-2.0" in headers
    assert not any(line.startswith("License:") for line in headers)
    assert "litellm-cache = litellm_cache_plugin.cli:main" in entry_points

    with tarfile.open(dists.sdist) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for required in ("LICENSE", "README.md", "CHANGELOG.md", "constraints.txt", "pyproject.toml"):
        assert required in members, required
    assert "examples/config.yaml" in members
    assert not any(name.startswith("tests/") for name in members)

    # The README's install instructions name this wheel and the install the `venv` fixture performs.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f'pip install -c constraints.txt "dist/{dists.wheel.name}[proxy]"' in readme


def _example_config(ollama_url: str) -> dict[str, Any]:
    """``examples/config.yaml`` as shipped, with every deployment pointed at the simulator."""
    config: dict[str, Any] = yaml.safe_load((REPO / "examples" / "config.yaml").read_text(encoding="utf-8"))
    for deployment in config["model_list"]:
        deployment["litellm_params"]["api_base"] = ollama_url
    return config


@contextlib.contextmanager
def _simulator(venv: Venv, workdir: Path) -> Iterator[str]:
    """``python -m litellm_cache_plugin.simulator`` from the venv, serving the example config's models."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "simulator.log").open("wb")
    command = [str(venv.python), "-m", f"{PACKAGE}.simulator", "--port", str(port)]
    command += ["--model", "llama3.2", "--model", "nomic-embed-text", "--latency-ms", "50"]
    process = subprocess.Popen(
        command,
        cwd=workdir,  # `-m` puts the working directory first on sys.path: never the checkout
        env={**os.environ, **CLEAN_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (workdir / "simulator.log").read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/tags", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.2)
        yield url
    finally:
        stop_process_group(process, timeout=10)


def test_wheel_in_clean_venv_runs_the_example_proxy_config(venv: Venv, tmp_path: Path) -> None:
    # The package resolves inside the venv's site-packages, installed from the wheel, not from here.
    probe = json.loads(
        _run(
            [str(venv.python), "-c", IMPORT_PROBE], cwd=tmp_path, env={**os.environ, **CLEAN_ENV}, timeout=120
        )
    )
    purelib = Path(probe["purelib"]).resolve()
    assert Path(probe["prefix"]).resolve() == venv.root.resolve()
    assert Path(probe["file"]).resolve() == purelib / PACKAGE / "__init__.py"
    assert not any(Path(entry or ".").resolve().is_relative_to(REPO) for entry in probe["sys_path"][1:])
    assert probe["version"] == probe["metadata_version"] == _expected_version()
    direct_url = json.loads(probe["direct_url"])
    assert direct_url["url"].endswith(".whl") and "editable" not in json.dumps(direct_url)
    # The console script works (its imports, httpx included, are installed).
    assert "stats" in _run([str(venv.bin("litellm-cache")), "--help"], cwd=tmp_path, timeout=120)

    with _simulator(venv, tmp_path) as ollama_url:
        proxy = ProxyProcess(
            _example_config(ollama_url),
            tmp_path / "proxy",
            litellm_cli=venv.bin("litellm"),
            env=CLEAN_ENV,
            name="wheel-proxy",
        )
        started = time.monotonic()
        with running([proxy], timeout=240), httpx.Client(base_url=proxy.url, timeout=60) as http:
            print(f"\nproxy ready in {time.monotonic() - started:.1f} s")
            admin = {"Authorization": f"Bearer {proxy.master_key}"}
            body = {
                "model": "llama3.2",
                "messages": [{"role": "user", "content": f"Name a prime number. [{uuid.uuid4().hex[:10]}]"}],
                "temperature": 0,
            }
            miss = http.post("/v1/chat/completions", json=body, headers=admin)
            assert miss.status_code == 200, miss.text
            assert miss.headers.get("x-cache") == "MISS"

            def stored() -> int:
                stats = http.get("/v1/cache/stats", headers=admin)
                stats.raise_for_status()
                return int(stats.json()["layers"].get("exact", {}).get("llama3.2", {}).get("store", 0))

            deadline = time.monotonic() + 10
            while stored() < 1:  # misses are written in a background task
                assert time.monotonic() < deadline, "the answer was not stored"
                time.sleep(0.05)

            hit = http.post("/v1/chat/completions", json=body, headers=admin)
            assert hit.status_code == 200, hit.text
            assert hit.headers.get("x-cache") == "HIT"
            assert hit.headers.get("x-cache-layer") == "exact"
            assert hit.json()["cached"] is True
            answer = miss.json()["choices"][0]["message"]["content"]
            assert answer and hit.json()["choices"][0]["message"]["content"] == answer

            # The example config turns on the Prometheus endpoint: the [proxy] extra brought the exporter.
            metrics = http.get("/v1/cache/metrics")
            assert metrics.status_code == 200, metrics.text
            assert "llm_cache" in metrics.text
