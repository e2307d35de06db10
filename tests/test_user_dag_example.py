"""The README's "Test your own DAG" example, run from the text as a user would run it: it cannot drift.

Its files are the code blocks of that section whose first line names a path; the docs page
``docs/testing.rst`` must show the same ones (``ruff format`` formats the README's Python blocks:
copy them to the page once formatted).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tests.user_project import run_user_pytest

REPO = Path(__file__).resolve().parent.parent
SECTION = "## Test your own DAG"
PATH_LINE = re.compile(r"# (?P<path>[\w./-]+\.(?:py|toml|ini))\n")


def readme_files() -> dict[str, str]:
    """The example's files, by path, from the README section."""
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    blocks = re.findall(r"```(?:python|toml|ini)\n(.*?)```", text[start:end], flags=re.DOTALL)
    return {match["path"]: block for block in blocks if (match := PATH_LINE.match(block))}


def docs_files() -> dict[str, str]:
    """The same, from the docs page's code blocks."""
    text = (REPO / "docs" / "testing.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: (?:python|toml|ini)\n\n((?:(?: {4}.*)?\n)+)", text)
    files = {}
    for block in blocks:
        code = textwrap.dedent(block).strip("\n") + "\n"
        if match := PATH_LINE.match(code):
            files[match["path"]] = code
    return files


def test_the_docs_show_the_readme_example() -> None:
    files = readme_files()
    assert sorted(files) == ["dags/my_whatsapp_onboarding.py", "pyproject.toml", "tests/test_my_whatsapp_onboarding.py"]
    assert docs_files() == files
    # Under a screen of code: the DAG and its three tests together.
    assert sum(code.count("\n") for path, code in files.items() if path.endswith(".py")) <= 60


# The migration and three DAG runs in a session of their own; far less on an idle machine.
@pytest.mark.timeout(900)
def test_the_readme_example_passes_as_written(tmp_path: Path) -> None:
    for path, code in readme_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(code)
    done = run_user_pytest(tmp_path, timeout=840)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert re.search(r"\b3 passed\b", done.stdout), done.stdout[-2000:]
