"""One scenario per module; each is `async def run(stage) -> dict` and bounded in time.

cpu_per_page    CPU per page of each process, whole-path pages per CPU-second (closed loop)
added_latency   p50/p99 added per 1-page call at a fixed offered load (open loop)
slow_consumer   a caller that works 200 ms on each page: streaming vs paging by hand
first_page      time from the upstream's first page to the caller
memory          gateway RSS per open stream at 1,000 / 5,000 / 10,000 streams
translation     JSON -> protobuf for one page, hand-written vs json_format.ParseDict
ghz             an outside load generator against the gateway
profile         where the gateway's CPU goes per page (pyinstrument)
"""
