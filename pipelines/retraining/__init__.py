"""Runs over time: the local cron scheduler of ``retrain``, and the history and lineage of what each run did."""
