"""The simulator's own Mosquitto: loopback only, a free port, persistence in the run's work dir,
so that stopping it (a broker outage) and starting it again keeps retained messages and the
queued messages of persistent sessions, as a production broker with persistence would."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from gated.atomicfile import write_atomic
from gated.core.errors import GatedError

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class BrokerError(GatedError, RuntimeError):
    """Mosquitto would not start; the message holds the end of its log."""


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, and not one this process handed out before (two
    brokers made one after the other were once given the same one, and the second's start took
    the first's listener for its own)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _listens(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds a socket listening on 127.0.0.1:`port` (Linux's /proc); None
    where that cannot be told (no /proc): the caller trusts a connection then."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    wanted = f"0100007F:{port:04X}"
    rows = [line.split() for line in table]  # local address, ..., state (0A: LISTEN), ..., inode
    inodes = {row[9] for row in rows if row[1] == wanted and row[3] == "0A"}
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


class Mosquitto:
    def __init__(self, directory: Path, port: int | None = None, extra_config: str = ""):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.config = self.directory / "mosquitto.conf"
        self.log = self.directory / "mosquitto.log"
        write_atomic(
            self.config,
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.directory}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            # as root, mosquitto drops to user `mosquitto`, which cannot write our directory: persistence
            # would fail silently and a restart (the broker_down fault) would lose every queued session
            + (f"user {pwd.getpwuid(os.geteuid()).pw_name}\n" if os.geteuid() == 0 else "")
            + "log_dest stderr\n"
            "log_type error\nlog_type warning\n" + extra_config,
        )
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "Mosquitto":
        if not Path(MOSQUITTO).exists():
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto), or pass --broker URL")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            # Its own listener: another process (a broker of another test) may hold the port, and
            # this one is then on its way out with "Address already in use"
            ours = _listens(self.process.pid, self.port)
            if ours:
                return self
            if ours is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port}: {self.log.read_text()[-2000:]}")

    def stop(self, kill: bool = False) -> None:
        """SIGTERM: Mosquitto saves its persistence file on the way out (kill=True: SIGKILL, it does not)."""
        if self.running:
            (self.process.kill if kill else self.process.terminate)()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
