"""Pieces the three services share: settings parsing, the model catalog, process entry helpers."""
