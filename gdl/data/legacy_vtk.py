"""Legacy VTK files (``# vtk DataFile Version 2.0`` to ``5.1``), ASCII or binary, read and written with NumPy.

Only what a point cloud needs is kept: the ``POINTS`` of a POLYDATA, UNSTRUCTURED_GRID or
STRUCTURED_GRID data set and its ``POINT_DATA`` arrays (``SCALARS``, ``VECTORS``, ``NORMALS``,
``TEXTURE_COORDINATES``, ``TENSORS`` and ``FIELD`` arrays); cells and cell data are skipped. Binary
values are big-endian, as the format prescribes. The layout is that of "The VTK User's Guide",
file formats chapter: keyword lines, each followed by its values.
"""

from __future__ import annotations

import re
from itertools import islice
from pathlib import Path

import numpy as np

MAGIC = b"# vtk DataFile"
_TYPES = {
    "unsigned_char": "u1", "char": "i1", "unsigned_short": "u2", "short": "i2", "unsigned_int": "u4",
    "int": "i4", "unsigned_long": "u8", "long": "i8", "float": "f4", "double": "f8",
    "vtktypeint64": "i8", "vtktypeuint64": "u8", "vtkidtype": "i8",
}
_WORD = re.compile(rb"\S+")
_POINT_SETS = ("POLYDATA", "UNSTRUCTURED_GRID", "STRUCTURED_GRID")


class _Cursor:
    """A position in the file's bytes: keyword words and lines, then ASCII or binary value blocks."""

    def __init__(self, path: Path, data: bytes, binary: bool, position: int):
        self.path, self.data, self.binary, self.position = path, data, binary, position

    def error(self, message: str) -> ValueError:
        line = self.data.count(b"\n", 0, self.position) + 1
        return ValueError(f"{self.path}, line {line}: {message}")

    def word(self) -> str | None:
        found = _WORD.search(self.data, self.position)
        if found is None:
            return None
        self.position = found.end()
        return found.group().decode("ascii", errors="replace")

    def rest_of_line(self) -> list[str]:
        end = self.data.find(b"\n", self.position)
        end = len(self.data) if end < 0 else end
        words = self.data[self.position : end].decode("ascii", errors="replace").split()
        self.position = end + 1
        return words

    def integer(self, what: str) -> int:
        word = self.word()
        try:
            return int(word)
        except (TypeError, ValueError):
            raise self.error(f"expected {what} (an integer), got {word!r}") from None

    def values(self, count: int, type_name: str) -> np.ndarray:
        code = _TYPES.get(type_name.lower())
        if code is None:
            raise self.error(f"unsupported data type {type_name!r} (expected one of {', '.join(_TYPES)})")
        if not self.binary:
            words, position = [], self.position
            for match in islice(_WORD.finditer(self.data, self.position), count):
                words.append(match.group())
                position = match.end()
            if len(words) < count:
                raise self.error(f"expected {count} values, the file ends after {len(words)}")
            self.position = position
            try:
                return np.array(words).astype(np.float64).astype(code)
            except ValueError as error:
                raise self.error(f"expected {count} numbers ({error})") from None
        dtype = np.dtype(">" + code)
        end = self.position + count * dtype.itemsize
        if end > len(self.data):
            raise self.error(f"expected {count} binary {type_name} values, the file is {end - len(self.data)} bytes too short")
        array = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.position).astype(code)
        self.position = end
        return array

    def skip_metadata(self) -> None:
        """``METADATA`` blocks (VTK >= 8) end at the first empty line."""
        while self.position < len(self.data):
            end = self.data.find(b"\n", self.position)
            end = len(self.data) if end < 0 else end
            line = self.data[self.position : end].strip()
            self.position = end + 1
            if not line:
                return


