"""Reaching a verdict: kmsg records, the expected trail, splats, the judge, and the reporters. No I/O."""
