"""What a maintainer would ask for before they can answer a question, and whether a
follow-up has supplied it.

Four things decide most support questions, and maintainers' first reply is usually a
question back for one of them:

* ``version``: the Keras version and backend, when the question reports a problem (an
  error, "it doesn't work", an install or performance problem). Counted as named: a Keras /
  TensorFlow / keras_core version ("keras 3.4", "tf 2.15", ``keras==2.15``), "Keras 3",
  ``tf.keras`` / ``keras_core`` / ``tf_keras``, a backend (``KERAS_BACKEND=jax``, "torch
  backend", "with JAX", see :func:`bot.retrieval.backends.detect_backend`), ``pip show``
  output, a printed ``keras.__version__``, "the latest keras", or a traceback whose frames
  are keras or tensorflow files (their paths say which Keras it is);
* ``traceback``: an error reported without its stack frames. Not asked for errors whose
  message is the whole story (``ModuleNotFoundError``, ``cannot import name``, ``module
  ... has no attribute``, pip's resolver errors) nor for shape errors (``shapes`` instead);
* ``code``: "doesn't work", "wrong predictions", "loss is nan", "accuracy stuck" ... with no
  code at all, no error (an error gets ``traceback``) and no install problem;
* ``shapes``: a shape or dtype error with neither model code nor the input shapes.

Precision over recall: a support bot that nags is worse than one that says nothing. So a
problem has to be *reported* (a report verb next to "error", an exception line, a negated
"work"), words like "mean squared error" or "error rate" never count, an attachment (most
often a screenshot of the error) or a link to a gist, paste or notebook silences the
traceback, code and shapes asks, a wish ("how do I make it not learn") is not a report, and
any hint of a version counts as one. Everything here is pure: text in, typed result out.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from bot.markdown_escape import escape_markdown
from bot.retrieval.backends import detect_backend

MissingKind = Literal["version", "traceback", "code", "shapes"]
#: Every kind, in the order the ask lists them.
KINDS: tuple[MissingKind, ...] = ("version", "traceback", "code", "shapes")
# What the bot cannot do better without: re-answering is worth it when one of these arrives.
_SUBSTANTIVE: frozenset[MissingKind] = frozenset({"traceback", "code", "shapes"})

VERSION_COMMAND = 'python -c "import keras; print(keras.__version__, keras.backend.backend())"'
SHAPES_COMMAND = "print(x.shape, y.shape)"
#: Longer texts are read as their first and last parts (see ``_bounded``).
MAX_CHARS = 20_000


@dataclass(frozen=True)
class MissingItem:
    kind: MissingKind
    ask: str  # Markdown, a phrase that completes "To help, add: ..."
    evidence: str  # plain text, why it was asked (for logs and the dashboard; not escaped)


@dataclass(frozen=True)
class MissingInfo:
    """What a question lacks; empty (falsy) when nothing is missing or the detector is unsure."""

    items: tuple[MissingItem, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def kinds(self) -> tuple[MissingKind, ...]:
        return tuple(item.kind for item in self.items)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"kind": i.kind, "ask": i.ask, "evidence": i.evidence} for i in self.items]


# -- what the text holds -------------------------------------------------------------------------

_FENCE = re.compile(r"```")
# Lines that are code by themselves (not prose that mentions a call): imports, assignments,
# definitions, decorators, a bare call or method chain, a REPL prompt.
_CODE_LINE = re.compile(
    r"""^\s*(?:
        (?:from\s+[\w.]+\s+)?import\s+[\w.]+
      | (?:def|class)\s+\w+\s*[(:]
      | @[\w.]+
      | >>>\s
      | [\w.\[\]'"]+(?:\s*,\s*[\w.]+)*\s*(?:[-+*/]?=)\s*(?!=)\S.*
      | [\w.]+\(.*\)[\w.()]*\s*(?:\#.*)?
    )$""",
    re.M | re.X,
)
# A line of prose: three words in a row (code lines rarely have that outside strings).
_PROSE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}\s+[A-Za-z]{2,}\s+[A-Za-z]{2,}")

_FRAMES = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "[^"\n]+", line \d+'),  # CPython
    re.compile(r"^\s*File \S+\.py:\d+", re.M),  # IPython 8
    re.compile(r"Cell In\s*\[\d*\], line \d+"),
    re.compile(r"^-*> \d+ ", re.M),  # IPython's arrow at the failing line
)
# A traceback's frames in keras or tensorflow files say which Keras it is.
_LIBRARY_FRAME = re.compile(r"[/\\](?:keras|tensorflow|tf_keras|keras_core)[/\\][\w/\\.-]*\.py\b")

_PKG = (
    r"(?:keras(?:[-_](?:core|nlp|hub|cv))?|tf|tensorflow(?:[-_](?:gpu|cpu|macos|metal))?|tf_keras)"
)
_VERSION = (
    re.compile(rf"\b{_PKG}\s*(?:version\s*)?(?:==|=|v|:)?\s*\d+(?:\.\d+|\.x)*\b", re.I),
    re.compile(r"\b(?:tf|tensorflow)\.keras\b|\bkeras[_-]core\b|\btf_keras\b", re.I),
    re.compile(r"^\s*Name:\s*(?:keras|tensorflow)\S*\s*\n\s*Version:\s*\d", re.I | re.M),
    re.compile(r"__version__[^\n]{0,40}?\d+\.\d+"),
    re.compile(
        r"\b(?:latest|newest|nightly)\s+(?:version\s+of\s+)?(?:keras|tensorflow|tf)\b", re.I
    ),
    re.compile(r"\bKERAS_BACKEND\b"),
    _LIBRARY_FRAME,
)

# Keras' own metrics and losses end in "Error"; they are names, not exceptions.
_NOT_EXCEPTIONS = re.compile(r"(?:Squared|Absolute|Percentage|Logarithmic|LogCosh)\w*Error$")
# Bounded repeats: a flood of dotted names must not make the search quadratic.
_EXCEPTION = re.compile(r"\b((?:[a-z_]\w{0,40}\.){0,4}[A-Z]\w{0,60}?(?:Error|Exception))\b")
_EXCEPTION_LINE = re.compile(r"\b(?:[a-z_]\w{0,40}\.){0,4}[A-Z]\w{0,60}?(?:Error|Exception)\b\s*:")
_REPORT = re.compile(
    r"""\b(?:get|gets|got|getting|gives?|gave|giving|throws?|threw|throwing|raises?|raised|raising
        |shows?|showing|see|seeing|hit|hitting|receiv(?:e|es|ed|ing)|encounter(?:s|ed|ing)?
        |run\s+into|ran\s+into|fails?\s+with|failed\s+with|crash(?:es|ed)?\s+with|returns?
        |having|keeps?|complains?|says?|saying|produces?|ends?\s+with|stops?\s+with)\b
        [^.?!\n]{0,60}?\b(?:error|exception|[A-Z]\w*(?:Error|Exception))\b""",
    re.X | re.I,
)
_ERROR_PHRASES = re.compile(
    r"\berror\s*(?:says|saying|message|about|when|while|on)\b"
    r"|\berror\s+(?:keeps|kept|shows|showed|pops|popped|appears|appeared|occurs|occurred"
    r"|happens)\b"
    r"|\b(?:an?|this|the|some|weird)\s+error\b\s*(?::|when|while|in|at|about|saying)"
    r"|\bcrash(?:es|ed|ing)?\b|\bsegfault\b",
    re.I,
)
# "error" that is a quantity, not a failure.
_QUANTITY = re.compile(
    r"(?:squared|absolute|mean|relative|percentage|high|low|training|validation|test"
    r"|reconstruction|prediction|approximation|rounding|quantization)\s+errors?\b"
    r"|\berrors?\s+(?:rate|metric|function|bars?|term|surface)\b",
    re.I,
)
# Messages that say it all: the fix follows from the message, frames add nothing.
_SELF_CONTAINED = re.compile(
    r"ModuleNotFoundError|ImportError|No module named|cannot import name|has no attribute"
    r"|Could not find a version|No matching distribution|not installed|pip install",
    re.I,
)
_SHAPE_ERROR = re.compile(
    r"""incompatible\s+shapes|shapes?\b[^.\n]{0,80}\bincompatible|are\s+incompatible
      |is\s+incompatible\s+with\s+(?:the\s+)?layer|expected\s+(?:min_|max_)?ndim|found\s+ndim
      |expected\s+(?:axis|shape)|dimensions\s+must\s+be\s+equal|must\s+have\s+the\s+same
      \s+(?:shape|first\s+dimension|rank)|expected\s+\w+\s+to\s+have\s+\d+\s+dimensions
      |shape\s+mismatch|cannot\s+reshape|can't\s+reshape|logits\s+and\s+labels
      |cannot\s+convert\b[^.\n]{0,60}\bto\b|dtype\s+error
      |\bdtype\b[^.\n]{0,60}\b(?:wants?|expects?|expected|got|gets|but)\b
      |(?:complains?|error)\b[^.\n]{0,40}\bdtype\b""",
    re.X | re.I,
)
_BEHAVIOUR = re.compile(
    r"""\b(?:does\s*n[o']?t|doesn't|do\s*n[o']?t|don't|did\s*n[o']?t|didn't|is\s*n[o']?t|isn't
        |are\s*n[o']?t|aren't|wo\s*n't|won't|not|never|nothing)\s+
        (?:(?:seem\s+to|really|at\s+all|even|properly)\s+)?
        (?:work|works|working|learn|learning|converge|converging|improve|improving|change
        |changing|update|updating|get\s+called|called|decrease|decreasing)\b
      |\bwrong\s+(?:results?|predictions?|outputs?|values?|answers?)\b
      |\b(?:results?|predictions?|outputs?|reconstructions?)\s+(?:is|are)\s+(?:all\s+)?
        (?:wrong|garbage|black|zeros?)\b
      |\bstuck\s+at\b|\bstays?\s+(?:the\s+same|flat|at)\b|\b(?:becomes?|goes|turns?|is)\s+nan\b
      |\bnan\s+loss\b|\bsame\s+(?:class|value|output|prediction)s?\s+for\s+(?:every|all|each)\b
      |\bdifferent\s+results?\b|\bnot\s+reproducible\b|\bmode\s+collapse\b
      |\b(?:generator|model|training)\s+collapses\b|\boutputs?\s+(?:just\s+|only\s+)?noise\b""",
    re.X | re.I,
)
# A wish, not a report: "how do I make the layer not learn", "it should not update".
_WISH = re.compile(r"\b(?:to|should|must|shall|make(?:\s+\w+){1,3}|so\s+that\s+\w+)\s*$", re.I)
# Code or a notebook behind a link: a maintainer can read it (the bot cannot).
_LINKED_CODE = re.compile(
    r"https?://(?:gist\.github\.com|pastebin\.com|colab\.research\.google\.com"
    r"|(?:www\.)?kaggle\.com/code|github\.com/\S+/blob/|dpaste\.\w+|paste\.\w+)",
    re.I,
)
_SETUP = re.compile(
    r"\bpip\s+install\b|\binstall(?:ing|ed|ation)?\b|\bconda\b|\bupgrad(?:e|ed|ing)\b"
    r"|\bimports?\b[^.\n]{0,20}\bbroken\b|\bslow(?:er)?\b|\bmemory\s+leak\b"
    r"|\bonly\s+uses?\s+(?:the\s+)?cpu\b|\bgpu\s+(?:is\s+)?not\s+(?:used|detected|found)\b",
    re.I,
)
_INSTALL = re.compile(
    r"\bpip\s+install\b|\binstall(?:ing|ed|ation)?\b|\bconda\b|\bupgrad(?:e|ed|ing)\b"
    r"|\bimports?\b[^.\n]{0,20}\bbroken\b|No module named|cannot import",
    re.I,
)
_MODEL_CODE = re.compile(
    r"\b(?:Sequential|Model|Input|Dense|Conv[123]D|Conv[123]DTranspose|LSTM|GRU|SimpleRNN"
    r"|Embedding|Flatten|Reshape|Dropout|BatchNormalization|MaxPooling[123]D"
    r"|GlobalAveragePooling[123]D|MultiHeadAttention|\w+Layer)\s*\("
)
# A stated shape: "x.shape", "input_shape=", or a tuple with a number in it.
_SHAPE_GIVEN = re.compile(
    r"\.shape\b|\binput_shape\b|\bshape\s*=\s*\(|\(\s*(?:None|\d+|[A-Za-z_]\w*)\s*,[\w\s,]*\d[\w\s,]*\)"
)
# Quoted error messages mention shapes that are not the asker's inputs.
_QUOTED = re.compile(r'"[^"\n]*"|`[^`\n]*`|“[^”\n]*”')
_ERROR_WORDS = re.compile(r"Error|Exception|expected|received|incompatible|must", re.I)
# An exception's message runs to the end of its line, or to a sentence where the asker
# speaks again ("... are incompatible. My data is X.shape = (5000, 50)").
_FROM_EXCEPTION = re.compile(
    r"\b[A-Z]\w*(?:Error|Exception)\b\s*:.*?"
    r"(?=\.\s+(?i:my|i|i'm|the\s+model|model|here|data|labels?|inputs?|[xy]\w*)\b|$)",
    re.M,
)
_RESOLVED = re.compile(
    r"\b(?:solved|fixed\s+it|figured\s+it\s+out|never\s*mind|nvm|works\s+now|working\s+now"
    r"|got\s+it\s+working|resolved|no\s+longer\s+needed)\b",
    re.I,
)


@dataclass(frozen=True)
class _Facts:
    version_named: bool
    frames: bool
    code: bool
    model_code: bool
    shapes_given: bool
    exception: str | None  # the first exception name quoted
    error: bool
    shape_error: bool
    self_contained: bool
    behaviour: bool
    setup: bool
    install: bool
    linked_code: bool


def _has_code(text: str) -> bool:
    if len(_FENCE.findall(text)) >= 2:
        return True
    for m in _CODE_LINE.finditer(text):
        line = m.group(0)
        if not _PROSE.search(re.sub(r"(['\"]).*?\1", "", line)):
            return True
    return False


def _exception(text: str) -> str | None:
    for m in _EXCEPTION.finditer(text):
        name = m.group(1)
        if not _NOT_EXCEPTIONS.search(name):
            return name
    return None


def _reports_error(text: str) -> bool:
    if any(
        not _NOT_EXCEPTIONS.search(m.group(0).rstrip(": ")) for m in _EXCEPTION_LINE.finditer(text)
    ):
        return True
    for m in _REPORT.finditer(text):
        tail = text[max(0, m.start()) : m.end() + 25]
        if not _QUANTITY.search(tail) and not _NOT_EXCEPTIONS.search(m.group(0)):
            return True
    return any(
        not _QUANTITY.search(text[m.start() - 20 : m.end() + 20])
        for m in _ERROR_PHRASES.finditer(text)
    )


def _reports_behaviour(text: str) -> bool:
    return any(
        not _WISH.search(text[max(0, m.start() - 60) : m.start()])
        for m in _BEHAVIOUR.finditer(text)
    )


def _without_error_messages(text: str) -> str:
    """``text`` less what the error message says (quotes holding error words, an exception
    line's message, traceback blocks), so that what is left about shapes is the asker's."""
    text = re.sub(
        r"```.*?(?:```|\Z)",
        lambda m: (
            ""
            if _ERROR_WORDS.search(m.group(0)) and not _MODEL_CODE.search(m.group(0))
            else m.group(0)
        ),
        text,
        flags=re.S,
    )
    text = _QUOTED.sub(lambda m: " " if _ERROR_WORDS.search(m.group(0)) else m.group(0), text)
    return _FROM_EXCEPTION.sub("", text)


def _bounded(text: str) -> str:
    """At most :data:`MAX_CHARS` of ``text``: its start (where people name versions and say
    what they did) and its end (where a traceback's exception is), so a flood costs little."""
    if len(text) <= MAX_CHARS:
        return text
    head = MAX_CHARS * 3 // 5
    return f"{text[:head]}\n{text[-(MAX_CHARS - head) :]}"


def _facts(text: str, *, has_code: bool = False) -> _Facts:
    text = _bounded(text)
    exception = _exception(text)
    shape_error = bool(_SHAPE_ERROR.search(text))
    error = _reports_error(text) or shape_error
    asker_text = _without_error_messages(text)
    return _Facts(
        version_named=any(p.search(text) for p in _VERSION) or detect_backend(text) is not None,
        frames=any(p.search(text) for p in _FRAMES),
        code=has_code or _has_code(text),
        model_code=bool(_MODEL_CODE.search(asker_text)),
        shapes_given=bool(_SHAPE_GIVEN.search(asker_text)),
        exception=exception,
        error=error,
        shape_error=shape_error,
        self_contained=bool(_SELF_CONTAINED.search(text)),
        behaviour=_reports_behaviour(text),
        setup=bool(_SETUP.search(text)),
        install=bool(_INSTALL.search(text)),
        linked_code=bool(_LINKED_CODE.search(text)),
    )


def has_code_block(formatted_body: str | None) -> bool:
    """Whether a Matrix message's HTML body holds a code block (for ``has_code``): clients
    render a fenced block as ``<pre>``, while the plain body may have lost its fences."""
    return formatted_body is not None and re.search(r"<pre\b", formatted_body, re.I) is not None


# -- the detector --------------------------------------------------------------------------------


def _version_ask() -> str:
    return f"your Keras version and backend (`{VERSION_COMMAND}`)"


def _traceback_ask(exception: str | None) -> str:
    what = f"of the {escape_markdown(exception[:80])}" if exception else ""
    return " ".join(filter(None, ("the full traceback", what, "(as text, in a code block)")))


def _code_ask() -> str:
    return "a short piece of code that shows it (the model, `compile` and `fit`)"


def _shapes_ask() -> str:
    return f"your model code and the shapes of your inputs and labels (`{SHAPES_COMMAND}`)"


def detect_missing(
    text: str, *, has_code: bool = False, has_attachment: bool = False
) -> MissingInfo:
    """What a maintainer would ask for before answering ``text`` (see the module docstring).

    ``has_code``: the message came with a code block (e.g. ``<pre>`` in its formatted body);
    code is also recognised in the text itself. ``has_attachment``: it came with a file or
    image, which a maintainer can read (most often a screenshot of the error), so only the
    version can still be asked for; a link to a gist, a paste or a notebook counts the same.
    """
    f = _facts(text, has_code=has_code)
    items: list[MissingItem] = []
    concern = f.error or f.behaviour or f.setup
    if concern and not f.version_named:
        why = (
            "an error"
            if f.error
            else "a problem"
            if f.behaviour
            else "an install or performance problem"
        )
        items.append(
            MissingItem("version", _version_ask(), f"{why} with no Keras version or backend named")
        )
    if has_attachment or f.linked_code:
        return MissingInfo(tuple(items))
    if f.error and not f.shape_error and not f.self_contained and not f.frames:
        items.append(
            MissingItem(
                "traceback",
                _traceback_ask(f.exception),
                f"{f.exception or 'an error'} reported without a traceback",
            )
        )
    if f.behaviour and not f.error and not f.install and not f.code:
        items.append(MissingItem("code", _code_ask(), "a problem described without code"))
    if f.shape_error and not f.model_code and not f.shapes_given and not f.code:
        items.append(
            MissingItem(
                "shapes", _shapes_ask(), "a shape or dtype error without model code or input shapes"
            )
        )
    return MissingInfo(tuple(items))


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def render_ask(info: MissingInfo, *, again: bool = True) -> str:
    """The ask as Markdown, one line (two with ``again``); ``""`` when nothing is missing.

    ``again``: add that the bot looks again once the asker adds it (say it only where the
    caller does re-answer follow-ups).
    """
    if not info:
        return ""
    line = f"To help, add: {_join([item.ask for item in info.items])}."
    if again:
        line += "\nReply in this thread with it and I'll look again."
    return line


# -- follow-ups ----------------------------------------------------------------------------------


def _added_text(before: str, after: str) -> str:
    """What an edit added: ``after`` less the lines it shares with ``before`` at the start
    and at the end. Linear (an edit mostly appends or inserts in one place); with edits in
    several places the unchanged lines between them stay in, which is harmless: they held
    none of what was asked for, or it would not have been asked."""
    old, new = before.splitlines(), after.splitlines()
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    return "\n".join(new[start : len(new) - end])


def fuller_text(question: str, follow_up: str, *, edit: bool = False) -> str:
    """The text to answer again: an edit replaces the question, a reply is appended to it."""
    return follow_up if edit else f"{question.rstrip()}\n\n{follow_up.strip()}"


def _supplied(kind: MissingKind, f: _Facts) -> bool:
    if kind == "version":
        return f.version_named
    if kind == "traceback":
        return f.frames
    if kind == "code":
        return f.code
    return f.model_code or f.shapes_given or f.code


def supplies_missing(
    asked: Collection[MissingKind],
    question: str,
    follow_up: str,
    *,
    edit: bool = False,
    has_code: bool = False,
) -> bool:
    """Whether ``follow_up`` supplies what the bot asked for, so it should answer again on
    :func:`fuller_text` (the caller makes sure it does so once).

    ``asked``: the kinds the bot asked for (``MissingInfo.kinds``, or as stored).
    ``follow_up``: the asker's reply in the thread, or with ``edit=True`` the edited
    question (then only the lines the edit added count). ``has_code``: the follow-up came
    with a code block. Attachments never count: the bot cannot read them, so answering again
    would give the same answer.

    Yes when a traceback, code or shapes asked for arrive (they change what the bot
    retrieves), or when everything asked for did; no when the asker says it is solved.
    """
    wanted = set(asked)
    new = _added_text(question, follow_up) if edit else follow_up
    if not wanted or not new.strip():
        return False
    f = _facts(new, has_code=has_code)
    got = {kind for kind in wanted if _supplied(kind, f)}
    if got & _SUBSTANTIVE:
        return True
    if _RESOLVED.search(new):
        return False
    return got == wanted
