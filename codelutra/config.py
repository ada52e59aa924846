"""The run configuration: plain data, validated once at the edge (YAML file plus `--set key=value`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from codelutra.errors import UserError
from codelutra.execution.limits import DEFAULT_TIMEOUT_S
from codelutra.models import EMBEDDED_DEFAULT


class _Section(BaseModel):
    # Every float finite: `.inf` or `1e400` (read as inf) would pass a `gt=0` check and poison training or sampling.
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _a_number_is_not_a_bool(cls, value: object, info: ValidationInfo) -> object:
        """`true` for a number is a mistake, which pydantic's lax mode would take as 1 (`strict` would also
        refuse the strings YAML makes of `1e-4`, which must stay floats)."""
        if isinstance(value, bool) and _takes_a_number_not_a_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


def _takes_a_number_not_a_bool(annotation: object) -> bool:
    kinds = get_args(annotation) or (annotation,)
    return bool not in kinds and any(kind in (int, float) for kind in kinds)


class ModelConfig(_Section):
    name: str = EMBEDDED_DEFAULT  # a Hub id, a local directory, or the embedded default

    @model_validator(mode="before")
    @classmethod
    def _float32_only(cls, data):
        """Weights are float32 everywhere (training on a GPU adds bf16 autocast); there is no dtype to choose.

        Every run's config.yaml holds `dtype: float32`, so that still loads (the run resumes); any other
        dtype is refused rather than ignored.
        """
        if isinstance(data, dict) and "dtype" in data:
            if data["dtype"] != "float32":
                raise ValueError(f"dtype {data['dtype']!r}: models load in float32 only (a GPU trains with bf16 autocast)")
            data = {key: value for key, value in data.items() if key != "dtype"}
        return data


class TaskSource(_Section):
    """Where problems come from; see `codelutra.tasks.load_tasks`."""

    path: str  # a Spider/BIRD/MBPP/DS-1000 directory or file, a .jsonl file, or builtin:train / builtin:heldout
    # "auto" tells the layout from the path and the first record's fields; "jsonl" is the SQL JSONL layout.
    format: Literal["auto", "spider", "bird", "jsonl", "mbpp", "humaneval", "ds1000"] = "auto"
    # Keep only / drop problems of these groups: SQL databases, MBPP splits (prompt, test, validation,
    # train), DS-1000 libraries (Numpy, Pandas, ...). HumanEval has no groups.
    databases: list[str] | None = None
    exclude_databases: list[str] | None = None
    limit: int | None = Field(default=None, gt=0)  # a fixed random sample of this many problems
    seed: int = 0
    # Training tasks only: each iteration samples this many problems of the pool instead of all of them,
    # "fresh" ones each iteration, or the ones the previous iteration failed first ("failed_first").
    per_iteration: int | None = Field(default=None, gt=0)
    per_iteration_order: Literal["fresh", "failed_first"] = "fresh"
    # SQL only: db_id -> database address (duckdb:///file.duckdb, postgresql://user@host/db, a SQLite
    # path), used instead of the database the task set names. Never a password: see the README.
    db_urls: dict[str, str] | None = None

    @field_validator("db_urls")
    @classmethod
    def _db_urls_hold_no_password(cls, db_urls: dict[str, str] | None) -> dict[str, str] | None:
        from codelutra.execution.engines import BadAddress, check_address

        for db_id, address in (db_urls or {}).items():
            try:
                check_address(address)
            except BadAddress as error:
                raise ValueError(f"{db_id}: {error}") from None
        return db_urls


class PromptConfig(_Section):
    schema_style: Literal["compact", "create"] = "compact"  # SQL tasks only
    # Written into the assistant's turn before it generates: the model starts inside a code block
    # instead of wandering into prose or CREATE TABLE statements. null: the task kind's own
    # ("```sql\n" for SQL, "```python\n" for Python); "" lets the model start freely.
    answer_prefix: str | None = None
    # The system turn: "default" (the chat template's own; SmolLM2's writes a 20-token one into every prompt),
    # "none" (an empty system turn), or your text.
    system: str = "default"


class SamplingConfig(_Section):
    n: int = Field(default=1, ge=1)  # candidates per training problem (the paper used more; 1 fits a CPU budget)
    temperature: float = Field(default=0.8, gt=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_new_tokens: int | None = Field(default=None, ge=8)  # None: the task kind's budget (TaskKind.default_max_new_tokens)
    # Sequences decoded together: more give more tokens/s for more memory (benchmarks/results/speed-batch.md).
    # A decode step's cache grows with it by each row's own tokens (a context that rows share is kept once), so
    # Spider's long prompts take the same default (configs/spider.yaml).
    batch_size: int = Field(default=64, ge=1)


class VerifyConfig(_Section):
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0)
    workers: int | None = Field(default=None, ge=1)  # default: one per CPU core
    # The interpreter Python candidates run in (default: this one). DS-1000 needs its pinned library
    # versions: point this at the environment scripts/ds1000_env.sh builds (.../bin/python).
    python: str | None = None
    # When a SQL candidate's result counts as the gold's (codelutra/execution/sql_match.py): execution (this
    # project's rule), spider (the official test-suite evaluator's default), bird (BIRD's row sets).
    match: Literal["execution", "spider", "bird"] = "execution"
    # k > 0: a SQL candidate is correct only if it also matches the gold on k copies of its SQLite database
    # with the rows perturbed (codelutra/execution/variants.py), which catches answers right by coincidence.
    variants: int = Field(default=0, ge=0)
    variant_seed: int = 0  # which perturbed copies: the same (database, seed) always gives the same copies
    variants_dir: str | None = None  # where the copies are cached (default: ~/.cache/codelutra/variants)

    @field_validator("python")
    @classmethod
    def _python_is_an_interpreter(cls, python: str | None) -> str | None:
        """Made absolute (symlinks kept: a venv's python is one), as candidates run in another working dir."""
        if python is None:
            return None
        path = os.path.expanduser(python)
        if shutil.which(path) is None:
            raise ValueError(f"no such interpreter {python!r} (not an executable file, nor on PATH)")
        return os.path.abspath(path) if os.sep in path else path


class PairConfig(_Section):
    max_per_problem: int = Field(default=1, ge=1)
    # Where no sample is correct, pair the gold code against the failures (the paper's method); false: the
    # paper's ablation, such a problem yields no pair.
    gold_fallback: bool = True
    # Which failures fill the cap first (see `codelutra.training.pairs.build_pairs`).
    rejected_order: Literal["distinct", "likely", "ran_first"] = "distinct"


class TrainConfig(_Section):
    loss: Literal["codelutra", "dpo", "sft"] = "codelutra"
    beta: float = Field(default=0.1, gt=0)
    sft_weight: float = Field(default=1.0, ge=0)  # lambda of the dual loss
    # DPO-Positive's lambda (codelutra/training/loss.py): the DPO margin loses anchor x the chosen answer's fall
    # below the reference, so the preference term cannot push a chosen answer down with its near-miss rejected one
    # (0: the paper's DPO term). Why 50 is the default: README, "What the DPO term does here".
    anchor: float = Field(default=50.0, ge=0)
    # The DPO term sees each rejected answer only up to this many tokens past where it leaves the chosen answer
    # (the first wrong tokens, as Step-DPO contrasts the first wrong step); null: the whole rejected answer.
    # 4 trains on about 40% fewer tokens than whole answers at the same held-out accuracy (README).
    rejected_window: int | None = Field(default=4, ge=1)
    # Which pairs the DPO term contrasts; the others train the SFT term alone. "all" (the paper); "own": only pairs
    # whose correct side is the model's own answer, not gold code; "errors": only pairs whose rejected answer did not
    # run (an error, a cut answer), not a wrong result, which is often a right query for another question
    # (README, "What the DPO term does here").
    preference_on: Literal["all", "own", "errors"] = "all"
    lora: bool = True  # False: full fine-tuning
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_target_modules: list[str] | str = "all-linear"
    # Adapt only the top N layers (backward stops there: cheaper, but learns less); None: every layer.
    lora_top_layers: int | None = Field(default=None, ge=1)
    # "fresh": each iteration trains a new adapter on the previous policy's merged weights (the rank adds up over
    # iterations). "continued": one adapter on the base model, trained on from the previous iteration's.
    lora_adapter: Literal["fresh", "continued"] = "fresh"
    learning_rate: float = Field(default=1e-3, gt=0)
    # The DPO term's reference: the policy that sampled the pairs ("previous", the paper's), or the base model at
    # every iteration ("base"). "base" computes every reference log-prob anew (the sampler scored the answers
    # under the previous policy), with the base model loaded beside the policy for that pass.
    reference: Literal["previous", "base"] = "previous"
    lr_scheduler: str = "linear"
    warmup_steps: int = Field(default=0, ge=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)  # train exactly this many steps instead (benchmarks compare arms so)
    batch_size: int = Field(default=4, ge=1)  # pairs per step
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=512, ge=16)
    gradient_checkpointing: bool = False
    checkpoint_steps: int = Field(default=20, ge=1)
    # >1: train data parallel in this many processes (`accelerate launch`, GPUs or CPU/gloo); batch_size is then
    # per process. Use `accelerate config` beforehand to choose GPUs or DeepSpeed ZeRO-1/2.
    processes: int = Field(default=1, ge=1)
    # Where the trainer also logs loss, rewards/margins and accuracy per step: transformers' `report_to`
    # names ("tensorboard", "wandb", ...; each needs its package). Empty: nowhere.
    report_to: list[str] = []
    # Pack each batch as a prefix tree (shared prompt prefix once, each token computed once); false: TRL's own
    # batches (two padded sequences per pair), for comparison. Same loss either way (tests/test_packing.py).
    packing: bool = True

    @model_validator(mode="after")
    def _the_anchor_needs_packing(self):
        if self.anchor and not self.packing:
            raise ValueError(
                "anchor (DPO-Positive) is computed by the packed trainer only: with packing: false set anchor: 0 (TRL's own loss)"
            )
        if self.preference_on != "all" and not self.packing:
            raise ValueError(f"preference_on: {self.preference_on} is computed by the packed trainer only: with packing: false keep preference_on: all")
        return self

    @model_validator(mode="after")
    def _a_continued_adapter_needs_lora(self):
        if self.lora_adapter == "continued" and not self.lora:
            raise ValueError("lora_adapter: continued trains one LoRA adapter across iterations, so it needs lora: true")
        return self


