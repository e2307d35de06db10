"""The docs: code snippets come from the example DAGs (every include resolves), every page and
image exists, and the README counts what the tests hold."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INCLUDE_RE = re.compile(
    r"\.\. literalinclude:: (?P<path>\S+)\n(?:\s+:[a-z-]+:.*\n)*?"
    r"\s+:start-after: (?P<start>.+)\n\s+:end-before: (?P<end>.+)\n"
)


def test_every_snippet_resolves_to_example_dag_code() -> None:
    includes = []
    for page in sorted((REPO / "docs").rglob("*.rst")):
        for match in INCLUDE_RE.finditer(page.read_text() + "\n"):
            source = (page.parent / match["path"]).resolve()
            assert source.is_file(), f"{page}: {match['path']} does not exist"
            text = source.read_text()
            start, end = text.find(match["start"].strip()), text.find(match["end"].strip())
            assert 0 <= start < end, f"{page}: markers {match['start']!r}..{match['end']!r} not in {source}"
            assert text[start:end].count("\n") > 2, f"{page}: empty snippet {match['start']!r}"
            includes.append(match["start"])
    assert len(includes) >= 8


def test_every_toctree_page_exists() -> None:
    index = (REPO / "docs" / "index.rst").read_text()
    pages = re.findall(r"^   (\S+)$", index, flags=re.MULTILINE)
    assert pages
    for page in pages:
        assert (REPO / "docs" / f"{page}.rst").is_file(), page


def test_every_image_exists_and_every_screenshot_is_shown() -> None:
    shown = set()
    for page in sorted((REPO / "docs").rglob("*.rst")):
        for path in re.findall(r"^\.\. (?:image|figure):: (\S+)$", page.read_text(), flags=re.MULTILINE):
            image = (page.parent / path).resolve()
            assert image.is_file(), f"{page}: {path} does not exist"
            # Screenshots are palette PNGs of 1280x800: a few tens of kB, not hundreds.
            assert image.stat().st_size < 100_000, f"{path}: {image.stat().st_size} bytes"
            shown.add(image)
    screenshots = set((REPO / "docs" / "walkthrough").glob("*.png"))
    assert screenshots and screenshots <= shown, f"not in any page: {sorted(screenshots - shown)}"


def test_the_readme_documents_every_sandbox_flag() -> None:
    from airflow_provider_whatsapp.sandbox.__main__ import argument_parser

    readme = (REPO / "README.md").read_text()
    flags = [flag for action in argument_parser()._actions for flag in action.option_strings if flag.startswith("--")]
    assert len(flags) > 10
    assert [flag for flag in flags if flag != "--help" and f"`{flag}" not in readme] == []


def test_the_readme_names_every_xcom_key_the_operators_push() -> None:
    from airflow_provider_whatsapp.operators.base import ERROR_XCOM_KEY

    readme = (REPO / "README.md").read_text()
    sources = "".join(path.read_text() for path in (REPO / "airflow_provider_whatsapp" / "operators").glob("*.py"))
    keys = set(re.findall(r"xcom_push\(key=\"(\w+)\"", sources)) | {ERROR_XCOM_KEY}
    assert {"waba_id", "phone_number", "whatsapp_error"} <= keys
    assert sorted(key for key in keys if f"`{key}`" not in readme) == []


def test_the_readme_counts_the_bad_inputs_the_table_holds() -> None:
    from tests.bad_input_cases import CASES

    readme = (REPO / "README.md").read_text()
    assert f"- **Bad input**: {len(CASES)} inputs across" in readme
