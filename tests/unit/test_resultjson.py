"""result.json has one serializer (harness/resultjson.py): whatever a run can hold reads back equal,
and every recorded result.json of tests/data reads and writes again."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from harness import resultjson
from harness.contract import KINDS, StepReport
from harness.model import KmsgRecord, Phase, RunResult, Verdict
from harness.outcomes import Case, CaseStatus, ComplaintReport, Frame, SourceExcerpt, SplatReport, TrailRecord

from conftest import DATA

text = st.text(max_size=30)
small = st.integers(min_value=0, max_value=10 ** 9)
opt_text = st.none() | text
frames = st.builds(Frame, text, small, small, opt_text, st.booleans(), st.sampled_from(["rip", "stack"]), small,
                   opt_text, st.none() | small, st.lists(st.tuples(text, text, small), max_size=2).map(tuple))
splats = st.builds(SplatReport, text, text, text, st.none() | small, st.lists(frames, max_size=3).map(tuple),
                   st.lists(text, max_size=2).map(tuple),
                   st.none() | st.builds(SourceExcerpt, text, small, small, st.lists(text, max_size=3).map(tuple)))
steps = st.builds(StepReport, text, st.lists(text, max_size=3).map(tuple), st.none() | small, text, text,
                  st.floats(0, 1e6), st.booleans(), st.booleans(), text, st.none() | small, st.none() | small, text,
                  st.none() | small, st.sampled_from(KINDS), st.integers(0, 255))
results = st.builds(
    RunResult, kernel=text, verdict=st.sampled_from(list(Verdict)), reason=text, harness_version=text,
    started_at=text, seconds=st.floats(0, 1e6), kernel_release=opt_text,
    phases=st.lists(st.builds(Phase, text, st.floats(0, 1e6), st.booleans(), text), max_size=3).map(tuple),
    steps=st.lists(steps, max_size=3).map(tuple),
    kmsg=st.lists(st.builds(KmsgRecord, st.integers(0, 7), st.integers(0, 23), small, small, text, text, opt_text,
                            st.lists(st.tuples(text, text), max_size=2, unique_by=lambda t: t[0]).map(tuple)),
                  max_size=3).map(tuple),
    trail=st.lists(st.builds(TrailRecord, small, st.integers(0, 7), small, text), max_size=3).map(tuple),
    splats=st.lists(splats, max_size=2).map(tuple), boot_splats=st.lists(splats, max_size=1).map(tuple),
    kunit=st.lists(st.builds(Case, text, text, st.sampled_from(list(CaseStatus)), text,
                             st.lists(text, max_size=2).map(tuple)), max_size=3).map(tuple),
    complaints=st.lists(st.builds(ComplaintReport, small, st.integers(0, 7), text, text, text, opt_text),
                        max_size=2).map(tuple),
    kernel_params=st.lists(text, max_size=2).map(tuple), kmsg_dropped=small)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(results)
def test_a_result_reads_back_equal_after_json(r):
    again = resultjson.load(json.loads(json.dumps(resultjson.dump(r))))
    assert again == r


def test_every_recorded_result_reads_and_writes_again():
    for path in sorted(DATA.glob("*/result.json")):
        d = json.loads(path.read_text())
        r = resultjson.load(d)
        assert r.verdict.value == d["verdict"], path
        assert resultjson.load(json.loads(json.dumps(resultjson.dump(r)))) == r, path