# The most candidates a vote samples per problem. A problem's candidates are decoded together whatever
# eval.batch_size says, and an OpenAI-compatible endpoint gets them as one request's `n` (OpenAI's own API takes
# at most 128). Voting over 8 gained 8 points (README); 64 leaves room to measure more, not to exhaust the memory.
MAX_VOTE = 64


class EvalConfig(_Section):
    max_new_tokens: int | None = Field(default=None, ge=8)  # None: the task kind's budget (TaskKind.default_max_new_tokens)
    batch_size: int = Field(default=64, ge=1)  # as sampling.batch_size
    # SQL only: also answer by execution-guided voting over this many sampled candidates
    # (`codelutra.loop.vote`) and report it beside greedy; 0: greedy only. At most MAX_VOTE.
    vote: int = Field(default=0, ge=0, le=MAX_VOTE)
    vote_temperature: float = Field(default=0.8, gt=0)  # the voting candidates' sampling temperature
    vote_top_p: float = Field(default=0.95, gt=0, le=1)
    # Evaluate the base model first (the run's baseline, iteration 0). Off where that evaluation is already known
    # or costs more than it tells: voting a base model that rambles to the token budget on a thousand questions.
    base: bool = True


class GenerationConfig(_Section):
    """Where completions come from (see `codelutra.generation.backends`)."""

    # transformers: in process (the default, CPU or GPU). vllm: in process on a GPU, `pip install codelutra[vllm]`.
    # openai: an OpenAI-compatible endpoint serving a fixed model, so `codelutra eval` only.
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    base_url: str | None = None  # openai: the API root, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = Field(default="OPENAI_API_KEY", min_length=1)  # openai: the variable holding the key, if any
    concurrency: int = Field(default=4, ge=1)  # openai: requests in flight
    # schema: SQL answers decoded under a grammar of the engine's queries (SQLite, DuckDB or PostgreSQL) over the task's
    # own tables and columns (`codelutra.tasks.sql_grammar`); scope: also, a query that reads one table names only its
    # columns after FROM. Python tasks are never constrained. Kept log-probs stay unconstrained.
    constrain: Literal["none", "schema", "scope"] = "none"

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, base_url: str | None) -> str | None:
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {base_url!r}")
        return base_url

    @model_validator(mode="after")
    def _openai_has_an_endpoint(self):
        if self.backend == "openai" and not self.base_url:
            raise ValueError("the openai backend needs base_url, the API root (e.g. http://127.0.0.1:8000/v1)")
        if self.backend == "openai" and self.constrain != "none":
            raise ValueError("constrain needs a backend that decodes itself (transformers or vllm), not an endpoint")
        return self


