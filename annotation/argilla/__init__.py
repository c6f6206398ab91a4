"""Argilla as the second annotation front end: push a round's tasks as a dataset, pull the answers back.

    connect.py   the SDK client from `annotation.argilla` config, with one-line errors
    dataset.py   what a round's dataset looks like (fields, questions), records, answers -> judgments
    sync.py      push (adds what is missing), progress, pull (submitted responses -> judgments)

The `argilla` SDK is an optional extra: nothing here imports it at module level, so the
rest of the project runs without it.
"""
