"""A local mosquitto broker (Debian's `mosquitto`) for the mqtt and sparkplug_b devices of `plantstream up`.

Started when the config has such devices on a broker with `host: null`; it listens on 127.0.0.1 at
pipeline.mqtt.local_port, keeps its persistence file under the state folder (so persistent sessions
and queued QoS 1 messages survive a restart) and is stopped with the run. Tests use the same class
on a free port.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from plantstream.core.config import MqttDevice, Settings, SparkplugDevice

INSTALL_HINT = "mosquitto is not installed. Fix: apt-get install mosquitto (the Makefile does it on Debian)"


def executable() -> str:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise RuntimeError(INSTALL_HINT)
    return exe


def needed(settings: Settings) -> bool:
    """True when a configured mqtt/sparkplug_b device uses a broker with host null (the local one)."""
    brokers = settings.pipeline.mqtt.brokers
    return any(isinstance(d, MqttDevice | SparkplugDevice) and brokers[d.broker].host is None for d in settings.devices)


class Mosquitto:
    def __init__(self, folder: Path, port: int, *, persistence: bool = True, extra_conf: str = "") -> None:
        self.folder = Path(folder)
        self.port = port
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.folder / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # started as root, mosquitto would switch to user mosquitto and could not write its files here
            f"user {getpass.getuser()}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.folder}/",
            "autosave_interval 1",  # a killed broker loses at most a second of queued messages
            f"log_dest file {self.log_path}",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
        ]
        conf.write_text("\n".join(lines) + "\n" + self.extra_conf)
        self.proc = subprocess.Popen(
            [executable(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    tail = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
                    raise RuntimeError(
                        f"mosquitto did not start on 127.0.0.1:{self.port} (port taken? set pipeline.mqtt.local_port); "
                        f"log {self.log_path}:\n{tail}"
                    ) from None
                time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGKILL if kill else signal.SIGTERM)  # SIGTERM: it saves its persistence file first
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def for_settings(settings: Settings) -> Mosquitto:
    return Mosquitto(settings.state_path("mosquitto", "x").parent, settings.pipeline.mqtt.local_port)
