"""What the integration tier, the fault tier and bench/ share to run real parts.

- deadlines: how long each wait may take, and the tiers' pytest timeouts beyond them
- brokers: finding or starting a real Kafka broker; test clients' settings; retrying
- records: producing and reading topics
- deployments: one isolated leadscore deployment (topics, group, state dir) and its processes
- processes: a leadscore (or any) process, its log, readiness, stop and stacks
- http: requests to a worker's HTTP API and readiness waits

bench/ imports these with the repository root on its path (bench/common.py).
"""
