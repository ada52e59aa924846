"""Generation: answers start with the answer prefix, stop after the closing fence, come back in order;
the shared-prefix path gives the plain path's greedy answers and log-probs."""

import pytest
import torch

from codelutra.generation.prefix_cache import (
    KVBatch,
    plan_prefix_tree,
    supports_shared_prefix,
)
from codelutra.generation.sampler import TOP_K, StopAfterClosingFence, generate, sampling_distribution
from codelutra.generation.types import SamplingParams, render_prompt
from codelutra.models import load_model, load_tokenizer
from tests.test_reference_logprobs import stopping_model_dir  # noqa: F401 (a fixture)

SCHEMA = "CREATE TABLE singer (id INTEGER, name TEXT, country TEXT, age INTEGER);\nCREATE TABLE concert (id INTEGER, singer_id INTEGER, year INTEGER);"
QUESTIONS = ["How many singers?", "How many singers are from France?", "List the names.", "Who is the oldest singer?", "Years?"]
SAME_SCHEMA = [[{"role": "user", "content": f"{SCHEMA}\nQuestion: {q}"}] for q in QUESTIONS]
# Prompts that share nothing with each other (not even the template's system turn: each has its own)
UNRELATED = [[{"role": "system", "content": s}, {"role": "user", "content": "q" * k}] for s, k in (("A", 3), ("Be brief", 17), ("Zz", 1))]


