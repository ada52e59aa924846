"""Decoding under the schema grammar: what the grammar accepts, that answers keep to it on every decoding path,
and that the log-probabilities kept for training stay the unconstrained model's."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict

import pytest
import torch

from codelutra.config import load_config
from codelutra.errors import UserError
from codelutra.generation.constrain import Grammars, allowed_tokens
from codelutra.generation.sampler import generate
from codelutra.generation.types import SamplingParams, render_prompt
from codelutra.models import load_model, load_tokenizer
from codelutra.tasks import Task
from codelutra.tasks.sql_grammar import prompt_grammars, schema_grammar
from tests.conftest import shared_dataset

PREFIX = "```sql\n"
SCHEMA = """
CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER REFERENCES singer(id), year INTEGER, "Concert Name" TEXT);
"""
# The tokens the SQL-minded test model favours: enough to write queries over SCHEMA, and to close them.
SQL_WORDS = (
    "SELECT name FROM singer WHERE age > 30 AND country = 'France' ORDER BY count(*) DESC LIMIT 3 "
    "JOIN concert AS T1 ON T1.id = T2.singer_id GROUP BY year, avg(age) \n```"
)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("constrain") / "concerts.sqlite"
    connection = sqlite3.connect(path)
    connection.executescript(SCHEMA)
    connection.close()
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def accepts(tokenizer, grammar: str, sql: str) -> bool:
    """Whether the grammar takes `sql` as a whole answer (then the closing fence)."""
    matcher = Grammars(tokenizer).start(grammar)
    return matcher.consume_tokens(tokenizer(sql + "\n```", add_special_tokens=False).input_ids) and matcher.is_accepting()


def rejected_golds(tokenizer, golds: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (database address, gold query) pairs whose query the database's grammar does not take."""
    grammars, starts, rejected = Grammars(tokenizer), {}, []
    for address, query in golds:
        if address not in starts:
            starts[address] = grammars.start(schema_grammar(address))
        matcher = starts[address].deep_copy()
        answer = tokenizer(query.strip().rstrip(";") + "\n```", add_special_tokens=False).input_ids
        if not (matcher.consume_tokens(answer) and matcher.is_accepting()):
            rejected.append((address, query))
    return rejected


