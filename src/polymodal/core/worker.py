"""``python -m polymodal.core.worker RUN_DIR``: run one method of a compare in its own process."""

from __future__ import annotations

import sys

from polymodal.core.errors import PolymodalError
from polymodal.core.execute import run_in_dir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m polymodal.core.worker RUN_DIR", file=sys.stderr)
        return 2
    try:
        run_in_dir(args[0])
    except PolymodalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
