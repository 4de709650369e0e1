"""A real OpenAI-compatible server for tests: llama-cpp-python's server on a packaged GGUF model.

``llama_server(asset)`` starts ``python -m llama_cpp.server`` on a free port, waits until it
answers ``/v1/models``, yields its base URL and stops it. It skips the test, saying why, when the
server cannot be started here (llama-cpp-python or langchain-openai not installed: both are in the
``remote`` extra; the model package not installed; the server not answering in time).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spec_tool_node import assets

START_TIMEOUT_S = 600.0  # loading a GGUF on a busy 2-core machine takes minutes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(asset: str, alias: str, log: Path) -> Iterator[str]:
    """Serve ``asset`` under the model name ``alias``; yields the base URL (``.../v1``)."""
    pytest.importorskip(
        "llama_cpp.server",
        reason="llama-cpp-python[server] is not installed (pip install 'spec-tool-node[remote]')",
    )
    pytest.importorskip(
        "langchain_openai",
        reason="langchain-openai is not installed (pip install 'spec-tool-node[remote]')",
    )
    if not assets.is_installed(asset):
        pytest.skip(f"model asset {asset} is not installed (spec-tool-node models install {asset})")
    gguf = assets.gguf_file(asset)
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--n_threads",
        "2",
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if server.poll() is not None:
                    pytest.skip(f"llama_cpp.server exited with {server.returncode}; see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.skip(f"llama_cpp.server did not answer in {START_TIMEOUT_S:.0f} s")
                time.sleep(1)
            yield base_url
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
