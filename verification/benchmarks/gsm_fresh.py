"""`gsm_fresh`: GSM8K-style word problems generated fresh for every run from our own templates.

Why: a public benchmark's items may be in a model's training data; a problem drawn a minute ago
cannot be. The held-out gap (GSM1k, arXiv 2405.00332: drops of up to 13 points on fresh
GSM8K-like problems for overfit model families) compares public GSM8K accuracy with accuracy on
such fresh problems (methods.md §3).

The templates below are written for Verity and derive from no published template set (GSM-Symbolic's
data is CC BY-NC-ND and is deliberately not used). Each template has
- typed slots (integer ranges, names and objects from small pools),
- a worked solution as steps `(name, expression, sentence)`: every step's expression is evaluated
  exactly (fractions) and written in GSM8K's calculator style `a*b=<<a*b=c>>c`, then `#### answer`,
- a separate solver `answer(values)` that computes the final answer directly from the drawn values,
- constraints that keep every step whole and non-negative, the answer a positive whole number of a
  plausible size, and template-specific realism (change is not negative, a share is not larger
  than the whole, …). Draws that break a constraint are rejected and redrawn.

A run picks a new seed (`new_seed()`), records it, and `generate(seed, n)` reproduces the exact
same items from it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
import random
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from verification.benchmarks.gsm8k import gsm8k_style_spec

SLUG = "gsm_fresh"
# Bump when templates change: results of different versions are not comparable.
VERSION = "1"
DEFAULT_N_ITEMS = 250
MAX_ANSWER = 1_000_000
MAX_DRAW_ATTEMPTS = 2_000
# The public benchmark this held-out set stands in for (same skill, same answer format).
PUBLIC_COUNTERPART = "gsm8k"


class TemplateError(RuntimeError):
    """A template could not produce a valid draw (a bug in the template, not in the model)."""


# --- exact arithmetic -----------------------------------------------------------------------

_BINARY_OPS: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(expression: str, values: Mapping[str, Any] | None = None) -> Fraction:
    """Exact value of an arithmetic expression over + - * / and parentheses. Names are looked up
    in `values`; anything else (calls, attributes, powers) is refused."""

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            return _BINARY_OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return Fraction(str(node.value))
        if isinstance(node, ast.Name) and values is not None and node.id in values:
            return Fraction(values[node.id])
        raise TemplateError(f"unsupported element in expression {expression!r}: {ast.dump(node)[:60]}")

    return walk(ast.parse(expression, mode="eval"))


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def render_expression(expression: str, values: Mapping[str, Any]) -> str:
    """The expression with slot and step names replaced by their numbers, spaces removed
    (GSM8K writes `3*4=<<3*4=12>>12`)."""
    return _NAME_RE.sub(lambda m: str(values[m.group(0)]), expression).replace(" ", "")


def _as_number(value: Fraction) -> int:
    if value.denominator != 1:
        raise ValueError("not whole")
    return int(value)


# --- slots -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    step: int = 1

    def draw(self, rng: random.Random) -> int:
        return rng.randrange(self.low, self.high + 1, self.step)


@dataclass(frozen=True)
class Pick:
    options: tuple[str, ...]

    def draw(self, rng: random.Random) -> str:
        return rng.choice(self.options)


NAMES = Pick((
    "Amara", "Bilal", "Chiara", "Dmitri", "Elif", "Farah", "Gustavo", "Hana", "Ikenna", "Joon",
    "Kalani", "Lucia", "Mateo", "Nadia", "Olu", "Priya", "Quentin", "Rosa", "Soren", "Tamsin",
    "Umar", "Valentina", "Wren", "Ximena", "Yusuf", "Zofia",
))
FRUITS = Pick(("apples", "pears", "plums", "peaches", "lemons", "apricots", "mangoes", "figs"))
CRAFTS = Pick(("bracelets", "candles", "bookmarks", "keychains", "coasters", "postcards"))
PLANTS = Pick(("tomato plants", "sunflowers", "pepper plants", "rose bushes", "bean plants"))


@dataclass(frozen=True)
class Step:
    name: str
    expression: str
    sentence: str  # may use slot/step names and {calc}, the GSM8K-style calculation


@dataclass(frozen=True)
class Template:
    id: str
    slots: Mapping[str, Int | Pick]
    question: str
    steps: tuple[Step, ...]
    answer: Callable[[Mapping[str, Any]], int | Fraction]
    constraint: Callable[[Mapping[str, Any]], bool] = field(default=lambda v: True)

    def draw_values(self, rng: random.Random) -> dict[str, Any]:
        for _ in range(MAX_DRAW_ATTEMPTS):
            values = {name: slot.draw(rng) for name, slot in self.slots.items()}
            if self.constraint(values) and self._steps_are_whole(values):
                return values
        raise TemplateError(f"template {self.id} found no valid draw in {MAX_DRAW_ATTEMPTS} attempts")

    def _steps_are_whole(self, values: dict[str, Any]) -> bool:
        scope = dict(values)
        try:
            for step in self.steps:
                scope[step.name] = _as_number(evaluate(step.expression, scope))
                if scope[step.name] < 0:
                    return False
        except (ValueError, ZeroDivisionError):
            return False
        final = scope[self.steps[-1].name]
        return 0 < final <= MAX_ANSWER

    def solve(self, values: Mapping[str, Any]) -> int:
        result = Fraction(self.answer(values))
        if result.denominator != 1:
            raise TemplateError(f"template {self.id}: solver gave a fraction {result} for {dict(values)}")
        return int(result)

    def instantiate(self, rng: random.Random) -> dict[str, Any]:
        values = self.draw_values(rng)
        scope: dict[str, Any] = dict(values)
        lines = []
        for step in self.steps:
            shown = render_expression(step.expression, scope)
            result = _as_number(evaluate(step.expression, scope))
            scope[step.name] = result
            calc = f"{shown}=<<{shown}={result}>>{result}"
            lines.append(step.sentence.format(calc=calc, **scope))
        answer = self.solve(values)
        if answer != scope[self.steps[-1].name]:
            raise TemplateError(f"template {self.id}: steps give {scope[self.steps[-1].name]}, solver {answer}")
        question = self.question.format(**values)
        return {
            "question": question,
            "answer": "\n".join(lines) + f"\n#### {answer}",
            "template": self.id,
            "values": values,
            "target": str(answer),
        }


def _t(id: str, slots: dict, question: str, steps: Sequence[tuple[str, str, str]], answer, constraint=None) -> Template:
    return Template(
        id=id, slots=slots, question=question, steps=tuple(Step(*s) for s in steps), answer=answer,
        constraint=constraint or (lambda v: True),
    )


TEMPLATES: tuple[Template, ...] = (
    _t("market_stall_leftover",
       {"name": NAMES, "crates": Int(3, 12), "per_crate": Int(6, 24), "sold": Int(10, 200), "fruit": FRUITS},
       "{name} brings {crates} crates of {fruit} to the market, with {per_crate} {fruit} in each crate. "
       "By noon {name} has sold {sold} {fruit}. How many {fruit} are still unsold?",
       [("total", "crates*per_crate", "{name} brought {calc} {fruit}."),
        ("left", "total-sold", "Unsold: {calc} {fruit}.")],
       lambda v: v["crates"] * v["per_crate"] - v["sold"],
       lambda v: v["sold"] < v["crates"] * v["per_crate"]),
    _t("change_from_note",
       {"name": NAMES, "count": Int(2, 9), "price": Int(2, 14), "note": Pick(("50", "100"))},
       "{name} buys {count} notebooks that cost ${price} each and pays with a ${note} bill. "
       "How much change, in dollars, does {name} get back?",
       [("cost", "count*price", "The notebooks cost {calc} dollars."),
        ("change", "note-cost", "The change is {calc} dollars.")],
       lambda v: int(v["note"]) - v["count"] * v["price"],
       lambda v: v["count"] * v["price"] < int(v["note"])),
    _t("weekly_savings_goal",
       {"name": NAMES, "goal": Int(120, 600, 10), "saved": Int(10, 200, 5), "weekly": Int(5, 40, 5)},
       "{name} wants to buy a bicycle that costs ${goal}. {name} has already saved ${saved} and puts "
       "away ${weekly} every week. How many weeks will it take to have exactly enough money?",
       [("missing", "goal-saved", "{name} still needs {calc} dollars."),
        ("weeks", "missing/weekly", "That takes {calc} weeks.")],
       lambda v: Fraction(v["goal"] - v["saved"], v["weekly"]),
       lambda v: v["saved"] < v["goal"] and (v["goal"] - v["saved"]) % v["weekly"] == 0),
    _t("discount_percent",
       {"name": NAMES, "price": Int(20, 400, 5), "pct": Pick(("10", "15", "20", "25", "30", "40", "50"))},
       "A jacket costs ${price}. During a sale the shop takes {pct}% off the price. "
       "How many dollars does {name} pay for the jacket in the sale?",
       [("off", "price*pct/100", "The discount is {calc} dollars."),
        ("paid", "price-off", "{name} pays {calc} dollars.")],
       lambda v: v["price"] - Fraction(v["price"] * int(v["pct"]), 100)),
    _t("garden_rows",
       {"name": NAMES, "rows": Int(3, 15), "per_row": Int(4, 20), "died": Int(1, 30), "plant": PLANTS},
       "{name} plants {rows} rows of {plant} with {per_row} in each row. A late frost kills {died} of them. "
       "How many {plant} survive?",
       [("planted", "rows*per_row", "{name} planted {calc} {plant}."),
        ("alive", "planted-died", "{calc} survive.")],
       lambda v: v["rows"] * v["per_row"] - v["died"],
       lambda v: v["died"] < v["rows"] * v["per_row"] // 2),
    _t("reading_pages_days",
       {"name": NAMES, "pages": Int(120, 600, 6), "first": Int(10, 60), "daily": Int(10, 40)},
       "{name}'s book has {pages} pages. {name} read {first} pages on Monday and then reads {daily} pages "
       "every day starting Tuesday. How many days starting Tuesday does it take to finish the book?",
       [("rest", "pages-first", "After Monday {calc} pages are left."),
        ("days", "rest/daily", "That takes {calc} days.")],
       lambda v: Fraction(v["pages"] - v["first"], v["daily"]),
       lambda v: v["first"] < v["pages"] and (v["pages"] - v["first"]) % v["daily"] == 0),
    _t("hourly_wage_overtime",
       {"name": NAMES, "rate": Int(10, 30), "hours": Int(41, 55), "base_hours": Pick(("40",))},
       "{name} earns ${rate} an hour for the first {base_hours} hours of a week and twice that rate for every "
       "extra hour. Last week {name} worked {hours} hours. How many dollars did {name} earn?",
       [("regular", "rate*base_hours", "Regular pay: {calc} dollars."),
        ("extra", "hours-base_hours", "Extra hours: {calc}."),
        ("overtime", "extra*rate*2", "Overtime pay: {calc} dollars."),
        ("total", "regular+overtime", "Total: {calc} dollars.")],
       lambda v: v["rate"] * 40 + (v["hours"] - 40) * 2 * v["rate"]),
    _t("shared_pizza_slices",
       {"pizzas": Int(2, 9), "slices": Pick(("6", "8", "10", "12")), "friends": Int(2, 12), "name": NAMES},
       "{name} orders {pizzas} pizzas, each cut into {slices} slices, and shares them equally among "
       "{friends} friends, {name} included. How many slices does each person get?",
       [("all", "pizzas*slices", "There are {calc} slices."),
        ("each", "all/friends", "Each person gets {calc} slices.")],
       lambda v: Fraction(v["pizzas"] * int(v["slices"]), v["friends"])),
    _t("age_in_future",
       {"name": NAMES, "other": NAMES, "age": Int(4, 20), "times": Int(2, 4), "years": Int(2, 15)},
       "{name} is {age} years old. {other} is {times} times as old as {name}. "
       "How old will {other} be in {years} years?",
       [("other_now", "age*times", "{other} is {calc} years old now."),
        ("later", "other_now+years", "In {years} years {other} will be {calc}.")],
       lambda v: v["age"] * v["times"] + v["years"],
       lambda v: v["name"] != v["other"] and v["age"] * v["times"] <= 80),
    _t("bus_passengers",
       {"start": Int(5, 40), "off1": Int(1, 20), "on1": Int(1, 25), "off2": Int(1, 20), "on2": Int(1, 25)},
       "A bus leaves the depot with {start} passengers. At the first stop {off1} get off and {on1} get on. "
       "At the second stop {off2} get off and {on2} get on. How many passengers are on the bus now?",
       [("after1", "start-off1+on1", "After the first stop: {calc}."),
        ("after2", "after1-off2+on2", "After the second stop: {calc}.")],
       lambda v: v["start"] - v["off1"] + v["on1"] - v["off2"] + v["on2"],
       lambda v: v["off1"] <= v["start"] and v["off2"] <= v["start"] - v["off1"] + v["on1"]),
    _t("craft_fair_profit",
       {"name": NAMES, "made": Int(10, 60), "cost": Int(1, 6), "price": Int(4, 15), "sold": Int(5, 60), "item": CRAFTS},
       "{name} makes {made} {item}. Materials cost ${cost} per piece. At the craft fair {name} sells {sold} of them "
       "for ${price} each. What is {name}'s profit in dollars?",
       [("spent", "made*cost", "Materials cost {calc} dollars."),
        ("income", "sold*price", "Sales bring in {calc} dollars."),
        ("profit", "income-spent", "Profit: {calc} dollars.")],
       lambda v: v["sold"] * v["price"] - v["made"] * v["cost"],
       lambda v: v["sold"] <= v["made"] and v["price"] > v["cost"] and v["sold"] * v["price"] > v["made"] * v["cost"]),
    _t("fuel_for_trip",
       {"distance": Int(60, 900, 10), "per_litre": Int(8, 20), "price": Int(1, 3)},
       "A car drives {distance} kilometres and uses one litre of fuel for every {per_litre} kilometres. "
       "Fuel costs ${price} per litre. How many dollars does the fuel for the trip cost?",
       [("litres", "distance/per_litre", "The car uses {calc} litres."),
        ("cost", "litres*price", "The fuel costs {calc} dollars.")],
       lambda v: Fraction(v["distance"], v["per_litre"]) * v["price"]),
    _t("classroom_pencils",
       {"students": Int(12, 35), "each": Int(2, 6), "boxes_of": Pick(("10", "12", "24"))},
       "A teacher gives each of her {students} students {each} pencils. Pencils come in boxes of {boxes_of}. "
       "How many full boxes of pencils does she hand out?",
       [("needed", "students*each", "She needs {calc} pencils."),
        ("boxes", "needed/boxes_of", "That is {calc} boxes.")],
       lambda v: Fraction(v["students"] * v["each"], int(v["boxes_of"]))),
    _t("tiles_floor",
       {"length": Int(3, 15), "width": Int(2, 12), "per_m2": Int(4, 16), "spare": Int(5, 30)},
       "A room is {length} metres long and {width} metres wide. Covering one square metre takes {per_m2} tiles, "
       "and the builder orders {spare} spare tiles as well. How many tiles are ordered?",
       [("area", "length*width", "The floor is {calc} square metres."),
        ("tiles", "area*per_m2", "It takes {calc} tiles."),
        ("order", "tiles+spare", "With spares: {calc} tiles.")],
       lambda v: v["length"] * v["width"] * v["per_m2"] + v["spare"]),
    _t("lemonade_cups",
       {"name": NAMES, "litres": Int(2, 12), "cup_ml": Pick(("200", "250", "400", "500")), "price": Int(1, 4)},
       "{name} makes {litres} litres of lemonade and sells it in cups of {cup_ml} millilitres for ${price} a cup. "
       "How many dollars does {name} make after selling all of it?",
       [("ml", "litres*1000", "{name} has {calc} millilitres."),
        ("cups", "ml/cup_ml", "That fills {calc} cups."),
        ("money", "cups*price", "Sales: {calc} dollars.")],
       lambda v: Fraction(v["litres"] * 1000, int(v["cup_ml"])) * v["price"]),
    _t("marbles_fraction_given",
       {"name": NAMES, "friend": NAMES, "marbles": Int(12, 240, 12), "denominator": Pick(("2", "3", "4", "6")), "lost": Int(1, 15)},
       "{name} has {marbles} marbles and gives 1/{denominator} of them to {friend}. Later {name} loses {lost} marbles. "
       "How many marbles does {name} have left?",
       [("given", "marbles/denominator", "{name} gives away {calc} marbles."),
        ("kept", "marbles-given", "{name} keeps {calc}."),
        ("left", "kept-lost", "After losing some: {calc}.")],
       lambda v: v["marbles"] - Fraction(v["marbles"], int(v["denominator"])) - v["lost"],
       lambda v: v["name"] != v["friend"]),
    _t("train_average_speed",
       {"speed1": Int(40, 120, 5), "hours1": Int(1, 5), "speed2": Int(40, 120, 5), "hours2": Int(1, 5)},
       "A train travels at {speed1} km per hour for {hours1} hours and then at {speed2} km per hour for {hours2} "
       "hours. How many kilometres does it travel in total?",
       [("d1", "speed1*hours1", "First part: {calc} km."),
        ("d2", "speed2*hours2", "Second part: {calc} km."),
        ("total", "d1+d2", "Total: {calc} km.")],
       lambda v: v["speed1"] * v["hours1"] + v["speed2"] * v["hours2"]),
    _t("test_score_average",
       {"name": NAMES, "a": Int(50, 100), "b": Int(50, 100), "c": Int(50, 100)},
       "{name} scored {a}, {b} and {c} on three tests. What is {name}'s average score?",
       [("sum", "a+b+c", "The scores add up to {calc}."),
        ("avg", "sum/3", "The average is {calc}.")],
       lambda v: Fraction(v["a"] + v["b"] + v["c"], 3)),
    _t("library_books_ratio",
       {"fiction": Int(2, 9), "nonfiction": Int(1, 9), "total": Int(20, 400, 4)},
       "A library shelf holds {total} books. The ratio of fiction to non-fiction books on it is "
       "{fiction}:{nonfiction}. How many fiction books are on the shelf?",
       [("parts", "fiction+nonfiction", "There are {calc} parts."),
        ("per_part", "total/parts", "Each part is {calc} books."),
        ("fic", "per_part*fiction", "Fiction books: {calc}.")],
       lambda v: Fraction(v["total"] * v["fiction"], v["fiction"] + v["nonfiction"])),
    _t("water_tank_fill",
       {"capacity": Int(200, 3000, 50), "already": Int(0, 1000, 50), "rate": Int(10, 100, 5)},
       "A water tank holds {capacity} litres and already contains {already} litres. A hose adds {rate} litres "
       "per minute. How many minutes does it take to fill the tank?",
       [("missing", "capacity-already", "{calc} litres are missing."),
        ("minutes", "missing/rate", "That takes {calc} minutes.")],
       lambda v: Fraction(v["capacity"] - v["already"], v["rate"]),
       lambda v: v["already"] < v["capacity"]),
    _t("cookie_batches",
       {"name": NAMES, "guests": Int(6, 40), "each": Int(2, 5), "per_batch": Pick(("12", "16", "20", "24"))},
       "{name} is hosting {guests} guests and wants to give each guest {each} cookies. One batch makes "
       "{per_batch} cookies. How many batches does {name} bake if every batch is baked fully and none are left over?",
       [("cookies", "guests*each", "{name} needs {calc} cookies."),
        ("batches", "cookies/per_batch", "That is {calc} batches.")],
       lambda v: Fraction(v["guests"] * v["each"], int(v["per_batch"]))),
    _t("phone_plan_months",
       {"name": NAMES, "phone": Int(100, 900, 50), "monthly": Int(10, 60, 5), "months": Int(6, 24)},
       "{name} buys a phone for ${phone} and a plan that costs ${monthly} a month. How much does {name} "
       "spend in total over the first {months} months, phone included?",
       [("plan", "monthly*months", "The plan costs {calc} dollars."),
        ("total", "phone+plan", "In total {calc} dollars.")],
       lambda v: v["phone"] + v["monthly"] * v["months"]),
    _t("sticker_collection_weeks",
       {"name": NAMES, "have": Int(10, 200), "weekly": Int(3, 20), "weeks": Int(2, 12), "traded": Int(1, 30)},
       "{name} has {have} stickers and collects {weekly} more every week. After {weeks} weeks {name} trades "
       "away {traded} stickers. How many stickers does {name} have then?",
       [("new", "weekly*weeks", "{name} collects {calc} new stickers."),
        ("total", "have+new", "That makes {calc}."),
        ("left", "total-traded", "After trading: {calc}.")],
       lambda v: v["have"] + v["weekly"] * v["weeks"] - v["traded"]),
    _t("concert_tickets_groups",
       {"adults": Int(1, 8), "children": Int(1, 8), "adult_price": Int(15, 60, 5), "child_price": Int(5, 30, 5)},
       "Concert tickets cost ${adult_price} for an adult and ${child_price} for a child. A group of {adults} adults "
       "and {children} children buys tickets. How many dollars do they pay?",
       [("a", "adults*adult_price", "Adult tickets: {calc} dollars."),
        ("c", "children*child_price", "Child tickets: {calc} dollars."),
        ("total", "a+c", "Total: {calc} dollars.")],
       lambda v: v["adults"] * v["adult_price"] + v["children"] * v["child_price"],
       lambda v: v["child_price"] < v["adult_price"]),
    _t("egg_cartons",
       {"hens": Int(3, 30), "eggs_per_hen": Int(3, 7), "weeks": Int(2, 7), "carton": Pick(("6", "12"))},
       "A farmer has {hens} hens. Each hen lays {eggs_per_hen} eggs a week. How many full cartons of {carton} "
       "eggs can the farmer pack after {weeks} weeks if every egg is packed?",
       [("eggs", "hens*eggs_per_hen*weeks", "The hens lay {calc} eggs."),
        ("cartons", "eggs/carton", "That fills {calc} cartons.")],
       lambda v: Fraction(v["hens"] * v["eggs_per_hen"] * v["weeks"], int(v["carton"]))),
    _t("rent_split_roommates",
       {"rent": Int(900, 3600, 30), "people": Int(2, 5), "utilities": Int(60, 300, 10)},
       "Some roommates split their monthly rent of ${rent} and utilities of ${utilities} equally among "
       "{people} people. How many dollars does each person pay per month?",
       [("total", "rent+utilities", "Together the bills are {calc} dollars."),
        ("each", "total/people", "Each pays {calc} dollars.")],
       lambda v: Fraction(v["rent"] + v["utilities"], v["people"])),
    _t("recipe_scale",
       {"flour": Int(100, 600, 50), "serves": Int(2, 6), "wanted": Int(4, 24)},
       "A recipe uses {flour} grams of flour and serves {serves} people. How many grams of flour are needed to "
       "serve {wanted} people?",
       [("per_person", "flour/serves", "Each person needs {calc} grams."),
        ("needed", "per_person*wanted", "For {wanted} people: {calc} grams.")],
       lambda v: Fraction(v["flour"] * v["wanted"], v["serves"]),
       lambda v: v["wanted"] != v["serves"]),
    _t("running_laps_week",
       {"name": NAMES, "lap": Int(200, 800, 100), "laps": Int(3, 20), "days": Int(2, 7)},
       "{name} runs {laps} laps of a {lap}-metre track on each of {days} days this week. "
       "How many kilometres does {name} run this week?",
       [("per_day", "lap*laps", "Each day {name} runs {calc} metres."),
        ("week", "per_day*days", "This week: {calc} metres."),
        ("km", "week/1000", "In kilometres: {calc}.")],
       lambda v: Fraction(v["lap"] * v["laps"] * v["days"], 1000)),
    _t("aquarium_fish_feed",
       {"tanks": Int(2, 10), "fish": Int(3, 15), "grams": Int(1, 5), "days": Int(5, 30)},
       "A pet shop has {tanks} tanks with {fish} fish in each. Every fish eats {grams} grams of food a day. "
       "How many grams of food do the fish eat in {days} days?",
       [("all_fish", "tanks*fish", "There are {calc} fish."),
        ("daily", "all_fish*grams", "They eat {calc} grams a day."),
        ("total", "daily*days", "In {days} days: {calc} grams.")],
       lambda v: v["tanks"] * v["fish"] * v["grams"] * v["days"]),
    _t("tip_on_bill",
       {"meal": Int(20, 200, 10), "tip_pct": Pick(("10", "15", "20")), "people": Int(2, 6)},
       "A meal costs ${meal}. The diners add a {tip_pct}% tip and split the total equally among {people} people. "
       "How many dollars does each person pay?",
       [("tip", "meal*tip_pct/100", "The tip is {calc} dollars."),
        ("total", "meal+tip", "The total is {calc} dollars."),
        ("each", "total/people", "Each person pays {calc} dollars.")],
       lambda v: Fraction(v["meal"] * (100 + int(v["tip_pct"])), 100 * v["people"])),
    _t("stamps_doubling",
       {"name": NAMES, "start": Int(2, 30), "gift": Int(1, 40)},
       "{name} starts a stamp album with {start} stamps. The number of stamps doubles every month for three "
       "months, and then {name} receives {gift} more as a gift. How many stamps are in the album?",
       [("m1", "start*2", "After one month: {calc} stamps."),
        ("m2", "m1*2", "After two months: {calc} stamps."),
        ("m3", "m2*2", "After three months: {calc} stamps."),
        ("total", "m3+gift", "With the gift: {calc} stamps.")],
       lambda v: v["start"] * 8 + v["gift"]),
    _t("parking_fees",
       {"first_hour": Int(2, 8), "later": Int(1, 5), "hours": Int(2, 10)},
       "A car park charges ${first_hour} for the first hour and ${later} for each hour after that. "
       "How many dollars does it cost to park for {hours} hours?",
       [("extra_hours", "hours-1", "There are {calc} extra hours."),
        ("extra", "extra_hours*later", "They cost {calc} dollars."),
        ("total", "first_hour+extra", "In total {calc} dollars.")],
       lambda v: v["first_hour"] + (v["hours"] - 1) * v["later"]),
    _t("orchard_baskets",
       {"trees": Int(5, 40), "per_tree": Int(20, 80), "basket": Pick(("10", "20", "25")), "fruit": FRUITS},
       "An orchard has {trees} trees and each tree gives {per_tree} {fruit}. The {fruit} are packed in baskets "
       "of {basket}. How many baskets are filled?",
       [("fruit_total", "trees*per_tree", "The trees give {calc} {fruit}."),
        ("baskets", "fruit_total/basket", "That fills {calc} baskets.")],
       lambda v: Fraction(v["trees"] * v["per_tree"], int(v["basket"]))),
    _t("video_game_levels",
       {"name": NAMES, "levels": Int(10, 60), "minutes": Int(5, 25), "done": Int(1, 30)},
       "A video game has {levels} levels and each level takes about {minutes} minutes. {name} has finished "
       "{done} levels. How many more minutes does {name} need to finish the game?",
       [("left", "levels-done", "{calc} levels are left."),
        ("time", "left*minutes", "That takes {calc} minutes.")],
       lambda v: (v["levels"] - v["done"]) * v["minutes"],
       lambda v: v["done"] < v["levels"]),
    _t("shirt_bulk_order",
       {"teams": Int(2, 8), "players": Int(8, 16), "price": Int(6, 20), "discount": Int(1, 5)},
       "A league orders shirts for {teams} teams of {players} players. Shirts cost ${price} each, but the shop "
       "takes ${discount} off every shirt for a bulk order. How many dollars does the league pay?",
       [("shirts", "teams*players", "They need {calc} shirts."),
        ("unit", "price-discount", "Each shirt costs {calc} dollars."),
        ("total", "shirts*unit", "The order costs {calc} dollars.")],
       lambda v: v["teams"] * v["players"] * (v["price"] - v["discount"]),
       lambda v: v["discount"] < v["price"] // 2),
    _t("minutes_practice_month",
       {"name": NAMES, "weekday": Int(10, 60, 5), "weekend": Int(20, 120, 10), "weeks": Int(2, 4)},
       "{name} practises the piano {weekday} minutes on each weekday and {weekend} minutes on each day of the "
       "weekend. How many hours does {name} practise in {weeks} weeks?",
       [("weekdays", "weekday*5", "Weekdays: {calc} minutes a week."),
        ("weekends", "weekend*2", "Weekends: {calc} minutes a week."),
        ("week", "weekdays+weekends", "One week: {calc} minutes."),
        ("total", "week*weeks", "In {weeks} weeks: {calc} minutes."),
        ("hours", "total/60", "In hours: {calc}.")],
       lambda v: Fraction((v["weekday"] * 5 + v["weekend"] * 2) * v["weeks"], 60)),
)


TEMPLATE_IDS = tuple(t.id for t in TEMPLATES)
assert len(set(TEMPLATE_IDS)) == len(TEMPLATE_IDS), "template ids must be unique"


def new_seed() -> int:
    """A fresh seed for one run (recorded with the run so it can be reproduced)."""
    return secrets.randbelow(2**63)


def generate(seed: int, n: int = DEFAULT_N_ITEMS) -> list[dict[str, Any]]:
    """`n` items in GSM8K's format ({question, answer: '... #### N'}) plus `template`, `values`
    and `target`. Templates are used round-robin in a seed-shuffled order, so any n ≥ the
    number of templates covers every template; the same (seed, n) always gives the same items."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    order = list(TEMPLATES)
    rng.shuffle(order)
    items = []
    for index in range(n):
        template = order[index % len(order)]
        item = template.instantiate(rng)
        item["id"] = f"{SLUG}-{seed}-{index}"
        items.append(item)
    return items


