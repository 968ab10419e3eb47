"""Development tools: the benchmarks (`bench_auto_engagement`, `bench_stats`) and the demo (`seed_demo`).

Installed when DEBUG is on or DEVTOOLS=true (engagement_site/settings.py), so a production deployment does not
list, or run, commands that build synthetic businesses in its database. The top layer: it may use every app, and no
app imports it.
"""
