"""Server-side filtering and ordering as Vast.ai does it for offers and instance lists.

Query values arrive as the CLI sends them: mostly strings ("0.98", "RTX 4090"), sometimes bools, numbers, lists.
They are compared numerically against numeric fields, case-insensitively against text, and geolocation
filters compare against the country code at the end of "City, CC".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .errors import invalid_args

OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "notin")


def driver_version_number(value: Any) -> Any:
    """'535.86.05' -> 535086005, the encoding the CLI sends for driver_version filters."""
    if isinstance(value, str) and "." in value:
        parts = (value.split(".") + ["0", "0"])[:3]
        try:
            return int(parts[0]) * 1_000_000 + int(parts[1]) * 1_000 + int(parts[2])
        except ValueError:
            return value
    return value


def _coerce(field_value: Any, query_value: Any) -> tuple[Any, Any]:
    """Bring a query value to the field's type so the comparison means what the user meant."""
    if isinstance(field_value, bool):
        if isinstance(query_value, str):
            lowered = query_value.strip().lower()
            if lowered in ("true", "1", "yes"):
                return field_value, True
            if lowered in ("false", "0", "no"):
                return field_value, False
        if isinstance(query_value, (int, float)):
            return field_value, bool(query_value)
        return field_value, query_value
    if isinstance(field_value, (int, float)):
        if isinstance(query_value, bool):
            return field_value, int(query_value)
        if isinstance(query_value, str):
            try:
                return field_value, float(query_value)
            except ValueError:
                return str(field_value), query_value
        return field_value, query_value
    if isinstance(field_value, str):
        text = field_value.strip().lower()
        wanted = str(query_value).strip().lower().replace("_", " ") if query_value is not None else None
        return text, wanted
    return field_value, query_value


def _compare(field_value: Any, op: str, query_value: Any) -> bool:
    if op in ("in", "notin"):
        values = query_value if isinstance(query_value, list) else [query_value]
        hit = any(_compare(field_value, "eq", v) for v in values)
        return hit if op == "in" else not hit
    if field_value is None or query_value is None:
        if op == "eq":
            return field_value is None and query_value is None
        if op == "neq":
            return not (field_value is None and query_value is None)
        return False
    left, right = _coerce(field_value, query_value)
    try:
        if op == "eq":
            return left == right
        if op == "neq":
            return left != right
        if op == "gt":
            return left > right
        if op == "gte":
            return left >= right
        if op == "lt":
            return left < right
        if op == "lte":
            return left <= right
    except TypeError:
        return False
    raise invalid_args(f"Unknown operator {op!r}; allowed: {', '.join(OPERATORS)}")


def _field_for(row: dict[str, Any], field: str, query_value: Any) -> Any:
    value = row.get(field)
    if field == "geolocation" and isinstance(value, str):
        # "Sweden, SE": users filter by the country code; a full string still matches the whole value.
        values = query_value if isinstance(query_value, list) else [query_value]
        if all(isinstance(v, str) and len(v.strip()) == 2 for v in values):
            return value.rsplit(",", 1)[-1].strip()
    if field == "driver_version":
        return driver_version_number(value)
    return value


def matches(row: dict[str, Any], filters: dict[str, Any], ignore: Iterable[str] = ()) -> bool:
    """True when ``row`` satisfies every ``{field: {op: value}}`` condition (unknown fields are skipped)."""
    skipped = set(ignore)
    for field, condition in filters.items():
        if field in skipped:
            continue
        if not isinstance(condition, dict):
            condition = {"eq": condition}
        if field not in row:
            continue
        for op, query_value in condition.items():
            if op not in OPERATORS:
                raise invalid_args(f"Unknown operator {op!r} for {field}; allowed: {', '.join(OPERATORS)}")
            if not _compare(_field_for(row, field, query_value), op, query_value):
                return False
    return True


def parse_order(order: Any) -> list[tuple[str, bool]]:
    """Accept [["dph_total","asc"]], [{"col":..,"dir":..}], or "field-" forms; returns (field, descending)."""
    if order is None:
        return []
    if isinstance(order, str):
        order = [order]
    parsed: list[tuple[str, bool]] = []
    for item in order:
        if isinstance(item, dict):
            parsed.append((str(item.get("col")), str(item.get("dir", "asc")).lower() == "desc"))
        elif isinstance(item, (list, tuple)) and item:
            direction = str(item[1]).lower() if len(item) > 1 else "asc"
            parsed.append((str(item[0]), direction == "desc"))
        elif isinstance(item, str):
            descending = item.endswith("-") or item.startswith("-")
            parsed.append((item.strip("+-"), descending))
        else:
            raise invalid_args(f"Cannot read order entry {item!r}; use [[\"field\", \"asc\"|\"desc\"], ...]")
    return parsed


def sort_rows(rows: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Stable multi-key sort; rows missing a field go last whatever the direction."""
    result = list(rows)
    for field, descending in reversed(order):
        present = [r for r in result if r.get(field) is not None]
        missing = [r for r in result if r.get(field) is None]
        present.sort(key=_sort_key(field), reverse=descending)
        result = present + missing
    return result


def _sort_key(field: str) -> Callable[[dict[str, Any]], Any]:
    def key(row: dict[str, Any]) -> Any:
        value = row.get(field)
        if isinstance(value, bool):
            return (0, int(value))
        if isinstance(value, (int, float)):
            return (0, value)
        return (1, str(value))

    return key
