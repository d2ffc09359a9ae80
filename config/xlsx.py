"""Reading the cell values of large uploaded XLSX sheets quickly, as openpyxl reads them.

The bulk imports (cases.imports, exams.scoring) read every row of sheets of up to
tens of thousands of rows. openpyxl's read-only mode builds an element and a dict for
every cell and Text objects for every string, which cost more than validating and
writing the row (bench/README.md, "import"). Here openpyxl still opens the workbook
(manifest, workbook, styles, sheets: `open_workbook`), but the shared-strings table and
the sheet's rows are parsed with expat callbacks (`sheet_rows`), giving the values
`iter_rows(values_only=True)` gives with `data_only=True`: numbers as int or float,
dates by the cell's number format (openpyxl's own date-format table and epoch), shared
and inline strings (rich-text runs joined, phonetic runs left out), booleans, formula
results, error codes as text. tests/cases/test_imports.py compares the two on a sheet
holding each kind of cell.

Untrusted input: entity declarations and external entities are refused as defusedxml
refuses them, and the caller checks the archive's unpacked size before opening it.
"""

from collections.abc import Iterator
from io import BytesIO
from xml.parsers import expat

from openpyxl.reader.excel import ExcelReader
from openpyxl.utils.datetime import from_excel, from_ISO8601
from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS

_CHUNK = 1 << 16
_NS = SHEET_MAIN_NS + " "
ROW, CELL, VALUE = _NS + "row", _NS + "c", _NS + "v"
INLINE, TEXT, RUN, PHONETIC = _NS + "is", _NS + "t", _NS + "r", _NS + "rPh"
SHARED_ITEM = _NS + "si"


class UnsafeXML(ValueError):
    """The part declares entities or refers to external ones (never in a real workbook)."""


def _refuse(*args):
    raise UnsafeXML("entity declarations and external entities are not allowed")


def _parser(start, end, text) -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.buffer_size = _CHUNK
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    return parser


class _Text:
    """Collects a string item (<si> or <is>) as openpyxl's Text.content: the plain <t>
    first, then each run's <t>, without phonetic runs (<rPh>)."""

    __slots__ = ("depth_phonetic", "in_run", "in_text", "plain", "runs")

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.plain: list[str] | None = None
        self.runs: list[str] = []
        self.in_text = self.in_run = False
        self.depth_phonetic = 0

    def start(self, name: str) -> None:
        if name == TEXT and not self.depth_phonetic:
            self.in_text = True
            if not self.in_run and self.plain is None:
                self.plain = []
        elif name == RUN:
            self.in_run = True
        elif name == PHONETIC:
            self.depth_phonetic += 1

    def end(self, name: str) -> None:
        if name == TEXT:
            self.in_text = False
        elif name == RUN:
            self.in_run = False
        elif name == PHONETIC:
            self.depth_phonetic -= 1

    def data(self, data: str) -> None:
        if self.in_text:
            if self.in_run:
                self.runs.append(data)
            else:
                self.plain.append(data)

    def content(self) -> str:
        return "".join(self.plain or ()) + "".join(self.runs)


def _shared_strings(source) -> list[str]:
    strings: list[str] = []
    item = _Text()
    inside = [False]

    def start(name, attrs):
        if name == SHARED_ITEM:
            inside[0] = True
            item.reset()
        elif inside[0]:
            item.start(name)

    def end(name):
        if name == SHARED_ITEM:
            inside[0] = False
            # openpyxl's read_string_table drops the escape of a literal "_x" the same way.
            strings.append(item.content().replace("x005F_", ""))
        elif inside[0]:
            item.end(name)

    parser = _parser(start, end, item.data)
    while chunk := source.read(_CHUNK):
        parser.Parse(chunk, False)
    parser.Parse(b"", True)
    return strings


class _Reader(ExcelReader):
    def read_strings(self):
        part = self.package.find(SHARED_STRINGS)
        if part is not None:
            with self.archive.open(part.PartName[1:]) as source:
                self.shared_strings = _shared_strings(source)