class RunConfig(_Section):
    name: str = "default"
    output_dir: str = "."  # runs go to <output_dir>/runs/<name>
    seed: int = 0
    model: ModelConfig = ModelConfig()
    # All 480 built-in training problems: more distinct problems pay most (benchmarks/results/default-sweep-h100.md).
    train_tasks: TaskSource = TaskSource(path="builtin:train", limit=480)
    eval_tasks: TaskSource = TaskSource(path="builtin:heldout", limit=100)
    prompt: PromptConfig = PromptConfig()
    sampling: SamplingConfig = SamplingConfig()
    verify: VerifyConfig = VerifyConfig()
    pairs: PairConfig = PairConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    generation: GenerationConfig = GenerationConfig()
    # The paper used 4. Two fit the default run's 15 minutes on 2 CPU cores; with the anchored DPO term the second
    # no longer undoes the first (README, "What the DPO term does here").
    max_iterations: int = Field(default=2, ge=1)
    min_gain: float = 0.0  # stop when an iteration gains less than this (a fraction; 0.01 = one point)

    @model_validator(mode="after")
    def _name_is_a_folder_name(self):
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        return self


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config (or start from the defaults), validate it, then apply `key.sub=value` overrides.

    A section given in the file replaces that section's defaults; an override changes one value of the
    resulting configuration (so `--set train_tasks.limit=10` keeps the configured task path).
    """
    data: dict = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise UserError(f"{path}: no such config file") from None
        except IsADirectoryError:
            raise UserError(f"{path}: is a directory, not a config file") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r})") from None
        except OSError as e:
            raise UserError(f"{path}: cannot read the config file ({e.strerror or e})") from None
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: the config must be a mapping of keys to values")
    cfg = _validate(data, str(path) if path else "defaults")
    if not overrides:
        return cfg
    data = cfg.model_dump(mode="json")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item}: expected key=value, e.g. train.beta=0.2")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise UserError(f"--set {item}: {part} is not a section of the config")
        node[leaf] = value
    return _validate(data, "--set")


def _validate(data: dict, source: str) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise UserError(f"{source}: {field}: {err['msg']}{more}") from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
