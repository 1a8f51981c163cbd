"""CPU bf16/AMX detection: the parser against known cpuinfo texts, the oneDNN cap, and this machine's
answer against its own flags and torch's independent probe."""

from __future__ import annotations

import pytest
import torch

from fedsafe import hardware
from fedsafe.device import describe_device
from fedsafe.hardware import CpuFeatures, cpu_features, parse_cpuinfo
from fedsafe.precision import cpu_has_fast_bf16

SAPPHIRE = ("processor : 0\nmodel name : Intel(R) Xeon(R) Platinum 8480+\nflags : fpu avx2 avx512f avx512_bf16 "
            "amx_bf16 avx512_fp16 amx_tile amx_int8\n\nprocessor : 1\nmodel name : Intel(R) Xeon(R) Platinum "
            "8480+\nflags : fpu avx2 avx512f avx512_bf16 amx_bf16 avx512_fp16 amx_tile amx_int8\n")
GENOA = "model name\t: AMD EPYC 9654\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
SKYLAKE = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"


def _flags_of_this_cpu() -> set[str]:
    try:
        with open(hardware.CPUINFO, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        pytest.skip(f"{hardware.CPUINFO} cannot be read here: no CPU flags to compare with")
    flags = {w for line in lines if line.split(":")[0].strip() == "flags" for w in line.split(":", 1)[1].split()}
    if not flags:
        pytest.skip(f"{hardware.CPUINFO} names no flags here (not x86)")
    return flags


@pytest.mark.parametrize(("text", "name", "bf16", "amx"), [
    (SAPPHIRE, "Intel(R) Xeon(R) Platinum 8480+", True, True),
    (GENOA, "AMD EPYC 9654", True, False),
    (SKYLAKE, "Intel(R) Xeon(R) Gold 6148", False, False),
    ("processor : 0\n", None, False, False),
])
def test_parse_cpuinfo(text, name, bf16, amx):
    f = parse_cpuinfo(text)
    assert (f.bf16_dot, f.amx, f.fast_bf16, f.amx_used) == (bf16, amx, bf16, amx)
    if name is not None:
        assert f.name == name
    assert ("AMX-BF16" in f.describe()) == amx and ("no bf16 dot products" in f.describe()) == (not bf16)


@pytest.mark.parametrize(("cap", "fast", "amx_used"), [
    (None, True, True), ("ALL", True, True), ("avx2", False, False), ("AVX512_CORE_VNNI", False, False),
    ("AVX512_CORE_BF16", True, False), ("AVX512_CORE_AMX", True, True), ("AVX10_1_512_AMX", True, True),
    ("AVX2_VNNI_2", False, False),
])
def test_onednn_cap_decides_what_is_used(cap, fast, amx_used):
    f = parse_cpuinfo(SAPPHIRE).with_onednn_limit(cap)
    assert (f.bf16_dot, f.amx) == (True, True)  # the hardware is unchanged
    assert (f.fast_bf16, f.amx_used) == (fast, amx_used)
    assert (f"oneDNN capped at {cap}" in f.describe()) == (cap is not None)


def test_onednn_cap_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", " AVX2 ")
    assert hardware.onednn_limit() == "AVX2"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert hardware.onednn_limit() is None
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE")
    assert hardware.onednn_limit() == "AVX512_CORE"


def test_detection_agrees_with_this_cpus_flags():
    flags = _flags_of_this_cpu()
    f = cpu_features()
    assert f.source == hardware.CPUINFO
    assert f.avx512_bf16 == ("avx512_bf16" in flags)
    assert f.amx == ({"amx_bf16", "amx_tile"} <= flags)
    assert f.bf16_dot == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert cpu_has_fast_bf16() == (f.bf16_dot and f.fast_bf16)
    assert describe_device(torch.device("cpu")) == f"cpu: {f.describe()}"


def test_detection_agrees_with_torchs_own_probe():
    """torch's cpuinfo library reads CPUID itself: an independent witness of the same two features."""
    _flags_of_this_cpu()
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None)
    if None in probe:
        pytest.skip("this torch has no torch.cpu feature probe")
    f = cpu_features()
    assert (f.avx512_bf16, f.amx_tile) == (probe[0](), probe[1]())


def test_unknown_flags_are_said(monkeypatch):
    f = CpuFeatures("some CPU", "none", False, False, False)
    assert not f.fast_bf16 and "CPU flags unknown" in f.describe()
