"""The README opens with the commands CI runs. (Metric and setting tables are docs/reference/, generated:
tests/docs/test_reference_docs.py.)"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    first_block = README.split("```")[1]
    commands = [
        line.split("#")[0].strip() for line in first_block.splitlines() if line.strip() and "#" in line
    ]
    assert commands == ["scripts/run-stack.sh", "scripts/test.sh"]
    ci = (REPO / ".ci/run").read_text()
    assert "exec scripts/test.sh" in ci
    for script in ("scripts/run-stack.sh", "scripts/test.sh", ".ci/run"):
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is not executable"
