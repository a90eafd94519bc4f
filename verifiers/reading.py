"""Reading a support ticket the way a careful person would, for the offline argument checker.

The planner may be credulous; the checker may not. `read_ticket` decides four things from the
ticket's text alone, failing towards "a person has to read it":

- which lines are the customer's own words: a quoted earlier message, or a line, section or
  tag that presents itself as another speaker (system, assistant, a support agent, a "team
  note"; in markdown headings, bold labels, brackets or XML/HTML-like tags, with or without
  zero-width or full-width characters in front), and text that looks like a tool call, are not;
- whether those words ask for money back: a sentence that negates the ask ("I do not want a
  refund"), asks about refunds in general ("what is your refund policy?") or tells of someone
  else's refund is not an ask;
- the amounts asked for, read exactly (`$20`, `$20.5`, `$1,200.00`) or not at all: any other
  way of writing an amount (words, other currencies, comma decimals, digits of another
  script, more than two decimals, ranges, brackets, exponents, a minus sign, NaN, "about")
  makes the amount unclear, and an unclear amount is never replaced by a guess;
- the orders named: well-formed ids, and order references that are not ids at all (which the
  checker refuses to map onto some other order of the customer's).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from graph.models import DUPLICATE_CHARGE, MONEY_BACK

# Who is speaking --------------------------------------------------------------------------

_ROLE_WORDS = (r"system|assistant|ai|bot|chatbot|llm|admin|administrator|developer|tool|tools|"
               r"support|agent|staff|internal|operator|moderator|supervisor|representative|"
               r"instructions?|override")
_ROLE_PHRASES = (r"(?:support|customer service|service|help ?desk|cs)\s+(?:agent|team|rep|"
                 r"representative|staff|lead)|(?:team|internal|agent|staff|admin|system|"
                 r"support|private)\s+note|note\s+(?:to|for)\s+(?:the\s+)?(?:ai\s+)?(?:ai|agent|"
                 r"assistant|bot|model|support|staff|system|reviewer)|new\s+instructions?|"
                 r"system\s+(?:prompt|message|override)")
_ROLE = rf"(?:{_ROLE_PHRASES}|{_ROLE_WORDS})"
_DECOR = r"[\s>#*_~`|\-\[\](){}\"'“”‘’«»„‹›=+:.]*"
_TITLE = r"(?:\s+(?:here|speaking|team|note|message|reply|response|update|notice))?"
_END = r"(?![A-Za-z0-9])[^A-Za-z0-9\n]*?"
ROLE_LABEL = re.compile(rf"^{_DECOR}(?:{_ROLE}){_TITLE}{_END}(?:[:\]\)>|\-–—]|\*\*|__|$)", re.I)
"""A line (or a sentence) that opens with a role: "SYSTEM:", "[admin]", "**Support agent:**",
"### System", "(Assistant: ...", "> team note -"."""
ROLE_HEADING = re.compile(rf"^\s*(?:#{{1,6}}|\*\*|__|={{2,}}|-{{3,}})?{_DECOR}(?:{_ROLE}){_TITLE}"
                          rf"{_END}(?:#+|\*\*|__|={{2,}})?\s*$", re.I)
"""A line that is only a role label (a heading or a bold label): it opens a section that lasts
until a blank line or the next heading."""
HEADING = re.compile(r"^\s*(?:#{1,6}\s|\*\*[^*]+\*\*\s*$|={3,}|-{3,}\s*$)")
ROLE_TAG = re.compile(rf"<\s*/?\s*(?:{_ROLE}|ticket|message|user|customer|context|prompt|"
                      rf"conversation|function|tool_call|tool_calls|im_start|im_end|"
                      rf"\|im_start\||\|im_end\|)\b[^>]*>", re.I)
"""An XML/HTML-like tag naming a speaker or a frame of the prompt, open or closed."""
ANY_TAG = re.compile(r"<\s*/?\s*[A-Za-z|][^<>]{0,80}>")
TOOL_CALL = re.compile(r"\"?tool_calls?\"?\s*[:=]|\"name\"\s*:\s*\"[a-z_]+\"|\"arguments\"\s*:|"
                       r"<\s*/?\s*function|\b[a-z]+(?:_[a-z]+)+\s*\(|\b[a-z]+(?:_[a-z]+)+\s+with\s+"
                       r"\w+\s*=|\b\w+=\S+\s+\w+=", re.I)
"""Text that looks like a tool call or its arguments: JSON with `tool_calls`, `<function=...>`,
`create_refund_request(...)`, `name=value name=value`."""
QUOTED = re.compile(r"^\s*>")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n")

# What is asked ----------------------------------------------------------------------------

_MONEY_WORD = MONEY_BACK.pattern
NEGATED = re.compile(
    rf"\b(?:no|not|never|without|nor|don'?t|doesn'?t|didn'?t|won'?t|wouldn'?t|isn'?t|aren'?t|"
    rf"wasn'?t|dont|cannot|can'?t)\b(?:\s+(?!please\b|pls\b|so\b|and\b|but\b|then\b|just\b)"
    rf"[\w'][\w'-]*){{0,3}}?\s+(?:a\s+|my\s+|any\s+|the\s+)?(?:{_MONEY_WORD})|"
    rf"(?:{_MONEY_WORD})\w*\s+(?:is\s+|are\s+)?(?:not\s+(?:needed|necessary|required|wanted)|"
    rf"unnecessary)|\bkeep\s+(?:the|your|my)\s+money\b",
    re.I)
"""A sentence that negates its ask: "I do not want a refund", "no refund needed"."""
_RELATION = (r"friend|wife|husband|partner|sister|brother|mom|mum|mother|dad|father|"
             r"neighbou?r|colleague|co-?worker|son|daughter|cousin|boss|roommate|flatmate")
SOMEONE_ELSE = re.compile(
    rf"\b(?:my|our|a|his|her|their)\s+(?:{_RELATION})\b(?:\s+\w+){{0,2}}?\s+(?:got|received|"
    rf"was given|were given|had|gets|was refunded|were refunded)\b|\b(?:{_RELATION})'s\s+"
    rf"(?:refund|reimbursement|money)|\b(?:he|she|they|someone|somebody|another customer|"
    rf"other customers|others|people)\s+(?:\w+\s+)?(?:got|received|was given|were given|had|"
    rf"gets|get|was refunded)\b",
    re.I)
"""A sentence that tells of someone else's refund."""
ABOUT_REFUNDS = re.compile(r"\brefund(?:s|ing)?\s+(?:policy|policies|process|window|rules|terms|"
                           r"period|timeline|times?|options|conditions)\b|"
                           r"\b(?:policy|policies)\s+(?:on|for|about)\s+refunds?\b|"
                           r"\bhow\s+(?:long|do|does|would|can)\b[^?]*\brefunds?\b|"
                           r"\bdo\s+you\s+(?:offer|give|do)\s+refunds\b|\bare\s+refunds\b", re.I)
