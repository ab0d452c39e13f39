"""Helpers for the framework tests: sweep tasks that fail, sleep or kill their worker.

The tests put ``tests/`` on PYTHONPATH (and on the Ray workers' PYTHONPATH), so
``sweep.task=framework_helpers.tasks:...`` can be imported wherever the runs execute.
"""
