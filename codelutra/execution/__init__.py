"""The sandbox: the only place that runs untrusted code. See `sql.py`."""