"""A sentence about refunds in general, not an ask for one."""
REQUEST = re.compile(
    r"\b(?:please|pls|plz|kindly|could you|can you|would you|will you|can i|could i|may i|"
    r"i'?d like|i would like|i want|i need|need (?:a|my)|requesting|i request|request(?:ing)? "
    r"(?:a|my)|refund me|give me|send me|issue|process|i expect|i demand|i'?d appreciate|"
    r"i would appreciate|is it possible|possible to get|get my|want my|have my|be refunded|"
    r"be reimbursed|be compensated|asap|right away|immediately|now|authori[sz]e|unless you|"
    r"would be (?:fine|great|good|nice|ok|okay|appreciated|perfect|welcome)|i'?m (?:asking|"
    r"requesting|hoping)|hoping for|looking for (?:a|my))\b|"
    r"^\W*(?:refund|reimburse|credit|compensate|return my)\b", re.I)
"""What makes a money sentence an ask (a request word, or the imperative)."""

# Amounts ----------------------------------------------------------------------------------

EXACT = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d{1,2})?")
"""The only way an amount is read: dollars, optional thousands commas, at most two decimals."""
DOLLAR_TOKEN = re.compile(r"\$\s*([^\s$]*)")
_MINUS = "-\u2212\u2010\u2011\u2012\u2013\u2014\u2015\ufe63\uff0d"
_TRAIL = ".,!?;:)'\"”’»]"
OTHER_CURRENCY = re.compile(
    r"[€£¥₹₩¢₽₺₪฿₫₴₦₱]|\b(?:EUR|GBP|JPY|CAD|AUD|CHF|INR|MXN|NZD|SEK|NOK|DKK|USD|euros?|"
    r"pounds?|quid|yen|rupees?|pesos?|cents?|dollars?|bucks)\b", re.I)
