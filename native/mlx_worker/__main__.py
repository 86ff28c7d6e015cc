"""LMX's MLX worker: serves one MLX model to the LMX server over stdio.

LMX embeds this folder (a package run as a directory: `__main__.py` plus its modules), writes it
next to the MLX runtime and starts it with the runtime's Python:

    python mlx_worker/             serve (protocol below)
    python mlx_worker/ --self-test import mlx and mlx-lm, run a tiny generation, print JSON
    python mlx_worker/ --knows-architecture TYPE
                                   print JSON: whether this mlx-lm has a model class for TYPE

protocol.py owns stdio and validation, generation.py the model and its batch, textfilter.py and
sampling.py the per-token rules; this file starts the threads and runs the main loop.

Protocol (version 1, documented in docs/mlx.md): one JSON object per line. LMX writes requests to
stdin; the worker writes replies and events to its original stdout. File descriptor 1 is
re-pointed at stderr before anything else is imported, so a stray print() from a library can never
corrupt the stream; stderr is free-form log text that LMX copies into its own log.

Every message LMX sends is validated here before use; one that does not validate ends the worker
with a `fatal` message (LMX validates what it receives the same way), because a peer that speaks
the protocol wrongly cannot be trusted with the requests that follow.
"""

# protocol first: it takes stdout away from everything imported after it.
import protocol
from protocol import PROTOCOL_VERSION, inbox, log, send

import os
import queue
import sys
import threading
import time
import traceback

from distributed import GroupLost
from generation import Worker

def versions():
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("mlx", "mlx-lm"):
        try:
            out[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            out[name.replace("-", "_")] = None
    return out


def serve():
    threading.Thread(target=protocol.read_requests, daemon=True).start()
    threading.Thread(target=protocol.heartbeat, daemon=True).start()
    send({"type": "hello", "protocol": PROTOCOL_VERSION, "pid": os.getpid(), **versions()})
    worker = Worker()
    try:
        return lead(worker)
    except GroupLost as e:
        send({"type": "fatal", "message": f"the distributed group lost a rank: {e}"})
        return 3


def lead(worker):
    """The main loop: requests from LMX, then a step of the batch while there is work."""
    while True:
        try:
            item = inbox.get(block=not worker.has_work())
        except queue.Empty:
            item = None
        while item is not None:
            kind, payload = item
            if kind == "eof" or (kind == "msg" and payload["type"] == "shutdown"):
                end_group(worker)
                return 0
            if kind == "invalid":
                send({"type": "fatal", "message": f"invalid message from LMX: {payload}"})
                return 2
            try:
                worker.handle(payload)
            except GroupLost:
                raise
            except Exception as e:
                log(traceback.format_exc())
                rid = payload.get("id")
                if rid is not None:
                    send({"type": "error", "id": rid, "code": "worker_error", "message": f"{type(e).__name__}: {e}"})
            if worker.following:
                return follow(worker)
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                item = None
        if worker.has_work():
            worker.step()


def end_group(worker):
    """Rank 0 going away tells the other ranks, so they end cleanly instead of reporting a lost rank."""
    if worker.group is None:
        return
    try:
        worker.group.broadcast({"op": "exit"})
    except GroupLost:
        pass


def follow(worker):
    """A rank other than 0: applies rank 0's operations until it ends the group."""

    def answer_lmx():
        # The main thread waits on rank 0; LMX may still ask for memory figures, or for an exit.
        while True:
            kind, payload = inbox.get()
            if kind != "msg" or payload["type"] == "shutdown":
                protocol.flush()
                os._exit(0)
            if payload["type"] == "memory":
                send({"type": "memory", "id": payload["id"], "running": 0, "generated": 0, **worker.memory_numbers()})
            elif payload.get("id") is not None:
                send({"type": "error", "id": payload["id"], "code": "not_leader",
                      "message": f"this worker is rank {worker.group.rank} of a distributed model; rank 0 serves its requests"})

    threading.Thread(target=answer_lmx, daemon=True).start()
    while True:
        op = worker.group.receive()
        if op.get("op") == "exit":
            send({"type": "ended", "message": "rank 0 ended the group (the model was unloaded on its node)"})
            return 0
        try:
            worker.apply(op)
        except GroupLost:
            raise
        except Exception as e:
            log(traceback.format_exc())
            raise GroupLost(f"{op.get('op')} failed on rank {worker.group.rank}: {type(e).__name__}: {e}") from e


def self_test():
    """Imports the runtime and generates a few tokens with a tiny random llama, no files needed."""
    started = time.perf_counter()
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.models import llama

    args = llama.ModelArgs(model_type="llama", hidden_size=32, num_hidden_layers=1, intermediate_size=64,
                           num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-5, vocab_size=64)
    model = llama.Model(args)
    mx.eval(model.parameters())
    tokens = [t for t, _ in generate_step(mx.array([1, 2, 3]), model, max_tokens=4)]
    send({"type": "self_test", "ok": len(tokens) == 4, "tokens": tokens, "device": str(mx.default_device()),
          "ms": round((time.perf_counter() - started) * 1000, 1), **versions()})
    return 0 if len(tokens) == 4 else 1


def knows_architecture(model_type):
    """Whether this environment's mlx-lm has a model class for `model_type` (asked about other installs)."""
    from importlib.util import find_spec

    from mlx_lm import utils

    remapped = getattr(utils, "MODEL_REMAPPING", {}).get(model_type, model_type)
    known = all(part.isidentifier() for part in remapped.split(".")) and find_spec(f"mlx_lm.models.{remapped}") is not None
    send({"type": "architecture", "model_type": model_type, "known": known, **versions()})
    return 0


if __name__ == "__main__":
    if "--self-test" in sys.argv[1:]:
        sys.exit(self_test())
    if len(sys.argv) == 3 and sys.argv[1] == "--knows-architecture":
        sys.exit(knows_architecture(sys.argv[2]))
    code = serve()
    protocol.flush()
    # Skip interpreter teardown: mlx's and the tokenizer's native threads can make it slow.
    os._exit(code)
