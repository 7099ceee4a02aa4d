"""The parts of the dispatch benchmark; `benchmarks/dispatch.py` is the command line.

- `common`: constants and clocks shared by the others
- `setup`: the private PostgreSQL, schedconfig, server settings, seeding and checking the jobs
- `workers`: threads or processes behind a start barrier, and each worker's timed loop
- `pilots`: the simulated pilots (http.client or requests over mTLS)
- `rawsql`: the raw-SQL baseline (psycopg)
- `measure`: CPU accounting from /proc, percentiles, the per-phase summaries
- `report`: the table and the JSON output

Heavy imports (sqlalchemy, the server packages) happen inside functions, so that spawned pilot
processes, which re-import these modules, start fast and stay small.
"""
