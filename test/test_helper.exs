# The default pool (SnakeBridge.Pool) is started by the application with the Python of
# `make setup`'s venv; tests that need special pools start their own.
ExUnit.start()
