"""AutoPilot: the pilot factory (docs/autopilot.md).

policy.py decides how many pilots a queue gets (pure), submitters/ put them into batch systems,
tracking.py records and follows every pilot, factory.py is the cycle, cli.py `panda-autopilot`.
"""
