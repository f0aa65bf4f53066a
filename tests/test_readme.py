"""The README's quick start runs, and CI runs the README's test command."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_quick_start_runs():
    block = re.search(r"## Quick start\s+```python\n(.*?)```", README, re.S).group(1)
    assert len([line for line in block.splitlines() if line.strip()]) <= 20
    namespace: dict = {}
    exec(compile(block, "README", "exec"), namespace)
    assert namespace["idata"].posterior["x"].shape == (8, 1000, 2)
    assert namespace["posterior"].posterior["x"].shape == (4, 1000, 2)


def test_ci_runs_the_readme_test_command():
    # .ci/run extracts its command with a `command=$(...)` line; evaluate that line alone.
    extracted = subprocess.run(
        ["bash", "-c", 'source <(grep "^command=" .ci/run); printf "%s" "$command"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = re.search(r"<!-- test-command -->\s+```bash\n(.*?)\n```", README, re.S).group(1)
    assert extracted == expected
    assert "pytest" in expected
