"""``python -m polymodal.core.worker RUN_DIR``: run one method of a compare in its own process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from polymodal.core.errors import PolymodalError
from polymodal.core.execute import run_in_dir
from polymodal.core.registry import load_family


def _load_own_family(run_dir: str) -> None:
    """Import only the compare's family (the compare folder's ``compare.json`` names it): start-up in about 2 s
    instead of the 5 s that importing all six families takes."""
    spec = Path(run_dir).resolve().parent / "compare.json"
    try:
        family = json.loads(spec.read_text()).get("family")
    except (OSError, ValueError):
        return
    if family:
        load_family(family)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m polymodal.core.worker RUN_DIR", file=sys.stderr)
        return 2
    try:
        _load_own_family(args[0])
        run_in_dir(args[0])
    except PolymodalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
