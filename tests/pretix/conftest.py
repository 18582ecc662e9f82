"""A real pretix for the tests in this directory (`make test-pretix`).

pretix runs from its own venv (GATED_PRETIX_PYTHON, set by the make target); nothing of pretix or
Django is imported here or by gated. Without that variable these tests are skipped, so `make test`
runs without pretix. `python -m pretix migrate` takes minutes, so the migrated database is built
once per pretix version (kept beside that venv, in gated-test-db/) and copied for each session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import free_port

HERE = Path(__file__).parent
PRETIX_PYTHON = os.environ.get("GATED_PRETIX_PYTHON")


def pytest_collection_modifyitems(config, items):
    if PRETIX_PYTHON:
        return
    skip = pytest.mark.skip(reason="needs a pretix venv: run `make test-pretix` (GATED_PRETIX_PYTHON)")
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(skip)


def _config(directory: Path, port: int) -> Path:
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    path = directory / "pretix.cfg"
    path.write_text(f"""[pretix]
instance_name=gated tests
url=http://127.0.0.1:{port}
datadir={data}
[database]
backend=sqlite3
name={data / "db.sqlite3"}
[django]
secret=gated-tests-only
debug=off
[mail]
from=gated@localhost
""")
    return path


def _pretix(config: Path, *args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRETIX_CONFIG_FILE": str(config)}
    env.pop("PYTHONPATH", None)
    return subprocess.run([PRETIX_PYTHON, *args], env=env, capture_output=True, text=True, **kwargs)


def migrated_database(tmp_root: Path) -> Path:
    """The migrated empty database of this pretix version, built once (atomically) and kept."""
    version = subprocess.run(
        [PRETIX_PYTHON, "-c", "import pretix; print(pretix.__version__)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cache = Path(PRETIX_PYTHON).absolute().parents[1] / "gated-test-db" / f"pretix-{version}.sqlite3"
    if cache.exists():
        return cache
    build = tmp_root / "migrate"
    config = _config(build, 8000)
    done = _pretix(config, "-m", "pretix", "migrate", "--noinput", timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(f".{os.getpid()}.partial")
    shutil.copyfile(build / "data" / "db.sqlite3", partial)
    partial.replace(cache)
    return cache


@dataclass
class Pretix:
    """A running pretix (REST API on 127.0.0.1) with the objects tests/pretix/pretix_setup.py made."""

    url: str
    organizer: str
    event: str
    token: str
    token_file: Path
    device_token_file: Path
    items: dict
    checkin_list: int
    process: subprocess.Popen
    config: Path
    device_token_south: str = ""
    gates: dict | None = None  # pretix gate ids by name (north, south)
    variations: dict | None = None  # the Day pass's variation ids (saturday, sunday)

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1/organizers/{self.organizer}/events/{self.event}/"

    def call(self, method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(
            self.api + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def order(self, *items: str, status: str = "p", **extra) -> dict:
        """An order (paid unless `status` says "n", pending) with one position per product name; pretix
        assigns the secrets. `extra`: further fields of pretix's order creation (require_approval...)."""
        return self.call(
            "POST",
            "orders/",
            {
                "email": "visitor@example.org",
                "locale": "en",
                "sales_channel": "web",
                "status": status,
                "payment_provider": "manual",
                **extra,
                "positions": [{"item": self.items[name], "price": "10.00"} for name in items],
            },
        )

    def organizer_call(self, method: str, path: str, body: dict | None = None, *, auth: str | None = None):
        """A call below /api/v1/organizers/<organizer>/ (check-in RPC, gates), with `auth` or the team token;
        pretix's error answers (HTTP 400) come back as their JSON too."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/organizers/{self.organizer}/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": auth or f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code != 400:
                raise
            return json.loads(exc.read() or b"null")

    def run_periodic(self) -> None:
        """pretix's periodic tasks (the automatic check-out of `exit_all_at` among them)."""
        done = _pretix(self.config, "-m", "pretix", "runperiodic", timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def checkins(self, position_id: int) -> list[dict]:
        return self.call("GET", f"orderpositions/{position_id}/")["checkins"]

    def shop_args(self, *, device: bool = False) -> list[str]:
        """The options naming the shop: team token authentication, or with `device` the device's. The
        test shop speaks plain http on 127.0.0.1: --insecure-http says so (a real shop is https://)."""
        auth = (
            ["--device-token-file", str(self.device_token_file)] if device else ["--token-file", str(self.token_file)]
        )
        return ["--url", self.url, "--organizer", self.organizer, "--event", self.event, *auth, "--insecure-http"]


@pytest.fixture(scope="session")
def pretix(tmp_path_factory) -> Pretix:
    root = tmp_path_factory.mktemp("pretix")
    template = migrated_database(root)
    port = free_port()
    config = _config(root / "instance", port)
    shutil.copyfile(template, root / "instance" / "data" / "db.sqlite3")
    made = _pretix(config, str(HERE / "pretix_setup.py"), str(root / "setup.json"), timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    setup = json.loads((root / "setup.json").read_text())
    (root / "token").write_text(setup["token"])
    (root / "device-token").write_text(setup["device_token"])
    env = {**os.environ, "PRETIX_CONFIG_FILE": str(config)}
    env.pop("PYTHONPATH", None)
    log = open(root / "server.log", "w")
    process = subprocess.Popen(
        [PRETIX_PYTHON, "-m", "pretix", "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    shop = Pretix(
        url=f"http://127.0.0.1:{port}",
        organizer=setup["organizer"],
        event=setup["event"],
        token=setup["token"],
        token_file=root / "token",
        device_token_file=root / "device-token",
        items=setup["items"],
        checkin_list=setup["checkin_list"],
        process=process,
        config=config,
        device_token_south=setup["device_token_south"],
        gates=setup["gates"],
        variations=setup["variations"],
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            shop.call("GET", "")
            break
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"pretix did not start: {(root / 'server.log').read_text()[-3000:]}") from None
            time.sleep(0.5)
    yield shop
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
