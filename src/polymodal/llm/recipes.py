"""Language-model family recipes: CCD, the gate_proj module study and SparseCut, one module each (imported for
their ``@recipe`` registrations)."""

from polymodal.llm import ccd_recipe, module_study_recipe, sparsecut_recipe  # noqa: F401
