"""The built-in databases: one small schema per domain, its metadata for the question families, and its data.

The metadata says how questions talk about a table or column ("students", "from Boston", "the oldest"), so
the same question families in `questions.py` work on every domain, the held-out ones included.
Data comes from fixed word lists and a seeded `random.Random`, so every build writes the same rows.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# --- Metadata -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column and how questions speak about it.

    kind: "key" (primary key), "ref" (foreign key), "label" (the name or title that identifies a row),
    "category" (text or number with few distinct values), "number", or "date" ('YYYY-MM-DD' text).
    The phrase templates follow a plural noun and take {v}: "students" + "from {v}" -> "students from Boston".
    Empty phrase tuples fall back to generic wording in `questions.py`.
    """

    name: str
    type: str  # SQL type: INTEGER, REAL or TEXT
    kind: str
    noun: str = ""  # "city", "number of pages"
    nouns: str = ""  # plural of noun when the usual rule gets it wrong
    equal: tuple[str, ...] = ()  # rows whose value is {v}: "from {v}"
    above: tuple[str, ...] = ()  # rows whose value is greater than {v}: "older than {v}"
    below: tuple[str, ...] = ()
    most: str = ""  # adjective for the row with the highest value: "oldest"
    least: str = ""
    summable: bool = False  # whether a total (SUM) of the column means something


@dataclass(frozen=True)
class Table:
    name: str
    singular: str
    plural: str
    columns: tuple[Column, ...]

    @property
    def label(self) -> Column | None:
        return next((c for c in self.columns if c.kind == "label"), None)

    def of_kind(self, *kinds: str) -> list[Column]:
        return [c for c in self.columns if c.kind in kinds]


@dataclass(frozen=True)
class Link:
    """A foreign key: `child.column` refers to the primary key of `parent`, which has the same name."""

    child: str
    column: str
    parent: str
    verb: str  # how a child relates to its parent: "books" + "written by" + "authors from France"


@dataclass(frozen=True)
class Domain:
    db_id: str
    tables: tuple[Table, ...]  # parents before children, the order rows are inserted in
    links: tuple[Link, ...]
    make_rows: Callable[[random.Random], dict[str, list[tuple]]]

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def key(name: str) -> Column:
    return Column(name, "INTEGER", "key", noun="id")


def ref(name: str) -> Column:
    return Column(name, "INTEGER", "ref", noun="id")


def label(name: str, noun: str = "") -> Column:
    return Column(name, "TEXT", "label", noun=noun or name)


# Columns that several tables share.
AGE = Column(
    "age", "INTEGER", "number", "age",
    above=("older than {v}",), below=("younger than {v}",), most="oldest", least="youngest",
)
HOME_CITY = Column("city", "TEXT", "category", "city", equal=("from {v}", "who live in {v}"))
COUNTRY = Column("country", "TEXT", "category", "country", nouns="countries", equal=("from {v}",))


def create_statement(table: Table, links: tuple[Link, ...]) -> str:
    lines = [f"{c.name} {c.type}" + (" PRIMARY KEY" if c.kind == "key" else "") for c in table.columns]
    lines += [f"FOREIGN KEY ({link.column}) REFERENCES {link.parent}({link.column})" for link in links if link.child == table.name]
    return f"CREATE TABLE {table.name} (\n  " + ",\n  ".join(lines) + "\n)"


def write_database(domain: Domain, path: Path) -> None:
    """Create the SQLite file for `domain` with its seeded rows; foreign keys are enforced while inserting."""
    rows = domain.make_rows(random.Random(f"codelutra-builtin/{domain.db_id}/data"))
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA foreign_keys = ON")
        for table in domain.tables:
            db.execute(create_statement(table, domain.links))
            marks = ", ".join("?" for _ in table.columns)
            db.executemany(f"INSERT INTO {table.name} VALUES ({marks})", rows[table.name])
        db.commit()
    finally:
        db.close()


