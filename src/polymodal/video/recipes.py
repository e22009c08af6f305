"""Video family recipes: Dual-Teacher KD, Audio-Assisted TTA and OVG-HQ, one module each (imported for their
``@recipe`` registrations)."""

from polymodal.video import kd_recipe, tta_recipe  # noqa: F401
from polymodal.video.grounding import recipe as grounding_recipe  # noqa: F401
