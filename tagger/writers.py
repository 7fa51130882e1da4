"""Where `tagger.writers` was: the writers' registry lives in tagger/tagging/writers.py (re-exported here)."""
from tagger.tagging.writers import WRITERS, Writer, register

__all__ = ["WRITERS", "Writer", "register"]
