"""The machinery under everything: tracked processes, background jobs, waits, progress, timing.

Nothing here knows about targets, pytest or the comparison.
"""
