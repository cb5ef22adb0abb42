"""Test helpers around a real Mosquitto on loopback: the broker, a TCP proxy that can cut the link, a recorder.

- Broker: a mosquitto process from a generated config (allow_anonymous true unless a password file is given),
  with persistence in a folder the `mosquitto` user can write (as root, Debian's mosquitto drops to that user
  and silently fails to save into a 0700 folder); SIGKILL and restart on the same port.
- TcpProxy: passes bytes, resets every connection (the client notices at once), or blackholes them (bytes
  vanish both ways and nobody is told: the client notices only through its keepalive).
- Recorder: a subscriber with a persistent session that keeps every message it receives.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """One mosquitto on 127.0.0.1:port (plain) and, with tls_files, 127.0.0.1:tls_port (TLS).
    `extra_conf` lines are global options (acl_file, password_file, ...). max_packet_size: Mosquitto drops a
    client that sends a bigger packet (and tells MQTT 5 clients the limit in CONNACK); message_size_limit:
    MQTT 5 clients get a PUBACK paho calls malformed, 3.1.1 clients a success PUBACK for a dropped message."""

    def __init__(self, extra_conf: str = "", anonymous: bool = True, tls_files: Optional[dict] = None,
                 max_packet_size: Optional[int] = None, message_size_limit: Optional[int] = None):
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto is not installed (Debian package mosquitto)")
        self.dir = Path(tempfile.mkdtemp(prefix="mosq-"))
        # Readable by the `mosquitto` user that a root-started broker becomes; data folder writable by it.
        os.chmod(self.dir, 0o755)
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir(mode=0o777)
        os.chmod(self.data_dir, 0o777)
        self.port = free_port()
        self.conf_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        # log to stderr: unbuffered, so the log is complete even after a SIGKILL
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
        ]
        if max_packet_size is not None:
            lines.append(f"max_packet_size {max_packet_size}")
        if message_size_limit is not None:
            lines.append(f"message_size_limit {message_size_limit}")
        lines += [line for line in extra_conf.splitlines() if line.strip()]
        self.tls_port: Optional[int] = None
        if tls_files:   # a second listener with TLS; the plain one stays for the test's recorder
            self.tls_port = free_port()
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls_files['ca']}",
                      f"certfile {tls_files['server_cert']}", f"keyfile {tls_files['server_key']}"]
            if tls_files.get("require_certificate"):
                lines.append("require_certificate true")
        self.conf_path.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf_path, 0o644)
        self.proc: Optional[subprocess.Popen] = None

    def file(self, name: str, text: str) -> str:
        """Writes a file the broker can read (password file, ACL file) and returns its path."""
        path = self.dir / name
        path.write_text(text)
        os.chmod(path, 0o644)
        return str(path)

    def start(self, timeout_s: float = 10.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf_path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if not wait_until(lambda: _port_open(self.port) or self.proc.poll() is not None, timeout_s):
            raise RuntimeError(f"mosquitto did not open port {self.port}:\n{self.log()}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def kill9(self) -> None:
        """SIGKILL: everything since the last autosave is lost, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- certificates for TLS tests