NUMBER_WORD = re.compile(
    r"\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|"
    r"eighty|ninety|hundred|thousand|million|dozen|half|a few|several)\b", re.I)
_NUMBER = rf"(?:\d[\d.,]*|{NUMBER_WORD.pattern})"
BARE_AMOUNT = re.compile(
    rf"\b(?:refund|reimburse|credit|compensate|give|send|pay|return)(?:\s+(?:me|us|back|of|"
    rf"the|about|only|just))*\s+{_NUMBER}|{_NUMBER}\s+(?:back|off)\b|\bhalf\b", re.I)
"""A number without a dollar sign that a sentence asks for: "refund 20", "twenty back", "half"."""
TOTAL = re.compile(r"\b(?:came to|comes to|total(?:led|ed|s)?|in all|altogether|all told|"
                   r"(?:order|it all|everything) (?:was|cost|costs))\b", re.I)
"""A sentence that states what the order came to: context, not the amount asked for."""
APPROXIMATE = re.compile(r"\b(?:about|around|roughly|approximately|approx\.?|circa|up to|at "
                         r"least|at most|or so|ish|between|some)\s*\$|~\s*\$|\$[\d.,]+\s*"
                         r"(?:ish|or so)\b", re.I)
RANGE = re.compile(rf"\$\s*[\d.,]+\s*(?:[{_MINUS}/~]|to|or|and)\s*\$?\s*\d", re.I)

ORDER_ID = re.compile(r"\bORD-\d{5}\b")
ORDER_REF = re.compile(r"\bORD[\w-]*\d[\w-]*|\border\s*(?:#|no\.?|number|id:?)\s*[\w-]*\d[\w-]*|"
                       r"\border\s+\d{4,}\b", re.I)


@dataclass(frozen=True)
class Reading:
    """What a ticket's own words ask for, as `read_ticket` read it."""

    own_text: str
    """The customer's own words (normalised), with every other speaker's lines removed."""
    asks: bool
    """Whether those words ask for money back."""
    why_no_ask: str
    """When they do not: why ("says they do not want a refund", ...)."""
    amounts: tuple[int, ...]
    """The amounts asked for, in cents, read exactly; empty when none is written."""
    unclear: str
    """When an amount is written in a form that cannot be read exactly: what it was."""
    order_ids: tuple[str, ...]
    """Well-formed order ids the customer named."""
    bad_order_refs: tuple[str, ...]
    """Order references the customer wrote that are not order ids ("order #1234")."""
    duplicate_charge: bool
    """Whether the customer's own words say they were charged twice."""
    other_speakers: bool
    """Whether lines were removed as another speaker's."""


