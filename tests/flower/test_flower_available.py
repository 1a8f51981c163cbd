"""Without ``flwr`` (the ``[flower]`` extra): the test suite still collects and passes, every Flower test module
skipped with its reason, and a ``fedsafe flower`` command that needs Flower says which extra to install.

``flwr`` is hidden in a subprocess by ``sys.modules["flwr"] = None`` (``import flwr`` then raises ImportError), the
same as a virtual environment without it. By hand: ``python -c "import sys; sys.modules['flwr'] = None; import
pytest; sys.exit(pytest.main(['-m', 'not slow', '-rs']))"``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HIDE_FLWR = "import sys; sys.modules['flwr'] = None; "
NEEDS_FLWR = ("test_app.py", "test_deployment.py", "test_recorder.py", "test_recorder_audit.py", "test_serve.py",
              "test_simulation.py")


def _python(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE_FLWR + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_a_flower_command_without_flwr_names_the_extra_in_one_line(tmp_path):
    r = _python("from typer.testing import CliRunner; from fedsafe.cli import app; "
                f"r = CliRunner().invoke(app, ['flower', 'simulate', '-o', {str(tmp_path / 'run')!r}]); "
                "print(r.exit_code); print(r.output)", timeout=120)
    code, _, output = r.stdout.partition("\n")
    assert r.returncode == 0, r.stderr
    assert code == "1" and output.count("error:") == 1 and "Traceback" not in output, output
    assert "pip install 'fedsafe[flower]'" in " ".join(output.split())
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_the_suite_passes_without_flwr_with_the_flower_tests_skipped():
    r = _python("import pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-m', 'not slow', '-rs', "
                "'tests/flower', 'tests/test_doctests.py']))", timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    skipped = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    for name in NEEDS_FLWR:
        assert any(f"tests/flower/{name}" in s and "need flwr: pip install" in s for s in skipped), (name, skipped)
    assert any("test_doctests.py" in s and "fedsafe.flower.app needs flwr" in s for s in skipped), skipped
    assert " passed" in r.stdout.splitlines()[-1] and "failed" not in r.stdout.splitlines()[-1]
