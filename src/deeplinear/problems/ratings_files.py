"""The layouts of a ratings file, read into raw Arrow columns and written back (no JAX).

* Parquet (suffix ``.parquet``/``.pq``, or the magic bytes ``PAR1``): columns by name.
* Delimited text, anything else: tab, comma, semicolon, ``|`` or MovieLens 1M's ``::``
  (detected on the first line; ``.gz``/``.bz2`` read through). The first line is a header
  unless its third field is a number: headerless files are ``user item rating [timestamp]``
  (MovieLens's u.data), files with a header name their columns.

Names are canonical (``user``, ``item``, ``rating``, ``timestamp``) after ``names`` maps them to
the file's own. A column Arrow cannot convert (ids that are numbers in one block and text in
another, a rating that is not a number) is read again as text, for ``ratings_data`` to judge.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from deeplinear.errors import UsageError

COLUMNS = ("user", "item", "rating", "timestamp")
REQUIRED = COLUMNS[:3]
PARQUET_SUFFIXES = (".parquet", ".pq")
SCALE_KEY = b"deeplinear.scale"
_DELIMITERS = ("\t", ",", ";", "|")
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_DATA_HINT = " (a first line of data needs a number as its third field, the rating)"
_INTEGER = re.compile(r"^[-+]?\d+$")
_BLOCK = 1 << 24  # bytes per block read: 16 MiB, fewer chunks than Arrow's 1 MiB
_FAILED_COLUMN = re.compile(r"In CSV column #(\d+)")


@dataclass(frozen=True)
class RawColumns:
    """A file's columns by canonical name (``timestamp`` absent when the file has none)."""

    columns: dict[str, pa.ChunkedArray]
    first_line: int | None  # text: the line number of the first data row; None: Parquet
    scale: tuple[float, float] | None = None  # Parquet: the scale its writer stored

    @property
    def rows(self) -> int:
        return len(self.columns["rating"])

    def where(self, row: int) -> str:
        """``line N`` of a text file, ``row N`` (from 1) of a Parquet file."""
        if self.first_line is None:
            return f"row {row + 1}"
        return f"line {row + self.first_line}"


def is_number(text: str) -> bool:
    return bool(_NUMBER.match(text))


def _prefix(field: str) -> str:
    return field.rsplit(".", 1)[0] + "." if "." in field else ""


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:200]


def read_columns(path: Path, names: dict[str, str] | None, field: str) -> RawColumns:
    """The file at ``path`` as raw columns; ``names``: canonical name → the file's column name."""
    if not path.is_file():
        where = "is not a file" if path.exists() else "does not exist"
        raise UsageError(f"{field}: {str(path)!r} {where}; give the path of a ratings file")
    if path.stat().st_size == 0:
        raise UsageError(f"{field}: {str(path)!r} is empty; give a file with one rating a row")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if path.suffix.lower() in PARQUET_SUFFIXES or magic == b"PAR1":
        return _read_parquet(path, names, field)
    return _read_text(path, names, field)


def _missing(names, found: list[str], path: Path, field: str) -> dict[str, str]:
    """Canonical name → the file's name of each column found; a missing one refused."""
    wanted = {key: (names or {}).get(key, key) for key in COLUMNS}
    needed = {*REQUIRED, *(names or {})}
    missing = [name for key, name in wanted.items() if key in needed and name not in found]
    if missing:
        shown = ", ".join(map(repr, found[:12])) + (" …" if len(found) > 12 else "")
        raise UsageError(
            f"{field}: {path.name} has no column {', '.join(map(repr, missing))} "
            f"(found: {shown}); name the file's columns with {_prefix(field)}columns = "
            '{user = "...", item = "...", rating = "...", timestamp = "..."}'
            + ("" if set(wanted.values()) & set(found) else _DATA_HINT)
        )
    return {key: name for key, name in wanted.items() if name in found}


def _read_parquet(path: Path, names: dict[str, str] | None, field: str) -> RawColumns:
    try:
        schema = pq.read_schema(path)
        present = _missing(names, schema.names, path, field)
        table = pq.read_table(path, columns=list(present.values()))
    except (pa.ArrowException, OSError) as error:
        raise UsageError(
            f"{field}: cannot read {path.name} as Parquet ({_one_line(error)}); "
            "give a Parquet, CSV or tab-separated ratings file"
        ) from None
    columns = {key: table.column(name) for key, name in present.items()}
    stored = (schema.metadata or {}).get(SCALE_KEY)
    scale = tuple(json.loads(stored)) if stored else None
    return RawColumns(columns, None, scale)


