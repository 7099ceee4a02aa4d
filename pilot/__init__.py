"""PanDA-WMS pilot: pulls a job from the PanDA server, runs it on this worker node, reports.

Runs on worker nodes: imports only the standard library, `requests`, `panda_server.protocol`
(the wire contract) and its own modules. Entry points: `panda-pilot` and `python -m pilot`.
"""

VERSION = "1.0.0"
