"""The VM-vs-container comparison: rows as data, probes, measurement, results and reports.

Depends on the targets and on a small ``Instances`` interface of the harness
(``probes.Instances``); the harness knows nothing of rows or probes.
"""