def test_stop_after_closing_fence(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    prompt = tokenizer("<|im_start|>assistant\n```sql\n", add_special_tokens=False).input_ids
    stop = StopAfterClosingFence(tokenizer, len(prompt), fences_in_prefix=1)

    def ids(answer: str) -> torch.Tensor:
        return torch.tensor([prompt + tokenizer(answer, add_special_tokens=False).input_ids])

    assert not stop(ids("SELECT"), None).item()
    assert not stop(ids("SELECT count(*) FROM t"), None).item()
    assert stop(ids("SELECT count(*) FROM t\n```"), None).item()
    assert stop(ids("SELECT 1\n```\n"), None).item()
    answers = [tokenizer(a, add_special_tokens=False).input_ids for a in ("SELECT 1\n```", "SELECT 1", "x\n```\n\n")]
    assert stop.closes(answers) == [True, False, True]
    free = StopAfterClosingFence(tokenizer, len(prompt), fences_in_prefix=0)
    assert not free(ids("SELECT 1\n```"), None).item()


def test_generate_keeps_order_and_prefix(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    prompts = [[{"role": "user", "content": "q" * k}] for k in (30, 1, 12)]
    sampled = SamplingParams(n=2, temperature=1.0, max_new_tokens=5, batch_size=4)
    out = generate(model, tokenizer, prompts, params=sampled, answer_prefix="```sql\n")
    assert [len(o) for o in out] == [2, 2, 2]
    assert all(c.text.startswith("```sql\n") for o in out for c in o)
    greedy = generate(model, tokenizer, prompts, params=SamplingParams(max_new_tokens=5, batch_size=2))
    one_by_one = [generate(model, tokenizer, [p], params=SamplingParams(max_new_tokens=5))[0] for p in prompts]
    assert greedy == one_by_one  # batching changes nothing
    with pytest.raises(ValueError):
        SamplingParams(n=2, temperature=0.0)


def test_truncated_marks_answers_cut_by_the_budget_only(tiny_model_dir):
    """The random tiny model never closes its block: every answer runs to the budget and is marked cut."""
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    prompts = [[{"role": "user", "content": "q" * k}] for k in (3, 9)]
    for keep in (False, True):
        out = generate(model, tokenizer, prompts, answer_prefix="```sql\n", params=SamplingParams(max_new_tokens=4, keep_logprobs=keep))
        assert all(c.truncated and c.text.count("```") == 1 for [c] in out)
        assert all((c.token_ids is not None) == keep and (len(c.token_ids) == 4 if keep else True) for [c] in out)


def test_system_prompt_setting():
    from codelutra.generation.types import with_system_prompt

    user = [{"role": "user", "content": "q"}]
    assert with_system_prompt(user, "default") == user
    assert with_system_prompt(user, "none") == [{"role": "system", "content": ""}, *user]
    assert with_system_prompt(user, "Answer in SQL.") == [{"role": "system", "content": "Answer in SQL."}, *user]
    own = [{"role": "system", "content": "mine"}, *user]
    assert with_system_prompt(own, "none") == own  # a task's own system turn is kept


def _prompt_ids(tokenizer, prompts, prefix="```sql\n"):
    return [tokenizer(render_prompt(tokenizer, p, prefix), add_special_tokens=False).input_ids for p in prompts]


def _check_tree(prompts: list[list[int]], order, leaves) -> None:
    """Every prompt is its chain's runs end to end, and positions continue from the parent."""
    assert sorted(order) == list(range(len(prompts)))
    for ids, leaf in zip(prompts, leaves):
        chain = leaf.chain()
        assert [t for node in chain for t in node.tokens] == ids and leaf.tokens
        assert all(node.start == (node.parent.end if node.parent else 0) for node in chain)


def test_prefix_tree_shares_the_schema_and_splits_by_question(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    prompts = _prompt_ids(tokenizer, SAME_SCHEMA)
    order, leaves = plan_prefix_tree(prompts)
    _check_tree(prompts, order, leaves)
    shared = {leaf.parent for leaf in leaves}
    assert len(shared) == 1 and None not in shared, "one run shared by every problem of the database"
    [node] = shared
    assert node.users == len(prompts) and tokenizer.decode(node.tokens).endswith("Question:")
    assert all(len(leaf.tokens) < 20 for leaf in leaves), "each prompt's own tokens: its question and the prefix"


def test_prefix_tree_of_prompts_that_share_nothing(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    prompts = [[7, 1, 2, 3], [9, 1, 2, 3], [8]]
    order, leaves = plan_prefix_tree(prompts, min_saved_tokens=1)
    _check_tree(prompts, order, leaves)
    assert order == [0, 2, 1] and all(leaf.parent is None for leaf in leaves)
    templated = _prompt_ids(tokenizer, UNRELATED)
    order, leaves = plan_prefix_tree(templated)
    _check_tree(templated, order, leaves)


def test_prefix_tree_levels_repeats_and_short_runs():
    template, schema_a, schema_b = list(range(100, 140)), list(range(200, 260)), list(range(300, 360))
    prompts = [template + schema_a + [1, 2], template + schema_b + [3], template + schema_a + [4], template + schema_a + [1, 2], template + [5]]
    order, leaves = plan_prefix_tree(prompts)
    _check_tree(prompts, order, leaves)
    root = leaves[0].chain()[0]
    assert root.tokens == template and root.users == 5
    assert leaves[0].parent.tokens == schema_a and leaves[0].parent is leaves[2].parent is leaves[3].parent
    assert leaves[1].parent is root and leaves[1].tokens == schema_b + [3], "a schema used once is no node of its own"
    assert leaves[0].tokens == leaves[3].tokens == [1, 2], "a repeated prompt: two leaves"
    order, leaves = plan_prefix_tree(prompts, min_saved_tokens=10**6)
    assert all(leaf.parent is None for leaf in leaves), "runs that spare too little are not worth a pass"
    assert plan_prefix_tree([]) == ([], [])


def _assert_same_answers(shared, plain, *, logprobs_from_plain=True):
    for mine, theirs in zip(shared, plain, strict=True):
        assert [(c.text, c.token_ids, c.truncated) for c in mine] == [(c.text, c.token_ids, c.truncated) for c in theirs]
        for a, b in zip(mine, theirs):
            if b.logprob is not None or not logprobs_from_plain:
                assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


@pytest.mark.parametrize("prompts", [SAME_SCHEMA, UNRELATED, SAME_SCHEMA[:2] + UNRELATED + SAME_SCHEMA[2:]], ids=["share-all-but-question", "share-nothing", "mixed"])
@pytest.mark.parametrize("batch_size", [2, 32])
def test_shared_prefix_greedy_equals_plain(tiny_model_dir, prompts, batch_size):
    """float32: the same tokens, texts, truncation and (to 1e-4) log-probs as plain `generate`."""
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    for keep in (True, False):
        params = SamplingParams(max_new_tokens=6, batch_size=batch_size, keep_logprobs=keep)
        shared = generate(model, tokenizer, prompts, answer_prefix="```sql\n", params=params)
        plain = generate(model, tokenizer, prompts, answer_prefix="```sql\n", params=params, shared_prefix=False)
        _assert_same_answers(shared, plain)
        assert all(all(c.logprob is not None for c in row) == keep for row in shared), "the extra step scores every cut answer"


def test_a_shared_run_longer_than_a_prefill_pass_is_a_pass_of_its_own(tiny_model_dir, monkeypatch):
    """A schema longer than PACK_TOKENS fills a pass with no prompt's last token in it (Spider's do)."""
    from codelutra.generation import prefix_cache

    monkeypatch.setattr(prefix_cache, "PACK_TOKENS", 16)  # the schema's shared run is longer than a pass
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    params = SamplingParams(max_new_tokens=4, batch_size=8, keep_logprobs=True)
    shared = generate(model, tokenizer, SAME_SCHEMA, answer_prefix="```sql\n", params=params)
    plain = generate(model, tokenizer, SAME_SCHEMA, answer_prefix="```sql\n", params=params, shared_prefix=False)
    _assert_same_answers(shared, plain)


def test_no_prompts_and_the_plain_fallback(tiny_model_dir, monkeypatch):
    from codelutra.generation import sampler

    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    assert generate(model, tokenizer, [], params=SamplingParams(max_new_tokens=4)) == []
    assert supports_shared_prefix(model)
    monkeypatch.setattr(model.config, "_attn_implementation", "flash_attention_2")  # takes no 4-D masks
    assert not supports_shared_prefix(model)
    monkeypatch.undo()
    monkeypatch.setattr(sampler, "supports_shared_prefix", lambda model: False)
    params = SamplingParams(max_new_tokens=3)
    with pytest.warns(UserWarning, match="plain generate"):
        fallback = generate(model, tokenizer, UNRELATED, params=params)
    assert fallback == generate(model, tokenizer, UNRELATED, params=params, shared_prefix=False)


@pytest.mark.parametrize(("temperature", "top_p", "scale"), [(0.8, 0.95, 3.0), (1.0, 0.9, 8.0), (0.5, 1.0, 1.0), (1.3, 0.5, 20.0)])
def test_shared_path_samples_from_generates_distribution(temperature, top_p, scale):
    """Temperature, top-k 50 and top-p computed on the top-k give transformers' warpers' probabilities."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    torch.manual_seed(0)
    logits = torch.randn(16, 49152) * scale  # larger scales: peaked rows, where top-p keeps only a few tokens
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature), TopKLogitsWarper(TOP_K)])
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    expected = warpers(None, logits.clone()).softmax(-1)
    probs, tokens = sampling_distribution(logits, SamplingParams(temperature=temperature, top_p=top_p))
    got = torch.zeros_like(logits).scatter_(1, tokens, probs / probs.sum(-1, keepdim=True))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert ((expected > 0).sum(-1) < TOP_K).any() or top_p == 1.0, "top-p must cut some rows for the test to mean anything"


def test_shared_prefix_samples_are_valid_and_scored_as_a_fresh_pass(stopping_model_dir, monkeypatch):  # noqa: F811
    """Temperature > 0 with rows ending at different steps, so that rows leave and new prompts join the batch.

    Samples are random (not compared with the plain path's); each kept log-prob must equal a fresh forward
    pass over its prompt, answer and end-of-turn, which checks the cache, mask and positions of every row.
    """
    model, tokenizer = load_model(stopping_model_dir), load_tokenizer(stopping_model_dir)
    prompts = SAME_SCHEMA + UNRELATED
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=4, batch_size=4, seed=1, keep_logprobs=True)
    joins = []
    real_join = KVBatch.join
    monkeypatch.setattr(KVBatch, "join", lambda self, other: joins.append(other.rows) or real_join(self, other))
    out = generate(model, tokenizer, prompts, answer_prefix="```sql\n", params=params)
    assert [len(row) for row in out] == [3] * len(prompts)
    lengths = {len(c.token_ids) for row in out for c in row}
    assert len(lengths) > 1 and max(lengths) <= 4, "answers of different lengths, none over the budget"
    assert joins, "prompts joined a batch whose rows were still decoding"
    eos = tokenizer.eos_token_id
    for ids, row in zip(_prompt_ids(tokenizer, prompts), out):
        for c in row:
            assert c.text == "```sql\n" + tokenizer.decode(c.token_ids, skip_special_tokens=True) and eos not in c.token_ids
            assert c.truncated == (len(c.token_ids) == 4)
            sequence = torch.tensor([ids + c.token_ids + [eos]])
            with torch.no_grad():
                logps = model(sequence).logits[0, :-1].float().log_softmax(-1)
            fresh = logps[len(ids) - 1 :].gather(1, sequence[0, len(ids) :, None]).sum()
            assert c.logprob == pytest.approx(float(fresh), abs=1e-4)


def test_shared_path_draws_the_token_ids_top_p_keeps():
    """Each row keeps only its two likeliest tokens (top-p 0.9): every draw is one of those ids, both drawn."""
    from codelutra.generation.sampler import _token_chooser

    logits = torch.full((2, 49152), -10.0)
    logits[0, [12345, 7]] = torch.tensor([5.0, 4.8])
    logits[1, [3, 40000]] = torch.tensor([5.0, 4.8])
    torch.manual_seed(0)
    choose = _token_chooser(SamplingParams(temperature=1.0, top_p=0.9))
    draws = torch.stack([choose(logits) for _ in range(200)])
    assert set(draws[:, 0].tolist()) == {12345, 7} and set(draws[:, 1].tolist()) == {3, 40000}


def test_shared_path_keeps_every_token_tied_with_the_kth_as_generate_does():
    """bf16 logits tie often: transformers' top-k keeps all tokens equal to the k-th value, so must we."""
    from transformers import LogitsProcessorList, TopKLogitsWarper

    logits = torch.full((1, 49152), -5.0)
    logits[0, :40] = torch.linspace(10, 5, 40)
    logits[0, 100:130] = 1.0  # 30 tokens tied at what is the 41st-70th value
    expected = LogitsProcessorList([TopKLogitsWarper(TOP_K)])(None, logits.clone()).softmax(-1)
    probs, tokens = sampling_distribution(logits, SamplingParams(temperature=1.0, top_p=1.0))
    got = torch.zeros_like(logits).scatter_(1, tokens, probs / probs.sum(-1, keepdim=True))
    assert int((expected > 0).sum()) == 70
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
