"""Sampling backends: transformers unchanged behind the interface, an OpenAI-compatible endpoint, vLLM's clear absence.

The endpoint is a local HTTP server started by the test; it answers from the tiny model through the
transformers backend, so what comes back over HTTP can be compared with generating directly.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codelutra.cli import main
from codelutra.config import GenerationConfig, load_config
from codelutra.errors import UserError
from codelutra.generation import openai_backend
from codelutra.generation.backends import open_backend
from codelutra.generation.extract import extract_python, extract_sql
from codelutra.generation.openai_backend import Endpoint, with_answer_prefix
from codelutra.generation.types import SamplingParams

PREFIX = "```sql\n"
PROMPTS = [[{"role": "user", "content": "q" * k}] for k in (30, 1, 12, 5, 20)]
GREEDY = dict(params=SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=6, batch_size=2, seed=7))


class FakeEndpoint:
    """/v1/chat/completions on 127.0.0.1, answered by the tiny model; it records every request it gets."""

    def __init__(self, generate):
        self.requests: list[dict] = []
        self.fail_next = 0  # answer this many requests with HTTP 500 first
        self.reply: str | None = None  # answer with this text instead of the model's
        self.not_json = False
        endpoint, lock = self, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    endpoint.requests.append({**body, "path": self.path, "auth": self.headers.get("Authorization")})
                    if endpoint.fail_next:
                        endpoint.fail_next -= 1
                        return self._send(500, b"overloaded")
                    if endpoint.not_json:
                        return self._send(200, b"<html>a web page</html>")
                    params = SamplingParams(
                        n=body["n"], temperature=body["temperature"], top_p=body["top_p"],
                        max_new_tokens=body["max_tokens"], batch_size=8, seed=body["seed"],
                    )
                    texts = [endpoint.reply] * body["n"] if endpoint.reply is not None else [
                        c.text for c in generate([body["messages"]], answer_prefix="", params=params)[0]
                    ]
                choices = [{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(texts)]
                self._send(200, json.dumps({"choices": choices[::-1]}).encode())  # the index gives the order

            def _send(self, status: int, payload: bytes):
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def direct(tiny_model_dir):
    """The tiny model through the transformers backend."""
    with open_backend(GenerationConfig(), tiny_model_dir) as generate:
        yield generate


@pytest.fixture
def server(direct, monkeypatch):
    monkeypatch.setattr(openai_backend, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    endpoint = FakeEndpoint(direct)
    yield endpoint
    endpoint.httpd.shutdown()
    endpoint.httpd.server_close()


def test_transformers_backend_is_the_sampler_unchanged(tiny_model_dir, direct):
    from codelutra.generation.sampler import generate
    from codelutra.models import load_model, load_tokenizer

    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    sampling = dict(answer_prefix=PREFIX, params=SamplingParams(n=2, temperature=1.0, top_p=0.9, max_new_tokens=5, batch_size=4, seed=3))
    assert direct(PROMPTS, **sampling) == generate(model, tokenizer, PROMPTS, **sampling)


def test_openai_backend_sends_the_request_and_keeps_input_order(server, direct, monkeypatch):
    monkeypatch.setenv("TEST_ENDPOINT_KEY", "secret")
    cfg = GenerationConfig(backend="openai", base_url=server.base_url, api_key_env="TEST_ENDPOINT_KEY", concurrency=3)
    done = []
    with open_backend(cfg, "tiny-served") as generate:
        out = generate(PROMPTS, answer_prefix=PREFIX, progress=done.append, **GREEDY)
    expected = [[with_answer_prefix(reply.text, PREFIX)] for [reply] in direct(PROMPTS, answer_prefix="", **GREEDY)]
    assert [[c.text] for [c] in out] == expected and len(out) == len(PROMPTS) and sum(done) == len(PROMPTS)
    assert all(c.text.startswith(PREFIX) and c.token_ids is None for [c] in out)  # the tiny model's replies hold no fence: prefix in front
    assert sorted(r["messages"][0]["content"] for r in server.requests) == sorted(p[0]["content"] for p in PROMPTS)
    for r in server.requests:
        assert r["path"] == "/v1/chat/completions" and r["auth"] == "Bearer secret" and r["model"] == "tiny-served"
        assert (r["n"], r["temperature"], r["top_p"], r["max_tokens"], r["seed"]) == (1, 0.0, 1.0, 6, 7)

    sampled = Endpoint(server.base_url, "tiny-served").generate(
        PROMPTS[:2], answer_prefix=PREFIX,
        params=SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=4, batch_size=1, seed=1),
    )
    assert [len(c) for c in sampled] == [3, 3] and server.requests[-1]["n"] == 3
    assert server.requests[-1]["auth"] is None  # no key in the environment: no header


def test_answer_prefix_goes_in_front_of_bare_code_only(server):
    assert with_answer_prefix("SELECT 1", PREFIX) == "```sql\nSELECT 1"
    replies = ["SELECT 1", "SELECT 1\n```", "```sql\nSELECT 1\n```", "Here it is:\n```sql\nSELECT 1;\n```"]
    for reply in replies[1:]:
        assert with_answer_prefix(reply, PREFIX) == reply  # a fence of its own: kept as written
    assert [extract_sql(with_answer_prefix(r, PREFIX)) for r in replies] == ["SELECT 1"] * 4
    assert extract_python(with_answer_prefix("def f():\n    return 1", "```python\n")) == "def f():\n    return 1"
    server.reply = replies[-1]
    [[completion]] = Endpoint(server.base_url, "m").generate(PROMPTS[:1], answer_prefix=PREFIX, **GREEDY)
    assert completion.text == server.reply


def test_one_server_error_is_retried(server):
    server.fail_next = 1
    out = Endpoint(server.base_url, "m").generate(PROMPTS[:1], answer_prefix=PREFIX, **GREEDY)
    assert len(out) == 1 and len(server.requests) == 2
    server.fail_next = 99
    with pytest.raises(UserError, match=r"HTTP 500: overloaded \(after 4 tries\)"):
        Endpoint(server.base_url, "m").generate(PROMPTS[:1], answer_prefix=PREFIX, **GREEDY)


def test_unreachable_or_non_json_endpoint_is_one_clear_line(server, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    with pytest.raises(UserError, match="cannot reach http://127.0.0.1:.*is the server running") as e:
        Endpoint(f"http://127.0.0.1:{port}/v1", "m").generate(PROMPTS[:2], answer_prefix=PREFIX, **GREEDY)
    assert "\n" not in str(e.value)
    server.not_json = True
    with pytest.raises(UserError, match="not JSON: <html>a web page</html>; base_url should be the API root"):
        Endpoint(server.base_url, "m").generate(PROMPTS[:1], answer_prefix=PREFIX, **GREEDY)


def test_generation_config_is_validated():
    assert load_config().generation.backend == "transformers"
    with pytest.raises(UserError, match="generation: .*openai backend needs base_url"):
        load_config(overrides=["generation.backend=openai"])
    with pytest.raises(UserError, match="generation.base_url: .*http"):
        load_config(overrides=["generation.backend=openai", "generation.base_url=localhost:8000"])
    with pytest.raises(UserError, match="generation.backend"):
        load_config(overrides=["generation.backend=llamacpp"])
    cfg = load_config(overrides=["generation.backend=openai", "generation.base_url=http://127.0.0.1:8000/v1"])
    assert cfg.generation.base_url == "http://127.0.0.1:8000/v1" and cfg.generation.api_key_env == "OPENAI_API_KEY"


def test_eval_through_an_endpoint(server, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eval", "--backend", "openai", "--base-url", server.base_url, "--tasks", "builtin:heldout", "--limit", "3",
            "--output", str(out), "--set", "eval.max_new_tokens=8"]
    assert main(args) == 2 and "--model" in capsys.readouterr().err  # no default model at an endpoint
    assert main([*args, "--model", "tiny-served"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["n"] == 3 and sum(result["counts"].values()) == 3 and result["model"] == "tiny-served"
    assert len(server.requests) == 3
    assert all((r["model"], r["n"], r["temperature"], r["max_tokens"]) == ("tiny-served", 1, 0.0, 8) for r in server.requests)
    samples = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all(s["completions"][0].startswith(PREFIX) for s in samples)


def test_run_refuses_the_openai_backend(tmp_path, capsys):
    code = main(["run", "--set", "generation.backend=openai", "--set", "generation.base_url=http://127.0.0.1:9/v1",
                 "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "codelutra eval" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(UserError, match=r"pip install 'codelutra\[vllm\]'"):
        with open_backend(GenerationConfig(backend="vllm"), tiny_model_dir):
            pass
    code = main(["eval", "--backend", "vllm", "--model", tiny_model_dir, "--tasks", "builtin:heldout", "--limit", "1",
                 "--output", str(tmp_path / "out")])
    assert code == 2 and "codelutra[vllm]" in capsys.readouterr().err
