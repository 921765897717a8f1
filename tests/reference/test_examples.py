"""Every example of the five reference documents (../shared/reference/), run as printed
against a real hub and a real agent, with the documented outcome asserted.

Each example is one test id, ``<document>: <section>`` (the examples are in ``ex_*.py``,
one module per document). Its printed code is run with only the ids, credentials and
addresses adapted. Where Ferry is deliberately different, the test asserts the
documented difference; docs/REFERENCE.md lists each example with its status and the
reason for each difference. An example that needs a feature still being built is
written as it should then pass, and skipped naming the feature.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.reference import ex_clients, ex_jobs, ex_server_cli, ex_servers_db, ex_shell
from tests.reference.conftest import Ref
from tests.reference.examples import EXAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.hub_database]
DOCUMENTS = (ex_clients, ex_jobs, ex_server_cli, ex_shell, ex_servers_db)  # in this order


def _params() -> list[Any]:
    return [pytest.param(name, id=name, marks=[pytest.mark.skip(reason=f"lands with {lands}")]
                         if lands else [])
            for name, (_, lands) in EXAMPLES.items()]


@pytest.mark.parametrize("name", _params())
def test_example(ref: Ref, name: str) -> None:
    EXAMPLES[name][0](ref)
