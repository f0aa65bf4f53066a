"""The README's quick start runs, and CI runs the README's test command."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_quick_start_runs():
    block = re.search(r"## Quick start\s+```python\n(.*?)```", README, re.S).group(1)
    assert len(block.strip().splitlines()) <= 20
    namespace: dict = {}
    exec(
        compile(
            block.replace(
                "num_warmup=300, num_samples=1000",
                "num_warmup=20, num_samples=20, progress_bar=False",
            ),
            "README",
            "exec",
        ),
        namespace,
    )
    assert namespace["z0"]["x"].shape == (2,)


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
