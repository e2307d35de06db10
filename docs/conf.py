"""Sphinx configuration of the docs site: ``scripts/docs`` builds it into ``build/docs/html``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from airflow_provider_whatsapp import __version__  # noqa: E402

project = "airflow-provider-whatsapp"
author = "airflow-provider-whatsapp contributors"
copyright = "the airflow-provider-whatsapp contributors, Apache-2.0"  # noqa: A001
release = version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary"]
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"airflow-provider-whatsapp {release}"
html_static_path: list[str] = []

# The API reference (api.rst): one page per module of the package, generated from the docstrings at
# every build, so that a new module cannot be left out.
autosummary_generate = True
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    # Each object is documented where it is defined, not again where a package re-exports it.
    "ignore-module-all": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"

# Every cross-reference must resolve (scripts/docs builds with -n -W): a broken :class: or :doc:
# fails the build. The machine that builds the docs reaches no documentation site, so references
# to Airflow, the standard library and the other dependencies cannot resolve here; only those are
# let through, by their top-level package.
nitpicky = True
EXTERNAL_PACKAGES = (
    "airflow|pendulum|sqlalchemy|requests|httpx|jinja2|pytest|_pytest|urllib3"
    "|typing|typing_extensions|collections|abc|datetime|types|pathlib|threading|socketserver|http|socket"
    "|ssl|enum|dataclasses|re|json|asyncio|concurrent|contextlib|argparse|subprocess|os|io|queue|random"
    "|logging|email|urllib|functools|decimal|aiohttp|asgiref|redis|tenacity|weakref|statistics|hashlib|uuid"
)
BUILTINS = (
    "None|NoneType|bool|int|float|str|bytes|dict|list|tuple|set|frozenset|object|type|Ellipsis"
    "|BaseException|Exception|ValueError|TypeError|KeyError|LookupError|RuntimeError|OSError|TimeoutError"
    "|ConnectionError|AttributeError|NotImplementedError"
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({EXTERNAL_PACKAGES})(\..*)?"),
    (r"py:.*", rf"({BUILTINS})"),
    # Airflow's names that type hints import only under TYPE_CHECKING, so autodoc sees them bare.
    (r"py:.*", r"Context|BaseOperator|TaskInstanceKey|PokeReturnValue"),
    # Type variables of generic functions (``T``) have no page of their own.
    (r"py:.*", r"(airflow_provider_whatsapp\..*\.)?T"),
    # Private names (a leading underscore) are not in the reference, by design.
    (r"py:.*", r"airflow_provider_whatsapp\..*\._\w+"),
]


def _dataclass_factory_defaults(
    app: object, what: str, name: str, obj: object, options: object, signature: str | None, annotation: str | None
) -> tuple[str | None, str | None]:
    # A dataclass field with a default_factory shows as ``=<factory>``, which is no Python: Sphinx
    # then cannot parse the signature and splits its annotations at every comma.
    if signature:
        signature = signature.replace("<factory>", "...")
    return signature, annotation


def setup(app: Any) -> None:
    app.connect("autodoc-process-signature", _dataclass_factory_defaults)
