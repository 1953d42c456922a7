"""Public HTTP API: OpenAI-compatible chat completions with auth, limits, cache and streaming."""
