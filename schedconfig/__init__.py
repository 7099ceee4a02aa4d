"""PanDA queue configuration (classic schedconfig / cloudconfig).

One JSON file per queue in `schedconfig/queues/`, loaded and checked by `loader`, written into
the DB by `sync` and exported for pilots by `export`. This package stays light: `model`,
`loader` and `export` import only the stdlib, so the pilot and AutoPilot can use them.
"""
