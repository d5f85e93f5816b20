"""Constructed gold responses for IFEval prompts (for the oracle backend: the harness's own
"gold fed back scores 100%" check).

IFEval has no reference answers, so a response is *built* from the item's instructions (counts of
paragraphs, sentences, words, highlights, bullets, keywords, case, wrappers...) and then checked
with lm-eval's own checker; several layouts are tried and the first one that satisfies every
instruction wins. Items for which no layout passes (notably `language:response_language`, which
needs real text in another language) get no gold: `construct_gold` returns None and callers say so.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from verification.scoring import ifeval as ifeval_scoring

_NATURAL_SENTENCES = (
    "The river runs through the quiet valley every spring.",
    "Many people in the town grow fresh food in their gardens.",
    "Our team spent the whole morning reading about old maps.",
    "A good plan starts with a clear goal and a simple first step.",
    "The children walked to the park after school to play football.",
    "She wrote a short letter to her friend about the long journey.",
    "We often learn the most from the problems that we solve ourselves.",
    "The library opens early on weekdays and closes late on Friday.",
    "Fresh bread from the market tastes better than anything else.",
    "He keeps a small notebook with ideas for future stories.",
)
# Plain sentences (no commas) for IFEval's response-language instruction, by langdetect code.
_LANGUAGE_SENTENCES: dict[str, tuple[str, ...]] = {
    "hi": ("भारत एक विशाल देश है।", "यहाँ अनेक भाषाएँ बोली जाती हैं।", "लोग त्योहारों को बड़े उत्साह से मनाते हैं।"),
    "mr": ("महाराष्ट्र हे भारतातील एक मोठे राज्य आहे।", "येथील लोक मराठी भाषा बोलतात।", "पुणे हे शिक्षणासाठी प्रसिद्ध शहर आहे।"),
    "ne": ("नेपाल हिमालयको काखमा रहेको एक सुन्दर देश हो।", "यहाँका मानिसहरू धेरै मिहिनेती छन्।", "सगरमाथा संसारकै अग्लो हिमाल हो।"),
    "bn": ("বাংলাদেশ একটি সুন্দর দেশ।", "এখানে অনেক নদী আছে।", "মানুষ ভাত ও মাছ খেতে ভালোবাসে।"),
    "pa": ("ਪੰਜਾਬ ਇੱਕ ਖੂਬਸੂਰਤ ਸੂਬਾ ਹੈ।", "ਇੱਥੇ ਦੇ ਲੋਕ ਬਹੁਤ ਮਿਹਨਤੀ ਹਨ।", "ਕਿਸਾਨ ਖੇਤਾਂ ਵਿੱਚ ਕਣਕ ਉਗਾਉਂਦੇ ਹਨ।"),
    "gu": ("ગુજરાત ભારતનું એક સુંદર રાજ્ય છે.", "અહીંના લોકો વેપારમાં કુશળ છે.", "અમદાવાદ એક મોટું શહેર છે."),
    "ta": ("தமிழ்நாடு இந்தியாவின் ஒரு அழகான மாநிலம்.", "இங்கு மக்கள் தமிழ் மொழி பேசுகிறார்கள்.", "சென்னை ஒரு பெரிய நகரம்."),
    "te": ("తెలంగాణ ఒక అందమైన రాష్ట్రం.", "ఇక్కడ ప్రజలు తెలుగు మాట్లాడుతారు.", "హైదరాబాద్ ఒక పెద్ద నగరం."),
    "kn": ("ಕರ್ನಾಟಕ ಭಾರತದ ಒಂದು ಸುಂದರ ರಾಜ್ಯ.", "ಇಲ್ಲಿನ ಜನರು ಕನ್ನಡ ಮಾತನಾಡುತ್ತಾರೆ.", "ಬೆಂಗಳೂರು ಒಂದು ದೊಡ್ಡ ನಗರ."),
    "ur": ("پاکستان ایک خوبصورت ملک ہے۔", "یہاں کے لوگ بہت مہمان نواز ہیں۔", "لاہور ایک تاریخی شہر ہے۔"),
    "ar": ("القاهرة مدينة كبيرة وجميلة.", "يحب الناس هناك القراءة والسفر.", "النيل نهر طويل جدا."),
    "fa": ("ایران کشوری بزرگ و زیبا است.", "مردم این کشور به شعر و ادبیات علاقه دارند.", "تهران پایتخت ایران است."),
    "ru": ("Москва является столицей России.", "Летом в городе много туристов.", "Люди любят гулять в парках."),
    "bg": ("София е столицата на България.", "През лятото много хора почиват на морето.", "Българите обичат народната музика."),
    "de": ("Berlin ist die Hauptstadt von Deutschland.", "Im Sommer gehen viele Menschen in den Park.", "Die Stadt hat eine lange Geschichte."),
    "pt": ("Lisboa é a capital de Portugal.", "As pessoas gostam de passear perto do rio.", "A cidade tem muitas ruas antigas."),
    "it": ("Roma è la capitale d'Italia.", "Le persone amano mangiare la pasta insieme.", "La città ha molti monumenti antichi."),
    "fi": ("Helsinki on Suomen pääkaupunki.", "Kesällä ihmiset viettävät aikaa mökillä.", "Talvella on kylmää ja lunta sataa paljon."),
    "vi": ("Hà Nội là thủ đô của Việt Nam.", "Người dân ở đây rất thân thiện.", "Phở là món ăn nổi tiếng nhất."),
    "ko": ("서울은 대한민국의 수도입니다.", "사람들은 공원에서 산책하는 것을 좋아합니다.", "한국 음식은 맛있고 건강합니다."),
    "sw": ("Tanzania ni nchi nzuri sana.", "Watu wengi wanapenda kulima mashamba yao.", "Mlima Kilimanjaro ni mrefu kuliko yote Afrika."),
    "th": ("กรุงเทพเป็นเมืองหลวงของประเทศไทย", "ผู้คนที่นี่เป็นมิตรมาก", "อาหารไทยอร่อยและมีชื่อเสียง"),
}
# Short everyday English words; filtered per item (forbidden words, restricted letters).
_WORD_POOL = (
    "the a good day we go to sea by our old boat and it is fun when sky turns blue "
    "people walk along paths to look at birds or trees that stand tall above quiet hills "
    "my mom buys food at big shops so all of us eat well"
).split()


@dataclass
class _Constraints:
    ids: list[str]
    kw: dict[str, dict[str, Any]]
    keywords_needed: dict[str, int] = field(default_factory=dict)
    banned_words: set[str] = field(default_factory=set)
    banned_letters: set[str] = field(default_factory=set)
    language: str | None = None
    min_capital_words: int = 0
    pairs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _parse(instruction_ids: list[str], kwargs: list[dict[str, Any]]) -> _Constraints:
    kw = {iid: {k: v for k, v in (args or {}).items() if v is not None} for iid, args in zip(instruction_ids, kwargs)}
    c = _Constraints(list(instruction_ids), kw)
    # Pairs, not the dict: an instruction may appear twice with different arguments.
    for iid, raw_args in zip(instruction_ids, kwargs):
        args = {k: v for k, v in (raw_args or {}).items() if v is not None}
        c.pairs.append((iid, args))
        if iid == "keywords:existence":
            for word in args.get("keywords", []):
                c.keywords_needed[word] = max(c.keywords_needed.get(word, 0), 1)
        elif iid == "keywords:frequency":
            if args.get("relation") == "less than":
                c.banned_words.add(args["keyword"].lower())
            else:
                word = args["keyword"]
                c.keywords_needed[word] = max(c.keywords_needed.get(word, 0), int(args["frequency"]))
        elif iid == "keywords:forbidden_words":
            c.banned_words.update(w.lower() for w in args.get("forbidden_words", []))
        elif iid == "keywords:letter_frequency" and args.get("let_relation") == "less than":
            c.banned_letters.add(args["letter"].lower())
        elif iid == "language:response_language":
            c.language = args.get("language")
        elif iid == "change_case:capital_word_frequency" and args.get("capital_relation") != "less than":
            c.min_capital_words = max(c.min_capital_words, int(args["capital_frequency"]))
    return c


def _word_ok(word: str, c: _Constraints) -> bool:
    low = word.lower().strip(".")
    return low not in c.banned_words and not (set(low) & c.banned_letters)


def _sentences(c: _Constraints, count: int, words_per_sentence: int, natural: bool, offset: int) -> list[str]:
    if c.language:
        pool = list(_LANGUAGE_SENTENCES.get(c.language, ()))
        return [pool[(offset + i) % len(pool)] for i in range(count)] if pool else []
    if natural:
        pool = [s for s in _NATURAL_SENTENCES if all(_word_ok(w, c) for w in s.split())]
        if pool:
            return [pool[(offset + i) % len(pool)] for i in range(count)]
    words = [w for w in _WORD_POOL if _word_ok(w, c)] or ["ok"]
    out = []
    for i in range(count):
        chosen = [words[(offset + i * 7 + j) % len(words)] for j in range(words_per_sentence)]
        sentence = " ".join(chosen)
        out.append(sentence[0].upper() + sentence[1:] + ".")
    return out


def _mandatory_pieces(c: _Constraints) -> list[str]:
    """Sentences carrying what must appear somewhere (keywords, highlights, placeholders...)."""
    pieces: list[str] = []
    for word, times in c.keywords_needed.items():
        # In another language a bare keyword keeps the text's language detectable.
        pieces.extend((f"{word}." if c.language else f"We talk about {word} here.") for _ in range(times))
    if "detectable_content:number_placeholders" in c.kw:
        n = int(c.kw["detectable_content:number_placeholders"]["num_placeholders"])
        slots = " ".join(f"[{i + 1}]" if c.language else f"[place {i + 1}]" for i in range(n))
        pieces.append(slots if c.language else slots + " are the places.")
    if "detectable_format:number_highlighted_sections" in c.kw:
        n = int(c.kw["detectable_format:number_highlighted_sections"]["num_highlights"])
        pieces.extend(f"This is *highlighted part {i + 1}* of the text." for i in range(n))
    if c.min_capital_words:
        pieces.append(" ".join(["NOTE"] * c.min_capital_words) + " is written here.")
    if "keywords:letter_frequency" in c.kw:
        args = c.kw["keywords:letter_frequency"]
        if args.get("let_relation") != "less than":
            letter, times = str(args["letter"]), int(args["let_frequency"])
            if len(letter) == 1 and letter.isascii() and letter.isalpha():
                pieces.append(f"Look at {letter * times} now.")
            else:  # the checker swaps an invalid letter for a random one: cover them all
                pieces.append(" ".join(ch * times for ch in "abcdefghijklmnopqrstuvwxyz") + " now.")
    if "detectable_format:constrained_response" in c.kw:
        pieces.append("My answer is yes.")
    return pieces


def _layouts(c: _Constraints) -> Iterator[str]:
    n_paragraphs = 1
    separator = "\n\n"
    if "length_constraints:number_paragraphs" in c.kw:
        n_paragraphs = int(c.kw["length_constraints:number_paragraphs"]["num_paragraphs"])
        separator = "\n***\n"
    if "length_constraints:nth_paragraph_first_word" in c.kw:
        n_paragraphs = int(c.kw["length_constraints:nth_paragraph_first_word"]["num_paragraphs"])
        separator = "\n\n"
    sections = c.kw.get("detectable_format:multiple_sections")
    if sections:
        n_paragraphs = max(n_paragraphs, int(sections["num_sections"]))
    mandatory = _mandatory_pieces(c)
    counts = [1, 2, 3, 5, 8, 14, 25, 40, 60, 100, 160]
    for iid, args in c.pairs:
        if iid == "length_constraints:number_sentences":  # exact bands such as [30, 31)
            counts += [int(args["num_sentences"]) - 1, int(args["num_sentences"])]
    for natural, per_paragraph, words_per_sentence in itertools.product(
        (True, False), counts, (8, 3, 16, 80)
    ):
        if natural and words_per_sentence != 8:
            continue
        paragraphs = []
        for p in range(n_paragraphs):
            sentences = _sentences(c, per_paragraph, words_per_sentence, natural, offset=p * 3)
            if p == 0:
                sentences = mandatory + sentences
            text = " ".join(sentences)
            nth = c.kw.get("length_constraints:nth_paragraph_first_word")
            if nth and p == int(nth["nth_paragraph"]) - 1:
                text = f"{nth['first_word']} {text[0].lower()}{text[1:]}"
            if sections:
                text = f"{sections['section_spliter']} {p + 1}\n{text}"
            paragraphs.append(text)
        if "detectable_format:number_bullet_lists" in c.kw:
            n = int(c.kw["detectable_format:number_bullet_lists"]["num_bullets"])
            bullet_words = [w for w in ("point", "item", "idea", "step") if _word_ok(w, c)] or ["ok"]
            bullets = "\n".join(f"* {bullet_words[0]} {i + 1}." for i in range(n))
            paragraphs[0] = paragraphs[0] + "\n" + bullets
        yield separator.join(paragraphs)


def _wrap(body: str, c: _Constraints) -> str:
    text = body
    if "detectable_format:title" in c.kw:
        title = "<<a short title>>" if _word_ok("short", c) else "<<the title>>"
        text = f"{title}\n{text}"
    if "detectable_content:postscript" in c.kw:
        marker = c.kw["detectable_content:postscript"]["postscript_marker"]
        text = f"{text}\n{marker} we will be in touch."
    if "combination:two_responses" in c.kw:
        text = f"{text}\n******\n{text} Thanks."
    if "combination:repeat_prompt" in c.kw:
        text = f"{c.kw['combination:repeat_prompt']['prompt_to_repeat']}\n{text}"
    if "startend:end_checker" in c.kw:
        text = f"{text}\n{c.kw['startend:end_checker']['end_phrase']}"
    # Case last: the repeated prompt and the end phrase are compared case-insensitively.
    if "change_case:english_capital" in c.kw:
        text = text.upper()
    if "change_case:english_lowercase" in c.kw:
        text = text.lower()
    if "detectable_format:json_format" in c.kw:
        text = json.dumps({"response": text})
    if "startend:quotation" in c.kw:
        text = f'"{text}"'
    if "punctuation:no_comma" in c.kw:
        text = re.sub(r",", "", text) if "combination:repeat_prompt" not in c.kw else text
    return text


def construct_gold(prompt: str, instruction_ids: list[str], kwargs: list[dict[str, Any]]) -> str | None:
    """A response satisfying every instruction under lm-eval's strict check, or None."""
    constraints = _parse(instruction_ids, kwargs)
    if constraints.language and constraints.language not in _LANGUAGE_SENTENCES:
        return None
    for body in _layouts(constraints):
        candidate = _wrap(body, constraints)
        if ifeval_scoring.check(prompt, instruction_ids, kwargs, candidate)["prompt_strict"]:
            return candidate
    return None
