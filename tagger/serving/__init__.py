"""The doors that call the engine: the HTTP server (server, bodies, batcher, server_metrics), the Label Studio
ML backend, Ray Serve (ray_serve) and Ray Data (ray_data, shards). Doors import tagger.tagging, never the
reverse; they never import torch."""
