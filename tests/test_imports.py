"""Start-up cost: heavy optional SDKs load only when their feature is configured."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("daytona", "langfuse", "stripe", "litellm")


def test_the_app_and_cli_import_no_optional_sdk() -> None:
    code = (
        "import sys, shoal.app, shoal.cli; "
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