def open_workbook(data: bytes):
    """The workbook, read-only with formulas' cached values, as
    load_workbook(read_only=True, data_only=True, keep_links=False) opens it.
    Raises what openpyxl raises on a malformed workbook, or UnsafeXML."""
    reader = _Reader(BytesIO(data), read_only=True, data_only=True, keep_links=False)
    reader.read()
    return reader.wb


def _column(reference: str, cache: dict[str, int]) -> int:
    letters = reference.rstrip("0123456789")
    index = cache.get(letters)
    if index is None:
        if not letters or not letters.isascii() or not letters.isupper() or len(letters) > 3:
            raise ValueError(f"invalid cell reference {reference!r}")
        index = 0
        for letter in letters:
            index = index * 26 + ord(letter) - 64
        cache[letters] = index
    return index


def _number(text: str):
    # openpyxl's _cast_number.
    if "." in text or "E" in text or "e" in text:
        return float(text)
    return int(text)


def sheet_rows(sheet) -> Iterator[tuple[int, list]]:
    """(row number, values) for every row of a read-only worksheet from `open_workbook`,
    from row 1, as iter_rows(values_only=True) yields them but with trailing empty cells
    left off (values[i] is column i + 1). A row missing from the file comes as an empty
    list, as openpyxl fills gaps; a row numbered before the one read last is skipped, as
    openpyxl skips it. Reads in chunks, so a caller that stops early parses no further."""
    workbook = sheet.parent
    strings = sheet._shared_strings
    date_styles = workbook._date_formats
    duration_styles = workbook._timedelta_formats
    epoch = workbook.epoch
    columns: dict[str, int] = {}

    done: list[tuple[int, list]] = []
    values: list = []
    value_text: list[str] = []
    inline = _Text()
    row = column = 0
    kind, style = "n", None
    in_value = in_inline = has_value = has_inline = False

    def start(name, attrs):
        nonlocal row, column, kind, style, in_value, in_inline, has_value, has_inline
        if name == CELL:
            reference = attrs.get("r")
            column = _column(reference, columns) if reference else column + 1
            kind = attrs.get("t", "n")
            style = attrs.get("s")
            has_value = has_inline = False
        elif name == VALUE:
            if not has_value:  # openpyxl reads the first <v>
                in_value = has_value = True
                value_text.clear()
        elif name == INLINE:
            in_inline = has_inline = True
            inline.reset()
        elif in_inline:
            inline.start(name)
        elif name == ROW:
            number = attrs.get("r")
            if number is None:
                row += 1
            else:
                as_float = float(number)
                if not as_float.is_integer():
                    raise ValueError(f"{number} is not a valid row number")
                row = int(as_float)
            column = 0
            values.clear()

    def end(name):
        nonlocal in_value, in_inline
        if name == CELL:
            value = cell_value()
            if value is not None:
                if column > len(values):
                    values.extend([None] * (column - len(values)))
                values[column - 1] = value
        elif name == VALUE:
            in_value = False
        elif name == INLINE:
            in_inline = False
        elif in_inline:
            inline.end(name)
        elif name == ROW:
            done.append((row, values[:]))

    def text(data):
        if in_value:
            value_text.append(data)
        elif in_inline:
            inline.data(data)

    def cell_value():
        if kind == "inlineStr":
            return inline.content() if has_inline else None
        raw = "".join(value_text) if has_value else ""
        if not raw:
            return None
        if kind == "n":
            number = _number(raw)
            if style and int(style) in date_styles:
                style_id = int(style)
                try:
                    return from_excel(number, epoch, timedelta=style_id in duration_styles)
                except (OverflowError, ValueError):
                    return "#VALUE!"  # openpyxl's value for a date serial out of range
            return number
        if kind == "s":
            return strings[int(raw)]
        if kind == "b":
            return bool(int(raw))
        if kind == "d":
            return from_ISO8601(raw)
        return raw  # "str" (a formula's text result), "e" (an error code)

    parser = _parser(start, end, text)
    expected = 1
    with sheet._get_source() as source:
        while True:
            chunk = source.read(_CHUNK)
            parser.Parse(chunk, not chunk)
            for number, cells in done:
                if number < expected:
                    continue
                while expected < number:
                    yield expected, []
                    expected += 1
                yield number, cells
                expected += 1
            done.clear()
            if not chunk:
                break