# --- Word lists and data helpers ------------------------------------------------------------------

FIRST_NAMES = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth",
    "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra", "Paul", "Ashley",
    "Steven", "Emily", "Andrew", "Donna", "Kevin", "Michelle", "Brian", "Carol", "George", "Amanda",
    "Edward", "Melissa", "Ryan", "Deborah", "Jacob", "Laura", "Gary", "Rebecca", "Eric", "Sharon",
    "Peter", "Olivia", "Oliver", "Emma", "Lucas", "Sofia", "Henry", "Grace", "Noah", "Chloe",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
]
CITIES = [
    "Boston", "Chicago", "Denver", "Seattle", "Austin", "Miami", "Phoenix", "Portland",
    "Atlanta", "Dallas", "Houston", "San Diego", "Nashville", "Detroit", "Orlando",
]
COUNTRIES = [
    "USA", "Canada", "UK", "France", "Germany", "Italy", "Spain", "Japan", "Brazil", "Australia", "India", "Mexico",
]
TITLE_ADJECTIVES = [
    "Silent", "Golden", "Hidden", "Broken", "Distant", "Crimson", "Quiet", "Endless", "Wild", "Frozen",
    "Bright", "Lost", "Secret", "Burning", "Gentle", "Midnight", "Silver", "Falling", "Restless", "Electric",
]
TITLE_NOUNS = [
    "River", "Garden", "Mountain", "Shadow", "Ocean", "Forest", "Storm", "City", "Dream", "Island",
    "Road", "Kingdom", "Harbor", "Voice", "Summer", "Letter", "Bridge", "Light", "Winter", "Heart",
]


def person_names(rng: random.Random, count: int) -> list[str]:
    """`count` different "First Last" names."""
    names: list[str] = []
    while len(names) < count:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if name not in names:
            names.append(name)
    return names


def titles(rng: random.Random, count: int, adjectives=TITLE_ADJECTIVES, nouns=TITLE_NOUNS, article="The ") -> list[str]:
    """`count` different titles such as "The Silent River" or "Golden Harbor"."""
    found: list[str] = []
    while len(found) < count:
        title = f"{rng.choice(['', article])}{rng.choice(adjectives)} {rng.choice(nouns)}".strip()
        if title not in found:
            found.append(title)
    return found


def date(rng: random.Random, first_year: int, last_year: int) -> str:
    return f"{rng.randint(first_year, last_year)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def skewed(rng: random.Random, values: list):
    """A value drawn with falling weights (1/2, 1/3, 1/4 ...), so group sizes differ and "the most" has one answer."""
    return rng.choices(values, weights=[1 / (i + 2) for i in range(len(values))])[0]


def some_of(rng: random.Random, values: list, keep: float = 0.85) -> list:
    """A shuffled share of `values`; rows referring only to these leave the rest without children (for NOT IN)."""
    return rng.sample(values, max(2, round(len(values) * keep)))


def ids(rows: list[tuple]) -> list[int]:
    return [row[0] for row in rows]


# --- Train domains --------------------------------------------------------------------------------

SUBJECTS = ["Math", "Physics", "Chemistry", "Biology", "History", "English", "Art", "Music"]


def _school_rows(rng: random.Random) -> dict[str, list[tuple]]:
    cities = rng.sample(CITIES, 7)
    teachers = [
        (i, name, skewed(rng, SUBJECTS), rng.randint(26, 64), rng.randrange(38000, 96000, 250))
        for i, name in enumerate(person_names(rng, 25), 1)
    ]
    advising = some_of(rng, ids(teachers))
    students = []
    for i, name in enumerate(person_names(rng, 120), 1):
        age = rng.randint(14, 18)
        grade = min(12, max(9, age - 5))
        students.append((i, name, age, skewed(rng, cities), grade, skewed(rng, advising)))
    examined = some_of(rng, ids(students))
    exams = [
        (i, skewed(rng, examined), skewed(rng, SUBJECTS), rng.randint(35, 100), date(rng, 2023, 2024))
        for i in range(1, 201)
    ]
    return {"teacher": teachers, "student": students, "exam": exams}


