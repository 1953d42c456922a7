"""Deployment assets and the local stack runner (:mod:`deploy.stack`)."""
