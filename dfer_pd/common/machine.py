"""This machine: which CPU a figure was measured on, what it does natively, and the per-user cache.

The same code is 2-4x slower on an AVX2-only CPU than on one with AVX-512, bf16 is emulated (and
several times slower than float32) without AVX512-BF16 or AMX, and onnxruntime's int8 kernels differ
with VNNI. So every benchmark prints :func:`machine_line` first, the bf16 check asks
:func:`native_bf16`, and an ONNX export's probe result is cached per :func:`machine_key`.
Only the standard library here: the CLI imports it before torch.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# /proc/cpuinfo flag -> the name printed. Several flags can map to one name (VNNI comes as AVX-512 or AVX).
ISA_FEATURES: dict[str, tuple[str, ...]] = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "AMX": ("amx_tile",),
    "bf16": ("avx512_bf16", "amx_bf16"),
}


def user_cache_dir() -> Path:
    """The per-user cache (help texts, ONNX probe results): ``$DFER_PD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dfer-pd``, else ``~/.cache/dfer-pd``."""
    if os.environ.get("DFER_PD_CACHE_DIR"):
        return Path(os.environ["DFER_PD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dfer-pd"


@dataclass(frozen=True)
class CpuInfo:
    model: str
    family: str
    cores: int
    flags: frozenset[str]

    def has(self, feature: str) -> bool:
        return any(flag in self.flags for flag in ISA_FEATURES[feature])

    @property
    def features(self) -> dict[str, bool]:
        return {name: self.has(name) for name in ISA_FEATURES}


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """Read once from /proc/cpuinfo (Linux); elsewhere the model from ``platform`` and no flags."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor describes them all
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    model = fields.get("model name") or platform.processor() or platform.machine()
    family = f"family {fields['cpu family']} model {fields.get('model', '?')}" if "cpu family" in fields else ""
    return CpuInfo(model, family, cores, frozenset(fields.get("flags", "").split()))


def native_bf16() -> bool:
    """Whether bf16 matrix products run natively on this CPU (AVX512-BF16 or AMX); otherwise torch emulates them."""
    return cpu_info().has("bf16")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_line() -> str:
    """One line naming the machine: CPU, cores, the ISA features that change these figures, library versions."""
    info = cpu_info()
    features = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in info.features.items())
    cpu = f"{info.model} ({info.family})" if info.family else info.model
    return (f"machine: {cpu}, {info.cores} cores; {features}; "
            f"torch {_version('torch')}, onnxruntime {_version('onnxruntime')}")


def machine_key() -> str:
    """Short key of what decides onnxruntime's numerics here: CPU model and features, onnxruntime's version."""
    info = cpu_info()
    text = "|".join([info.model, info.family, *sorted(f for f, p in info.features.items() if p),
                     _version("onnxruntime"), platform.machine()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["CpuInfo", "ISA_FEATURES", "cpu_info", "machine_key", "machine_line", "native_bf16", "user_cache_dir"]
