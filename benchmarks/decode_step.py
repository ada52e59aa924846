"""What one decode step of the shared-prefix sampler costs, part by part, against the plain alternatives.

Two parts the sampler replaced, each timed side by side on the same inputs:

* choosing the next tokens of 32 rows of the model's logits (SmolLM2's: 49,152) (temperature 0.8, top-k 50, top-p 0.95):
  transformers' warpers and a full-vocabulary draw (what `generate` does) against
  `codelutra.generation.sampler.sampling_distribution` and a draw over the top-k;
* one forward step of the model (the embedded default unless `--model`) over 32 rows with 200 cached tokens: transformers' `DynamicCache`
  (each step concatenated onto the whole cache) against `codelutra.generation.prefix_cache.growing_cache`
  (written in place); the logits of the two are checked to be equal;
* the same step's linear layers: plain `nn.Linear` against oneDNN on weights reordered once into its layout
  (`codelutra.generation.onednn_linear`, as the sampling backend runs them), both on the growing cache;
  the logits are checked to agree within float32 rounding.

Usage: python benchmarks/decode_step.py [--model PATH] [--rows 32] [--context 200] [--repeats 10] [--results DIR] [--tag T]
(results: DIR/decode-step[-T].{json,md})
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from record import RESULTS, provenance, provenance_markdown, write_results


def per_call_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - start) / repeats


def token_choice(rows: int, vocabulary: int, repeats: int) -> tuple[float, float]:
    import torch
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from codelutra.generation.sampler import TOP_K, _token_chooser
    from codelutra.generation.types import SamplingParams

    logits = torch.randn(rows, vocabulary) * 3
    warpers = LogitsProcessorList([TemperatureLogitsWarper(0.8), TopKLogitsWarper(TOP_K), TopPLogitsWarper(0.95)])
    plain = per_call_ms(lambda: torch.multinomial(warpers(None, logits.clone()).softmax(-1), 1), repeats)
    choose = _token_chooser(SamplingParams(temperature=0.8, top_p=0.95))
    return plain, per_call_ms(lambda: choose(logits), repeats)


def forward_step(model, rows: int, context: int, repeats: int) -> tuple[float, float, float]:
    """ms per step: DynamicCache, the growing cache, the growing cache with oneDNN linear layers."""
    import torch
    from transformers import DynamicCache

    from codelutra.generation.onednn_linear import onednn_linear_layers
    from codelutra.generation.prefix_cache import growing_cache

    model.eval()
    torch.manual_seed(0)
    vocabulary = model.config.vocab_size
    tokens = torch.randint(0, vocabulary, (repeats + 1, rows, 1))
    with torch.inference_mode():
        kv = [(layer.keys.clone(), layer.values.clone()) for layer in model(input_ids=torch.randint(0, vocabulary, (rows, context)), use_cache=True).past_key_values.layers]

        def steps(cache) -> tuple[float, torch.Tensor]:
            mask, seconds, logits = torch.ones(rows, context, dtype=torch.long), [], []
            for step in range(repeats + 1):
                mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
                start = time.perf_counter()
                out = model(input_ids=tokens[step], attention_mask=mask, position_ids=torch.full((rows, 1), context + step), cache=cache, use_cache=True)
                seconds.append(time.perf_counter() - start)
                logits.append(out.logits[:, -1])
            return 1000 * sum(seconds[1:]) / repeats, torch.stack(logits)  # the first step is a warm-up

        dynamic_ms, dynamic = steps(DynamicCache(ddp_cache_data=[(k.clone(), v.clone()) for k, v in kv], config=model.config))
        growing_ms, growing = steps(growing_cache([(k.clone(), v.clone()) for k, v in kv]))
        with onednn_linear_layers(model):
            onednn_ms, onednn = steps(growing_cache([(k.clone(), v.clone()) for k, v in kv]))
    if not torch.equal(dynamic, growing):
        raise SystemExit("decode_step: the growing cache's logits differ from DynamicCache's")
    if not torch.allclose(onednn, growing, rtol=1e-4, atol=1e-4):
        raise SystemExit("decode_step: the oneDNN linear layers' logits differ from the plain layers'")
    return dynamic_ms, growing_ms, onednn_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the model (default: the embedded default)")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--context", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--tag", help="results go to decode-step-TAG.{json,md}")
    args = parser.parse_args()
    from codelutra.models import EMBEDDED_DEFAULT, load_model, resolve_model

    model = load_model(resolve_model(args.model or EMBEDDED_DEFAULT))
    choice = token_choice(args.rows, model.config.vocab_size, args.repeats)
    step = forward_step(model, args.rows, args.context, args.repeats)
    rows = [
        {"part": "next-token choice", "plain": "transformers' warpers, full-vocabulary draw", "project": "sampling_distribution, top-k draw", "plain_ms": round(choice[0], 1), "project_ms": round(choice[1], 1)},
        {"part": "forward step", "plain": "DynamicCache (concatenated)", "project": "growing_cache (in place)", "plain_ms": round(step[0], 1), "project_ms": round(step[1], 1)},
        {"part": "forward step's linear layers", "plain": "nn.Linear", "project": "onednn_linear_layers (oneDNN)", "plain_ms": round(step[1], 1), "project_ms": round(step[2], 1)},
    ]
    result = {"benchmark": "decode_step", **provenance(), "model": args.model or EMBEDDED_DEFAULT, "rows_decoded": args.rows, "context": args.context, "repeats": args.repeats, "parts": rows}
    lines = ["# One decode step, part by part", "", provenance_markdown(result), f"{args.rows} rows, {args.context} cached tokens, mean of {args.repeats} calls.", ""]
    lines += ["| part | plain | ms | project | ms |", "|---|---|---:|---|---:|"]
    lines += [f"| {r['part']} | {r['plain']} | {r['plain_ms']} | {r['project']} | {r['project_ms']} |" for r in rows] + [""]
    for r in rows:
        print(f"{r['part']}: {r['plain']} {r['plain_ms']} ms, {r['project']} {r['project_ms']} ms")
    for path in write_results(Path(args.results), "decode-step" + (f"-{args.tag}" if args.tag else ""), result, "\n".join(lines)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
