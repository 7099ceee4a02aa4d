"""The PanDA wire contract, shared by the server, pilot, client, autopilot and Bamboo.

Light to import on a worker node: standard library only (plus `cryptography` in tls.py and
`requests` in transport.py). It must never import flask or sqlalchemy; a test enforces this.
"""