def items_hash(items: Sequence[Mapping[str, Any]]) -> str:
    """Content hash of a generated set (what a run records as its dataset hash)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps({"q": item["question"], "a": item["answer"]}, sort_keys=True).encode())
    return "sha256:" + digest.hexdigest()


# --- the benchmark spec -------------------------------------------------------------------------


def items_loader(seed: int | None = None, n_items: int = DEFAULT_N_ITEMS):
    """An item source for `gsm8k_style_spec`: generated items plus a source record holding the
    seed. With `seed=None` every load draws a fresh seed (a new set per run); pass the recorded
    seed to reproduce a run's items exactly (e.g. when a run resumes after a crash)."""

    def load(datasets_dir) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        run_seed = new_seed() if seed is None else int(seed)
        items = generate(run_seed, n_items)
        records = [{"id": item["id"], "question": item["question"], "answer": item["answer"]} for item in items]
        source = {
            "kind": "generated",
            "generator": SLUG,
            "generator_version": VERSION,
            "seed": run_seed,
            "n_items": n_items,
            "n_templates": len(TEMPLATES),
            "items_sha256": items_hash(items),
        }
        return records, source

    return load


def version_for(seed: int | None) -> str:
    """The version a seeded set is stored under: the templates' VERSION and the seed, which
    together define the items. Results are found again by (benchmark, version, setup), so a
    base measured with another seed (other items) is never taken for this one's. Fits
    BenchmarkResult.benchmark_version (32 characters: seeds are below 2**63)."""
    return VERSION if seed is None else f"{VERSION}-seed{seed}"


def spec(seed: int | None = None, n_items: int = DEFAULT_N_ITEMS):
    """gsm_fresh as a benchmark: GSM8K's prompts, extraction and scoring over fresh items. The
    registry holds a seedless one (every load draws a fresh set); the pipeline builds a seeded one
    per run so the run's items can be reproduced, versioned by its seed (`version_for`)."""
    built = gsm8k_style_spec(SLUG, version_for(seed), items_loader(seed, n_items), title="GSM8K-style fresh variants")
    built.public_counterpart = PUBLIC_COUNTERPART  # type: ignore[attr-defined]
    built.heldout = True  # type: ignore[attr-defined]
    return built

