#!/usr/bin/env python3
"""Start -> first take of a worker binary, over 21 process starts (median, min, max), against a
plain listening socket on loopback: the time from spawning the process to the arrival of its
first job-take request head. Python stdlib only.

Usage: cargo build --release --bin protocol_probe
       scripts/first-take.py target/release/protocol_probe [VAR=value ...]
"""
import socket,subprocess,time,os,statistics,sys
res=[]
prog=sys.argv[1]; extra=dict(a.split("=",1) for a in sys.argv[2:])
for _ in range(21):
    s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(8); port=s.getsockname()[1]
    env=dict(os.environ, RUNPOD_WEBHOOK_GET_JOB=f"http://127.0.0.1:{port}/v2/ep/job-take/$RUNPOD_POD_ID", RUNPOD_WEBHOOK_POST_OUTPUT=f"http://127.0.0.1:{port}/v2/ep/job-done/$RUNPOD_POD_ID/$ID", RUNPOD_POD_ID="w1", RUNPOD_AI_API_KEY="k", RUNPOD_WEBHOOK_PING=f"http://127.0.0.1:{port}/ping/$RUNPOD_POD_ID", PROBE_ECHO="1")
    env.update(extra)
    t=time.perf_counter(); p=subprocess.Popen([prog],env=env,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    while True:
        c,_=s.accept(); c.settimeout(2); data=b""
        while b"\r\n\r\n" not in data: data+=c.recv(4096)
        if b"job-take" in data.split(b"\r\n")[0]: break
    res.append((time.perf_counter()-t)*1000)
    p.kill(); p.wait(); c.close(); s.close()
print("median %.2f ms min %.2f max %.2f"%(statistics.median(res),min(res),max(res)))
