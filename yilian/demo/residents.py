"""Demo residents, generated fast and deterministically from one seeded `random.Random`.

A million rows must be made in seconds, so nothing here calls Faker per row: Faker's zh_CN name
and phone vocabularies are read once, and each batch is drawn with `Random.choices(k=n)`.
Rows come out as tuples in `COLUMNS` order; `load_residents` streams them into PostgreSQL
with COPY, or into any other database with `bulk_create`.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from django.db import connection
from django.utils import timezone
from faker.providers.person.zh_CN import Provider as ChinesePersonProvider
from faker.providers.phone_number.zh_CN import Provider as ChinesePhoneProvider

from yilian.demo import taishan
from yilian.patients.models import IdentityDocumentType, Patient, Sex

BATCH = 10_000
# From this many rows on, PostgreSQL loads faster with the plain indexes dropped and rebuilt.
REBUILD_INDEXES_FROM = 100_000
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_MALE, _FEMALE, _RESIDENT_ID = Sex.MALE.value, Sex.FEMALE.value, IdentityDocumentType.RESIDENT_ID.value

# The Patient columns every row fills, in order (the rest take their database defaults).
COLUMNS = (
    "uuid",
    "name",
    "sex",
    "birth_date",
    "id_type",
    "id_number",
    "id_number_valid",
    "phone",
    "address",
    "town",
    "grid_id",
    "home_institution_id",
)


@dataclass(frozen=True)
class GridSlot:
    """Where residents live: one service grid and what their rows copy from it."""

    grid_id: int
    institution_id: int
    town: str
    place: str  # "台山市水步镇石龙村" or "台山市台城街道桥湖社区"
    population: int
    streets: tuple[str, ...] = ()  # communities number houses along streets, villages do not


@dataclass(frozen=True)
class Vocabulary:
    """Faker zh_CN words with their weights, read once."""

    surnames: tuple[str, ...]
    surname_cumulative: tuple[float, ...]
    male_given: tuple[str, ...]
    female_given: tuple[str, ...]
    male_single: tuple[str, ...]
    female_single: tuple[str, ...]
    phone_prefixes: tuple[str, ...]


def vocabulary() -> Vocabulary:
    weights = dict(ChinesePersonProvider.last_names)
    weights.update(taishan.LOCAL_SURNAME_WEIGHTS)
    surnames = tuple(sorted(weights))  # sorted: the draw must not depend on dict order in Faker
    male = tuple(ChinesePersonProvider.first_names_male)
    female = tuple(ChinesePersonProvider.first_names_female)
    return Vocabulary(
        surnames=surnames,
        surname_cumulative=tuple(accumulate(weights[s] for s in surnames)),
        male_given=male,
        female_given=female,
        male_single=tuple(n for n in male if len(n) == 1),
        female_single=tuple(n for n in female if len(n) == 1),
        phone_prefixes=tuple(str(p) for p in ChinesePhoneProvider.phonenumber_prefixes),
    )


def given_name(rng: random.Random, vocab: Vocabulary, male: bool) -> str:
    """A Faker given name, or two of its single-character names joined (建华, 秀玲): both are common."""
    if rng.random() < 0.5:
        return rng.choice(vocab.male_given if male else vocab.female_given)
    singles = vocab.male_single if male else vocab.female_single
    first, second = rng.choice(singles), rng.choice(singles)
    return first + second if first != second else first


def full_name(rng: random.Random, vocab: Vocabulary, male: bool) -> str:
    surname = rng.choices(vocab.surnames, cum_weights=vocab.surname_cumulative)[0]
    return surname + given_name(rng, vocab, male)


def phone_number(rng: random.Random, vocab: Vocabulary) -> str:
    return f"{rng.choice(vocab.phone_prefixes)}{rng.randrange(100_000_000):08d}"


def _weighted_sum(digits: str, weights: Sequence[int]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True))


class ResidentGenerator:
    """Rows of residents for `grids`, deterministic for a given `rng` state.

    ID numbers are unique: each (address code, birth date, sex) keeps its last sequence number and
    the next one is a few steps on, keeping the parity that encodes sex (odd male, even female).
    """

    def __init__(
        self, rng: random.Random, grids: Sequence[GridSlot], *, reference_date: dt.date = taishan.REFERENCE_DATE
    ) -> None:
        self.rng = rng
        self.vocab = vocabulary()
        self.grids = tuple(grids)
        self.grid_cumulative = tuple(accumulate(g.population for g in self.grids))
        self.codes = (taishan.DIVISION_CODE, *taishan.OTHER_ADDRESS_CODES)
        self.code_sums = tuple(_weighted_sum(c, _ID_WEIGHTS[:6]) for c in self.codes)
        self.reference_ordinal = reference_date.toordinal()
        # Single years of age 0–99, each band's weight spread over its five years.
        self.ages = tuple(range(100))
        self.age_cumulative = tuple(accumulate(taishan.AGE_BAND_WEIGHTS[age // 5] / 5 for age in self.ages))
        # The check character's weighted sum, split by part: address code + birth date + sequence.
        self.sequence_sums = tuple(_weighted_sum(f"{s:03d}", _ID_WEIGHTS[14:]) for s in range(1000))
        self._dates: dict[int, tuple[str, dt.date, int]] = {}  # ordinal -> (YYYYMMDD, date, weighted digit sum)
        self._last_sequence: dict[int, int] = {}

    def _date(self, ordinal: int) -> tuple[str, dt.date, int]:
        cached = self._dates.get(ordinal)
        if cached is None:
            day = dt.date.fromordinal(ordinal)
            compact = day.strftime("%Y%m%d")
            cached = self._dates[ordinal] = (compact, day, _weighted_sum(compact, _ID_WEIGHTS[6:14]))
        return cached

    def _sequence(self, code_index: int, ordinal: int, male: bool) -> int | None:
        """The next sequence number for that code, day and sex, or None when the day is full."""
        key = (ordinal * 16 + code_index) * 2 + male
        last = self._last_sequence.get(key)
        if last is None:
            last = (-1 if male else 0) + 2 * self.rng.randrange(20)
        value = last + 2 * self.rng.randint(1, 3)
        if value > 999:
            return None
        self._last_sequence[key] = value
        return value

    def batch(self, size: int) -> list[tuple[object, ...]]:
        rng = self.rng
        vocab = self.vocab
        grids = rng.choices(self.grids, cum_weights=self.grid_cumulative, k=size)
        ages = rng.choices(self.ages, cum_weights=self.age_cumulative, k=size)
        surnames = rng.choices(vocab.surnames, cum_weights=vocab.surname_cumulative, k=size)
        sexes = rng.getrandbits(size)
        rows: list[tuple[object, ...]] = []
        append = rows.append
        reference = self.reference_ordinal
        other_codes = len(self.codes) - 1
        for i in range(size):
            grid = grids[i]
            male = bool(sexes >> i & 1)
            code_index = rng.randint(1, other_codes) if rng.random() < taishan.OTHER_ADDRESS_SHARE else 0
            ordinal = reference - ages[i] * 365 - ages[i] // 4 - rng.randrange(1, 366)
            while (sequence := self._sequence(code_index, ordinal, male)) is None:
                ordinal -= 1  # that day is full (never at demo sizes): the next day back
            compact, birth_date, date_sum = self._date(ordinal)
            first17 = f"{self.codes[code_index]}{compact}{sequence:03d}"
            check = _ID_CHECK[(self.code_sums[code_index] + date_sum + self.sequence_sums[sequence]) % 11]
            valid = rng.random() >= taishan.MISTYPED_ID_SHARE
            if not valid:
                check = rng.choice(_ID_CHECK.replace(check, ""))
            if grid.streets:
                address = f"{grid.place}{rng.choice(grid.streets)}{rng.randrange(1, 300)}号"
            else:
                address = f"{grid.place}{rng.randrange(1, 260)}号"
            append(
                (
                    uuid.UUID(int=rng.getrandbits(128), version=4),
                    surnames[i] + given_name(rng, vocab, male),
                    _MALE if male else _FEMALE,
                    birth_date,
                    _RESIDENT_ID,
                    first17 + check,
                    valid,
                    f"{rng.choice(vocab.phone_prefixes)}{rng.randrange(100_000_000):08d}",
                    address,
                    grid.town,
                    grid.grid_id,
                    grid.institution_id,
                )
            )
        return rows

    def batches(self, count: int, size: int = BATCH) -> Iterator[list[tuple[object, ...]]]:
        remaining = count
        while remaining > 0:
            n = min(size, remaining)
            remaining -= n
            yield self.batch(n)


def load_residents(
    generator: ResidentGenerator, count: int, *, use_copy: bool | None = None, progress: Callable[[int], None] | None = None
) -> int:
    """Insert `count` residents. PostgreSQL streams them with COPY; other databases use bulk_create."""
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    if use_copy:
        return _copy_residents(generator, count, progress)
    return _bulk_create_residents(generator, count, progress)


def _copy_residents(generator: ResidentGenerator, count: int, progress: Callable[[int], None] | None) -> int:
    meta = Patient._meta
    quote = connection.ops.quote_name
    column_of = {f.attname: str(f.column) for f in meta.concrete_fields}
    columns = [quote(column_of[name]) for name in ("created_at", "updated_at", *COLUMNS)]
    now = timezone.now().isoformat()
    sql = f"COPY {quote(meta.db_table)} ({', '.join(columns)}) FROM STDIN"
    written = 0
    suspend = count >= REBUILD_INDEXES_FROM
    with (
        connection.cursor() as cursor,
        _secondary_indexes_suspended(cursor, meta.db_table, suspend=suspend),
        cursor.copy(sql) as copy,
    ):
        for rows in generator.batches(count):
            # Text format: no value holds a tab, newline or backslash (all generated, none typed).
            copy.write(
                "".join(
                    f"{now}\t{now}\t{u}\t{name}\t{sex}\t{birth}\t{id_type}\t{number}\t{'t' if valid else 'f'}\t"
                    f"{phone}\t{address}\t{town}\t{grid}\t{home}\n"
                    for u, name, sex, birth, id_type, number, valid, phone, address, town, grid, home in rows
                )
            )
            written += len(rows)
            if progress:
                progress(len(rows))
    return written


@contextmanager
def _secondary_indexes_suspended(cursor: Any, table: str, *, suspend: bool, unique: bool = False) -> Iterator[None]:
    """Drop the table's plain indexes and foreign keys for a bulk load, then recreate them as they were;
    with `unique`, its unique constraints too (not the primary key, nor one a foreign key relies on).

    Measured on 2 cores with 1M residents: COPY with the six plain indexes and two deferred foreign
    keys in place took 26 s on the server; dropping them, COPY and rebuilding took 13 s. Everything
    runs in the caller's transaction, so a failure restores the old definitions with the rollback
    (and rows that break a dropped unique constraint fail the rebuild, so the load fails whole).
    The table is locked exclusively meanwhile, which only a bulk load can afford.
    """
    if not suspend:
        yield
        return
    # Pending deferred checks (a --reset just deleted rows) would forbid ALTER TABLE: run them now.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
        [table],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'", [table]
    )
    foreign_keys = cursor.fetchall()
    uniques: list[tuple[str, str]] = []
    if unique:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint u WHERE conrelid = %s::regclass "
            "AND contype = 'u' AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = u.conindid)",
            [table],
        )
        uniques = cursor.fetchall()
    quote = connection.ops.quote_name
    for name, _definition in foreign_keys + uniques:
        cursor.execute(f"ALTER TABLE {quote(table)} DROP CONSTRAINT {quote(name)}")
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {quote(name)}")
    yield
    # Index builds sort: give them memory for this transaction only (the server default is 64 MB).
    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for _name, definition in indexes:
        cursor.execute(definition)
    for name, definition in uniques + foreign_keys:
        cursor.execute(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} {definition}")
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _bulk_create_residents(generator: ResidentGenerator, count: int, progress: Callable[[int], None] | None) -> int:
    written = 0
    for rows in generator.batches(count, size=2000):
        Patient.objects.bulk_create([Patient(**dict(zip(COLUMNS, row, strict=True))) for row in rows])
        written += len(rows)
        if progress:
            progress(len(rows))
    return written