def _first_lines(path: Path, field: str) -> list[str]:
    """The first line and, where there is one, the second (the first data of a header)."""
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = stream.read(1 << 16)
        text = head.decode("utf-8", errors="ignore" if len(head) == 1 << 16 else "strict")
    except (UnicodeDecodeError, pa.ArrowException, OSError):
        raise UsageError(
            f"{field}: {path.name} is neither UTF-8 text nor Parquet; give a Parquet, CSV or "
            "tab-separated ratings file"
        ) from None
    lines = [line.rstrip("\r") for line in text.lstrip("\ufeff").split("\n")[:2]]
    if not lines[0].strip():
        raise UsageError(
            f"{field}: the first line of {path.name} is blank; start the file with its header "
            "or its first rating"
        )
    return lines


def _split(line: str) -> tuple[str, int, list[str]]:
    """The delimiter, its repeat (2 for ``::``) and the first line's fields."""
    if "::" in line:
        return ":", 2, [part.strip().strip('"') for part in line.split("::")]
    delimiter = max(_DELIMITERS, key=line.count)
    if line.count(delimiter) == 0:
        delimiter = " "
    return delimiter, 1, [part.strip().strip('"') for part in line.split(delimiter)]


def _positions(fields, names, path: Path, field: str) -> tuple[dict[str, int], bool]:
    """Each canonical column's field position, and whether the first line is a header."""
    header = len(fields) < 3 or not is_number(fields[2])
    if not header:
        if names:
            raise UsageError(
                f"{_prefix(field)}columns names header columns, but {path.name} has no header "
                f"(its first line is data: {_short(' '.join(fields))}); remove "
                f"{_prefix(field)}columns or add a header line"
            )
        return {key: at for at, key in enumerate(COLUMNS[: len(fields)])}, False
    present = _missing(names, fields, path, field)
    return {key: fields.index(name) for key, name in present.items()}, True


def _types(lines: list[str], delimiter: str, step: int, positions, header: bool) -> dict:
    """Arrow types to read with: float64 ratings; int64 ids and timestamps where the first
    data row has integers there (inferring is 2–3× slower; a later row that is not one makes
    the column be read again as text)."""
    types = {"rating": pa.float64()}
    data = lines[int(header)] if len(lines) > int(header) else ""
    fields = [part.strip().strip('"') for part in data.split(delimiter * step)]
    for key in ("user", "item", "timestamp"):
        at = positions.get(key)
        if at is not None and at < len(fields) and _INTEGER.match(fields[at]):
            types[key] = pa.int64()
    return types


def _read_text(path: Path, names: dict[str, str] | None, field: str) -> RawColumns:
    lines = _first_lines(path, field)
    delimiter, step, fields = _split(lines[0])
    positions, header = _positions(fields, names, path, field)
    arrow_names = [f"_{at}" for at in range((len(fields) - 1) * step + 1)]
    for key, at in positions.items():
        arrow_names[at * step] = key
    types = _types(lines, delimiter, step, positions, header)
    for _ in range(len(positions) + 1):
        try:
            table = pcsv.read_csv(
                path,
                read_options=pcsv.ReadOptions(
                    column_names=arrow_names, skip_rows=int(header), block_size=_BLOCK
                ),
                parse_options=pcsv.ParseOptions(delimiter=delimiter),
                convert_options=pcsv.ConvertOptions(
                    include_columns=list(positions), column_types=types, strings_can_be_null=True
                ),
            )
            break
        except (pa.ArrowException, OSError) as error:
            failed = _FAILED_COLUMN.search(str(error))
            column = arrow_names[int(failed.group(1))] if failed else None
            if column is None or types.get(column) == pa.string():
                raise UsageError(
                    f"{field}: cannot read {path.name} as delimited text ({_one_line(error)}); "
                    "give every row the same columns, user item rating [timestamp]"
                ) from None
            types[column] = pa.string()
    columns = {key: table.column(key) for key in positions}
    return RawColumns(columns, 1 + int(header))


def write_columns(table: pa.Table, path: Path, scale: tuple[float, float]) -> None:
    """Parquet (the scale in its metadata), CSV with a header, else tab-separated without."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        metadata = {SCALE_KEY: json.dumps([float(scale[0]), float(scale[1])]).encode()}
        pq.write_table(table.replace_schema_metadata(metadata), path)
    elif suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        options = pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
        pcsv.write_csv(table, path, options)
