"""What the user may ask about a scene, and the answers, derived from simulator state.

A scene is the environment's privileged state: `object_boxes` {name: (lo xyz, hi xyz)} in
metres, world-aligned (info["object_boxes"] of LiberoEnv). Relations are geometric:
A is on (or in) B when A's centre lies over B's footprint and A's bottom rests between B's
bottom and a little above B's top. Also here: the defective instructions (an object that is
not in the scene, impossible or unsafe requests, unintelligible speech) with the rejection
each one deserves.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# LIBERO asset names -> how a person says them
SPOKEN_NAMES = {
    "akita_black_bowl": "black bowl", "glazed_rim_porcelain_ramekin": "ramekin", "cookies": "cookie box",
    "wooden_cabinet": "wooden cabinet", "flat_stove": "stove", "plate": "plate", "alphabet_soup": "alphabet soup",
    "cream_cheese": "cream cheese", "salad_dressing": "salad dressing", "bbq_sauce": "barbecue sauce",
    "ketchup": "ketchup", "tomato_sauce": "tomato sauce", "butter": "butter", "milk": "milk",
    "chocolate_pudding": "chocolate pudding", "orange_juice": "orange juice", "basket": "basket",
    "wine_bottle": "wine bottle", "moka_pot": "moka pot", "microwave": "microwave", "white_yellow_mug": "mug",
    "porcelain_mug": "white mug", "red_coffee_mug": "red mug", "black_book": "black book", "wine_rack": "wine rack",
}
CONTAINERS = ("basket", "black bowl", "bowl", "tray", "microwave", "wooden cabinet")
SURFACES = ("plate", "stove", "wooden cabinet", "basket", "black bowl", "tray")
FIXTURES = ("wooden cabinet", "stove", "microwave", "wine rack")
# things a user might ask for that are never in a LIBERO scene, besides other scenes' objects
ABSENT_EXTRA = ("banana", "apple", "teddy bear", "screwdriver", "wine glass", "red cup", "tennis ball", "phone")
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

ON_TOLERANCE_M = 0.03     # how far above a support's top an object's bottom may be and still rest on it
FOOTPRINT_MARGIN_M = 0.01


def with_article(name: str) -> str:
    """"a plate", "an orange juice": the indefinite article a listener expects."""
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def spoken_name(asset: str) -> str:
    """'akita_black_bowl_1' -> 'black bowl'; unknown assets lose their index and underscores."""
    base = re.sub(r"_\d+$", "", asset)
    return SPOKEN_NAMES.get(base, base.replace("_", " "))


def plural(name: str) -> str:
    return name if name.endswith("s") or name in ("milk", "butter", "ketchup", "cream cheese") else (
        name + "es" if name.endswith(("sh", "ch", "x")) else name + "s")


Boxes = dict[str, tuple[np.ndarray, np.ndarray]]


def resting_on(boxes: Boxes, item: str) -> str | None:
    """The object `item` rests on or in, or None when it stands on the table (or floor)."""
    lo, hi = (np.asarray(v, float) for v in boxes[item])
    centre = (lo + hi) / 2.0
    best, best_top = None, -np.inf
    for other, (olo, ohi) in boxes.items():
        if other == item:
            continue
        olo, ohi = np.asarray(olo, float), np.asarray(ohi, float)
        margin = FOOTPRINT_MARGIN_M
        inside = np.all(centre[:2] >= olo[:2] - margin) and np.all(centre[:2] <= ohi[:2] + margin)
        resting = olo[2] + 0.005 <= lo[2] <= ohi[2] + ON_TOLERANCE_M
        # the support is the highest one under the item (a bowl on a plate on a tray)
        if inside and resting and ohi[2] > best_top and (ohi[:2] - olo[:2]).prod() >= 0.5 * (hi[:2] - lo[:2]).prod():
            best, best_top = other, ohi[2]
    return best


def relation(support: str) -> str:
    return "in" if spoken_name(support) in CONTAINERS else "on"


def _list(names: list[str]) -> str:
    named = [f"the {n}" for n in names]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    evidence: tuple[str, ...]      # the objects whose state the answer depends on


def what_is_on(boxes: Boxes, support: str) -> QA:
    rel, name = relation(support), spoken_name(support)
    items = sorted(spoken_name(o) for o in boxes if o != support and resting_on(boxes, o) == support)
    q = f"what is {rel} the {name}?"
    if not items:
        a = f"The {name} is empty." if rel == "in" else f"Nothing is on the {name}."
    else:
        a = f"{_list(items)[0].upper()}{_list(items)[1:]} {'is' if len(items) == 1 else 'are'} {rel} the {name}."
    return QA(q, a, tuple(sorted({support, *[o for o in boxes if resting_on(boxes, o) == support]})))


def where_is(boxes: Boxes, item: str) -> QA:
    name = spoken_name(item)
    support = resting_on(boxes, item)
    q = f"where is the {name}?"
    if support is not None:
        return QA(q, f"The {name} is {relation(support)} the {spoken_name(support)}.", (item, support))
    lo, hi = (np.asarray(v, float) for v in boxes[item])
    centre = (lo + hi) / 2.0
    others = [(float(np.linalg.norm(((np.asarray(b[0]) + np.asarray(b[1])) / 2.0 - centre)[:2])), o)
              for o, b in boxes.items() if o != item and spoken_name(o) != name]
    nearest = min(others)[1]
    return QA(q, f"The {name} is on the table, next to the {spoken_name(nearest)}.", (item, nearest))


def how_many(boxes: Boxes, name: str) -> QA:
    n = sum(spoken_name(o) == name for o in boxes)
    word = NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)
    noun = name if n == 1 else plural(name)
    verb = "is" if n == 1 else "are"
    return QA(f"how many {plural(name)} are there?", f"There {verb} {word} {noun}.",
              tuple(o for o in boxes if spoken_name(o) == name))


def is_there(boxes: Boxes, name: str) -> QA:
    present = any(spoken_name(o) == name for o in boxes)
    a = f"Yes, there is {with_article(name)}." if present else f"No, I don't see {with_article(name)}."
    return QA(f"is there {with_article(name)} on the table?", a, tuple(o for o in boxes if spoken_name(o) == name))


def absent_names(boxes: Boxes) -> list[str]:
    present = {spoken_name(o) for o in boxes}
    return sorted({*SPOKEN_NAMES.values(), *ABSENT_EXTRA} - present - {"bowl"})


@dataclass(frozen=True)
class Question:
    """A question about the scene. Its text is fixed when asked; its answer is derived from
    the scene as it is when the robot answers (objects may have moved in between)."""
    kind: str          # "what_on" | "where" | "count" | "is_there"
    subject: str       # an asset name (what_on, where) or a spoken name (count, is_there)

    def answer(self, boxes: Boxes) -> QA:
        if self.kind == "what_on":
            return what_is_on(boxes, self.subject)
        if self.kind == "where":
            return where_is(boxes, self.subject)
        if self.kind == "count":
            return how_many(boxes, self.subject)
        return is_there(boxes, self.subject)

    @property
    def text(self) -> str:
        s = self.subject
        return {"what_on": f"what is {relation(s)} the {spoken_name(s)}?", "where": f"where is the {spoken_name(s)}?",
                "count": f"how many {plural(s)} are there?",
                "is_there": f"is there {with_article(s)} on the table?"}[self.kind]


QUESTION_KINDS = ("what_on", "where", "count", "is_there")


def scene_question(boxes: Boxes, rng: np.random.Generator) -> Question:
    """One question about the scene, of a kind drawn by `rng`."""
    names = [spoken_name(o) for o in boxes]
    unique = [o for o in boxes if names.count(spoken_name(o)) == 1 and spoken_name(o) not in FIXTURES]
    supports = [o for o in boxes if spoken_name(o) in SURFACES and names.count(spoken_name(o)) == 1]
    kinds = ["count", "is_there"] + (["where"] if unique else []) + (["what_on"] if supports else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "what_on":
        return Question(kind, supports[int(rng.integers(len(supports)))])
    if kind == "where":
        return Question(kind, unique[int(rng.integers(len(unique)))])
    if kind == "count":
        return Question(kind, sorted(set(names))[int(rng.integers(len(set(names))))])
    pool = sorted(set(names)) + absent_names(boxes)
    return Question(kind, pool[int(rng.integers(len(pool)))])


_GERUND = {"pick": "picking", "place": "placing", "put": "putting", "open": "opening", "close": "closing",
           "turn": "turning", "push": "pushing", "stack": "stacking", "move": "moving", "take": "taking"}


def doing_answer(instruction: str) -> str:
    """'pick up the bowl and place it on the plate' -> "I'm picking up the bowl and placing it on the plate." """
    words = [_GERUND.get(w, w) for w in instruction.strip().rstrip(".").split()]
    return "I'm " + " ".join(words) + "."


@dataclass(frozen=True)
class Defect:
    """A defective instruction and the robot's rejection of it."""
    kind: str          # "absent" | "impossible" | "unsafe" | "unintelligible"
    text: str
    reason: str
    reply: str


