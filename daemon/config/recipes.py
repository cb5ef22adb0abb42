"""The recipes section: named expectations for triggered cameras (read cycles), one per product a line runs.

A PLC selects a camera's active recipe at a changeover (MQTT, HTTP, Modbus, OPC UA: daemon/readings/triggers.py
select_recipe) or names one with a single trigger, so a product change needs no reload and no model load; a
camera's ``recipe`` is the one active at its first start (later, the one last selected: recipe_memory.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from daemon.config.checks import NAME_RULE, valid_name
from daemon.config.errors import require

EXPECT_KINDS = ("text", "template", "regex", "format", "code")


@dataclass(frozen=True)
class RecipeConfig:
    name: str = ""
    # What the product's print must carry: at most one of text, template, regex or format, plus optionally a code
    # value, as cameras[].expect_* (docs/read-cycles.md).
    expect_text: Optional[str] = None
    expect_template: Optional[str] = None
    expect_regex: Optional[str] = None
    expect_format: Optional[str] = None
    expect_code: Optional[str] = None
    # Values of expect_template's fields that a trigger need not send ({date: today+30}, the date the coder
    # stamps); a trigger's own fields win. A Modbus trigger sends none, so its recipes carry them here.
    expect_fields: Optional[dict[str, str]] = None
    # What the camera reads for this product while the recipe judges its cycles, replacing the camera's own:
    # code formats (zxing-cpp names, as cameras[].codes) and accept_formats (s10, sscc, gtin, iso6346). null: the
    # camera's.
    codes: Optional[tuple[str, ...]] = None
    accept_formats: Optional[tuple[str, ...]] = None
    # Where this product's print lies: [x, y, width, height] within the camera's image (after cameras[].roi); a
    # cycle reads only there. null: the camera's whole image.
    roi: Optional[tuple[int, ...]] = None

    def check(self, key: str) -> None:
        from daemon.codes import CODE_FORMATS
        from daemon.formats import FORMATS

        require(valid_name(self.name), f"{key}.name", self.name, NAME_RULE)
        require(any(getattr(self, f"expect_{k}") is not None for k in EXPECT_KINDS), f"{key}.expect_text",
                self.expect_text, "or another expect_ key must say what the recipe expects")
        check_expectation(key, self)
        check_fields(key, self)
        for j, name in enumerate(self.codes or ()):
            require(name in CODE_FORMATS, f"{key}.codes[{j}]", name, f"is not one of {', '.join(CODE_FORMATS)}")
        for j, name in enumerate(self.accept_formats or ()):
            require(name in FORMATS, f"{key}.accept_formats[{j}]", name, f"is not one of {', '.join(FORMATS)}")
        if self.roi is not None:
            require(len(self.roi) == 4 and self.roi[0] >= 0 and self.roi[1] >= 0 and self.roi[2] > 0
                    and self.roi[3] > 0, f"{key}.roi", list(self.roi),
                    "must be [x, y, width, height] with x, y >= 0 and width, height > 0, or null")


def check_expectation(key: str, holder) -> None:
    """holder's expect_* fields make one valid expectation (or none); the error names the first one given."""
    from daemon.readings.verify import ExpectationError

    given = {k: getattr(holder, f"expect_{k}") for k in EXPECT_KINDS}
    if holder.expect_regex is not None:
        from daemon.config.cameras import check_pattern
        check_pattern(f"{key}.expect_regex", holder.expect_regex)
    try:
        expectation_of(holder)
    except ExpectationError as exc:
        first = next(k for k, v in given.items() if v is not None)
        require(False, f"{key}.expect_{first}", given[first], str(exc))


MAX_FIELDS = 32          # as a trigger's fields (daemon/readings/trigger_commands.py)
MAX_FIELD_CHARS = 256


def check_fields(key: str, holder) -> None:
    """holder's expect_fields name fields of its expect_template, at most MAX_FIELDS of them, each value short."""
    from daemon.readings.verify import template_fields

    values = holder.expect_fields
    if values is None:
        return
    require(holder.expect_template is not None, f"{key}.expect_fields", values,
            "gives field values, so it needs an expect_template with those fields")
    require(len(values) <= MAX_FIELDS, f"{key}.expect_fields", f"{len(values)} fields", f"at most {MAX_FIELDS}")
    known = template_fields(holder.expect_template)
    for name, value in values.items():
        require(name in known, f"{key}.expect_fields.{name}", value,
                f"is not a field of expect_template (its fields: {', '.join(known) or 'none'})")
        require(len(value) <= MAX_FIELD_CHARS, f"{key}.expect_fields.{name}", value,
                f"is longer than {MAX_FIELD_CHARS} characters")


def expectation_of(holder):
    """The verify.Expectation that holder's expect_* fields describe (a camera's or a recipe's); None: none."""
    from daemon.readings.verify import Expectation

    given = {k: getattr(holder, f"expect_{k}") for k in EXPECT_KINDS}
    return Expectation(**given) if any(v is not None for v in given.values()) else None


def check_recipes(recipes: tuple[RecipeConfig, ...], cameras) -> None:
    """Names unique; a camera's recipe names one of them."""
    names: set[str] = set()
    for i, r in enumerate(recipes):
        require(r.name not in names, f"recipes[{i}].name", r.name, "is used by another recipe")
        names.add(r.name)
    for i, cam in enumerate(cameras):
        require(cam.recipe is None or cam.recipe in names, f"cameras[{i}].recipe", cam.recipe,
                f"is not one of the recipes ({', '.join(sorted(names)) or 'none defined'})")
