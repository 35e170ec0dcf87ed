"""The fleet secret: 32 random bytes, hex, in a file only its owner can read.

A replica proves it holds the secret before it may reach the lighthouse (see
`phalanx.fleetnet.admission`). The secret never travels: only HMACs of fresh
nonces do. It lives in a file created with mode 0600, and a file that group
or others could read or write is refused, as ssh refuses a loose private key.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from phalanx.errors import UsageError

SECRET_BYTES = 32
_HEX_CHARS = SECRET_BYTES * 2
FLAG = "--secret-file"


def generate_secret_file(path: str | os.PathLike[str]) -> Path:
    """Write a new secret to `path` (mode 0600, replacing any old one atomically)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    # O_EXCL: never write through a file (or link) someone else placed there.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may have taken bits away, never added: be explicit
            os.write(fd, (secrets.token_hex(SECRET_BYTES) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk: leave no half-written secret behind
        raise
    return target


def load_secret(path: str | os.PathLike[str], flag: str = FLAG) -> bytes:
    """The secret in `path`; a UsageError naming the file and the fix if it is unsafe or bad."""
    target = Path(path)
    try:
        info = target.stat()
    except FileNotFoundError:
        raise UsageError(
            flag,
            "does not exist",
            "give the fleet's secret file (`phalanx lighthouse` writes one and prints its path)",
            str(target),
        ) from None
    except OSError as err:
        raise UsageError(
            flag, f"cannot be read ({err.strerror})", "check the path", str(target)
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(flag, "is not a regular file", "give the secret file itself", str(target))
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if loose:
        raise UsageError(
            flag,
            f"is readable or writable by group or others (mode {stat.S_IMODE(info.st_mode):03o})",
            f"chmod 600 {target}",
            str(target),
        )
    try:
        text = target.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "it is not text"
        raise UsageError(
            flag, f"cannot be read ({reason})", "check the path", str(target)
        ) from None
    if not text:
        raise UsageError(
            flag,
            "is empty",
            "write a new secret (`phalanx lighthouse --secret-file FILE` creates FILE) and copy it",
            str(target),
        )
    if len(text) != _HEX_CHARS or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise UsageError(
            flag,
            f"does not hold a secret ({_HEX_CHARS} hex characters expected)",
            "write a new secret (`phalanx lighthouse --secret-file FILE` creates FILE) and copy it",
            str(target),
        )
    return bytes.fromhex(text)


def load_or_create(path: str | os.PathLike[str], flag: str = FLAG) -> tuple[bytes, bool]:
    """Load the secret in `path`, or create it there if there is no file yet (True: created)."""
    target = Path(path)
    if not target.exists() and not target.is_symlink():
        generate_secret_file(target)
        return load_secret(target, flag), True
    return load_secret(target, flag), False


def default_secret_path() -> Path:
    """Where `phalanx lighthouse` keeps the fleet secret unless told otherwise.

    `phalanx run --lighthouse` looks there too, so on one machine (or with the
    file copied to the same place on every host, as with an ssh key) no flag is
    needed.
    """
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "phalanx" / "fleet.secret"
