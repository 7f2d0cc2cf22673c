"""What the numbers were measured on: hardware, OS, server and package versions, checkout."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

#: Distributions whose versions the report lists, in this order.
PACKAGES = (
    "kq",
    "kq-redis",
    "kq-amqp",
    "kq-threads",
    "kq-prefork",
    "kq-gevent",
    "celery",
    "kombu",
    "billiard",
    "dramatiq",
    "redis",
    "amqp",
    "pika",
    "gevent",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))} (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def checkout(root: Path) -> str:
    """The commit measured, marked ``+ local changes`` when the tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" + local changes" if dirty else "")


def describe(root: Path, servers: dict[str, str]) -> dict[str, str]:
    memory = psutil.virtual_memory().total / 2**30
    info = {
        "CPU": f"{cpu_model()}, {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable)",
        "RAM": f"{memory:.1f} GiB",
        "OS": os_name(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        **{f"{name} server": version for name, version in servers.items()},
        "kq checkout": checkout(root),
    }
    return info


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