def read_legacy_vtk(path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(points (N, 3), point_data)`` of a legacy VTK file; arrays are (N,) or (N, C), in their file's dtype."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not a legacy VTK file (its first line must start with '# vtk DataFile')")
    lines = data.split(b"\n", 3)
    if len(lines) < 4:
        raise ValueError(f"{path}: a legacy VTK file needs a title line, ASCII or BINARY, then a DATASET line")
    encoding = lines[2].strip().upper()
    if encoding not in (b"ASCII", b"BINARY"):
        raise ValueError(f"{path}, line 3: expected ASCII or BINARY, got {lines[2].strip()[:40]!r}")
    cursor = _Cursor(path, data, encoding == b"BINARY", len(lines[0]) + len(lines[1]) + len(lines[2]) + 3)
    if cursor.word() != "DATASET":
        raise cursor.error("expected a DATASET line")
    kind = (cursor.word() or "").upper()
    if kind not in _POINT_SETS:
        raise cursor.error(f"a {kind or 'missing'} data set holds no point list (expected one of {', '.join(_POINT_SETS)})")
    points, point_data = None, {}
    while (keyword := cursor.word()) is not None:
        keyword = keyword.upper()
        if keyword == "POINTS":
            count, type_name = cursor.integer("the number of points"), cursor.rest_of_line()[0]
            points = cursor.values(3 * count, type_name).reshape(count, 3)
        elif keyword == "DIMENSIONS":
            cursor.rest_of_line()
        elif keyword == "FIELD":  # field data of the whole data set: skipped
            _read_field(cursor, None)
        elif keyword in ("VERTICES", "LINES", "POLYGONS", "TRIANGLE_STRIPS", "CELLS"):
            cells, size = cursor.integer("a cell count"), cursor.integer("a cell list size")
            cursor.rest_of_line()
            _skip_cells(cursor, cells, size)
        elif keyword == "CELL_TYPES":
            count = cursor.integer("a cell count")
            cursor.rest_of_line()
            cursor.values(count, "int")
        elif keyword in ("POINT_DATA", "CELL_DATA"):
            size = cursor.integer(f"the size of {keyword}")
            cursor.rest_of_line()
            _read_attributes(cursor, size, point_data if keyword == "POINT_DATA" else {})
        elif keyword == "METADATA":
            cursor.skip_metadata()
        else:
            raise cursor.error(f"unexpected keyword {keyword!r}")
    if points is None:
        raise ValueError(f"{path}: the VTK file holds no POINTS")
    return points, {name: array for name, array in point_data.items() if len(array) == len(points)}


_ATTRIBUTE_WIDTH = {"VECTORS": 3, "NORMALS": 3, "TENSORS": 9}


def _read_attributes(cursor: _Cursor, size: int, arrays: dict[str, np.ndarray]) -> None:
    """The arrays of a POINT_DATA or CELL_DATA section, up to the next section keyword."""
    while True:
        start = cursor.position
        keyword = (cursor.word() or "").upper()
        if keyword == "SCALARS":
            name, type_name, *rest = cursor.rest_of_line()
            width = int(rest[0]) if rest else 1
            if cursor.word().upper() != "LOOKUP_TABLE":
                raise cursor.error(f"SCALARS {name}: expected a LOOKUP_TABLE line")
            cursor.rest_of_line()
            arrays[name] = _shaped(cursor.values(size * width, type_name), size, width)
        elif keyword in _ATTRIBUTE_WIDTH:
            name, type_name = cursor.rest_of_line()[:2]
            arrays[name] = _shaped(cursor.values(size * _ATTRIBUTE_WIDTH[keyword], type_name), size, _ATTRIBUTE_WIDTH[keyword])
        elif keyword == "TEXTURE_COORDINATES":
            name, width, type_name = cursor.rest_of_line()[:3]
            arrays[name] = _shaped(cursor.values(size * int(width), type_name), size, int(width))
        elif keyword == "COLOR_SCALARS":
            name, width = cursor.rest_of_line()[:2]
            arrays[name] = _shaped(cursor.values(size * int(width), "unsigned_char" if cursor.binary else "float"), size, int(width))
        elif keyword == "LOOKUP_TABLE":
            _, entries = cursor.rest_of_line()[:2]
            cursor.values(4 * int(entries), "unsigned_char" if cursor.binary else "float")
        elif keyword == "FIELD":
            _read_field(cursor, arrays)
        elif keyword == "METADATA":
            cursor.skip_metadata()
        else:
            cursor.position = start
            return


def _read_field(cursor: _Cursor, arrays: dict[str, np.ndarray] | None) -> None:
    count = int(cursor.rest_of_line()[1])
    for _ in range(count):
        while (name := cursor.word()) is not None and name.upper() == "METADATA":
            cursor.skip_metadata()
        width, tuples, type_name = cursor.rest_of_line()[:3]
        values = _shaped(cursor.values(int(width) * int(tuples), type_name), int(tuples), int(width))
        if arrays is not None:
            arrays[name] = values


def _skip_cells(cursor: _Cursor, cells: int, size: int) -> None:
    """A cell list: ``size`` integers (legacy <= 5.0), or OFFSETS and CONNECTIVITY arrays (5.1)."""
    start = cursor.position
    if (cursor.word() or "").upper() == "OFFSETS":
        cursor.values(cells, cursor.rest_of_line()[0])
        if (cursor.word() or "").upper() != "CONNECTIVITY":
            raise cursor.error("expected CONNECTIVITY after OFFSETS")
        cursor.values(size, cursor.rest_of_line()[0])
        return
    cursor.position = start
    cursor.values(size, "int")


def _shaped(values: np.ndarray, count: int, width: int) -> np.ndarray:
    return values.reshape(count) if width == 1 else values.reshape(count, width)


def write_legacy_vtk(path, points: np.ndarray, point_data: dict[str, np.ndarray]) -> None:
    """A binary POLYDATA file: float32 points and each array as a float32 FIELD array (N, C)."""
    points = np.ascontiguousarray(points, dtype=">f4")
    count = len(points)
    parts = [b"# vtk DataFile Version 4.2\ngdl point cloud\nBINARY\nDATASET POLYDATA\n", f"POINTS {count} float\n".encode(), points.tobytes(), b"\n"]
    if point_data:
        parts.append(f"POINT_DATA {count}\nFIELD FieldData {len(point_data)}\n".encode())
        for name, values in point_data.items():
            values = np.asarray(values, dtype=">f4").reshape(count, -1)
            if re.search(r"\s", name) or not name:
                raise ValueError(f"point-data name {name!r}: VTK names cannot be empty or hold spaces")
            parts += [f"{name} {values.shape[1]} {count} float\n".encode(), np.ascontiguousarray(values).tobytes(), b"\n"]
    Path(path).write_bytes(b"".join(parts))
