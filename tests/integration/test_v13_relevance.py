"""Relevance through the v1.3 backend: the everyday classes, default thresholds.

The same case files and measure as tests/emulator/test_relevance.py (recall over the
expected videos, precision over the judged listings), but every classification goes
through a gateway with CLASSIFY_GATEWAY_UPSTREAM_API=v1.3 against the emulator's /v1.3
embeddings, so the calibration (docs/design.md, "v1.3: calibration") is what is
measured. The calibration was chosen on the tuned and dev sets, its video floor moved
with the blind dev2 and dev3 sets. Held-out sets 1-3 became development sets in round 4,
4 and 5 in round 5, 6 and 7 in round 6, and their misses are printed; the still blind
held-out sets (`BLIND`: 8 and 9) print counts only, their classes unread. Every set runs
in every suite run and asserts its target or floor, as through v1.2: a change to the
embeddings or the calibration that costs the blind sets listings fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
from classify_gateway_proto.v1 import classify_service_pb2 as pb

from classify_emulator.corpus import Corpus
from tests.emulator.test_relevance import (
    BLIND,
    CASE_FILES,
    MIN_PRECISION,
    MIN_RECALL,
    batches,
    load_cases,
    score,
    titles,
)
from tests.support.gateway import collect, running_gateway

# name -> (minimum recall, minimum precision); the targets when not listed. The tuned
# and dev sets, and held-out sets 1-3 (development sets since round 4: tuned on, run
# always), meet both through v1.3 since round 4 (docs/emulator.md, "Generalisation").
# So do held-out sets 4 and 5 (round 4's blind sets, development sets since round 5)
# since round 5, and held-out sets 6 and 7 (round 5's blind sets, development sets since
# round 6) since round 6. Held-out sets 8 and 9 (round 6's blind sets) have floors a
# little below their blind measure when round 6 was final.
TARGETS: dict[str, tuple[float, float]] = {
    "heldout8": (0.94, 0.76),
    "heldout9": (0.92, 0.77),
}


@pytest.mark.parametrize("name", list(CASE_FILES))
async def test_everyday_classes_through_v13(emulator: Any, name: str) -> None:
    corpus = Corpus.load(None)
    title_of = titles(corpus)
    cases = load_cases(name)
    listed: dict[str, set[str]] = {c.name: set() for c in cases}
    async with running_gateway(
        emulator.base_url + "/v1.3", emulator.api_key, upstream_api="v1.3"
    ) as gw:
        for index_id in corpus.indexes:
            for batch in batches(cases):
                request = pb.ClassifyRequest(
                    index_id=index_id,
                    options=[pb.SEARCH_OPTION_VISUAL, pb.SEARCH_OPTION_CONVERSATION],
                    classes=[pb.ClassDefinition(name=c.name, prompts=c.prompts) for c in batch],
                    page_limit=50,
                )
                pages, err = await collect(gw.stub.Classify(request, timeout=120))
                assert err is None, err
                assert all(p.scoring == pb.SCORING_EMBEDDINGS_V1_3 for p in pages)
                for page in pages:
                    for video in page.data:
                        for cls in video.classes:
                            listed[cls.name].add(title_of[video.video_id])
    tally, report = score(cases, listed)
    print(
        f"\n{name} set through v1.3: recall {tally.recall:.3f} ({tally.hits}/{tally.expected}), "
        f"precision {tally.precision:.3f} ({tally.hits}/{tally.judged_listed})"
    )
    if name in BLIND:
        report = [f"  ({len(report)} classes not exact; not shown: the set stays blind)"]
    print("\n".join(report) or "  every class exact")
    min_recall, min_precision = TARGETS.get(name, (MIN_RECALL, MIN_PRECISION))
    assert tally.recall >= min_recall, "\n".join(report)
    assert tally.precision >= min_precision, "\n".join(report)
