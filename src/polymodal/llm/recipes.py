"""Language-model family recipes: CCD, the gate_proj module study and SparseCut, one module each (imported for
their ``@recipe`` registrations)."""

import importlib

# modules still being written are skipped; any other import error surfaces
for _name in ("ccd_recipe", "module_study_recipe", "sparsecut_recipe"):
    try:
        importlib.import_module(f"polymodal.llm.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"polymodal.llm.{_name}":
            raise
