"""Schema rendering, the chat messages for a task, and the answer format of gold queries."""

import sqlite3

import pytest

from codelutra.errors import UserError
from codelutra.generation.extract import extract_sql
from codelutra.tasks import Task
from codelutra.tasks.prompts import format_answer, render_schema, sql_messages


@pytest.fixture
def concert_db(tmp_path):
    path = tmp_path / "concert.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE stadium (
            Stadium_ID   INTEGER PRIMARY KEY AUTOINCREMENT,
            Name         TEXT,
            Capacity     INT
        );
        CREATE TABLE "Concert" (
            concert_ID  INT,
            stadium_id  INT,
            "Year %"    TEXT,
            PRIMARY KEY (concert_ID),
            FOREIGN KEY (stadium_id) REFERENCES stadium(Stadium_ID)
        );
        CREATE TABLE singer_in_concert (concert_id INT, singer_id INT, PRIMARY KEY (concert_id, singer_id),
            FOREIGN KEY (concert_id) REFERENCES Concert);
        INSERT INTO stadium (Name, Capacity) VALUES ('Hampden', 52000);
        """
    )
    db.commit()
    db.close()
    return str(path)


def test_compact_schema_marks_keys_lowercases_and_skips_internal_tables(concert_db):
    assert render_schema(concert_db, "compact") == (
        "stadium(stadium_id PK, name, capacity)\n"
        'concert(concert_id PK, stadium_id, "year %")\n'
        "singer_in_concert(concert_id PK, singer_id PK)\n"
        "Foreign keys: concert.stadium_id = stadium.stadium_id; singer_in_concert.concert_id = concert.concert_id"
    )


def test_create_schema_is_the_statements_on_one_line_each(concert_db):
    schema = render_schema(concert_db, "create")
    lines = schema.splitlines()
    assert len(lines) == 3  # sqlite_sequence (from AUTOINCREMENT) is left out
    assert lines[0] == "CREATE TABLE stadium ( Stadium_ID INTEGER PRIMARY KEY AUTOINCREMENT, Name TEXT, Capacity INT )"
    assert "FOREIGN KEY (stadium_id) REFERENCES stadium(Stadium_ID)" in lines[1]
    assert "sqlite_sequence" not in schema
    assert len(render_schema(concert_db, "compact")) < len(schema)


def test_schema_is_read_without_changing_the_database(concert_db):
    before = open(concert_db, "rb").read()
    render_schema(concert_db, "compact")
    assert open(concert_db, "rb").read() == before


def test_bad_style_or_missing_database_is_a_user_error(concert_db, tmp_path):
    with pytest.raises(UserError, match="schema style"):
        render_schema(concert_db, "json")
    with pytest.raises(UserError, match="database not found"):
        render_schema(str(tmp_path / "nope.sqlite"))


def test_messages_hold_schema_question_hint_and_instruction(concert_db):
    task = Task("t-0", "How many stadiums are there?", "SELECT count(*) FROM stadium", concert_db, "concert", "Count every row.")
    messages = sql_messages(task)
    assert [m["role"] for m in messages] == ["user"]
    content = messages[0]["content"]
    assert render_schema(concert_db, "compact") in content
    assert "Question: How many stadiums are there?" in content
    assert "Hint: Count every row." in content
    assert "```sql" in content
    assert render_schema(concert_db, "create") in sql_messages(task, "create")[0]["content"]


def test_no_hint_line_without_evidence(concert_db):
    task = Task("t-0", "How many stadiums are there?", "SELECT count(*) FROM stadium", concert_db, "concert")
    assert "Hint" not in sql_messages(task)[0]["content"]


def test_format_answer_is_what_extraction_reads_back():
    answer = format_answer("  SELECT count(*) FROM stadium ;\n")
    assert answer == "```sql\nSELECT count(*) FROM stadium\n```"
    assert extract_sql(answer) == "SELECT count(*) FROM stadium"