SCHOOL = Domain(
    "school",
    tables=(
        Table("teacher", "teacher", "teachers", (
            key("teacher_id"),
            label("name"),
            Column("subject", "TEXT", "category", "subject", equal=("who teach {v}", "teaching {v}")),
            AGE,
            Column(
                "salary", "INTEGER", "number", "salary", nouns="salaries", most="best paid", least="lowest paid",
                summable=True,
            ),
        )),
        Table("student", "student", "students", (
            key("student_id"),
            label("name"),
            AGE,
            HOME_CITY,
            Column("grade", "INTEGER", "category", "grade", equal=("in grade {v}",)),
            ref("teacher_id"),
        )),
        Table("exam", "exam", "exams", (
            key("exam_id"),
            ref("student_id"),
            Column("subject", "TEXT", "category", "subject", equal=("in {v}",)),
            Column(
                "score", "INTEGER", "number", "score", above=("with a score above {v}",),
                below=("with a score below {v}",),
            ),
            Column("exam_date", "TEXT", "date", "exam date", above=("taken after {v}",), below=("taken before {v}",)),
        )),
    ),
    links=(Link("student", "teacher_id", "teacher", "taught by"), Link("exam", "student_id", "student", "taken by")),
    make_rows=_school_rows,
)


GENRES = ["Fiction", "Mystery", "Fantasy", "Biography", "History", "Science", "Poetry", "Romance"]


def _library_rows(rng: random.Random) -> dict[str, list[tuple]]:
    countries = rng.sample(COUNTRIES, 7)
    cities = rng.sample(CITIES, 6)
    authors = [
        (i, name, skewed(rng, countries), rng.randint(1920, 1995)) for i, name in enumerate(person_names(rng, 30), 1)
    ]
    writing = some_of(rng, ids(authors))
    books = [
        (i, title, skewed(rng, writing), skewed(rng, GENRES), rng.randint(1960, 2023), rng.randint(90, 900))
        for i, title in enumerate(titles(rng, 120), 1)
    ]
    members = [(i, name, skewed(rng, cities), date(rng, 2015, 2023)) for i, name in enumerate(person_names(rng, 60), 1)]
    lent, borrowing = some_of(rng, ids(books)), some_of(rng, ids(members))
    loans = [
        (i, skewed(rng, lent), skewed(rng, borrowing), date(rng, 2022, 2024), rng.randint(3, 60))
        for i in range(1, 201)
    ]
    return {"author": authors, "book": books, "member": members, "loan": loans}


LIBRARY = Domain(
    "library",
    tables=(
        Table("author", "author", "authors", (
            key("author_id"),
            label("name"),
            COUNTRY,
            Column(
                "birth_year", "INTEGER", "number", "birth year", above=("born after {v}",),
                below=("born before {v}",),
            ),
        )),
        Table("book", "book", "books", (
            key("book_id"),
            label("title"),
            ref("author_id"),
            Column("genre", "TEXT", "category", "genre", equal=("in the {v} genre", "of genre {v}")),
            Column(
                "year", "INTEGER", "number", "publication year", above=("published after {v}",),
                below=("published before {v}",), most="newest", least="oldest",
            ),
            Column(
                "pages", "INTEGER", "number", "number of pages", above=("with more than {v} pages",),
                below=("with fewer than {v} pages",), most="longest", least="shortest", summable=True,
            ),
        )),
        Table("member", "member", "members", (
            key("member_id"),
            label("name"),
            HOME_CITY,
            Column(
                "join_date", "TEXT", "date", "join date", above=("who joined after {v}",),
                below=("who joined before {v}",),
            ),
        )),
        Table("loan", "loan", "loans", (
            key("loan_id"),
            ref("book_id"),
            ref("member_id"),
            Column("loan_date", "TEXT", "date", "loan date", above=("made after {v}",), below=("made before {v}",)),
            Column(
                "days", "INTEGER", "number", "number of days", above=("lasting more than {v} days",),
                below=("lasting fewer than {v} days",), summable=True,
            ),
        )),
    ),
    links=(
        Link("book", "author_id", "author", "written by"),
        Link("loan", "book_id", "book", "of"),
        Link("loan", "member_id", "member", "made by"),
    ),
    make_rows=_library_rows,
)


