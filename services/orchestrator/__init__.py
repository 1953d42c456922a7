"""HTTP orchestrator: staged pipeline with bounded queues, shedding and coalescing."""
