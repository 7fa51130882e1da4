"""Reports: numbers and pictures of results. Metrics (entity F1, token accuracy), the error analysis and
its HTML report, training curves. No torch; imports only tagger's core and corpora."""
