# Fixtures for every test folder: tests/, libs/*/tests, services/*/tests.
pytest_plugins = ["tokenrt_testkit.fixtures"]
