"""ICD-10 codes in the two forms the NHS writes them, and the one shape check.

The same diagnosis is written two ways, and each place wants its own:

- **Data-set form**, no dot: ``F320``, ``F410``, ``F42``. The NHS Talking Therapies data
  set (IDS603 PresentingComplaints) and NHS England's own analysis code compare codes
  this way (``'F410'``, ``'F431'``, ``LIKE 'F42%'``), so facts, reports and data-set
  outputs hold it.
- **Code-system form**, with the dot after the category: ``F32.0``, ``F41.0``; a
  three-character category has no dot (``F42``). This is how WHO ICD-10 writes its codes,
  and so what ``http://hl7.org/fhir/sid/icd-10`` (a case-sensitive code system) holds:
  FHIR ``ServiceRequest.reasonCode`` carries it.

Inbound, either form is accepted and normalised to the data-set form. The NHS Data
Dictionary (Clinical Coding: ICD-10 "at least four characters ... where an undivided
three character code is used, the fourth character must be filled with 'X'") also pads
a three-character category as ``F42X``; that filler is dropped, as it is not part of the
code. The shape is a letter, two digits and up to two more characters; anything else
is not ICD-10 and the record is quarantined with the field named, never guessed at
(a stray dot elsewhere, ``F4.11``, is refused rather than stripped into ``F411``).
"""

from __future__ import annotations

import re

#: data-set form: category (letter + 2 digits) and up to two more characters, no dot
_DATASET = re.compile(r"[A-Z][0-9]{2}[0-9A-Z]{0,2}")
#: code-system form with its dot: category, dot, one or two more characters
_DOTTED = re.compile(r"([A-Z][0-9]{2})\.([0-9A-Z]{1,2})")


class NotIcd10Error(ValueError):
    """The text does not have the shape of an ICD-10 code (the message holds no value)."""


def dataset_form(code: str) -> str:
    """``code`` in the data-set form (``F32.0`` -> ``F320``, ``F42X`` -> ``F42``).

    Raises:
        NotIcd10Error: ``code`` is neither form of an ICD-10 code.
    """
    dotted = _DOTTED.fullmatch(code) if isinstance(code, str) else None
    if dotted:
        code = dotted[1] + dotted[2]
    elif not isinstance(code, str) or not _DATASET.fullmatch(code):
        raise NotIcd10Error("not an ICD-10 code (a letter, 2 digits, up to 2 more)")
    return code[:3] if code[3:] == "X" else code


def fhir_form(code: str) -> str:
    """``code`` (either form) as ``http://hl7.org/fhir/sid/icd-10`` writes it: ``F32.0``.

    Raises:
        NotIcd10Error: ``code`` is neither form of an ICD-10 code.
    """
    plain = dataset_form(code)
    return plain if len(plain) == 3 else f"{plain[:3]}.{plain[3:]}"


def is_icd10(code: str) -> bool:
    """True when ``code`` is an ICD-10 code in either form."""
    try:
        dataset_form(code)
    except NotIcd10Error:
        return False
    return True


def normalised_or_unchanged(code: str | None) -> str | None:
    """The data-set form when ``code`` is ICD-10 shaped, else ``code`` itself.

    For places that only tidy (the facts model, reports reading stored data) and leave
    refusing a malformed code to the referral checks, which name the field.
    """
    if code is None:
        return None
    try:
        return dataset_form(code)
    except NotIcd10Error:
        return code
