"""Text clean-up for fetched sentence data: SentEval's post-processing and the book pipeline.

Written for this project (no code of SentEval or of a tokeniser library is used); the rules
reproduce published behaviour, and :mod:`.fetch` checks the outputs by SHA-256.

SentEval post-processing (Conneau & Kiela, 2018; their ``get_transfer_data.bash``)
    * :func:`show_nonprinting` -- what ``cat -v`` writes: a byte >= 128 becomes ``M-``
      followed by the rendering of ``byte - 128``; a control byte other than tab and newline
      becomes ``^`` + ``chr(byte + 64)``; DEL becomes ``^?``. (MR and SUBJ carry such
      renderings, e.g. ``M-i`` for a Latin-1 e-acute.)
    * :func:`ptb_tokenize_line` -- the Penn Treebank tokenisation rules of R. MacIntyre's
      1995 script that SentEval applies to MR, CR, SUBJ and MPQA: directional double quotes
      (an opening one becomes two backquotes, any other two apostrophes), ``...`` and
      ``, ; : @ # $ % &`` set apart, only a sentence-final period split off, ``? !`` and
      brackets set apart, ``--`` set apart, clitics ('s 'm 'd 'll 're 've n't) split, a few
      fused forms split (cannot, gonna, gotta, ...), runs of spaces squeezed, leading spaces
      dropped (the line keeps one trailing space).
    * :func:`strip_quotes_trec` -- TREC's clean-up: every backquote and apostrophe deleted.

Books (Project Gutenberg texts)
    :func:`gutenberg_body` keeps what lies between the ``*** START OF ... PROJECT GUTENBERG
    EBOOK ... ***`` and ``*** END OF ...`` lines and drops leading credit paragraphs
    ("Produced by ...") and ``[Illustration]`` paragraphs; :func:`paragraphs` unwraps
    blank-line-separated paragraphs into single lines; :func:`split_sentences` is this
    project's rule-based splitter: a sentence ends at ``.``, ``?`` or ``!`` (runs such as
    ``?!`` or ``...`` included, with any closing quotes or brackets after them) when
    whitespace and an upper-case letter, a digit or an opening quote/bracket follow, except
    after a known abbreviation (Mr., Dr., St., ...) or a single capital letter (initials such
    as J. R.; also "I.", which the reference corpus never splits after).
"""

from __future__ import annotations

import re

__all__ = ["show_nonprinting", "ptb_tokenize_line", "ptb_tokenize", "strip_quotes_trec", "gutenberg_body",
           "paragraphs", "split_sentences", "book_text", "GutenbergFormatError"]


# ---- SentEval -------------------------------------------------------------------------
def _render_byte(b: int) -> str:
    if 32 <= b < 127:
        return chr(b)
    if b == 127:
        return "^?"
    if b >= 128:
        return "M-" + _render_byte_high(b - 128)
    if b in (9, 10):
        return chr(b)
    return "^" + chr(b + 64)


def _render_byte_high(c: int) -> str:
    # after "M-" tab and newline are not exempt: they render as ^I and ^J
    if 32 <= c < 127:
        return chr(c)
    if c == 127:
        return "^?"
    return "^" + chr(c + 64)


_NONPRINTING = [_render_byte(b) for b in range(256)]


def show_nonprinting(raw: bytes) -> str:
    """``cat -v``: bytes to printable ASCII (tabs and newlines kept); see the module docstring."""
    return "".join(_NONPRINTING[b] for b in raw)


_PTB_RULES: list[tuple[re.Pattern, str]] = [(re.compile(p), r) for p, r in [
    (r'^"', "`` "),                                  # an opening double quote at the start
    (r'([ (\[{<])"', r"\1 `` "),                     # ... or after a space or an opening bracket
    (r"\.\.\.", " ... "),
    (r"[,;:@#$%&]", r" \g<0> "),
    (r"([^.])([.])([\])}>\"']*)[ \t]*$", r"\1 \2\3 "),  # the final period only
    (r"[?!]", r" \g<0> "),
    (r"[\]\[(){}<>]", r" \g<0> "),
    (r"--", " -- "),
]]
_PTB_CLITICS: list[tuple[re.Pattern, str]] = [(re.compile(p), r) for p, r in [
    (r'"', " '' "),                                  # every remaining double quote closes
    (r"([^'])' ", r"\1 ' "),                         # possessive or closing single quote
    (r"'([sSmMdD]) ", r" '\1 "),
    (r"'ll ", " 'll "), (r"'re ", " 're "), (r"'ve ", " 've "), (r"n't ", " n't "),
    (r"'LL ", " 'LL "), (r"'RE ", " 'RE "), (r"'VE ", " 'VE "), (r"N'T ", " N'T "),
    (r" ([Cc])annot ", r" \1an not "), (r" ([Dd])'ye ", r" \1' ye "), (r" ([Gg])imme ", r" \1im me "),
    (r" ([Gg])onna ", r" \1on na "), (r" ([Gg])otta ", r" \1ot ta "), (r" ([Ll])emme ", r" \1em me "),
    (r" ([Mm])ore'n ", r" \1ore 'n "), (r" '([Tt])is ", r" '\1 is "), (r" '([Tt])was ", r" '\1 was "),
    (r" ([Ww])anna ", r" \1an na "),
    (r"  +", " "),
    (r"^ +", ""),
]]


