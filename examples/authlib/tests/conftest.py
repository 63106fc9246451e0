"""The Python client's fixtures (a real custosd on a fresh SoftHSM2 token)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "custos_client_fixtures",
    Path(__file__).resolve().parents[3] / "clients" / "python" / "tests" / "conftest.py",
)
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
daemon = _fixtures.daemon
