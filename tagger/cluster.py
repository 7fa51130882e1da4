"""Where `tagger.cluster` was: tagging on Ray lives in tagger/tagging/cluster.py (re-exported here)."""
from tagger.tagging.cluster import tag_dataset, tag_files

__all__ = ["tag_dataset", "tag_files"]