def ptb_tokenize_line(line: str) -> str:
    """One line through the Penn Treebank rules (see the module docstring); no newline in ``line``."""
    for pat, rep in _PTB_RULES:
        line = pat.sub(rep, line)
    line = " " + line + " "                          # pad, so word rules can anchor on spaces
    for pat, rep in _PTB_CLITICS:
        line = pat.sub(rep, line)
    return line


def ptb_tokenize(raw: bytes) -> bytes:
    """SentEval's ``cat -v FILE | sed -f tokenizer.sed``: every line rendered and tokenised.

    Line structure is kept: a final line without a newline stays without one.
    """
    text = show_nonprinting(raw)
    lines = text.split("\n")
    out = [ptb_tokenize_line(x) for x in lines[:-1]]
    if lines[-1]:
        out.append(ptb_tokenize_line(lines[-1]))
        return "\n".join(out).encode("ascii")
    return ("\n".join(out) + "\n").encode("ascii") if out else b""


def strip_quotes_trec(raw: bytes) -> bytes:
    """TREC's clean-up in SentEval: delete every backquote and apostrophe byte."""
    return raw.replace(b"`", b"").replace(b"'", b"")


# ---- Project Gutenberg books ----------------------------------------------------------
class GutenbergFormatError(ValueError):
    """The text lacks the Project Gutenberg start/end markers (not a PG plain text)."""


_START = re.compile(r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK\b.*$", re.I | re.M)
_END = re.compile(r"^\s*\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK\b.*$", re.I | re.M)
_CREDIT = re.compile(r"^(?:produced by|e-?text prepared by|this e-?(?:book|text) was|transcribed (?:from|by)|"
                     r"prepared by|updated editions|proofread by|\[?note:? project gutenberg)", re.I)
_ILLUSTRATION = re.compile(r"^\[(?:Illustration|Frontispiece)[^\]]*\]?$", re.I)


def gutenberg_body(text: str) -> str:
    """The book between the PG start and end marker lines, leading credit paragraphs removed.

    Raises :class:`GutenbergFormatError` when a marker is missing.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    start = _START.search(text)
    if start is None:
        raise GutenbergFormatError("no '*** START OF THE PROJECT GUTENBERG EBOOK ... ***' line")
    end = _END.search(text, start.end())
    if end is None:
        raise GutenbergFormatError("no '*** END OF THE PROJECT GUTENBERG EBOOK ... ***' line")
    return text[start.end():end.start()]


def paragraphs(body: str) -> list[str]:
    """Blank-line-separated paragraphs, each unwrapped into one line of single spaces;
    leading PG credit paragraphs and illustration captions are dropped."""
    out = []
    for block in re.split(r"\n[ \t\u00a0]*\n", body):
        para = " ".join(block.split())
        if not para or _ILLUSTRATION.match(para):
            continue
        if not out and _CREDIT.match(para):
            continue
        out.append(para)
    return out


_ABBREVIATIONS = frozenset("""mr mrs ms messrs mme mlle mons dr st jr sr prof rev hon capt col gen lt sgt maj
    cpl gov sen rep esq co vol vols no nos ch chap fig p pp viz vs etc i.e e.g cf ibid al ft mt""".split())
_BOUNDARY = re.compile(r"""([.?!]+["'\u201d\u2019)\]_]*)(\s+)(?=["'\u201c\u2018(\[]*[A-Z0-9\u00c0-\u00de])""")
_WORD_BEFORE = re.compile(r"([\w.']+)$")


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one unwrapped paragraph (the rules are in the module docstring)."""
    out, start = [], 0
    for m in _BOUNDARY.finditer(paragraph):
        if m.group(1)[0] == ".":
            w = _WORD_BEFORE.search(paragraph, 0, m.start(1))
            word = w.group(1).strip(".'") if w else ""
            if word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper()):
                continue
        end = m.end(1)
        sent = paragraph[start:end].strip()
        if sent:
            out.append(sent)
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        out.append(tail)
    return out


def book_text(raw_text: str) -> tuple[str, dict[str, int]]:
    """A PG plain text -> the corpus format (one sentence per line, a blank line between
    paragraphs, trailing newline) and its counts (paragraphs, sentences, words, chars)."""
    paras = [split_sentences(p) for p in paragraphs(gutenberg_body(raw_text))]
    paras = [p for p in paras if p]
    text = "\n\n".join("\n".join(p) for p in paras) + "\n"
    counts = {"paragraphs": len(paras), "sentences": sum(len(p) for p in paras),
              "words": sum(len(s.split()) for p in paras for s in p), "chars": len(text)}
    return text, counts
