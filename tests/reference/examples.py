"""The register of the reference's examples, and how an example runs printed code.

Each example is a function of the module fixture ``Ref``, registered under its test id
(``<document>: <section>``) by ``@example``; ``ex_*.py`` hold them, one module per
document, and ``test_examples.py`` runs each as one test. Printed code is kept as
printed and run with only the ids, credentials and addresses adapted (``adapt``).
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import config as configfile
from hub.admin import AdminSession
from hub.config import HubConfig
from hub.shell import run_shell
from tests.reference.conftest import Ref

DATA = Path(__file__).parent / "data"
Example = Callable[[Ref], None]
EXAMPLES: dict[str, Example] = {}


def example(name: str) -> Callable[[Example], Example]:
    """Register an example under its test id."""
    def register(fn: Example) -> Example:
        EXAMPLES[name] = fn
        return fn
    return register


def run(printed: str, names: dict[str, Any], **adapt: str) -> dict[str, Any]:
    """Run printed Python with the names it expects, each ``adapt`` key replaced by its
    value (an id of this hub's for the reference's); the names it made."""
    code = textwrap.dedent(printed)
    for old, new in adapt.items():
        assert old in code, f"{old!r} is not in the printed example"
        code = code.replace(old, new)
    exec(compile(code, "<example>", "exec"), names)
    return names


def shell(ref: Ref, printed: str, **adapt: str) -> str:
    """Run printed shell code in ``ferry hub shell`` (in this process: the same admin
    session the command opens); what it printed."""
    code = textwrap.dedent(printed)
    for old, new in adapt.items():
        assert old in code, f"{old!r} is not in the printed example"
        code = code.replace(old, new)
    loaded = configfile.load(ref.hub.config_file, HubConfig)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_shell(AdminSession(loaded.config, loaded.section, ref.hub.paths.data_dir),
                         script=code) == 0
    return out.getvalue()
