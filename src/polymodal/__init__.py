"""polymodal: sixteen recent research systems in one package.

Families live in sub-packages (``polymodal.recsys`` ...); ``polymodal.core`` holds the recipe
registry, configs, runs and reports that every family shares. See ``../shared/ARCHITECTURE.md``.
"""

__version__ = "0.1.0"
