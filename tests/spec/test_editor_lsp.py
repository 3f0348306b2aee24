"""The schema in a real editor's engine: yaml-language-server, driven over stdio as an
editor drives it, on specs whose modeline points at the schema (as `nnspec init`
writes it). Completions for `op:` values and a Conv2d's arguments; diagnostics for an
unknown op, a misspelt argument and a missing required one.

Needs node and yaml-language-server: found on PATH, or where NNSPEC_YAML_LS names the
server's executable (.ci/run installs it with npm). Skipped when either is absent.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nnspec.scaffold import schema_path

SERVER = os.environ.get("NNSPEC_YAML_LS") or shutil.which("yaml-language-server")
pytestmark = pytest.mark.skipif(
    SERVER is None or shutil.which("node") is None,
    reason="yaml-language-server (npm) and node are needed",
)


class Client:
    """A minimal LSP client: JSON-RPC over the server's stdin and stdout."""

    def __init__(self, root: Path) -> None:
        assert SERVER is not None
        self.process = subprocess.Popen(
            [SERVER, "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.next_id = 0
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.pending: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "capabilities": {
                    "textDocument": {
                        "completion": {
                            "completionItem": {"documentationFormat": ["plaintext"]}
                        },
                        "publishDiagnostics": {},
                    },
                    "workspace": {"configuration": True},
                },
            },
        )
        self.notify("initialized", {})
        settings = {"yaml": {"validate": True, "completion": True, "hover": True}}
        self.notify("workspace/didChangeConfiguration", {"settings": settings})

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            header = b""
            while not header.endswith(b"\r\n\r\n"):
                byte = stream.read(1)
                if not byte:
                    return
                header += byte
            length = int(header.split(b"Content-Length:")[1].split(b"\r\n")[0])
            self.messages.put(json.loads(stream.read(length)))

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        stdin.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def _next(self, deadline: float) -> dict[str, Any]:
        message = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
        if message.get("method") == "workspace/configuration":  # the server asks
            items = message["params"]["items"]
            self._send(
                {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "result": [
                        {"validate": True, "completion": True, "hover": True}
                        if item.get("section") == "yaml"
                        else None
                        for item in items
                    ],
                }
            )
        elif "id" in message and "method" in message:  # other requests: answer null
            self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
        return message

    def request(self, method: str, params: dict[str, Any], timeout: float = 60) -> Any:
        self.next_id += 1
        ident = self.next_id
        self._send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("id") == ident and "method" not in message:
                return message.get("result")
            self.pending.append(message)

    def diagnostics(self, uri: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The diagnostics the server publishes for ``uri`` once it has validated it."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.pending:
                if (
                    message.get("method") == "textDocument/publishDiagnostics"
                    and message["params"]["uri"] == uri
                ):
                    self.pending.remove(message)
                    return message["params"]["diagnostics"]
            self.pending.append(self._next(deadline))

    def open(self, path: Path, text: str) -> str:
        path.write_text(text, encoding="utf-8")
        uri = path.as_uri()
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": "yaml",
                    "version": 1,
                    "text": text,
                }
            },
        )
        return uri

    def close(self) -> None:
        try:
            self.request("shutdown", {}, timeout=10)
            self.notify("exit", {})
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("editor")
    lsp = Client(root)
    yield lsp, root
    lsp.close()


def _spec(*layers: str) -> str:
    head = f"# yaml-language-server: $schema={schema_path().as_posix()}\n"
    body = "".join(f"  - {layer}\n" for layer in layers)
    return f"{head}nnspec: 1\nname: Net\ninputs: {{x: [3, 8, 8]}}\nlayers:\n{body}"


def test_a_valid_spec_has_no_diagnostics(client) -> None:
    lsp, root = client
    uri = lsp.open(
        root / "good.yaml",
        _spec("{op: Conv2d, out_channels: 4, kernel_size: 3}", "ReLU"),
    )
    assert lsp.diagnostics(uri) == []


@pytest.mark.parametrize(
    ("name", "layer", "words"),
    [
        ("unknown_op", "{op: BatchNorm}", ["BatchNorm"]),
        ("misspelt", "{op: Conv2d, out_channels: 4, kernal_size: 3}", ["kernal_size"]),
        ("missing", "{op: Conv2d, kernel_size: 3}", ["out_channels"]),
    ],
)
def test_mistakes_are_flagged_on_their_line(
    client, name: str, layer: str, words
) -> None:
    lsp, root = client
    uri = lsp.open(root / f"{name}.yaml", _spec("ReLU", layer))
    found = lsp.diagnostics(uri)
    assert found, f"no diagnostic for {layer}"
    on_line = [
        d for d in found if d["range"]["start"]["line"] == 6
    ]  # 0-based: layers[1]
    assert on_line, found
    text = " ".join(d["message"] for d in found)
    if name != "unknown_op":
        assert all(w in text for w in words), text


def _complete(
    lsp: Client, path: Path, text: str, character: int
) -> list[dict[str, Any]]:
    """The completions the server offers at ``character`` of the text's last line."""
    uri = lsp.open(path, text)
    lsp.diagnostics(uri)
    result = lsp.request(
        "textDocument/completion",
        {
            "textDocument": {"uri": uri},
            "position": {"line": text.count("\n") - 1, "character": character},
        },
    )
    items: list[dict[str, Any]] = (
        result["items"] if isinstance(result, dict) else result
    )
    return items


def test_op_values_complete_with_descriptions(client) -> None:
    lsp, root = client
    text = _spec("{op: Conv2d, out_channels: 4, kernel_size: 3}") + "  - op: \n"
    items = _complete(lsp, root / "complete_op.yaml", text, character=8)
    labels = {item["label"]: item for item in items}
    assert {"Conv2d", "BatchNorm2d", "ReLU", "cat"} <= set(labels), sorted(labels)[:20]
    documentation = json.dumps(labels["Conv2d"].get("documentation", "")) + json.dumps(
        labels["Conv2d"].get("detail", "")
    )
    assert "2D convolution" in documentation, labels["Conv2d"]


def test_a_conv2d_argument_completes(client) -> None:
    lsp, root = client
    text = _spec("ReLU") + "  - op: Conv2d\n    out_channels: 4\n    \n"
    items = _complete(lsp, root / "complete_args.yaml", text, character=4)
    labels = {item["label"] for item in items}
    assert {"kernel_size", "stride", "padding", "dilation"} <= labels, sorted(labels)


def test_hover_says_what_a_key_is(client) -> None:
    lsp, root = client
    uri = lsp.open(
        root / "hover.yaml",
        _spec("ReLU", "{op: Conv2d, out_channels: 4, kernel_size: 3}"),
    )
    lsp.diagnostics(uri)
    result = lsp.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": {"line": 6, "character": 12}},
    )
    text = json.dumps(result)
    assert "What the node computes" in text, text
    assert "NodeSpec || NodeSpec" not in text
