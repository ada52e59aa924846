"""Which grammar engine for `generation.constrain: schema`: llguidance against xgrammar, on Spider's databases.

For each database, the schema grammar (`codelutra.tasks.sql_grammar`) is compiled for SmolLM2's tokenizer,
then the token mask is computed at every step of some of the database's gold answers (the query, a newline and
the closing fence), each token consumed after its mask, as in decoding. llguidance takes the grammar as written;
xgrammar takes it through `Grammar.from_lark` after two rewrites it needs (hex escapes as `\\uXXXX`, the alias
terminal without its keyword exclusion), so its grammar is slightly looser, never stricter.
A compile is timed from the grammar text to a matcher ready for its first mask, the tokenizer's own set-up left
out (done once per process). One thread each.

`--grammars schema,scope` times the scoped grammar (`generation.constrain: scope`) beside the schema one.

Usage: python benchmarks/grammar_engines.py [--databases N] [--queries Q] [--engines llguidance,xgrammar]
       [--grammars schema,scope] [--tag T]
(results: benchmarks/results/grammar-engines[-T].{json,md})
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import defaultdict

from record import RESULTS, SPIDER, provenance, provenance_markdown, write_results


def xgrammar_lark(grammar: str) -> str:
    """The grammar rewritten into the Lark that xgrammar's `from_lark` reads (see the module docstring)."""
    grammar = re.sub(r"\\x\{([0-9a-f]+)\}", lambda m: f"\\u{int(m.group(1), 16):04x}", grammar)
    return re.sub(r"^(ALIAS: /[^\n]*/) & ~/[^\n]*/$", r"\1", grammar, flags=re.M)


def llguidance_engine(tokenizer):
    import llguidance
    import llguidance.hf
    import llguidance.torch

    lltok = llguidance.hf.from_tokenizer(tokenizer)
    mask = llguidance.torch.allocate_token_bitmask(1, lltok.vocab_size)

    def compile_(grammar: str):
        matcher = llguidance.LLMatcher(lltok, llguidance.LLMatcher.grammar_from_lark(grammar))
        if matcher.is_error():
            raise ValueError(matcher.get_error())
        return matcher

    def step(matcher, token: int) -> bool:
        llguidance.torch.fill_next_token_bitmask(matcher, mask, 0)
        return matcher.consume_token(token)

    return compile_, lambda compiled: compiled.deep_copy(), step


def xgrammar_engine(tokenizer):
    import xgrammar

    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer)
    compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    mask = xgrammar.allocate_token_bitmask(1, info.vocab_size)

    def compile_(grammar: str):
        return compiler.compile_grammar(xgrammar.Grammar.from_lark(xgrammar_lark(grammar)))

    def step(matcher, token: int) -> bool:
        matcher.fill_next_token_bitmask(mask, 0)
        return matcher.accept_token(token)

    return compile_, xgrammar.GrammarMatcher, step


ENGINES = {"llguidance": llguidance_engine, "xgrammar": xgrammar_engine}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=None, help="the first N databases by name (default: all)")
    parser.add_argument("--queries", type=int, default=5, help="gold answers stepped through per database")
    parser.add_argument("--engines", default="llguidance,xgrammar")
    parser.add_argument("--grammars", default="schema", help="schema, scope or both (comma-separated)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    if not (SPIDER / "train_spider.json").is_file():
        print(f"no Spider data at {SPIDER}", file=sys.stderr)
        return 2
    from codelutra.models import EMBEDDED_DEFAULT, load_tokenizer, resolve_model
    from codelutra.tasks.sql_grammar import schema_grammar

    tokenizer = load_tokenizer(resolve_model(EMBEDDED_DEFAULT))
    gold = defaultdict(list)
    for record in json.loads((SPIDER / "train_spider.json").read_text()):
        gold[record["db_id"]].append(record["query"])
    databases = sorted(d for d in gold if (SPIDER / "database" / d / f"{d}.sqlite").is_file())[: args.databases]
    answers = {
        d: [tokenizer(q.strip().rstrip(";") + "\n```", add_special_tokens=False).input_ids for q in gold[d][: args.queries]]
        for d in databases
    }
    rows = []
    for kind, name in [(kind, name) for kind in args.grammars.split(",") for name in args.engines.split(",")]:
        grammars = {d: schema_grammar(str(SPIDER / "database" / d / f"{d}.sqlite"), scope=kind == "scope") for d in databases}
        compile_, matcher_of, step = ENGINES[name](tokenizer)
        compile_s, step_us, rejected, steps = [], [], 0, 0
        for d in databases:
            start = time.perf_counter()
            compiled = compile_(grammars[d])
            compile_s.append(time.perf_counter() - start)
            for tokens in answers[d]:
                matcher = matcher_of(compiled)
                for token in tokens:
                    start = time.perf_counter()
                    ok = step(matcher, token)
                    step_us.append(1e6 * (time.perf_counter() - start))
                    steps += 1
                    if not ok:
                        rejected += 1
                        break
        step_us.sort()
        rows.append({
            "grammar": kind,
            "engine": name,
            "databases": len(databases),
            "compile_s_median": round(statistics.median(compile_s), 4),
            "compile_s_max": round(max(compile_s), 4),
            "compile_s_total": round(sum(compile_s), 2),
            "steps": steps,
            "step_us_median": round(statistics.median(step_us), 1),
            "step_us_p90": round(step_us[int(0.9 * len(step_us))], 1),
            "step_us_max": round(step_us[-1], 1),
            "answers_rejected": rejected,
        })
        print(json.dumps(rows[-1]), flush=True)
    header = ("| grammar | engine | databases | compile median s | compile max s | compile total s | steps "
              "| mask+consume median µs | p90 µs | max µs | answers rejected |")
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [
        f"| {r['grammar']} | {r['engine']} | {r['databases']} | {r['compile_s_median']} | {r['compile_s_max']} | {r['compile_s_total']} "
        f"| {r['steps']} "
        f"| {r['step_us_median']} | {r['step_us_p90']} | {r['step_us_max']} | {r['answers_rejected']} |"
        for r in rows
    ]
    print("\n".join(lines))
    info = provenance()
    stem = "grammar-engines" + (f"-{args.tag}" if args.tag else "")
    markdown = "# Grammar engines on Spider's schemas\n\n" + provenance_markdown(info) + "\n" + "\n".join(lines) + "\n"
    for path in write_results(RESULTS, stem, {**info, "rows": rows}, markdown):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
