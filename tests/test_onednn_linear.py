"""oneDNN linear layers (weights reordered into its layout, for forward-only CPU passes): the plain layers' results within float32
rounding, the same greedy answers from the sampler, the sampling backend and the reference pass using them,
and every layer as it was afterwards."""

import pytest
import torch

from codelutra.candidates import Candidate
from codelutra.config import GenerationConfig, PairConfig, TrainConfig
from codelutra.generation import onednn_linear
from codelutra.generation.backends import open_backend
from codelutra.generation.onednn_linear import onednn_linear_layers, onednn_ready
from codelutra.generation.sampler import generate
from codelutra.generation.types import SamplingParams
from codelutra.models import load_model, load_tokenizer
from codelutra.training.pairs import build_pairs
from codelutra.training.trainer import build_trainer
from tests.test_sampler import SAME_SCHEMA, UNRELATED, _assert_same_answers

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")


def test_the_internal_ops_compute_the_plain_linear():
    """Both ops are torch internals: pinned here by name and to `F.linear` (batch sizes, 3-D and strided input, bias)."""
    assert onednn_linear.REORDER_WEIGHT._qualified_op_name == "mkldnn::_reorder_linear_weight"
    assert onednn_linear.ONEDNN_LINEAR._qualified_op_name == "mkldnn::_linear_pointwise"
    torch.manual_seed(0)
    for rows, features, outputs in ((1, 24, 40), (7, 64, 96), (65, 32, 50)):
        weight, bias = torch.randn(outputs, features), torch.randn(outputs)
        reordered = onednn_linear.REORDER_WEIGHT(weight)
        for x in (torch.randn(rows, features), torch.randn(rows, 3, features), torch.randn(rows, 2 * features)[:, ::2]):
            for b in (None, bias):
                got = onednn_linear.ONEDNN_LINEAR(x, reordered, b, "none", [], "")
                torch.testing.assert_close(got, torch.nn.functional.linear(x, weight, b), rtol=1e-5, atol=1e-5)


def test_a_model_under_onednn_layers_gives_its_logits_and_is_restored(tiny_model_dir):
    model = load_model(tiny_model_dir)
    ids = torch.tensor([[5, 9, 200, 31, 7, 1000]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
        with onednn_linear_layers(model) as count:
            linear = [m for m in model.modules() if type(m) is torch.nn.Linear]
            assert count == len(linear) > 0 and all("forward" in m.__dict__ for m in linear)
            during = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    torch.testing.assert_close(during, before, rtol=1e-5, atol=1e-5)
    assert not any("forward" in m.__dict__ for m in model.modules()), "every layer's own forward again"
    assert torch.equal(after, before)


def test_onednn_layers_refuse_gradients_and_leave_other_layers_alone():
    layers = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8).to(torch.bfloat16))
    assert onednn_ready(layers[0]) and not onednn_ready(layers[1]), "float32 only"

    class Scaled(torch.nn.Linear):  # a subclass has its own forward (a quantised layer's, say): not ours to replace
        pass

    assert not onednn_ready(Scaled(8, 8))
    with onednn_linear_layers(layers[:1]) as count:
        assert count == 1
        with pytest.raises(RuntimeError, match="forward-only"):
            layers[0](torch.randn(2, 8))  # gradients on: the reordered copy would leave the weight without one
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():  # mixed precision: the layer's own
            assert layers[0](torch.randn(2, 8)).dtype == torch.bfloat16


@pytest.mark.parametrize("shared_prefix", [True, False], ids=["shared-prefix", "plain"])
def test_the_sampler_gives_the_same_greedy_answers_with_onednn_layers(tiny_model_dir, shared_prefix):
    model, tokenizer = load_model(tiny_model_dir), load_tokenizer(tiny_model_dir)
    params = SamplingParams(max_new_tokens=6, batch_size=4, keep_logprobs=True)
    prompts = SAME_SCHEMA + UNRELATED
    plain = generate(model, tokenizer, prompts, answer_prefix="```sql\n", params=params, shared_prefix=shared_prefix)
    with onednn_linear_layers(model):
        onednn = generate(model, tokenizer, prompts, answer_prefix="```sql\n", params=params, shared_prefix=shared_prefix)
    _assert_same_answers(onednn, plain)


def test_the_sampling_backend_runs_onednn_layers_while_open(tiny_model_dir):
    with open_backend(GenerationConfig(), tiny_model_dir) as generate_:
        model = generate_.args[0]
        assert all("forward" in m.__dict__ for m in model.modules() if type(m) is torch.nn.Linear)
        assert generate_(SAME_SCHEMA[:2], answer_prefix="```sql\n", params=SamplingParams(max_new_tokens=3))
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_the_reference_pass_runs_on_onednn_layers(tiny_model_dir, tmp_path, monkeypatch):
    """Answers with no kept log-prob get theirs from the packed trainer's reference pass, on oneDNN layers (the
    values themselves are checked against TRL's in tests/test_reference_logprobs.py)."""
    real, calls = onednn_linear.ONEDNN_LINEAR, []
    monkeypatch.setattr(onednn_linear, "ONEDNN_LINEAR", lambda *args: calls.append(args[0].shape) or real(*args))
    prompt = [{"role": "user", "content": "t(a, b)\nQuestion: how many rows?"}]
    wrong = Candidate("```sql\nSELECT 1\n```", problem_id="p0", verdict="wrong_result")
    pairs = build_pairs(prompt, [wrong], "```sql\nSELECT count(*) FROM t\n```", cfg=PairConfig())
    build_trainer(tiny_model_dir, pairs, tmp_path, TrainConfig(batch_size=1), seed=0)
    assert calls, "the reference pass ran on the plain layers"
