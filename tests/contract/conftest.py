"""Contract tests: replay the recorded upstream ComfyUI traffic (tests/fixtures/reference) against the emulator."""


def pytest_configure(config):
    config.addinivalue_line("markers", "covers(*files): reference files (relative to reference/comfyui-api) a test checks")
