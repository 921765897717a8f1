"""scripts/cycles.py finds circles however they are hidden, and passes a tree without any."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cycles.py"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True,
                          text=True, check=False)


def test_a_circle_hidden_in_a_function_and_type_checking_is_found(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "def f():\n    from core.b import g\n",
        "core/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core import a\n",
        "core/c.py": "import core.a\n",
    })
    done = run(root)
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["circle of 2: core.a -> core.b -> core.a"]


def test_a_package_init_in_a_loop_with_its_module_is_found(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "lanes/__init__.py": "from lanes.process import run\n",
        "lanes/process.py": "from lanes import base\n",  # runs lanes/__init__ first
        "lanes/base.py": "",
    })
    done = run(root)
    assert done.returncode == 1
    assert "circle of 2: lanes -> lanes.process -> lanes" in done.stdout


def test_relative_imports_one_way_are_no_circle(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "hub/__init__.py": "",
        "hub/jobs/__init__.py": "",
        "hub/jobs/spec.py": "from ..errors import Invalid\n",
        "hub/errors.py": "import json\n",
        "hub/api.py": "from .jobs import spec\nfrom .jobs.spec import thing\n",
    })
    done = run(root)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("no import circles (5 modules")