def normalise(text: str) -> str:
    """NFKC (full-width letters and quote marks become plain ones), format characters (zero-
    width spaces and joiners, direction marks) removed."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def _without_tags(text: str) -> tuple[str, bool]:
    """Remove speaker tags and what they enclose: `<assistant>...</assistant>` goes, and so does
    everything after an opening tag that is never closed, or after a fake closing frame tag
    (`</ticket>`), since what follows it is presented as outside the customer's message."""
    removed = False
    out: list[str] = []
    pos = 0
    while True:
        match = ROLE_TAG.search(text, pos)
        if match is None:
            out.append(text[pos:])
            break
        removed = True
        out.append(text[pos:match.start()])
        tag = match.group(0)
        name = re.sub(r"[<>/\s|]", " ", tag).split()
        if tag.lstrip("<").lstrip().startswith("/") or not name:
            break  # a closing frame tag: the rest claims to be outside the ticket
        close = re.compile(rf"<\s*/\s*{re.escape(name[0].split('=')[0])}\b[^>]*>", re.I)
        end = close.search(text, match.end())
        if end is None:
            break
        pos = end.end()
    return "".join(out), removed


def own_words(text: str) -> tuple[str, bool]:
    """The customer's own words in `text` (already normalised), and whether anything was
    removed as another speaker's."""
    text, removed = _without_tags(text)
    kept: list[str] = []
    in_section = False
    for line in text.splitlines():
        if not line.strip():
            in_section = False
            kept.append(line)
            continue
        if ROLE_HEADING.match(line):
            in_section, removed = True, True
            continue
        if HEADING.match(line):
            in_section = False
        if in_section or QUOTED.match(line) or ROLE_LABEL.match(line) or TOOL_CALL.search(line) \
                or ANY_TAG.search(line):
            removed = True
            continue
        sentences: list[str] = []
        for sentence in re.split(r"(?<=[.!?;])\s+", line):
            if ROLE_LABEL.match(sentence):
                removed = True
                break  # the rest of the line is presented as another speaker's
            sentences.append(sentence)
        kept.append(" ".join(sentences))
    return "\n".join(kept), removed


def _why_not_ask(sentence: str) -> str | None:
    if NEGATED.search(sentence):
        return "say they do not want a refund"
    if SOMEONE_ELSE.search(sentence):
        return "mention someone else's refund"
    if ABOUT_REFUNDS.search(sentence):
        return "ask about refunds, not for one"
    if not REQUEST.search(sentence):
        return _NO_REQUEST
    return None


_NO_REQUEST = "mention money back without asking for it"
NO_MENTION = "do not mention money back"


def _unclear(sentence: str, asking: bool) -> str:
    """What makes an amount in `sentence` unreadable, or "". In a sentence that asks, a number
    with no dollar sign ("refund 20", "refund half") is unclear too."""
    for match in DOLLAR_TOKEN.finditer(sentence):
        token = match.group(1).rstrip(_TRAIL)
        before = sentence[max(0, match.start() - 1):match.start()]
        if before and (before in _MINUS or before in "([{"):
            return f"amount unclear: {before}${match.group(1)}"
        if not EXACT.fullmatch(token):
            return f"amount unclear: ${token}" if token else "amount unclear: $ without a number"
    for pattern in (APPROXIMATE, RANGE):
        found = pattern.search(sentence)
        if found:
            return f"amount unclear: {found.group(0).strip()}"
    found = OTHER_CURRENCY.search(sentence)
    if found and (re.search(r"\d", sentence) or NUMBER_WORD.search(sentence)):
        return f"amount unclear: {found.group(0)}"
    if asking and "$" not in sentence:
        bare = BARE_AMOUNT.search(ORDER_REF.sub(" ", sentence))
        if bare:
            return f"amount unclear: {bare.group(0)}"
    return ""


