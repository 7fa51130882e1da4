"""tagger: sequence labelling with a BiLSTM-CRF."""
from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from tagger import Tagger` without importing torch for `import tagger`
    if name == "Tagger":
        from tagger.api import Tagger

        return Tagger
    raise AttributeError(name)