def make_certs() -> dict:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, with openssl (EC keys: fast),
    in a new folder under /tmp that the broker's `mosquitto` user can read (pytest's tmp_path is 0700).
    The caller removes result["dir"]."""
    d = Path(tempfile.mkdtemp(prefix="mosq-certs-"))
    os.chmod(d, 0o755)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt")
    for name, cn, ext in (("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                          ("client", "ocr-client", "extendedKeyUsage=clientAuth")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    for f in d.iterdir():
        os.chmod(f, 0o644)   # the broker reads its key after dropping to the mosquitto user
    return {"dir": str(d), "ca": str(d / "ca.crt"),
            "server_cert": str(d / "server.crt"), "server_key": str(d / "server.key"),
            "client_cert": str(d / "client.crt"), "client_key": str(d / "client.key")}


# ---------------------------------------------------------------- a proxy that can cut the link

class _Link:
    def __init__(self, client: socket.socket, upstream: Optional[socket.socket], blackholed: bool):
        self.client = client
        self.upstream = upstream
        self.blackholed = blackholed
        self.closed = False
        self.pending = b""   # the start of a packet from the client not yet whole


def _packet_size(buf: bytes) -> Optional[int]:
    """Bytes of the MQTT packet at the start of buf, or None while its fixed header is incomplete."""
    length, multiplier = 0, 1
    for i in range(1, min(len(buf), 5)):
        length += (buf[i] & 0x7F) * multiplier
        if not buf[i] & 0x80:
            return 1 + i + length
        multiplier *= 128
    return None


class TcpProxy:
    """127.0.0.1:port -> 127.0.0.1:target_port, one thread per connection."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._blackhole = False
        self._closing = False
        self.accepted = 0
        self._refuse_marker: Optional[bytes] = None
        self._refuse_reason = 0x87
        self.refused = 0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def reset(self) -> int:
        """Resets every live connection (RST to the client); returns how many."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            self._close(link, rst=True)
        return len(links)

    def blackhole(self) -> None:
        """From now on bytes vanish both ways, on live and new connections alike; nobody is told."""
        with self._lock:
            self._blackhole = True
            for link in self._links:
                link.blackholed = True

    def restore(self) -> None:
        """New connections pass again; the blackholed ones stay dead until their client gives up on them."""
        with self._lock:
            self._blackhole = False

    def refuse_once(self, marker: bytes, reason: int = 0x87) -> None:
        """The next MQTT 5 QoS 1 PUBLISH whose bytes contain marker is not passed on: the proxy answers it
        with a PUBACK carrying `reason` (0x87 Not authorized), as a broker refusing that one message would.
        Call it before the client connects: packets are framed from the start of each connection."""
        with self._lock:
            self._refuse_marker, self._refuse_reason = marker, reason

    def _from_client(self, link: "_Link", data: bytes) -> tuple[bytes, bytes]:
        """(bytes for the broker, bytes for the client): whole packets only, so a PUBLISH can be taken out."""
        if self._refuse_marker is None and not link.pending:
            return data, b""
        buf = link.pending + data
        up, back = bytearray(), bytearray()
        while True:
            size = _packet_size(buf)
            if size is None or size > len(buf):
                break
            packet, buf = buf[:size], buf[size:]
            with self._lock:
                marker = self._refuse_marker
                hit = marker is not None and packet[0] >> 4 == 3 and (packet[0] >> 1) & 3 == 1 and marker in packet
                if hit:
                    self._refuse_marker = None
                    self.refused += 1
            if hit:
                offset = 1   # past the fixed header's remaining-length bytes
                while packet[offset] & 0x80:
                    offset += 1
                offset += 1
                topic_len = struct.unpack(">H", packet[offset:offset + 2])[0]
                mid = packet[offset + 2 + topic_len:offset + 4 + topic_len]
                back += bytes([0x40, 0x04]) + mid + bytes([self._refuse_reason, 0x00])   # + empty properties
            else:
                up += packet
        link.pending = bytes(buf)
        return bytes(up), bytes(back)

    def close(self) -> None:
        self._closing = True
        self._server.close()
        self.reset()

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                blackholed = self._blackhole
            upstream = None
            if not blackholed:
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                except OSError:   # broker down: refuse like it would
                    self._rst(client)
                    continue
            link = _Link(client, upstream, blackholed)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link,), daemon=True).start()

    def _pump(self, link: _Link) -> None:
        while not link.closed:
            socks = [s for s in (link.client, link.upstream) if s is not None]
            try:
                readable, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):
                break
            for s in readable:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    if link.blackholed and s is link.upstream:
                        # the broker gave up on a blackholed link: the client must not hear of it
                        link.upstream.close()
                        link.upstream = None
                        continue
                    self._close(link, rst=False)
                    return
                if link.blackholed:
                    continue
                if s is link.client:
                    data, answer = self._from_client(link, data)
                    if answer:
                        try:
                            link.client.sendall(answer)
                        except OSError:
                            pass
                other = link.upstream if s is link.client else link.client
                try:
                    if data:
                        other.sendall(data)
                except OSError:
                    self._close(link, rst=False)
                    return
        self._close(link, rst=False)

    @staticmethod
    def _rst(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()

    def _close(self, link: _Link, rst: bool) -> None:
        if link.closed:
            return
        link.closed = True
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        if rst:
            self._rst(link.client)
        else:
            link.client.close()
        if link.upstream is not None:
            (self._rst if rst else socket.socket.close)(link.upstream)


# ---------------------------------------------------------------- a subscriber that keeps everything

@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float
    qos: int = 1     # as delivered: the lower of the publish's and the subscription's

    def json(self):
        return json.loads(self.payload)


class Recorder:
    """Subscribes to `topic` with QoS 1 on a persistent session (clean_session false), so messages published
    while it reconnects after a broker restart wait for it in the broker."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "test-recorder", persistent: bool = True):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.topic = topic
        self._lock = threading.Lock()
        self.messages: list[Received] = []
        self.subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                   clean_session=not persistent)
        self._client.reconnect_delay_set(0.1, 0.5)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self.subscribed.set()
        self._client.connect_async("127.0.0.1", port, keepalive=10)
        self._client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.time(), msg.qos))

    def wait_subscribed(self, timeout_s: float = 10.0) -> None:
        assert self.subscribed.wait(timeout_s), "recorder never got its SUBACK"

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def results(self) -> list[Received]:
        return [m for m in self.snapshot() if m.topic.endswith("/text")]

    def on_topic(self, topic: str) -> list[Received]:
        return [m for m in self.snapshot() if m.topic == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
