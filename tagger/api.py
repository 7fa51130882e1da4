"""The public Python API: `from tagger.api import Tagger` (or `from tagger import Tagger`).

`Tagger` lives in tagger/tagging/tagger.py, beside the pipeline and engine it calls, because every door
out (files, Ray, HTTP, selection) takes one and the tagging package imports nothing above it.
"""
from tagger.tagging.pipeline import SentenceScores, TaggedText
from tagger.tagging.tagger import Tagger

__all__ = ["Tagger", "TaggedText", "SentenceScores"]