ACCEPTED = [
    "SELECT count(*) FROM singer",
    "select T1.name from singer as T1 join concert as T2 on T1.id = T2.singer_id where T2.year=2014",
    "SELECT singer.name, concert.year FROM singer JOIN concert ON singer.id = concert.singer_id",
    'SELECT "name" FROM singer WHERE country = "France"',  # double quotes: Spider's strings
    "SELECT distinct(country) FROM singer",
    "SELECT NAME FROM SINGER\nWHERE\tage > (SELECT avg(age) FROM singer) ORDER BY age DESC LIMIT 1;",
    "SELECT [Concert Name], `year` FROM concert WHERE year BETWEEN 2000 AND 2010 OR year IN (1, 2)",
    "SELECT country FROM singer GROUP BY country HAVING count(*) > 1 EXCEPT SELECT country FROM singer WHERE age < 20",
    "SELECT name FROM singer WHERE name LIKE '%a%' AND country IS NOT NULL AND NOT EXISTS (SELECT * FROM concert)",
    "SELECT CASE WHEN age > 30 THEN 'old' ELSE 'young' END AS band, CAST(age AS REAL) / 2 FROM singer AS s",
]
REJECTED = [
    "SELECT concert.name FROM concert",  # a column of another table, qualified by the table's name
    "SELECT nme FROM singer",  # an invented column
    "SELECT name FROM singers",  # an invented table
    "SELECT [nme] FROM singer",  # an invented column, quoted
    "SELECTname FROM singer",  # two words run together
    "SELECT name FROM FROM singer",  # a keyword where a table goes
    "SELECT name FROM singer AS where",  # a keyword as an alias
    "SELECT name FROM singer LIMIT 1 ORDER BY name",
    "DELETE FROM singer",
    "SELECT name FROM singer; DROP TABLE singer",
    "SELECT frobnicate(name) FROM singer",  # no such function
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_grammar_accepts_queries_over_the_schema(tokenizer, db, sql):
    assert accepts(tokenizer, schema_grammar(db), sql)


@pytest.mark.parametrize("sql", REJECTED)
def test_grammar_rejects_other_names_and_statements(tokenizer, db, sql):
    assert not accepts(tokenizer, schema_grammar(db), sql)


# constrain: scope. A query that reads one table names only its columns after FROM; a join names any column.
SCOPE = [
    ("SELECT name FROM singer WHERE age > 30 GROUP BY country HAVING count(*) > 1 ORDER BY age DESC LIMIT 1", True),
    ("SELECT name FROM singer WHERE year > 2000", False),  # year is concert's
    ("SELECT name FROM singer AS s WHERE s.year > 2000", False),
    ("SELECT name FROM singer ORDER BY year", False),
    ("SELECT country FROM singer GROUP BY singer_id", False),
    ("SELECT year FROM singer", False),  # after FROM singer only a JOIN could go on
    ("SELECT year, name FROM singer JOIN concert ON singer.id = concert.singer_id", True),
    ("SELECT max(age) - min(age), count(DISTINCT country) AS n FROM singer", False),  # one table: plain items only
    ("SELECT max(age), count(DISTINCT country) AS n, age * 2 FROM singer", True),
    ("SELECT distinct(country) FROM singer WHERE age > 30", True),
    ("SELECT name FROM singer WHERE id IN (SELECT singer_id FROM concert WHERE year = 2014)", True),
    ("SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id WHERE year = 2014", True),
    ("SELECT name FROM singer EXCEPT SELECT name FROM singer WHERE age < 20", True),
    ("SELECT name FROM singer EXCEPT SELECT name FROM singer WHERE year < 20", False),
]


@pytest.mark.parametrize(("sql", "accepted"), SCOPE)
def test_the_scoped_grammar_keeps_a_one_table_query_to_its_table(tokenizer, db, sql, accepted):
    assert accepts(tokenizer, schema_grammar(db, scope=True), sql) == accepted
    assert accepts(tokenizer, schema_grammar(db), sql), "the schema grammar takes them all"


def test_after_the_closing_fence_only_end_of_turn(tokenizer, db):
    matcher = Grammars(tokenizer).start(schema_grammar(db))
    assert matcher.consume_tokens(tokenizer("SELECT name FROM singer\n```", add_special_tokens=False).input_ids)
    bitmask = torch.zeros(1, (len(tokenizer) + 31) // 32, dtype=torch.int32)
    import llguidance.torch

    llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
    assert allowed_tokens(bitmask, len(tokenizer)).nonzero()[:, 1].tolist() == [tokenizer.eos_token_id]


def test_mask_layout_is_llguidance_s(tokenizer, db):
    """`allowed_tokens` reads llguidance's packed mask as llguidance means it: a token is allowed iff the matcher takes it."""
    import llguidance.torch

    grammars = Grammars(tokenizer)
    matcher = grammars.start(schema_grammar(db))
    assert matcher.consume_tokens(tokenizer("SELECT name FROM singer WHERE", add_special_tokens=False).input_ids)
    bitmask = llguidance.torch.allocate_token_bitmask(1, grammars.llg_tokenizer.vocab_size)
    llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
    allowed = allowed_tokens(bitmask, len(tokenizer))[0]
    generator = torch.Generator().manual_seed(0)
    probes = allowed.nonzero()[:, 0][torch.randperm(int(allowed.sum()), generator=generator)[:100]].tolist()
    probes += torch.randint(len(tokenizer), (200,), generator=generator).tolist()
    for token in probes:
        assert (matcher.deep_copy().try_consume_tokens([token]) == 1) == bool(allowed[token]), token
    assert 0 < int(allowed.sum()) < len(tokenizer)


@pytest.mark.parametrize("scope", [False, True], ids=["schema", "scope"])
def test_grammar_accepts_spiders_gold_queries(scope):
    """At least 99% of Spider's training gold queries, each against its own database's grammar."""
    spider = shared_dataset("spider")
    from codelutra.models import EMBEDDED_DEFAULT, resolve_model

    tokenizer = load_tokenizer(resolve_model(EMBEDDED_DEFAULT))
    by_db = defaultdict(list)
    for record in json.loads((spider / "train_spider.json").read_text()):
        by_db[record["db_id"]].append(record["query"])
    grammars, total, rejected = Grammars(tokenizer), 0, []
    for db_id, queries in by_db.items():
        path = spider / "database" / db_id / f"{db_id}.sqlite"
        if not path.is_file():
            continue
        start = grammars.start(schema_grammar(str(path), scope=scope))
        for query in queries:
            matcher = start.deep_copy()
            answer = tokenizer(query.strip().rstrip(";") + "\n```", add_special_tokens=False).input_ids
            total += 1
            if not (matcher.consume_tokens(answer) and matcher.is_accepting()):
                rejected.append((db_id, query))
    assert total > 6000
    print(f"\nrejected {len(rejected)} of {total}:", *rejected, sep="\n")
    assert len(rejected) <= 0.01 * total, rejected[:20]


def test_prompt_grammars(db):
    sql, python = Task(id="a", question="q", gold="", db_path=db), Task(id="b", question="q", gold="", kind="python")
    assert prompt_grammars([sql, python], "none") is None
    grammars = prompt_grammars([sql, python], "schema")
    assert grammars[0] == schema_grammar(db) and grammars[1] is None
    assert prompt_grammars([sql, python], "scope") == [schema_grammar(db, scope=True), None]


def test_config_refuses_a_grammar_for_an_endpoint():
    assert load_config(None, ["generation.constrain=schema"]).generation.constrain == "schema"
    with pytest.raises(UserError, match="constrain"):
        load_config(None, ["generation.backend=openai", "generation.base_url=http://x/v1", "generation.constrain=schema"])


@pytest.fixture(scope="module")
def sql_model_dir(tiny_model_dir, tokenizer, tmp_path_factory) -> str:
    """The tiny random model, made to favour the tokens of SQL_WORDS (as `stopping_model_dir` favours end-of-turn):
    under the grammar it writes queries that end, as a real model does."""
    model = load_model(tiny_model_dir)
    # Whole words and punctuation only: pieces such as `ESC` would run on within a free alias, digits within a number,
    # and quotes open strings, whose content is free, which this model would not close.
    pieces = {t: tokenizer.decode([t]) for t in tokenizer(SQL_WORDS, add_special_tokens=False).input_ids}
    words = [t for t, text in pieces.items() if (text.startswith(" ") or not text.isalnum() or text == "SELECT")
             and not text.strip().isdigit() and "'" not in text and "_" not in text]
    favoured = sorted(set(words) | {tokenizer.eos_token_id})
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight  # tied: also the output rows
        embeddings[:, 0] = 4.0
        embeddings[favoured, 0] = 4.6
    path = tmp_path_factory.mktemp("sql_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


QUESTIONS = ["How many singers?", "Names of singers from France?", "Which years had concerts?", "Oldest singer?"]


def _prompts(db: str) -> list:
    from codelutra.tasks.prompts import sql_messages

    return [sql_messages(Task(id=str(i), question=q, gold="", db_path=db)) for i, q in enumerate(QUESTIONS)]


def _name_or_syntax_fault(db: str, sql: str) -> str | None:
    """What SQLite's EXPLAIN finds wrong with a query's syntax or names; None if nothing.

    A column that exists but is out of the query's scope (`T9.name` where no T9 is declared, a column of a table the
    query does not join) is not such a fault: it is what a context-free grammar cannot rule out (sql_grammar's
    docstring), nor are errors of meaning (an aggregate misused, a column count that differs).
    """
    columns = {c.lower() for c in ("id", "name", "country", "age", "singer_id", "year", "concert name")}
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        connection.execute(f"EXPLAIN {sql}")
    except sqlite3.Error as error:
        message = str(error)
        if message.startswith("no such column:"):
            name = message.split(":", 1)[1].strip().rsplit(".", 1)[-1].lower()
            return None if name in columns else message
        if message.startswith("no such table:") and f"{message.split(':', 1)[1].strip()}.*" in sql:
            return None  # `x.*` with no x declared: an alias out of scope
        if any(fault in message for fault in ("syntax error", "unrecognized token", "incomplete input", "no such")):
            return message
    finally:
        connection.close()
    return None


@pytest.mark.parametrize("shared_prefix", [True, False], ids=["shared-prefix", "plain"])
def test_constrained_answers_parse_and_name_only_the_schema(sql_model_dir, db, shared_prefix):
    """Sampled: greedy, this random model loops within a name (`WHEREESCESC...`, a free alias), which never ends."""
    from codelutra.generation.extract import extract_sql

    model, tokenizer = load_model(sql_model_dir), load_tokenizer(sql_model_dir)
    n = 12
    params = SamplingParams(n=n, temperature=1.0, max_new_tokens=64, batch_size=12, seed=0)
    grammar = schema_grammar(db)
    prompts = _prompts(db)
    free = generate(model, tokenizer, prompts, answer_prefix=PREFIX, params=params, shared_prefix=shared_prefix)
    answers = generate(
        model, tokenizer, prompts, answer_prefix=PREFIX, params=params, shared_prefix=shared_prefix,
        grammars=[grammar] * len(prompts),
    )  # fmt: skip
    free_faults = [_name_or_syntax_fault(db, extract_sql(s.text) or "") for row in free for s in row if not s.truncated]
    assert any(free_faults) or all(s.truncated for row in free for s in row), "unconstrained, the model should go wrong"
    finished = [s for row in answers for s in row if not s.truncated]
    assert len(finished) >= 3, [s.text for row in answers for s in row]  # the rest ran to the token budget
    for sample in finished:
        sql = extract_sql(sample.text)
        assert sample.text.endswith("```") and sql, sample.text
        assert _name_or_syntax_fault(db, sql) is None, sample.text
    for sample in (s for row in answers for s in row):  # cut ones too: what they hold is a start the grammar allows
        matcher = Grammars(tokenizer).start(grammar)
        assert matcher.consume_tokens(tokenizer(sample.text[len(PREFIX) :], add_special_tokens=False).input_ids), sample.text


def test_greedy_answers_agree_across_paths_under_the_grammar(sql_model_dir, db):
    model, tokenizer = load_model(sql_model_dir), load_tokenizer(sql_model_dir)
    params = SamplingParams(max_new_tokens=32, batch_size=4, keep_logprobs=True)
    grammars = [schema_grammar(db)] * len(QUESTIONS)
    shared = generate(model, tokenizer, _prompts(db), answer_prefix=PREFIX, params=params, grammars=grammars)
    plain = generate(model, tokenizer, _prompts(db), answer_prefix=PREFIX, params=params, grammars=grammars, shared_prefix=False)
    assert [[s.text for s in row] for row in shared] == [[s.text for s in row] for row in plain]


@pytest.mark.parametrize("shared_prefix", [True, False], ids=["shared-prefix", "plain"])
def test_kept_logprobs_are_the_unconstrained_models(sql_model_dir, db, shared_prefix):
    """Training's forward pass knows no grammar: the sampler keeps log p(answer + end-of-turn) under the raw logits."""
    model, tokenizer = load_model(sql_model_dir), load_tokenizer(sql_model_dir)
    prompts = _prompts(db)
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=24, batch_size=6, seed=1, keep_logprobs=True)
    sampled = generate(
        model, tokenizer, prompts, answer_prefix=PREFIX, params=params, shared_prefix=shared_prefix,
        grammars=[schema_grammar(db)] * len(prompts),
    )  # fmt: skip
    checked = 0
    for prompt, row in zip(prompts, sampled):
        prompt_ids = tokenizer(render_prompt(tokenizer, prompt, PREFIX), add_special_tokens=False).input_ids
        for sample in row:
            if sample.logprob is None:
                continue
            ids = prompt_ids + sample.token_ids + [tokenizer.eos_token_id]
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
            answer = torch.tensor(ids[len(prompt_ids) :])
            fresh = logits[len(prompt_ids) - 1 : -1].gather(1, answer[:, None]).sum().item()
            assert sample.logprob == pytest.approx(fresh, abs=1e-4)
            checked += 1
    assert checked >= len(prompts)


def test_vllm_gets_the_grammar_per_prompt(tiny_model_dir, monkeypatch, db):
    """The vLLM code path, on a stand-in for vLLM (none here, nor a GPU): the engine is opened with llguidance as its
    structured-output backend, and each prompt's sampling parameters carry its grammar (or none)."""
    import sys
    import types

    from codelutra.config import GenerationConfig
    from codelutra.generation.backends import open_backend

    opened, requests = [], []

    class LLM:
        def __init__(self, model, **kwargs):
            opened.append(kwargs)

        def get_tokenizer(self):
            return load_tokenizer(tiny_model_dir)

        def generate(self, inputs, params, use_tqdm):
            requests.append(params)
            done = types.SimpleNamespace(text="SELECT 1\n```", finish_reason="stop")
            return [types.SimpleNamespace(outputs=[done]) for _ in inputs]

    def record(**kwargs):
        return types.SimpleNamespace(**kwargs)

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, record
    sampling_params = types.ModuleType("vllm.sampling_params")
    sampling_params.StructuredOutputsParams = record
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling_params)
    prompts, grammar = _prompts(db)[:2], schema_grammar(db)
    with open_backend(GenerationConfig(backend="vllm", constrain="schema"), tiny_model_dir) as generate_:
        answers = generate_(prompts, answer_prefix=PREFIX, params=SamplingParams(), grammars=[grammar, None])
    assert opened == [{"structured_outputs_config": {"backend": "guidance"}}]
    first, second = requests[0]
    assert first.structured_outputs.grammar == grammar and not hasattr(second, "structured_outputs")
    assert [row[0].text for row in answers] == [PREFIX + "SELECT 1\n```"] * 2
    with open_backend(GenerationConfig(backend="vllm"), tiny_model_dir) as generate_:
        with pytest.raises(ValueError, match="constrained"):
            generate_(prompts, answer_prefix=PREFIX, params=SamplingParams(), grammars=[grammar, None])
    assert opened[1] == {}


def test_ask_answers_under_the_grammar(sql_model_dir, db, tokenizer):
    """`codelutra ask` (its default, the config key it sets): the query is (a start of) one the grammar allows,
    and not the one this model writes without the constraint."""
    from codelutra.cli import _parser
    from codelutra.serving.ask import ask, decoding_constraint

    args = _parser().parse_args(["ask", "Oldest singer?", "--db", db])
    constrain, _ = decoding_constraint(args.constrain, "transformers")
    cfg = load_config(None, [f"generation.constrain={constrain}", "eval.max_new_tokens=24"])
    assert cfg.generation.constrain == "scope"
    grammar = schema_grammar(db, scope=True)
    constrained = ask(sql_model_dir, db, "Oldest singer?", cfg).sql
    tokens = tokenizer(constrained or "", add_special_tokens=False).input_ids
    assert constrained and Grammars(tokenizer).start(grammar).consume_tokens(tokens)
    assert ask(sql_model_dir, db, "Oldest singer?", load_config(None, ["eval.max_new_tokens=24"])).sql != constrained
