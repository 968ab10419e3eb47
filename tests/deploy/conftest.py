def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds a venv or starts servers (tens of seconds); still runs in CI")
