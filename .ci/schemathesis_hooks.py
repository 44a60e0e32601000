"""Schemathesis hooks for .ci/schemathesis.sh.

openapi.yaml names three string formats whose rules a JSON Schema pattern cannot express; these
strategies generate values that keep them, so "schema-valid" data is valid for the gateway too:

- `gstin`: a regular GSTIN with the right mod-36 check character (see shared/design/gstn-facts.md);
- `financial-year`: `YYYY-YY` where the second year follows the first, from 2017-18 (GST began);
- `password`: the password policy (8-128 characters with a letter, a digit and a symbol, not containing
  the username). A symbol after at most three letters or digits keeps any username (4 or more letters,
  digits, `.`, `_`, `-`) out of it.
"""

import schemathesis
from hypothesis import strategies as st

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def check_character(first14: str) -> str:
    total = 0
    for i, c in enumerate(first14):
        product = ALPHABET.index(c) * (1 if i % 2 == 0 else 2)
        total += product // 36 + product % 36
    return ALPHABET[(36 - total % 36) % 36]


GSTIN_BODY = r"\A(0[1-9]|[12][0-9]|3[0-8]|9[679])[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z\Z"
gstins = st.from_regex(GSTIN_BODY, fullmatch=True).map(lambda body: body + check_character(body))

financial_years = st.integers(min_value=2017, max_value=2100).map(lambda y: f"{y}-{(y + 1) % 100:02d}")

SYMBOLS = "!#$%&*+=?@^~"
chunks = st.text(alphabet="abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=1, max_size=3)
passwords = st.tuples(
    st.lists(st.tuples(chunks, st.sampled_from(SYMBOLS)), min_size=3, max_size=30),
).map(lambda parts: ("a1" + SYMBOLS[0] + "".join(chunk + symbol for chunk, symbol in parts[0]))[:128])

schemathesis.openapi.format("gstin", gstins)
schemathesis.openapi.format("financial-year", financial_years)
schemathesis.openapi.format("password", passwords)