_SYLLABLES = ("bla", "mor", "fen", "dle", "sku", "ri", "to", "vash", "gron", "pli", "zu", "ka", "wem", "nop")


def defective_instruction(boxes: Boxes, rng: np.random.Generator) -> Defect:
    """An instruction the robot must refuse, of a kind drawn by `rng`, built from the scene."""
    present = sorted({spoken_name(o) for o in boxes})
    movable = [n for n in present if n not in FIXTURES] or present
    supports = [n for n in present if n in SURFACES] or present
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731 - local shorthand
    kind = pick(("absent", "absent", "impossible", "unsafe", "unintelligible"))
    if kind == "absent":
        missing = pick(absent_names(boxes))
        text = pick((f"pick up the {missing} and place it on the {pick(supports)}",
                     f"put the {missing} in the {pick(supports)}", f"bring me the {missing}",
                     f"pick up the {missing}"))
        return Defect(kind, text, f"there is no {missing} here", f"Sorry, I don't see {with_article(missing)} here.")
    if kind == "impossible":
        text = pick(("lift the whole table", f"put the {pick(movable)} on the ceiling",
                     f"fold the {pick(movable)} in half", f"put the {pick(FIXTURES)} inside the {pick(movable)}",
                     "walk over to the kitchen"))
        return Defect(kind, text, "that is beyond what I can do", "Sorry, I can't do that.")
    if kind == "unsafe":
        text = pick((f"throw the {pick(movable)} at me", f"smash the {pick(movable)} on the floor",
                     "knock everything off the table", f"hit me with the {pick(movable)}"))
        return Defect(kind, text, "that would be unsafe", "Sorry, I won't do that, it would not be safe.")
    words = [pick(_SYLLABLES) + pick(_SYLLABLES) for _ in range(int(rng.integers(3, 6)))]
    return Defect(kind, " ".join(words), "I could not understand the instruction",
                  "Sorry, I didn't catch that. Could you say it again?")


def evidence_of(boxes: Boxes, names: tuple[str, ...]) -> dict[str, list[float]]:
    """The boxes an answer rests on, as stored with the answer: {name: [lo xyz, hi xyz]}."""
    return {n: [*map(float, boxes[n][0]), *map(float, boxes[n][1])] for n in names if n in boxes}
