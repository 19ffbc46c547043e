"""SSH keys shared by every image: made once in ``cache_dir()/keys`` and reused, never in the repo.

Keeping them stable means a rebuilt image accepts the same client key and presents the same host key.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_lock
from .hosttools import find_tool, run

CLIENT_KEY = "id_ed25519"
HOST_KEY = "dropbear_ed25519_host_key"


@dataclass(frozen=True)
class Keys:
    client_private: Path  # OpenSSH format, for paramiko / ssh -i
    client_public: str  # "ssh-ed25519 AAAA... comment" for authorized_keys
    host_private: Path  # dropbear format, shipped in the initramfs
    host_public: str  # "ssh-ed25519 AAAA..." as the guest presents it


def _public_from_dropbear(key: Path) -> str:
    out = run(["dropbearkey", "-y", "-f", key], what="dropbearkey -y").stdout
    for line in out.splitlines():
        if line.startswith("ssh-"):
            return " ".join(line.split()[:2])  # drop dropbear's "user@host" comment
    raise ValueError(f"dropbearkey printed no public key for {key}")


def _make_client_key(dest: Path, scratch: Path) -> None:
    """Create ``dest`` (+ ``.pub``): ssh-keygen when available, else dropbearkey + dropbearconvert."""
    tmp = scratch / CLIENT_KEY
    if find_tool("ssh-keygen") is not None:
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mlx5lab", "-f", tmp], what="ssh-keygen")
        public = (scratch / f"{CLIENT_KEY}.pub").read_text().strip()
    else:
        raw = scratch / "client.dropbear"
        run(["dropbearkey", "-t", "ed25519", "-f", raw], what="dropbearkey (client key)")
        run(["dropbearconvert", "dropbear", "openssh", raw, tmp], what="dropbearconvert")
        public = _public_from_dropbear(raw) + " mlx5lab"
    tmp.chmod(0o600)
    pub_tmp = scratch / "client.pub.new"
    pub_tmp.write_text(public + "\n")
    # Public key first: a private key without .pub is treated as incomplete and remade.
    os.replace(pub_tmp, dest.with_name(dest.name + ".pub"))
    os.replace(tmp, dest)


def _make_host_key(dest: Path, scratch: Path) -> None:
    tmp = scratch / HOST_KEY
    run(["dropbearkey", "-t", "ed25519", "-f", tmp], what="dropbearkey (host key)")
    tmp.chmod(0o600)
    os.replace(tmp, dest)


def ensure_keys(keys_dir: Path) -> Keys:
    """Return the client and host keys in ``keys_dir``, generating any that are missing (process-safe)."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    client, host = keys_dir / CLIENT_KEY, keys_dir / HOST_KEY
    client_pub = keys_dir / f"{CLIENT_KEY}.pub"
    with cache_lock(keys_dir / ".lock"), tempfile.TemporaryDirectory(dir=keys_dir, prefix=".new-") as scratch:
        if not (client.is_file() and client_pub.is_file()):
            _make_client_key(client, Path(scratch))
        if not host.is_file():
            _make_host_key(host, Path(scratch))
    return Keys(client, client_pub.read_text().strip(), host, _public_from_dropbear(host))
