"""Certificates and node keys of a TLS-authenticated Flower federation (what ``fedsafe flower certs`` makes,
with openssl and ssh-keygen):

* ``ca.pem`` / ``ca.key``: a private certificate authority (keep ``ca.key`` offline);
* ``server.pem`` / ``server.key``: the SuperLink's TLS certificate, signed by the CA, with the SuperLink's
  addresses as subject alternative names (default ``IP:127.0.0.1,DNS:localhost``; add the server's public name);
* ``node_III`` / ``node_III.pub``: one ECDSA P-384 key pair per SuperNode (``ssh-keygen -t ecdsa -b 384``); the
  SuperLink runs with ``--enable-supernode-auth`` and accepts only nodes whose public key was registered
  (``flwr supernode register``). A node with another key, or without TLS, is refused.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .processes import run_command

__all__ = ["CertPaths", "make_certs", "make_node_keys"]


# -- certificates and keys ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertPaths:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def node_key(self, i: int) -> Path:
        return self.directory / f"node_{i:03d}"

    def node_pub(self, i: int) -> Path:
        return self.directory / f"node_{i:03d}.pub"

    def node_keys(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.directory.glob("node_*.pub"))


def make_certs(directory: str | Path, *, hosts: Sequence[str] = ("127.0.0.1", "localhost"), days: int = 365,
               overwrite: bool = False) -> CertPaths:
    """A CA and a SuperLink certificate signed by it (EC P-384), with ``hosts`` as subject alternative names
    (IP addresses as ``IP:``, names as ``DNS:``). Existing files are kept unless ``overwrite``."""
    paths = CertPaths(Path(directory))
    paths.directory.mkdir(parents=True, exist_ok=True)
    if paths.server_cert.is_file() and not overwrite:
        return paths
    if not hosts:
        raise ValueError("the server certificate needs at least one host name or IP address")
    san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes"]
    run_command(["openssl", "req", "-x509", *ec, "-keyout", str(paths.ca_key), "-out", str(paths.ca), "-days",
                 str(days),
          "-subj", "/CN=fedsafe federation CA", "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], what="openssl (CA)")
    csr = paths.directory / "server.csr"
    run_command(["openssl", "req", *ec, "-keyout", str(paths.server_key), "-out", str(csr), "-subj", f"/CN={hosts[0]}"],
         what="openssl (server key)")
    ext = paths.directory / "server.ext"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n")
    run_command(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(paths.ca), "-CAkey", str(paths.ca_key),
          "-CAcreateserial", "-out", str(paths.server_cert), "-days", str(days), "-extfile", str(ext)],
         what="openssl (server certificate)")
    for p in (paths.ca_key, paths.server_key):
        p.chmod(0o600)
    return paths


def make_node_keys(directory: str | Path, num_nodes: int, *, start: int = 0) -> list[Path]:
    """One ECDSA P-384 key pair per node (``node_III``, ``node_III.pub``); existing keys are kept."""
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    paths = CertPaths(Path(directory))
    paths.directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + num_nodes):
        key = paths.node_key(i)
        if not key.is_file():
            run_command(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C", f"fedsafe-node-{i}", "-f",
                  str(key)], what="ssh-keygen")
        out.append(key)
    return out


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


