import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import redis.asyncio

from ranking_gateway.personalization.event_log import EventLogUnavailable
from ranking_gateway.personalization.jsonl_log import EventLogLocked, JsonlEventLog, read_records, segment_paths
from ranking_gateway.personalization.redis_stream_log import RedisStreamEventLog


def rec(i: int, user: str = "u1") -> dict:
    return {"kind": "event", "user_id": user, "doc_id": f"d{i}", "type": "click", "ts": float(i)}


def test_an_acknowledged_append_is_already_on_disk_and_concurrent_appends_share_fsyncs(tmp_path):
    async def main():
        log = JsonlEventLog(tmp_path)
        seen_on_disk = []

        async def one(i):
            await log.append(rec(i))
            # after the acknowledgement the record is in the file (a fresh read, not our buffer)
            seen_on_disk.append(any(r["doc_id"] == f"d{i}" for r in read_records(tmp_path)))

        await asyncio.gather(*(one(i) for i in range(200)))
        await log.close()
        return log, seen_on_disk

    log, seen_on_disk = asyncio.run(main())
    assert seen_on_disk == [True] * 200
    assert log.appended == 200
    assert log.commits < 200  # group commit: one fdatasync covered several appends
    assert sorted(r["doc_id"] for r in read_records(tmp_path)) == sorted(f"d{i}" for i in range(200))


def test_rotation_keeps_order_across_segments_and_reopening_appends_to_the_last(tmp_path):
    async def main(start, n):
        log = JsonlEventLog(tmp_path, max_bytes=400)
        for i in range(start, start + n):
            await log.append(rec(i))
        await log.close()

    asyncio.run(main(0, 20))
    first = segment_paths(tmp_path)
    assert len(first) > 3 and all(p.stat().st_size <= 400 for p in first)
    asyncio.run(main(20, 5))
    assert [r["ts"] for r in read_records(tmp_path)] == [float(i) for i in range(25)]


def test_a_torn_last_line_is_dropped_on_reopen(tmp_path):
    async def main(i):
        log = JsonlEventLog(tmp_path)
        await log.append(rec(i))
        await log.close()

    asyncio.run(main(0))
    segment = segment_paths(tmp_path)[-1]
    with segment.open("ab") as fh:
        fh.write(b'{"kind":"event","user_id":"u1","doc')  # a crash mid-write
    asyncio.run(main(1))
    assert segment.read_bytes().count(b"\n") == 2
    assert [r["doc_id"] for r in read_records(tmp_path)] == ["d0", "d1"]


def test_a_second_process_cannot_open_the_same_directory(tmp_path):
    log = JsonlEventLog(tmp_path)
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from ranking_gateway.personalization.jsonl_log import JsonlEventLog;"
         f"JsonlEventLog({str(tmp_path)!r})"],
        capture_output=True, text=True,
    )
    assert probe.returncode != 0 and "EventLogLocked" in probe.stderr
    asyncio.run(log.close())
    JsonlEventLog(tmp_path)  # free again once closed
    with pytest.raises(EventLogLocked):
        JsonlEventLog(tmp_path)  # flock is per open file description: same process too


def test_erase_user_rewrites_every_segment_and_the_live_file_keeps_working(tmp_path):
    async def main():
        log = JsonlEventLog(tmp_path, max_bytes=300)
        for i in range(12):
            await log.append(rec(i, user="alice" if i % 2 else "bob"))
        await log.append({"kind": "impression", "user_id": "alice", "request_id": "r", "doc_ids": ["d1"]}, wait=False)
        removed = await log.erase_user("alice")
        await log.append(rec(99, user="bob"))
        await log.close()
        return removed

    assert asyncio.run(main()) == 7
    records = list(read_records(tmp_path))
    assert [r["user_id"] for r in records] == ["bob"] * 7
    assert records[-1]["doc_id"] == "d99"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_write_failure_is_not_acknowledged(tmp_path):
    # a real EFBIG: the file size limit is lower than what the batch needs
    script = textwrap.dedent(f"""
        import asyncio, resource, signal
        from ranking_gateway.personalization.event_log import EventLogUnavailable
        from ranking_gateway.personalization.jsonl_log import JsonlEventLog
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        async def main():
            log = JsonlEventLog({str(tmp_path)!r})
            await log.append({{"user_id": "u", "n": 1}})
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
            try:
                await log.append({{"user_id": "u", "pad": "x" * 200}})
            except EventLogUnavailable as exc:
                print("refused:", exc)
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            await log.append({{"user_id": "u", "n": 2}})
            await log.close()
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout
    assert [r.get("n") for r in read_records(tmp_path)] == [1, 2]  # no partial line left behind


def test_every_acknowledged_record_survives_sigkill(tmp_path):
    script = textwrap.dedent(f"""
        import asyncio, sys
        from ranking_gateway.personalization.jsonl_log import JsonlEventLog
        async def main():
            log = JsonlEventLog({str(tmp_path)!r})
            async def one(i):
                await log.append({{"user_id": "u", "i": i}})
                sys.stdout.write(f"ack {{i}}\\n"); sys.stdout.flush()
            i = 0
            while True:
                await asyncio.gather(*(one(i + j) for j in range(8)))
                i += 8
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    acked = []
    for line in proc.stdout:
        acked.append(int(line.split()[1]))
        if len(acked) >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    on_disk = {r["i"] for r in read_records(tmp_path)}
    assert set(acked) <= on_disk


def test_redis_stream_append_read_erase(redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(redis_url)
        log = RedisStreamEventLog(client)
        await asyncio.gather(*(log.append(rec(i, user="alice" if i % 3 == 0 else "bob")) for i in range(30)))
        before = [r async for r in log.records(batch=7)]
        removed = await log.erase_user("alice")
        after = [r async for r in log.records()]
        durability = await log.describe()
        await client.aclose()
        return before, removed, after, durability

    before, removed, after, durability = asyncio.run(main())
    assert sorted(r["ts"] for r in before) == [float(i) for i in range(30)]
    assert removed == 10
    assert {r["user_id"] for r in after} == {"bob"} and len(after) == 20
    assert "appendonly=no" in durability


def test_redis_stream_retention_keeps_the_newest_entries(redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(redis_url)
        log = RedisStreamEventLog(client, stream="rg:events:retained", max_len=5)
        for i in range(12):
            await log.append(rec(i))
        kept = [r async for r in log.records()]
        await client.aclose()
        return kept

    assert [r["ts"] for r in asyncio.run(main())] == [7.0, 8.0, 9.0, 10.0, 11.0]
    with pytest.raises(ValueError):
        RedisStreamEventLog(object(), max_len=0)


def test_redis_down_is_event_log_unavailable(dead_redis_url):
    async def main():
        client = redis.asyncio.Redis.from_url(dead_redis_url, socket_connect_timeout=0.5)
        try:
            with pytest.raises(EventLogUnavailable):
                await RedisStreamEventLog(client).append(rec(1))
            with pytest.raises(EventLogUnavailable):
                await RedisStreamEventLog(client).erase_user("u1")
        finally:
            await client.aclose()

    asyncio.run(main())
