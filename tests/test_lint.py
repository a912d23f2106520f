"""The linter CI runs: ruff with the configuration in pyproject.toml (pyflakes and pycodestyle rules, 120 columns),
over the whole tree, benchmarks included."""

import pathlib
import subprocess

from tests.helpers import require_executable

ROOT = pathlib.Path(__file__).parent.parent


def test_ruff_finds_nothing():
    ruff = require_executable('ruff')
    result = subprocess.run([ruff, 'check', '--output-format', 'concise', '.'], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