PRODUCT_ITEMS = {
    "Electronics": ["Headphones", "Speaker", "Keyboard", "Webcam", "Charger", "Mouse"],
    "Kitchen": ["Blender", "Toaster", "Kettle", "Frying Pan", "Knife Set", "Coffee Mug"],
    "Sports": ["Yoga Mat", "Football", "Tennis Racket", "Water Bottle", "Dumbbell", "Backpack"],
    "Toys": ["Puzzle", "Robot Kit", "Board Game", "Doll", "Kite", "Train Set"],
    "Garden": ["Shovel", "Hose", "Planter", "Lawn Chair", "Watering Can", "Gloves"],
}
PRODUCT_STYLES = ["Classic", "Deluxe", "Compact", "Premium", "Basic", "Smart", "Ultra", "Eco"]


def _shop_rows(rng: random.Random) -> dict[str, list[tuple]]:
    cities = rng.sample(CITIES, 7)
    customers = [(i, name, skewed(rng, cities), rng.randint(18, 75)) for i, name in enumerate(person_names(rng, 80), 1)]
    products: list[tuple] = []
    names: list[str] = []
    while len(products) < 60:
        category = skewed(rng, list(PRODUCT_ITEMS))
        name = f"{rng.choice(PRODUCT_STYLES)} {rng.choice(PRODUCT_ITEMS[category])}"
        if name not in names:
            names.append(name)
            products.append((len(products) + 1, name, category, round(rng.uniform(5, 300), 2), rng.randint(0, 500)))
    buyers, sold = some_of(rng, ids(customers)), some_of(rng, ids(products))
    purchases = [
        (i, skewed(rng, buyers), skewed(rng, sold), rng.randint(1, 5), date(rng, 2023, 2024))
        for i in range(1, 201)
    ]
    return {"customer": customers, "product": products, "purchase": purchases}


SHOP = Domain(
    "shop",
    tables=(
        Table("customer", "customer", "customers", (
            key("customer_id"),
            label("name"),
            HOME_CITY,
            AGE,
        )),
        Table("product", "product", "products", (
            key("product_id"),
            label("name"),
            Column("category", "TEXT", "category", "category", equal=("in the {v} category",)),
            Column(
                "price", "REAL", "number", "price", above=("priced above {v}", "costing more than {v}"),
                below=("priced below {v}", "costing less than {v}"), most="most expensive", least="cheapest",
            ),
            Column(
                "stock", "INTEGER", "number", "stock", above=("with more than {v} units in stock",),
                below=("with fewer than {v} units in stock",), summable=True,
            ),
        )),
        Table("purchase", "purchase", "purchases", (
            key("purchase_id"),
            ref("customer_id"),
            ref("product_id"),
            Column("quantity", "INTEGER", "number", "quantity", nouns="quantities", summable=True),
            Column(
                "purchase_date", "TEXT", "date", "purchase date", above=("made after {v}",),
                below=("made before {v}",),
            ),
        )),
    ),
    links=(Link("purchase", "customer_id", "customer", "made by"), Link("purchase", "product_id", "product", "of")),
    make_rows=_shop_rows,
)


SPECIALTIES = ["Cardiology", "Neurology", "Pediatrics", "Oncology", "Dermatology", "Orthopedics", "Radiology"]
BLOOD_TYPES = ["O+", "A+", "B+", "AB+", "O-", "A-", "B-", "AB-"]


