"""Model modules a user would write for ``--model-module`` (tests/test_user_model.py)."""
