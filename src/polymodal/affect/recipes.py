"""Affect family recipes: skeleton-based emotion recognition, MGHFT (stickers) and AffectSeek (VQAU-Bench), one
module each (imported for their ``@recipe`` registrations)."""

from polymodal.affect.skeleton import recipe as skeleton_recipe  # noqa: F401
from polymodal.affect.stickers import recipe as stickers_recipe  # noqa: F401
from polymodal.affect.vqau import recipe as vqau_recipe  # noqa: F401