def _hospital_rows(rng: random.Random) -> dict[str, list[tuple]]:
    cities = rng.sample(CITIES, 6)
    doctors = [
        (i, name, skewed(rng, SPECIALTIES), rng.randint(1, 35)) for i, name in enumerate(person_names(rng, 24), 1)
    ]
    patients = [
        (i, name, rng.randint(1, 90), skewed(rng, cities), skewed(rng, BLOOD_TYPES))
        for i, name in enumerate(person_names(rng, 100), 1)
    ]
    visitors, working = some_of(rng, ids(patients)), some_of(rng, ids(doctors))
    visits = [
        (i, skewed(rng, visitors), skewed(rng, working), date(rng, 2022, 2024), round(rng.uniform(50, 1500), 2))
        for i in range(1, 201)
    ]
    return {"doctor": doctors, "patient": patients, "visit": visits}


HOSPITAL = Domain(
    "hospital",
    tables=(
        Table("doctor", "doctor", "doctors", (
            key("doctor_id"),
            label("name"),
            Column(
                "specialty", "TEXT", "category", "specialty", nouns="specialties",
                equal=("specializing in {v}", "working in {v}"),
            ),
            Column(
                "experience", "INTEGER", "number", "years of experience", nouns="years of experience",
                above=("with more than {v} years of experience",), below=("with fewer than {v} years of experience",),
                most="most experienced", least="least experienced",
            ),
        )),
        Table("patient", "patient", "patients", (
            key("patient_id"),
            label("name"),
            AGE,
            HOME_CITY,
            Column("blood_type", "TEXT", "category", "blood type", equal=("with blood type {v}",)),
        )),
        Table("visit", "visit", "visits", (
            key("visit_id"),
            ref("patient_id"),
            ref("doctor_id"),
            Column(
                "visit_date", "TEXT", "date", "visit date", above=("that took place after {v}",),
                below=("that took place before {v}",),
            ),
            Column(
                "cost", "REAL", "number", "cost", above=("costing more than {v}",), below=("costing less than {v}",),
                most="most expensive", least="cheapest", summable=True,
            ),
        )),
    ),
    links=(Link("visit", "patient_id", "patient", "by"), Link("visit", "doctor_id", "doctor", "with")),
    make_rows=_hospital_rows,
)


MUSIC_GENRES = ["Rock", "Pop", "Jazz", "Hip Hop", "Country", "Blues", "Electronic", "Folk"]
BAND_ADJECTIVES = ["Velvet", "Neon", "Electric", "Crimson", "Golden", "Silent", "Wild", "Midnight", "Lunar", "Iron"]
BAND_NOUNS = ["Echo", "Tide", "Foxes", "Riders", "Dreams", "Pilots", "Saints", "Wolves", "Waves", "Hearts"]


def _music_rows(rng: random.Random) -> dict[str, list[tuple]]:
    countries = rng.sample(COUNTRIES, 6)
    artists = [
        (i, name, skewed(rng, countries), skewed(rng, MUSIC_GENRES))
        for i, name in enumerate(titles(rng, 30, BAND_ADJECTIVES, BAND_NOUNS), 1)
    ]
    recording = some_of(rng, ids(artists))
    albums = [
        (i, title, skewed(rng, recording), rng.randint(1970, 2023), round(rng.uniform(5, 25), 2))
        for i, title in enumerate(titles(rng, 80), 1)
    ]
    with_songs = some_of(rng, ids(albums), keep=0.9)
    songs = [
        (i, title, skewed(rng, with_songs), rng.randint(120, 420), rng.randint(1000, 5_000_000))
        for i, title in enumerate(titles(rng, 200), 1)
    ]
    return {"artist": artists, "album": albums, "song": songs}


