"""One model across several worker processes with mlx.distributed (ring backend over TCP).

Each rank holds a shard of the weights (tensor parallel where the architecture has `shard`,
pipeline parallel otherwise: mlx-lm's `sharded_load` decides). Every step of the model runs
collectives that need every rank, so every operation that touches the model (inserting a sequence,
a decoding step, removing a sequence, scoring) must run on all ranks in the same order.

Rank 0 leads: it alone reads requests from its LMX, renders prompts and sends output. Before it
applies such an operation it broadcasts the operation to the others, which apply exactly the same
one (`Worker.apply`). Given the same operations in the same order, every rank's batch, prompt cache
and sampler state evolve identically, so the ranks never disagree on what to run next.

A collective that fails (a rank exited, a socket closed) cannot be recovered from: the batch state
of the ranks is no longer known to match. Such a failure ends the worker with a `fatal` message; the
LMX servers then unload the model on every node.
"""

import json
import os
import threading

# A single operation is at most this big (a 1M-token prompt as JSON is ~8 MB).
MAX_OP_BYTES = 64 << 20
# The first collective of every operation: its length and, when it fits, all of it.
HEAD_BYTES = 256


class GroupLost(Exception):
    """A collective failed: another rank is gone, or the network between them is."""


class Group:
    def __init__(self, mx, group):
        import numpy as np
        from mlx_lm.generate import generation_stream

        self.mx = mx
        # The collectives here must run on the stream the model's own collectives run on: ranks match
        # collectives by order, and only one stream keeps the order the same on every rank (the
        # batch generator leaves the next step's forward pass queued there when it returns).
        self.stream = generation_stream
        self.np = np
        self.group = group
        self.rank = group.rank()
        self.size = group.size()

    def _sum(self, arr):
        mx = self.mx
        try:
            out = mx.distributed.all_sum(arr, group=self.group, stream=self.stream)
            mx.eval(out)
            return out
        except RuntimeError as e:
            raise GroupLost(str(e)) from e

    def broadcast(self, op):
        """Rank 0: sends `op` (a JSON-able dict) to every other rank."""
        mx, np = self.mx, self.np
        data = json.dumps(op, separators=(",", ":")).encode()
        if len(data) > MAX_OP_BYTES:
            raise ValueError(f"operation of {len(data)} bytes exceeds {MAX_OP_BYTES}")
        # The others contribute zeros, so the sum is rank 0's bytes. Every collective is a round
        # trip between processes, so the first carries the length and, for the small operations
        # of every step, the whole operation; a larger one sends its rest in a second.
        head = np.zeros(HEAD_BYTES, dtype=np.uint8)
        head[:4] = np.frombuffer(len(data).to_bytes(4, "little"), dtype=np.uint8)
        first = data[:HEAD_BYTES - 4]
        head[4:4 + len(first)] = np.frombuffer(first, dtype=np.uint8)
        self._sum(mx.array(head))
        if len(data) > len(first):
            self._sum(mx.array(np.frombuffer(data[len(first):], dtype=np.uint8)))

    def receive(self):
        """Other ranks: waits for rank 0's next operation."""
        mx, np = self.mx, self.np
        head = np.array(self._sum(mx.zeros((HEAD_BYTES,), dtype=mx.uint8))).tobytes()
        n = int.from_bytes(head[:4], "little")
        if not 0 < n <= MAX_OP_BYTES:
            raise GroupLost(f"rank 0 announced an operation of {n} bytes")
        data = head[4:4 + n]
        if n > len(data):
            data += np.array(self._sum(mx.zeros((n - len(data),), dtype=mx.uint8))).tobytes()
        try:
            return json.loads(data)
        except ValueError as e:
            raise GroupLost(f"rank 0 sent an operation that is not JSON ({e})") from e


def join(mx, expected_rank, expected_size, timeout_s, on_timeout):
    """Joins the ring LMX described in MLX_RANK / MLX_HOSTFILE; checks it is the group LMX meant."""
    # Rank 0 waits for the others without a limit of its own: a rank that never starts must not
    # leave it (and its memory) waiting for ever.
    timer = threading.Timer(timeout_s, lambda: (on_timeout(f"the other ranks did not join within {timeout_s} s"), os._exit(4)))
    timer.daemon = True
    timer.start()
    try:
        group = mx.distributed.init(strict=True, backend="ring")
    except RuntimeError as e:
        raise GroupLost(f"cannot join the distributed group: {e}") from e
    finally:
        timer.cancel()
    if group.rank() != expected_rank or group.size() != expected_size:
        raise GroupLost(f"joined as rank {group.rank()} of {group.size()}, expected rank {expected_rank} of {expected_size}")
    return Group(mx, group)