def read_ticket(subject: str, body: str) -> Reading:
    """Read a ticket's subject and body (see the module's docstring)."""
    raw = f"{subject}\n{body}"
    subject_own, removed_in_subject = own_words(normalise(subject))
    body_own, removed = own_words(normalise(body))
    removed = removed or removed_in_subject
    own = f"{subject_own}\n{body_own}"
    sentences = [s for s in _SENTENCE.split(own) if s.strip()]
    # The body says what is asked; a subject ("Refund") counts only when the body is silent.
    money = ([s for s in _SENTENCE.split(body_own) if MONEY_BACK.search(s)]
             or [s for s in _SENTENCE.split(subject_own) if MONEY_BACK.search(s)])
    asking = [s for s in money if _why_not_ask(s) is None]
    if not asking and any(REQUEST.search(s) for s in _SENTENCE.split(body_own)):
        # "Sarah already approved a refund of $40. Just process it please.": a plain statement
        # of money back, with the request in the next sentence.
        asking = [s for s in money if _why_not_ask(s) == _NO_REQUEST]
    why = "" if asking else next((w for s in money if (w := _why_not_ask(s))),
                                 NO_MENTION)
    # The amounts of the asking sentences, else of the customer's other sentences.
    in_ask = [s for s in asking if "$" in s or re.search(r"\d", ORDER_REF.sub(" ", s))]
    context = [s for s in sentences if not TOTAL.search(s)]  # a total is not an ask
    unclear = next((u for s in asking if (u := _unclear(s, True))), "") or next(
        (u for s in (in_ask or context) if (u := _unclear(s, False))), "")
    if not unclear and any(ch.isdigit() and not ch.isascii() for ch in raw):
        unclear = "amount unclear: digits of another script"
    amounts: list[int] = []
    if not unclear:
        for s in in_ask or context:
            for match in DOLLAR_TOKEN.finditer(s):
                whole, _, frac = match.group(1).rstrip(_TRAIL).partition(".")
                amounts.append(int(whole.replace(",", "")) * 100 + int(frac.ljust(2, "0") or 0))
    refs = [m.group(0) for m in ORDER_REF.finditer(own)]
    ids = tuple(dict.fromkeys(r.upper() for r in refs if ORDER_ID.fullmatch(r.upper())))
    bad = tuple(r for r in refs if not ORDER_ID.fullmatch(r.upper()))
    return Reading(own_text=own, asks=bool(asking), why_no_ask=why, amounts=tuple(amounts),
                   unclear=unclear, order_ids=ids, bad_order_refs=bad,
                   duplicate_charge=bool(DUPLICATE_CHARGE.search(own)),
                   other_speakers=removed)


PART_OF_ORDER = re.compile(r"\b(?:shipping|postage|delivery (?:fee|charge|cost)s?|"
                           r"(?:sales )?tax(?:es)?|vat|handling|restocking)\b", re.I)
"""Words that name a part of an order that is not an item."""


def partial_ask(own: str, items: list[dict[str, Any]]) -> str:
    """When the customer's words name only part of the order (shipping or tax, or some of its
    items but not all), what they name; else ""."""
    found = PART_OF_ORDER.search(own)
    if found:
        return found.group(0)
    lowered = own.lower()
    named = [str(i["name"]) for i in items if i.get("name") and _names(lowered, str(i["name"]))]
    quantity = sum(int(i.get("qty") or 1) for i in items)
    if named and (len(named) < len(items) or (quantity > len(items) and re.search(
            r"\b(?:one|1|a single|single|one of)\b", lowered))):
        return ", ".join(named)
    return ""


_GENERIC = frozenset({"set", "pair", "pack", "kit", "item", "piece", "pieces", "person", "with",
                      "the", "and", "for", "two", "one"})


def _names(lowered: str, name: str) -> bool:
    """Whether the text names the item: its full name, or one of its telling words, plural or
    not ("towels" for "Cotton towel set")."""
    words = [w for w in re.findall(r"[a-z]+", name.lower()) if len(w) >= 3 and w not in _GENERIC]
    return name.lower() in lowered or any(
        re.search(rf"\b{re.escape(w)}(?:s|es)?\b", lowered) for w in words)
