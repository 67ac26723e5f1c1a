import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sam_build: runs `sam build` of the whole template (about a minute)")
