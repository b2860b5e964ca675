"""`classify-gateway demo`: emulator + gateway on free ports, one streamed classification.

It uses the generated Python stubs exactly as a caller would, prints each page as
it streams in, then stops both processes. No network and no API key are needed.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import grpc
from classify_gateway_proto.v1 import classify_service_pb2 as pb
from classify_gateway_proto.v1 import classify_service_pb2_grpc as pb_grpc

TAXONOMY = [  # plain-language classes, as a newcomer writes them
    ("Dance", ["people dancing"]),
    ("Cooking", ["someone cooking food", "preparing a meal in a kitchen"]),
    ("Sports", ["people playing sports"]),
    ("News", ["a news broadcast"]),
    ("Travel", ["travel vlog", "tourists sightseeing in a city"]),
    ("Music", ["live music performance"]),
    ("Nature", ["wild animals in nature", "the beach and the ocean"]),
    ("Technology", ["a gadget review", "computer programming"]),
]


def _fmt_clip(cls: pb.ClassResult) -> str:
    if not cls.clips:
        return "-"
    best = max(cls.clips, key=lambda c: c.score)
    span = f"{best.start:6.1f}-{best.end:6.1f}s"
    return f"{span} {best.option:<13} {best.score:5.1f} “{best.prompt}”"


def print_page(page: pb.ClassifyResponse, names: dict[str, str], out: Any = print) -> None:
    out("")
    out(f"── page {page.page_number} " + "─" * 92)
    out(f"{'video':<34} {'class':<11} {'score':>6} {'ratio':>6}  best clip")
    for video in page.data:
        label = names.get(video.video_id, video.video_id)
        for i, cls in enumerate(video.classes[:3]):  # the three best classes
            shown = label if i == 0 else ""
            out(
                f"{shown[:34]:<34} {cls.name:<11} {cls.score:6.2f} "
                f"{cls.duration_ratio:6.2f}  {_fmt_clip(cls)}"
            )


def run_client(gateway_addr: str, names: dict[str, str], page_limit: int) -> int:
    """Stream one classification of the first 24 videos of `names` (id -> filename)."""
    request = pb.ClassifyRequest(
        video_ids=sorted(names)[:24],
        options=[
            pb.SEARCH_OPTION_VISUAL,
            pb.SEARCH_OPTION_CONVERSATION,
            pb.SEARCH_OPTION_TEXT_IN_VIDEO,
        ],
        classes=[pb.ClassDefinition(name=n, prompts=p) for n, p in TAXONOMY],
        include_clips=True,
        show_detailed_score=True,
        page_limit=page_limit,
        threshold=pb.Threshold(min_video_score=30, min_clip_score=30, min_duration_ratio=0.05),
    )
    print(
        f"Classifying {len(request.video_ids)} demo videos against {len(TAXONOMY)} classes "
        f"through the gateway at {gateway_addr} ..."
    )
    started = time.monotonic()
    videos = 0
    with grpc.insecure_channel(gateway_addr) as channel:
        stub = pb_grpc.ClassifyServiceStub(channel)
        try:
            for page in stub.Classify(request, timeout=60):
                if page.page_number == 1:
                    print(f"Scoring: {pb.Scoring.Name(page.scoring)}")
                print_page(page, names)
                videos += len(page.data)
                total = page.page_info.total_results
                print(
                    f"   ▸ page {page.page_number} received after "
                    f"{time.monotonic() - started:5.2f}s · "
                    f"{videos}/{total} videos · next page token: "
                    f"{page.page_info.next_page_token[:12] or '(none: last page)'}"
                )
        except grpc.RpcError as err:
            print(f"classification failed: {err.code().name}: {err.details()}")
            return 1
    print(f"\nDone: {videos} videos classified in {time.monotonic() - started:.2f}s.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="classify-gateway demo", description=__doc__)
    parser.add_argument("--page-limit", type=int, default=6, help="videos per page (default 6)")
    parser.add_argument(
        "--upstream-latency-ms",
        type=int,
        default=400,
        help="latency the emulator adds to each page, to make the streaming visible (default 400)",
    )
    parser.add_argument(
        "--upstream-api",
        choices=("v1.2", "v1.3"),
        default="v1.2",
        help="the gateway's backend: v1.2 (the upstream's classify, default) or v1.3 "
        "(classify's numbers computed by the gateway from Marengo embeddings)",
    )
    ns = parser.parse_args(argv)
    try:
        # The emulator needs its extra (starlette, uvicorn); the process code needs nothing.
        from classify_emulator import serving  # noqa: F401
        from classify_emulator.stack import catalogue, running_stack
    except ImportError:  # the container installs the gateway without the emulator
        print("classify-gateway demo needs the emulator: install classify-gateway[emulator].")
        return 2

    print(
        "Starting the upstream emulator and the gateway (backend "
        f"{ns.upstream_api}) on free loopback ports ..."
    )
    latency = {"latency_ms": ns.upstream_latency_ms}
    backend = {"upstream_api": ns.upstream_api}
    with running_stack(backend, emulator_settings=latency) as stack:
        env = stack.env
        names = catalogue(env["CLASSIFY_EMULATOR_URL"], env["CLASSIFY_EMULATOR_API_KEY"])
        code = run_client(env["CLASSIFY_GATEWAY_ADDR"], names, ns.page_limit)
        print("Stopping the gateway and the emulator ...")
    print("Stopped cleanly.")
    return code
