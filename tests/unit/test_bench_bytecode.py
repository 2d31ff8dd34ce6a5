"""bench/revision.py's ``write_bytecode``: the benchmarks start this tree as pip would have installed it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "bench_revision", Path(__file__).resolve().parents[2] / "bench" / "revision.py"
)
assert _SPEC is not None and _SPEC.loader is not None
revision = sys.modules[_SPEC.name] = importlib.util.module_from_spec(_SPEC)  # its dataclass looks it up
_SPEC.loader.exec_module(revision)
PACKAGES, write_bytecode = revision.PACKAGES, revision.write_bytecode


def test_write_bytecode_compiles_every_module_even_when_python_would_write_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # as under PYTHONDONTWRITEBYTECODE=1
    sources = []
    for package in PACKAGES:
        (tmp_path / package / "inner").mkdir(parents=True)
        for name in ("__init__.py", "inner/__init__.py", "inner/module.py"):
            (tmp_path / package / name).write_text("VALUE = 1\n")
            sources.append(tmp_path / package / name)

    write_bytecode(tmp_path)

    assert all(Path(importlib.util.cache_from_source(str(source))).is_file() for source in sources)


def test_write_bytecode_stops_the_benchmark_on_a_module_that_does_not_compile(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("def broken(:\n")

    with pytest.raises(SystemExit, match="cannot compile"):
        write_bytecode(tmp_path)
