"""What this CPU offers for bf16 training: dot-product instructions (AVX512-BF16), matrix tiles (AMX-BF16), and
whether oneDNN, which runs torch's CPU convolutions and matrix products, is allowed to use them.

The CPU's flags come from ``/proc/cpuinfo`` on Linux (the kernel's names: ``avx512_bf16``, ``amx_bf16``,
``amx_tile``), elsewhere from torch's own probe (``torch.cpu``, the cpuinfo library). ``ONEDNN_MAX_CPU_ISA`` (or
its older name ``DNNL_MAX_CPU_ISA``) caps what oneDNN uses: under ``AVX2`` a CPU with AMX runs fp32 kernels only,
so bf16 is not fast there whatever the flags say. ``torch.backends.cpu.get_cpu_capability()`` never names AMX or
bf16 (it is ATen's vector level: ``AVX2``, ``AVX512``), so it is no evidence either way.

>>> f = parse_cpuinfo("model name : Some CPU\\nflags : fpu avx2 avx512_bf16 amx_tile amx_bf16\\n")
>>> f.name, f.bf16_dot, f.amx
('Some CPU', True, True)
>>> f.fast_bf16, f.with_onednn_limit("AVX2").fast_bf16
(True, False)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import platform
from dataclasses import dataclass

import torch

__all__ = ["CpuFeatures", "cpu_features", "onednn_limit", "parse_cpuinfo"]

CPUINFO = "/proc/cpuinfo"
# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) whose kernels have bf16 dot products: AVX512_CORE_BF16 and every level
# above it (AVX512_CORE_FP16, the AMX levels, AVX10.x); below it (AVX2, AVX2_VNNI[_2], AVX512_CORE[_VNNI]) bf16 is
# converted to fp32 and computed there.
_ONEDNN_BF16_WORDS = ("BF16", "FP16", "AMX", "AVX10")
_ONEDNN_UNCAPPED = ("", "ALL", "DEFAULT")


@dataclass(frozen=True)
class CpuFeatures:
    """The bf16-relevant features of a CPU, and the cap on oneDNN's ISA (``None``: no cap)."""

    name: str
    source: str  # where the flags came from: "/proc/cpuinfo", "torch.cpu" or "none"
    avx512_bf16: bool
    amx_bf16: bool
    amx_tile: bool
    onednn_max_isa: str | None = None

    @property
    def bf16_dot(self) -> bool:
        """The CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
        return self.avx512_bf16 or self.amx_bf16

    @property
    def amx(self) -> bool:
        """The CPU has AMX bf16 matrix tiles."""
        return self.amx_bf16 and self.amx_tile

    def _onednn_allows(self, *words: str) -> bool:
        cap = (self.onednn_max_isa or "").upper()
        return cap in _ONEDNN_UNCAPPED or any(w in cap for w in words)

    @property
    def fast_bf16(self) -> bool:
        """bf16 runs on bf16 units here: the CPU has them and oneDNN is allowed to use them."""
        return self.bf16_dot and self._onednn_allows(*_ONEDNN_BF16_WORDS)

    @property
    def amx_used(self) -> bool:
        """AMX is present and oneDNN is allowed to use it."""
        return self.amx and self._onednn_allows("AMX")

    def with_onednn_limit(self, isa: str | None) -> CpuFeatures:
        return dataclasses.replace(self, onednn_max_isa=isa or None)

    def describe(self) -> str:
        """One line: ``AMD EPYC (x86_64; bf16 dot products: AVX512-BF16; no AMX)``."""
        units = [n for n, has in (("AVX512-BF16", self.avx512_bf16), ("AMX-BF16", self.amx)) if has]
        text = f"bf16 dot products: {', '.join(units)}" if units else "no bf16 dot products"
        if not self.amx:
            text += "; no AMX"
        if self.source == "none":
            text = "CPU flags unknown"
        if self.onednn_max_isa:
            used = "AMX" if self.amx_used else "bf16 units" if self.fast_bf16 else "fp32 kernels only"
            text += f"; oneDNN capped at {self.onednn_max_isa}: {used}"
        return f"{self.name} ({platform.machine() or 'unknown'}; {text})"


def parse_cpuinfo(text: str, *, source: str = CPUINFO) -> CpuFeatures:
    """The features named by the text of ``/proc/cpuinfo`` (its first ``model name`` and the union of its
    ``flags`` lines)."""
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags":
            flags.update(value.split())
    return CpuFeatures(name=name or platform.processor() or "unknown CPU", source=source,
                       avx512_bf16="avx512_bf16" in flags, amx_bf16="amx_bf16" in flags, amx_tile="amx_tile" in flags)


def _torch_probe() -> CpuFeatures:
    """torch's own probe (the cpuinfo library): the only evidence off Linux. Private functions, hence the guard."""
    def ask(fn: str) -> bool | None:
        f = getattr(torch.cpu, fn, None)
        with contextlib.suppress(Exception):
            return bool(f()) if f is not None else None
        return None

    bf16, tile = ask("_is_avx512_bf16_supported"), ask("_is_amx_tile_supported")
    if bf16 is None and tile is None:
        return CpuFeatures(platform.processor() or "unknown CPU", "none", False, False, False)
    # torch names the AMX tile unit only; every AMX CPU so far has AMX-BF16 beside AMX-TILE
    return CpuFeatures(platform.processor() or "unknown CPU", "torch.cpu", bool(bf16), bool(tile), bool(tile))


def onednn_limit() -> str | None:
    """The cap on oneDNN's ISA set in the environment (``ONEDNN_MAX_CPU_ISA``, else ``DNNL_MAX_CPU_ISA``)."""
    value = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip()
    return value or None


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's features (read once a process), with the oneDNN cap of the environment."""
    try:
        with open(CPUINFO, encoding="utf-8") as f:
            feats = parse_cpuinfo(f.read())
    except OSError:  # not Linux
        feats = _torch_probe()
    return feats.with_onednn_limit(onednn_limit())
