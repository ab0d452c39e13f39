"""What a set of processes listens on (Linux /proc), and what answers there."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path


def tree(root: int) -> set[int]:
    """``root`` and all its descendants (as the reaper sees them)."""
    from disco.framework.reaper import _descendants, _table

    return {root, *_descendants(root, _table())}


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def name(pid: int) -> str:
    """The executable's whole path (tests match on it; a clone's path can be long), then the
    start of its arguments."""
    argv = cmdline(pid)
    if not argv or not argv[0]:
        return "?"
    return f"{argv[0]} {' '.join(argv[1:])[:80]}".rstrip()


def listening(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state held by ``pids``."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = pid
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                hexip, hexport = f[1].split(":")
                out.append((_ip(hexip), int(hexport, 16), inodes[f[9]]))
    return out


def _ip(hexip: str) -> str:
    raw = bytes.fromhex(hexip)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]  # /proc prints 32-bit words
    v6 = b"".join(words)
    if v6[:12] == b"\0" * 10 + b"\xff\xff":
        return ".".join(str(b) for b in v6[12:])
    return ":".join(v6[i:i + 2].hex() for i in range(0, 16, 2))


def post_job(port: int, marker: Path) -> str:
    """The issue's request: submit a shell entrypoint to a job agent. What came back."""
    body = json.dumps({"entrypoint": f"id > {marker}", "submission_id": f"probe{port}"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/job_agent/jobs/", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except Exception as exc:  # not HTTP (gRPC), or nothing answered
        return type(exc).__name__


def grpc_codes(port: int) -> dict[str, str]:
    """Unauthenticated calls to the GCS, the raylet and a core worker: the status of each."""
    import grpc

    out = {}
    for method in ("/ray.rpc.NodeInfoGcsService/GetClusterId",
                   "/ray.rpc.NodeManagerService/GetNodeStats",
                   "/ray.rpc.CoreWorkerService/GetCoreWorkerStats"):
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            channel.unary_unary(method, request_serializer=lambda x: x,
                                response_deserializer=lambda x: x)(b"", timeout=2)
            out[method] = "OK"
        except grpc.RpcError as exc:
            out[method] = exc.code().name
        finally:
            channel.close()
    return out