MUSIC = Domain(
    "music",
    tables=(
        Table("artist", "artist", "artists", (
            key("artist_id"),
            label("name"),
            COUNTRY,
            Column("genre", "TEXT", "category", "genre", equal=("who play {v}", "in the {v} genre")),
        )),
        Table("album", "album", "albums", (
            key("album_id"),
            label("title"),
            ref("artist_id"),
            Column(
                "year", "INTEGER", "number", "release year", above=("released after {v}",),
                below=("released before {v}",), most="newest", least="oldest",
            ),
            Column(
                "price", "REAL", "number", "price", above=("priced above {v}",), below=("priced below {v}",),
                most="most expensive", least="cheapest",
            ),
        )),
        Table("song", "song", "songs", (
            key("song_id"),
            label("title"),
            ref("album_id"),
            Column(
                "duration", "INTEGER", "number", "duration", above=("longer than {v} seconds",),
                below=("shorter than {v} seconds",), most="longest", least="shortest", summable=True,
            ),
            Column(
                "plays", "INTEGER", "number", "number of plays", above=("played more than {v} times",),
                below=("played fewer than {v} times",), most="most played", least="least played", summable=True,
            ),
        )),
    ),
    links=(Link("album", "artist_id", "artist", "by"), Link("song", "album_id", "album", "from")),
    make_rows=_music_rows,
)


MASCOTS = [
    "Hawks", "Wolves", "Tigers", "Bears", "Eagles", "Sharks", "Lions", "Falcons", "Rangers", "Comets",
    "Bulls", "Pirates", "Knights", "Storm", "Raptors", "Titans", "Vipers", "Giants", "Owls", "Stallions",
]


def _sports_rows(rng: random.Random) -> dict[str, list[tuple]]:
    cities = rng.sample(CITIES, 10)
    teams = []
    for i, mascot in enumerate(MASCOTS, 1):
        city = rng.choice(cities)
        teams.append((i, f"{city} {mascot}", city, rng.randint(1900, 2010)))
    playing = some_of(rng, ids(teams), keep=0.9)
    players = [
        (
            i, name, skewed(rng, playing), skewed(rng, ["Guard", "Forward", "Center"]),
            rng.randint(19, 38), rng.randrange(500_000, 20_000_000, 10_000),
        )
        for i, name in enumerate(person_names(rng, 160), 1)
    ]
    coaching = some_of(rng, ids(teams), keep=0.7)
    coaches = [
        (i, name, rng.choice(coaching), rng.randint(35, 70), skewed(rng, COUNTRIES[:5]))
        for i, name in enumerate(person_names(rng, 24), 1)
    ]
    return {"team": teams, "player": players, "coach": coaches}


SPORTS = Domain(
    "sports",
    tables=(
        Table("team", "team", "teams", (
            key("team_id"),
            label("name"),
            Column("city", "TEXT", "category", "city", equal=("based in {v}", "from {v}")),
            Column(
                "founded", "INTEGER", "number", "founding year", above=("founded after {v}",),
                below=("founded before {v}",),
            ),
        )),
        Table("player", "player", "players", (
            key("player_id"),
            label("name"),
            ref("team_id"),
            Column("position", "TEXT", "category", "position", equal=("who play as {v}", "in the {v} position")),
            AGE,
            Column(
                "salary", "INTEGER", "number", "salary", nouns="salaries", most="highest paid", least="lowest paid",
                summable=True,
            ),
        )),
        Table("coach", "coach", "coaches", (
            key("coach_id"),
            label("name"),
            ref("team_id"),
            AGE,
            COUNTRY,
        )),
    ),
    links=(Link("player", "team_id", "team", "playing for"), Link("coach", "team_id", "team", "working for")),
    make_rows=_sports_rows,
)


# --- Held-out domains -----------------------------------------------------------------------------

AIRLINE_NAMES = [
    "Sky", "Blue", "Star", "Sun", "Polar", "Coastal", "Pacific", "Atlantic", "Horizon", "Jet",
    "Aurora", "Eagle", "Nova", "Royal", "Global", "Orient", "Liberty", "Mountain", "Delta", "Falcon",
]


