#!/usr/bin/env python3
"""Chaos benchmark (not a test): one worker process against a FAKE RunPod queue (RunPod's servers
cannot run here) that injects seeded faults, over loopback and the wall clock. Run it for our echo
worker and for the official SDK's echo worker on the same seed to compare (docs/performance.md, "Reliability under faults"):

    cargo build --release --example echo
    scripts/chaos-bench.py target/release/examples/echo
    scripts/chaos-bench.py .venv/sdk/bin/python tests/sdk/echo_handler.py
    scripts/chaos-bench.py --shutdown target/release/examples/echo     # slow job-done at SIGTERM

Faults on takes: 5xx, 429, connection resets, truncated and garbage answers, slow answers, jobs
served again (while running or after their result), poison jobs (input nested 200 levels deep,
ids that are lists); on posts: 5xx, 429, resets, slow answers; and a network cut (every
connection dropped, new ones refused) from 15 s to 25 s. Reports the jobs whose result was
accepted, the jobs lost, the jobs served again while running that got two results (run twice),
wrong results, and whether the worker was still taking jobs at the end.

--shutdown: four jobs, job-done answering after 12 s, SIGTERM 2 s after the first take; reports
the exit time and how many of the four results arrived.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import struct
import sys
import time

POD = "worker-7f3"


class Queue:
    def __init__(self, seed, jobs, shutdown_mode):
        self.rng = random.Random(seed)
        self.shutdown_mode = shutdown_mode
        self.queue = list(jobs)
        self.expected = {job["id"]: job["input"] for job in jobs if isinstance(job["id"], str)}
        self.handed = []  # (id, job) served, for serving again
        self.served_again_running = set()
        self.accepted = {}  # id -> [bodies]
        self.takes = []  # times
        self.first_take = None
        self.faults = {}

    def fault(self, name):
        self.faults[name] = self.faults.get(name, 0) + 1

    def take(self, batch_size):
        r = self.rng.random()
        if self.shutdown_mode:
            r = 1.0
        if r < 0.05:
            self.fault("take 5xx")
            return ("status", 500 + self.rng.randrange(4))
        if r < 0.07:
            self.fault("take 429")
            return ("status", 429)
        if r < 0.10:
            self.fault("take reset")
            return ("reset",)
        if r < 0.12:
            self.fault("take garbage")
            return ("body", b'{"id": "x", "in', 0)
        jobs = []
        while len(jobs) < batch_size:
            if self.handed and self.rng.random() < 0.06 and not self.shutdown_mode:
                job = self.rng.choice(self.handed[-8:])
                self.fault("served again")
                if isinstance(job["id"], str) and job["id"] not in self.accepted:
                    self.served_again_running.add(job["id"])
            elif self.queue:
                job = self.queue.pop(0)
            else:
                break
            jobs.append(job)
        if not jobs:
            return ("empty",)
        body = json.dumps(jobs if batch_size > 1 else jobs[0]).encode()
        if self.rng.random() < 0.05 and not self.shutdown_mode:
            self.fault("take truncated")
            self.queue[0:0] = jobs  # lost in transit: served again later
            return ("truncate", body)
        self.handed.extend(jobs)
        delay = 0 if self.shutdown_mode else self.rng.random() * 0.5
        return ("body", body, delay)

    def post(self):
        if self.shutdown_mode:
            return ("status", 200, 12.0)
        r = self.rng.random()
        if r < 0.08:
            self.fault("post 5xx")
            return ("status", 500 + self.rng.randrange(4), 0)
        if r < 0.10:
            self.fault("post 429")
            return ("status", 429, 0)
        if r < 0.14:
            self.fault("post reset")
            return ("reset",)
        return ("status", 200, self.rng.random() * 0.5)


def jobs(n, rng, list_ids=True):
    out = []
    for i in range(n):
        job = {"id": f"job-{i}", "input": {"n": i, "text": "é✓"}}
        if i % 50 == 13:
            nested = 1
            for _ in range(200):
                nested = [nested]
            job["input"] = nested
        out.append(job)
        if i % 50 == 41 and list_ids:
            out.append({"id": [f"list-{i}"], "input": 1})
    return out


async def read_request(reader):
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    length = 0
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b""):
            break
        name, _, value = header.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return method, path, body


def head(status, length, content_type="application/json"):
    ct = f"Content-Type: {content_type}\r\n" if length else ""
    return f"HTTP/1.1 {status} X\r\n{ct}Content-Length: {length}\r\n\r\n".encode()


def reset(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Server:
    def __init__(self, queue):
        self.queue = queue
        self.writers = set()
        self.server = None
        self.port = None

    async def start(self, port=0):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self, seconds):
        self.server.close()
        for writer in list(self.writers):
            reset(writer)
        await asyncio.sleep(seconds)
        await self.start(self.port)

    async def handle(self, reader, writer):
        self.writers.add(writer)
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    return
                if not await self.answer(request, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.writers.discard(writer)

    async def answer(self, request, writer):
        _, path, body = request
        q = self.queue
        if "/job-take" in path:
            now = time.monotonic()
            q.takes.append(now)
            q.first_take = q.first_take or now
            batch = int(path.split("batch_size=")[1].split("&")[0]) if "batch_size=" in path else 1
            action = q.take(batch)
        elif "/job-done/" in path or "/job-stream/" in path:
            action = q.post()
            if action[0] == "status" and action[1] == 200:
                job_id = path.split(f"/{POD}/")[1].split("?")[0]
                await asyncio.sleep(action[2])
                q.accepted.setdefault(job_id, []).append(body)
                writer.write(head(200, 0))
                await writer.drain()
                return True
        elif "/job-stop/" in path:
            await asyncio.sleep(1)
            action = ("status", 204, 0)
        else:
            action = ("status", 200, 0)
        kind = action[0]
        if kind == "reset":
            reset(writer)
            return False
        if kind == "empty":
            await asyncio.sleep(1)
            writer.write(head(204, 0))
        elif kind == "status":
            await asyncio.sleep(action[2] if len(action) > 2 else 0)
            writer.write(head(action[1], 0))
        elif kind == "truncate":
            writer.write(head(200, len(action[1])) + action[1][: len(action[1]) // 2])
            await writer.drain()
            writer.close()
            return False
        else:
            await asyncio.sleep(action[2])
            writer.write(head(200, len(action[1])) + action[1])
        await writer.drain()
        return True


def env_for(port):
    base = f"http://127.0.0.1:{port}/v2/ep-test"
    q = "?gpu=NVIDIA+GeForce+RTX+4090"
    return {
        "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID{q}",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID{q}",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID{q}",
        "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID{q}",
        "RUNPOD_AI_API_KEY": "rpa_TESTKEY",
        "RUNPOD_POD_ID": POD,
        "RUNPOD_POD_HOSTNAME": f"{POD}-host",
        "RUNPOD_ENDPOINT_ID": "ep-test",
    }


async def run(args):
    rng = random.Random(args.seed)
    job_list = jobs(4 if args.shutdown else args.jobs, rng, not args.no_list_ids)
    queue = Queue(args.seed, job_list, args.shutdown)
    server = Server(queue)
    await server.start()
    env = dict(os.environ, **env_for(server.port))
    env["RUNPOD_MAX_CONCURRENCY"] = env["SDK_CONCURRENCY"] = str(4 if args.shutdown else args.concurrency)
    started = time.monotonic()
    worker = await asyncio.create_subprocess_exec(
        *args.worker, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    if args.shutdown:
        while queue.first_take is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(2)
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = await worker.wait()
        exited = time.monotonic() - signalled
        print(json.dumps({"worker": " ".join(args.worker), "exit_after_sigterm_s": round(exited, 2),
                          "exit_code": code, "results_arrived": len(queue.accepted), "of": 4}))
        return
    if not args.no_cut:
        asyncio.get_running_loop().call_later(15, lambda: asyncio.ensure_future(server.cut(10)))
    deadline = started + args.limit
    while time.monotonic() < deadline and worker.returncode is None:
        if all(job_id in queue.accepted for job_id in queue.expected):
            break
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - started
    alive = worker.returncode is None
    recent_takes = sum(1 for t in queue.takes if t > time.monotonic() - 5)
    if alive:
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.wait(), 30)
        except asyncio.TimeoutError:
            worker.kill()
    wrong = sum(
        1 for job_id, bodies in queue.accepted.items() if job_id in queue.expected
        for b in bodies if json.loads(b) != {"output": queue.expected[job_id]}
    )
    twice = sum(1 for job_id in queue.served_again_running if len(queue.accepted.get(job_id, [])) > 1)
    done = sum(1 for job_id in queue.expected if job_id in queue.accepted)
    print(json.dumps({
        "worker": " ".join(args.worker), "seed": args.seed, "jobs": len(queue.expected),
        "accepted": done, "lost": len(queue.expected) - done,
        "served_again_while_running": len(queue.served_again_running), "run_twice": twice,
        "wrong_results": wrong, "seconds": round(elapsed, 1), "exited_by_itself": not alive,
        "still_taking_at_end": alive and recent_takes > 0, "faults": queue.faults,
        "missing": sorted(job_id for job_id in queue.expected if job_id not in queue.accepted)[:10],
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("worker", nargs="+")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--limit", type=float, default=400, help="seconds before giving up")
    parser.add_argument("--no-cut", action="store_true")
    parser.add_argument("--shutdown", action="store_true")
    parser.add_argument("--no-list-ids", action="store_true", help="leave out the jobs whose id is a list")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
