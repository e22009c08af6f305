"""``python -m polymodal.demo.child DEMO_DIR RECIPE``: one recipe's compare, in its own process.

The runner starts one child per recipe so that a crash, a hang or a kill of one recipe leaves the others untouched.
The child prepares the compare folder (once) and runs it; ``run_compare`` keeps finished methods, so a restarted
child continues where the last one stopped. On failure the error goes to ``demo-error.json`` for the report.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from polymodal.core.errors import PolymodalError
from polymodal.core.execute import prepare_compare, run_compare
from polymodal.core.registry import get_recipe, load_family
from polymodal.core.runs import atomic_write_json
from polymodal.demo.plan import ERROR_FILE, DemoPlan


def run_one(demo_dir: Path, name: str) -> None:
    plan = DemoPlan.load(demo_dir)
    load_family(plan.families[name])
    recipe = get_recipe(name)
    sub = demo_dir / name
    if not (sub / "compare.json").is_file():
        prepare_compare(recipe, quick=True, overrides=plan.overrides.get(name) or None, out=sub)
    # smoke runs every method in this process: start-up (2-6 s per method process) would dominate its seconds of
    # work; the other settings keep one process per method for per-method peak memory and crash isolation
    run_compare(sub, isolate=plan.setting != "smoke")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m polymodal.demo.child DEMO_DIR RECIPE", file=sys.stderr)
        return 2
    demo_dir, name = Path(args[0]), args[1]
    try:
        run_one(demo_dir, name)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - every failure must reach the report
        message = str(e) if isinstance(e, PolymodalError) else f"{type(e).__name__}: {e}"
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        (demo_dir / name).mkdir(parents=True, exist_ok=True)
        atomic_write_json(demo_dir / name / ERROR_FILE, {"error": message, "traceback": tb})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