def _airline_rows(rng: random.Random) -> dict[str, list[tuple]]:
    countries = rng.sample(COUNTRIES, 6)
    airlines = [
        (i, f"{word} {rng.choice(['Airways', 'Airlines', 'Air'])}", skewed(rng, countries), rng.randint(1920, 2015))
        for i, word in enumerate(AIRLINE_NAMES, 1)
    ]
    cities = rng.sample(CITIES, 10)
    distances: dict[tuple[str, str], int] = {}
    flying = some_of(rng, ids(airlines))
    flights: list[tuple] = []
    numbers: list[str] = []
    while len(flights) < 150:
        airline_id = skewed(rng, flying)
        number = f"{AIRLINE_NAMES[airline_id - 1][:2].upper()}{rng.randint(100, 999)}"
        origin, destination = skewed(rng, cities), rng.choice(cities)
        if number in numbers or origin == destination:
            continue
        numbers.append(number)
        pair = (min(origin, destination), max(origin, destination))
        distance = distances.setdefault(pair, rng.randint(200, 2800))
        price = round(50 + distance * rng.uniform(0.1, 0.3), 2)
        flights.append((len(flights) + 1, number, airline_id, origin, destination, distance, price))
    passengers = [
        (i, name, rng.randint(2, 85), skewed(rng, countries)) for i, name in enumerate(person_names(rng, 100), 1)
    ]
    travelling, booked = some_of(rng, ids(passengers)), some_of(rng, ids(flights))
    bookings = [
        (
            i, skewed(rng, travelling), skewed(rng, booked),
            skewed(rng, ["Economy", "Business", "First"]), date(rng, 2024, 2024),
        )
        for i in range(1, 201)
    ]
    return {"airline": airlines, "flight": flights, "passenger": passengers, "booking": bookings}


AIRLINE = Domain(
    "airline",
    tables=(
        Table("airline", "airline", "airlines", (
            key("airline_id"),
            label("name"),
            Column("country", "TEXT", "category", "country", nouns="countries", equal=("from {v}", "based in {v}")),
            Column(
                "founded", "INTEGER", "number", "founding year", above=("founded after {v}",),
                below=("founded before {v}",),
            ),
        )),
        Table("flight", "flight", "flights", (
            key("flight_id"),
            label("flight_number", "flight number"),
            ref("airline_id"),
            Column("origin", "TEXT", "category", "origin", equal=("departing from {v}", "leaving from {v}")),
            Column("destination", "TEXT", "category", "destination", equal=("arriving in {v}", "going to {v}")),
            Column(
                "distance", "INTEGER", "number", "distance", above=("longer than {v} miles",),
                below=("shorter than {v} miles",), most="longest", least="shortest", summable=True,
            ),
            Column(
                "price", "REAL", "number", "price", above=("costing more than {v}",),
                below=("costing less than {v}",), most="most expensive", least="cheapest",
            ),
        )),
        Table("passenger", "passenger", "passengers", (
            key("passenger_id"),
            label("name"),
            AGE,
            COUNTRY,
        )),
        Table("booking", "booking", "bookings", (
            key("booking_id"),
            ref("passenger_id"),
            ref("flight_id"),
            Column("seat_class", "TEXT", "category", "seat class", nouns="seat classes", equal=("in {v} class",)),
            Column(
                "booking_date", "TEXT", "date", "booking date", above=("made after {v}",), below=("made before {v}",),
            ),
        )),
    ),
    links=(
        Link("flight", "airline_id", "airline", "operated by"),
        Link("booking", "passenger_id", "passenger", "made by"),
        Link("booking", "flight_id", "flight", "on"),
    ),
    make_rows=_airline_rows,
)


