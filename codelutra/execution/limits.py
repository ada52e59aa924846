"""The sandboxes' default limits, in one place: the config's `verify` section and every sandbox entry point use them."""

DEFAULT_TIMEOUT_S = 5.0  # wall seconds one candidate (or gold query) may run
