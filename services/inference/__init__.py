"""gRPC inference server: model registry, batching scheduler, simulated engine."""
