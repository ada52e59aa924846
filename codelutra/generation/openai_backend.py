"""Completions from an OpenAI-compatible endpoint: a vLLM or llama.cpp server, or a hosted model.

An endpoint serves a fixed model, so this backend scores models (`codelutra eval`); the refinement
loop, whose policy changes every iteration, cannot use it. Standard library only: one POST to
`<base_url>/chat/completions` per prompt (`n`, `temperature`, `top_p`, `max_tokens`, `seed`), a few
in flight at once. Connection errors, 429 and 5xx answers are retried with a short backoff.

A chat API cannot pre-fill the assistant's turn with the answer prefix (an opening code fence), so
the prefix is put in front of a reply that holds no code fence: such a reply is bare code, as if the
model had started inside the block. A reply that writes its own fenced block is kept as written.
Either way the completion is what the model answered, and extraction finds the code in it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from codelutra.candidates import Candidate
from codelutra.errors import UserError
from codelutra.generation.types import Messages, SamplingParams

RETRY_DELAYS_S = (0.5, 1.0, 2.0)  # seconds before each retry; then the error is reported
REQUEST_TIMEOUT_S = 300.0


def with_answer_prefix(reply: str, answer_prefix: str) -> str:
    """The reply as a whole answer: the prefix in front unless the reply has a code fence of its own."""
    return reply if "```" in reply else answer_prefix + reply


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # the API root, e.g. http://127.0.0.1:8000/v1
    model: str  # the model's name at the endpoint
    api_key: str | None = None
    concurrency: int = 4

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def generate(
        self,
        prompts: Sequence[Messages],
        *,
        answer_prefix: str,
        params: SamplingParams,  # batch_size: the server batches, `concurrency` requests are in flight
        progress: Callable[[int], None] | None = None,
        grammars: Sequence[str | None] | None = None,
    ) -> list[list[Candidate]]:
        """Texts, and whether the server cut each at max_tokens (finish_reason "length"); no tokens or log-probs."""
        if grammars is not None and any(g is not None for g in grammars):
            raise ValueError("the openai backend cannot decode under a grammar (generation.constrain)")
        sampling = {
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "seed": params.seed,
        }
        results = []
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self._complete, {"model": self.model, "messages": p, **sampling}) for p in prompts]
            try:
                for future in futures:
                    results.append([Candidate(with_answer_prefix(reply, answer_prefix), truncated=cut) for reply, cut in future.result()])
                    if progress:
                        progress(1)
            finally:
                for future in futures:
                    future.cancel()
        return results

    def _complete(self, body: dict) -> list[tuple[str, bool]]:
        """The `n` replies to one request, in the server's order, each with whether it was cut at max_tokens."""
        answer = self._post(body)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list):
            raise UserError(f"{self.url}: the answer has no 'choices' list; is this an OpenAI-compatible API?")
        if len(choices) != body["n"]:
            raise UserError(f"{self.url}: {len(choices)} completions for n={body['n']} (the server may not support n > 1)")
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        return [((c.get("message") or {}).get("content") or "", c.get("finish_reason") == "length") for c in choices]

    def _post(self, body: dict):
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode()
        for delay in (*RETRY_DELAYS_S, None):
            try:
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as e:
                if e.code < 500 and e.code != 429:
                    raise UserError(f"{self.url} answered HTTP {e.code}: {_one_line(e.read())}") from None
                problem = f"{self.url} answered HTTP {e.code}: {_one_line(e.read())}"
            except (urllib.error.URLError, OSError) as e:
                problem = f"cannot reach {self.url}: {getattr(e, 'reason', e)} (is the server running?)"
            if delay is None:
                raise UserError(f"{problem} (after {len(RETRY_DELAYS_S) + 1} tries)")
            time.sleep(delay)
        try:
            return json.loads(raw)
        except ValueError:
            raise UserError(f"{self.url} answered with something that is not JSON: {_one_line(raw)}; "
                            "base_url should be the API root, e.g. http://127.0.0.1:8000/v1") from None


def _one_line(raw: bytes, limit: int = 200) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text[:limit] + ("..." if len(text) > limit else "") or "(empty)"
