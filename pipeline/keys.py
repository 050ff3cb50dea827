"""The node's Ed25519 identity: the key that signs every op this daemon writes (S2).

The secret lives in ``<data_dir>/node.key`` (the 32-byte seed as hex), created on first run
with mode 0600 and never readable by group or others. The public key is always derived from
the secret, never passed alongside it (the double-public-key oracle, GHSA-g693-v3jr-8hcr).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

import nacl.exceptions
import nacl.signing

from pipeline.errors import PipelineError

KEY_FILE = "node.key"
SEED_BYTES = 32
SIGNATURE_BYTES = 64


class KeyFileError(PipelineError):
    """The node key file is unsafe or unreadable; the daemon must not start."""


class NodeKey:
    """An Ed25519 signing key. ``repr`` shows only the public half."""

    __slots__ = ("_signing", "public_hex")

    def __init__(self, signing: nacl.signing.SigningKey) -> None:
        self._signing = signing
        self.public_hex: str = signing.verify_key.encode().hex()
        """The 64-character lowercase hex public key: an op's ``author``."""

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh random key (tests, and :func:`load_or_create`)."""
        return cls(nacl.signing.SigningKey.generate())

    def seed(self) -> bytes:
        """The 32 secret bytes. Only :func:`load_or_create` should need them."""
        return bytes(self._signing)

    def checkpoint_hasher(self) -> hashlib.blake2b:
        """A BLAKE2b hasher keyed with this node's secret, for op log checkpoints.

        Only this node can produce (or check) such a digest; the key is domain-separated
        from the signing use of the same secret by BLAKE2b's personalisation.
        """
        return hashlib.blake2b(key=self.seed(), digest_size=32, person=b"musher.ckpt.v1")

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return self._signing.sign(message).signature

    def signed(self, message: bytes, signature: object) -> bool:
        """Whether ``signature`` is this key's signature of ``message``. Ed25519 signing is
        deterministic, so signing again and comparing answers it for half what a verify
        costs; False says nothing more (check it with :func:`verify_signature`)."""
        return signature == self.sign(message)

    def __repr__(self) -> str:
        return f"NodeKey(public={self.public_hex[:12]}…)"


def verify_signature(author_hex: object, message: bytes, signature: object) -> str | None:
    """Check ``signature`` over ``message`` by the key ``author_hex``; never raises.

    Returns:
        None when it verifies, else a short reason (``bad author key``, ``bad signature``).
        libsodium rejects small-order keys and non-canonical signatures.
    """
    if not isinstance(author_hex, str) or len(author_hex) != 2 * SEED_BYTES:
        return "bad author key"
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        return "malformed signature"
    try:
        key = nacl.signing.VerifyKey(bytes.fromhex(author_hex))
        key.verify(message, signature)
    except ValueError:
        return "bad author key"
    except nacl.exceptions.BadSignatureError:
        return "bad signature"
    except nacl.exceptions.CryptoError:
        return "bad author key"
    return None


def _load(path: Path) -> NodeKey:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise KeyFileError(f"cannot open node key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"node key {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"node key {path} is readable by others (mode {mode:04o}); "
                f"run `chmod 600 {path}` and start again"
            )
        raw = handle.read(4 * SEED_BYTES)
    try:
        seed = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        seed = b""
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"node key {path} is damaged: expected {SEED_BYTES} bytes as hex")
    return NodeKey(nacl.signing.SigningKey(seed))


def _create(path: Path) -> None:
    """Write a new key to a private temp file, then link it into place (atomic, no clobber)."""
    key = NodeKey.generate()
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.seed().hex().encode("ascii") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use theirs
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_or_create(data_dir: Path) -> NodeKey:
    """Load ``<data_dir>/node.key``, creating it (mode 0600, fsynced) on first run.

    Guarantees: a key once written is the key every later start loads; a crash while creating
    leaves either no key file or a complete one (written aside, then hard-linked into place);
    concurrent first starts agree on one key.

    Raises:
        KeyFileError: the file is group- or world-accessible, not a regular file (symlinks are
            refused), unreadable, or does not hold a 32-byte seed.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KEY_FILE
    if not path.exists() and not path.is_symlink():
        try:
            _create(path)
        except OSError as exc:
            raise KeyFileError(f"cannot create node key {path}: {exc.strerror}") from None
    return _load(path)
