"""Real git counterparts on 127.0.0.1: a bare repository served by ``git daemon`` over
``git://``, and an https server that asks for credentials (a clone that would prompt)."""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(*args: str, cwd: Path) -> str:
    """Run git in ``cwd`` as a fixed test identity; its stdout."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return done.stdout


def bare_repo(base: Path, name: str, files: Mapping[str, str], branch: str = "trunk") -> Path:
    """A bare repository ``base/<name>.git`` whose one commit on ``branch`` holds ``files``."""
    work = base / f"{name}-work"
    work.mkdir(parents=True)
    git("init", "--quiet", f"--initial-branch={branch}", cwd=work)
    for path, text in files.items():
        (work / path).write_text(text)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "--allow-empty", "-m", "first", cwd=work)
    bare = base / f"{name}.git"
    git("clone", "--quiet", "--bare", str(work), str(bare), cwd=base)
    return bare


@contextmanager
def git_daemon(base: Path, *, push: bool = False) -> Iterator[str]:
    """Serve every repository under ``base`` (read-only unless ``push``); yields
    ``git://127.0.0.1:PORT``."""
    port = free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
         *(["--enable=receive-pack"] if push else []),
         "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_port(port, proc)
        yield f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("git daemon exited")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("git daemon did not listen")


class _AskForPassword(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextmanager
def password_wall(tmp: Path) -> Iterator[str]:
    """An https server (self-signed: clients need ``GIT_SSL_NO_VERIFY=1``) that answers
    every request with 401 Basic; yields its base URL."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AskForPassword)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="password-wall", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
