"""The main job: the whole pipeline on this machine, a load, and a drilldown a person can read.

``python -m deploy.local`` (or ``scripts/run-stack.sh``) starts Prometheus, Jaeger, our Collector and the
three services on free loopback ports, drives a realistic load through the gateway, then prints the
slowest recent request: its histogram bucket, its exemplar's trace id, and that trace from Jaeger as a
tree across gateway, orchestrator and inference.
"""
