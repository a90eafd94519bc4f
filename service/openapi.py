"""The API's OpenAPI document, kept in docs/openapi.json; a test fails when it is stale.

Rewrite it after changing a route or a model: python -m service.openapi
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from graph.runner import Home
from service.app import create_app
from service.core import ServiceSettings

OPENAPI_DOC = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"


def openapi_text() -> str:
    """The document the app serves at /api/v1/openapi.json, as docs/ keeps it."""
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(ServiceSettings(home=Home(Path(scratch))))
        try:
            document = app.openapi()
        finally:
            app.state.service.close()
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OPENAPI_DOC
    target.write_text(openapi_text(), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
