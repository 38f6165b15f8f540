"""The machine line every benchmark prints first, and the CPU facts the bf16 check and the probe cache use."""

import subprocess
import sys
from pathlib import Path

from dfer_pd.common import machine
from dfer_pd.common.machine import CpuInfo, ISA_FEATURES, machine_key, machine_line

BENCHMARKS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("bench_*.py"))


def test_machine_line_names_the_cpu_its_cores_features_and_versions():
    line = machine_line()
    assert line.startswith("machine: ") and " cores; " in line
    for feature in ISA_FEATURES:
        assert f"{feature} yes" in line or f"{feature} no" in line
    assert "torch 2." in line and "onnxruntime " in line


def test_features_follow_the_cpu_flags(monkeypatch):
    avx2 = CpuInfo("AMD EPYC", "family 25 model 1", 2, frozenset({"avx2", "fma"}))
    sapphire = CpuInfo("Intel Xeon", "family 6 model 143", 2,
                       frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}))
    assert avx2.features == {"AVX2": True, "AVX-512": False, "VNNI": False, "AMX": False, "bf16": False}
    assert all(sapphire.features.values())
    assert CpuInfo("laptop", "", 4, frozenset({"avx2", "avx_vnni"})).has("VNNI")  # AVX-VNNI without AVX-512
    keys = set()
    for info in (avx2, sapphire):
        monkeypatch.setattr(machine, "cpu_info", lambda info=info: info)
        keys.add(machine_key())
        assert machine.native_bf16() == info.has("bf16")
    assert len(keys) == 2, "CPUs with other int8 kernels must not share probe results"


def test_every_benchmark_prints_the_machine_line_first():
    assert len(BENCHMARKS) >= 8
    for script in BENCHMARKS:
        text = script.read_text()
        main_block = text[text.index('if __name__ == "__main__":'):]
        assert main_block.splitlines()[1].strip().startswith("print(machine_line()"), script.name


def test_machine_line_from_a_fresh_process_needs_no_heavy_import():
    code = ("import sys; from dfer_pd.common.machine import machine_line; print(machine_line()); "
            "print(sorted(m for m in ('torch', 'numpy', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("machine: ") and out[1] == "[]"
