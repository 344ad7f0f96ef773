"""``harness fuzz``: coverage-guided fuzzing of a module's userspace interfaces.

The pieces, host side: ``decl`` (the ``[fuzz]`` declarations), ``elfko`` (the
instrumented .ko's sections and kcov call sites), ``corpus`` (inputs kept in the
project), ``tally`` (what a fuzz guest's events say), ``boot`` (the one place that
gets guests: the fuzzing guest, and ``harness run`` for confirmations), ``minimize``,
``repro`` (the step script of a finding), ``confirm``, ``lines`` (PCs to the module's
source lines), ``report`` (fuzz.json, index.html) and ``loop`` (the command).
The guest side is ``harness/guest/fuzzer.py`` with ``fuzzexec.py`` and ``fuzzmut.py``.
"""