CUISINES = ["Italian", "Mexican", "Chinese", "Japanese", "Indian", "French", "Thai", "American"]
RESTAURANT_ADJECTIVES = [
    "Golden", "Rustic", "Blue", "Little", "Happy", "Hungry", "Spicy", "Green", "Royal", "Silver", "Old", "Sunny",
]
RESTAURANT_NOUNS = [
    "Spoon", "Fork", "Table", "Kitchen", "Garden", "Lantern", "Oven", "Plate", "Bistro", "Grill", "Olive", "Pepper",
]
DISH_STYLES = [
    "Spicy", "Grilled", "Roasted", "Crispy", "Smoked", "Garlic", "Lemon", "Honey", "Fried", "Baked", "Sweet", "Creamy",
]
DISH_FOODS = [
    "Chicken", "Salmon", "Tofu", "Beef", "Noodles", "Shrimp", "Pork", "Lamb",
    "Rice", "Tacos", "Pasta", "Curry", "Dumplings", "Soup", "Salad",
]


def _restaurant_rows(rng: random.Random) -> dict[str, list[tuple]]:
    cities = rng.sample(CITIES, 6)
    restaurants = [
        (i, name, skewed(rng, cities), skewed(rng, CUISINES), round(rng.uniform(2.5, 5.0), 1))
        for i, name in enumerate(titles(rng, 40, RESTAURANT_ADJECTIVES, RESTAURANT_NOUNS), 1)
    ]
    serving = some_of(rng, ids(restaurants))
    dishes = [
        (i, name, skewed(rng, serving), round(rng.uniform(6, 45), 2), rng.randint(150, 1400))
        for i, name in enumerate(titles(rng, 150, DISH_STYLES, DISH_FOODS, article=""), 1)
    ]
    reviewed = some_of(rng, ids(restaurants))
    reviewers = person_names(rng, 60)
    reviews = [
        (i, skewed(rng, reviewed), rng.choice(reviewers), skewed(rng, [5, 4, 3, 2, 1]), date(rng, 2022, 2024))
        for i in range(1, 201)
    ]
    return {"restaurant": restaurants, "dish": dishes, "review": reviews}


RESTAURANT = Domain(
    "restaurant",
    tables=(
        Table("restaurant", "restaurant", "restaurants", (
            key("restaurant_id"),
            label("name"),
            Column("city", "TEXT", "category", "city", equal=("in {v}", "located in {v}")),
            Column("cuisine", "TEXT", "category", "cuisine", equal=("serving {v} food", "with {v} cuisine")),
            Column(
                "rating", "REAL", "number", "rating", above=("rated above {v}",), below=("rated below {v}",),
                most="highest rated", least="lowest rated",
            ),
        )),
        Table("dish", "dish", "dishes", (
            key("dish_id"),
            label("name"),
            ref("restaurant_id"),
            Column(
                "price", "REAL", "number", "price", above=("priced above {v}", "costing more than {v}"),
                below=("priced below {v}", "costing less than {v}"), most="most expensive", least="cheapest",
            ),
            Column(
                "calories", "INTEGER", "number", "calories", nouns="calories", above=("with more than {v} calories",),
                below=("with fewer than {v} calories",), summable=True,
            ),
        )),
        Table("review", "review", "reviews", (
            key("review_id"),
            ref("restaurant_id"),
            label("reviewer"),
            Column(
                "stars", "INTEGER", "number", "stars", nouns="stars", above=("with more than {v} stars",),
                below=("with fewer than {v} stars",),
            ),
            Column(
                "review_date", "TEXT", "date", "review date", above=("written after {v}",),
                below=("written before {v}",),
            ),
        )),
    ),
    links=(
        Link("dish", "restaurant_id", "restaurant", "served at"),
        Link("review", "restaurant_id", "restaurant", "of"),
    ),
    make_rows=_restaurant_rows,
)


TRAIN_DOMAINS = (SCHOOL, LIBRARY, SHOP, HOSPITAL, MUSIC, SPORTS)
HELDOUT_DOMAINS = (AIRLINE, RESTAURANT)
