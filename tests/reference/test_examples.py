"""Every example of the five reference documents (../shared/reference/), run as printed
against a real hub and a real agent, with the documented outcome asserted.

Each example is one test id, ``<document>: <section>`` (the examples are in ``ex_*.py``,
one module per document). Its printed code is run with only the ids, credentials and
addresses adapted. Where Ferry is deliberately different, the test asserts the
documented difference; docs/REFERENCE.md lists each example with its status and the
reason for each difference.
"""

from __future__ import annotations

import pytest

from tests.reference import ex_clients, ex_jobs, ex_server_cli, ex_servers_db, ex_shell
from tests.reference.conftest import Ref
from tests.reference.examples import EXAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.hub_database]
DOCUMENTS = (ex_clients, ex_jobs, ex_server_cli, ex_shell, ex_servers_db)  # in this order


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example(ref: Ref, name: str) -> None:
    EXAMPLES[name](ref)
