"""The stdio protocol (docs/mlx.md; the version is PROTOCOL_VERSION below): the output channel, validation of what LMX sends,
the reader thread that queues requests and the heartbeat.

Importing this module re-points file descriptor 1 at stderr, so it must be imported before mlx or
anything else that might print: a stray print() from a library can then never corrupt the stream.
"""

import json
import math
import os
import queue
import sys
import threading
import time

PROTOCOL_VERSION = 5
HEARTBEAT_SECONDS = 1.0

# ---------------------------------------------------------------------------------------------
# Output channel: the original stdout, owned by this module. Set up before importing mlx so that
# nothing else can write to it.

_proto_fd = os.dup(1)
os.dup2(2, 1)
sys.stdout = sys.stderr
_proto = os.fdopen(_proto_fd, "wb", buffering=0)
_write_lock = threading.Lock()


def send(msg):
    data = (json.dumps(msg, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    with _write_lock:
        _proto.write(data)


def log(text):
    sys.stderr.write(text.rstrip("\n") + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Validation of what LMX sends. Hand-written so the worker depends on nothing beyond mlx-lm.


class ProtocolError(Exception):
    pass


def _check(cond, what):
    if not cond:
        raise ProtocolError(what)


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x):
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def _opt(d, key, pred, what):
    if key in d and d[key] is not None:
        _check(pred(d[key]), f"{key}: {what}")


def _id(msg):
    _check(isinstance(msg.get("id"), str) and 0 < len(msg["id"]) <= 200, "id: expected a non-empty string")


def _check_messages(messages):
    _check(isinstance(messages, list) and messages, "messages: expected a non-empty list")
    for i, m in enumerate(messages):
        _check(isinstance(m, dict), f"messages[{i}]: expected an object")
        _check(m.get("role") in ("system", "user", "assistant", "tool"), f"messages[{i}].role: unknown role")
        _check(isinstance(m.get("content"), str), f"messages[{i}].content: expected a string")
        if m["role"] == "tool":
            _check(isinstance(m.get("tool_call_id"), str), f"messages[{i}].tool_call_id: expected a string")
        _opt(m, "reasoning", lambda x: isinstance(x, str), "expected a string")
        calls = m.get("tool_calls")
        if calls is not None:
            _check(m["role"] == "assistant" and isinstance(calls, list), f"messages[{i}].tool_calls: only assistant messages carry a list of tool calls")
            for j, c in enumerate(calls):
                _check(isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("name"), str)
                       and isinstance(c.get("arguments"), str), f"messages[{i}].tool_calls[{j}]: expected id, name, arguments strings")


def _check_tools(tools):
    _check(isinstance(tools, list), "tools: expected a list")
    for i, t in enumerate(tools):
        _check(isinstance(t, dict) and isinstance(t.get("name"), str), f"tools[{i}].name: expected a string")
        _opt(t, "description", lambda x: isinstance(x, str), "expected a string")
        _opt(t, "parameters", lambda x: isinstance(x, dict), "expected an object")


def validate(msg):
    """Raises ProtocolError unless `msg` is a well-formed request of this protocol version."""
    _check(isinstance(msg, dict), "expected a JSON object")
    kind = msg.get("type")
    if kind == "load":
        _id(msg)
        _check(isinstance(msg.get("path"), str) and msg["path"], "path: expected a string")
        _check(_is_int(msg.get("context_length")) and msg["context_length"] > 0, "context_length: expected a positive integer")
        _check(_is_int(msg.get("parallel")) and msg["parallel"] > 0, "parallel: expected a positive integer")
        _opt(msg, "prefill_step_size", lambda x: _is_int(x) and x > 0, "expected a positive integer")
        _opt(msg, "prompt_cache_bytes", lambda x: _is_int(x) and x >= 0, "expected a non-negative integer")
        _opt(msg, "distributed", lambda d: isinstance(d, dict) and _is_int(d.get("size")) and 2 <= d["size"] <= 64
             and _is_int(d.get("rank")) and 0 <= d["rank"] < d["size"]
             and (d.get("join_timeout_s") is None or (_is_int(d["join_timeout_s"]) and 1 <= d["join_timeout_s"] <= 3600)),
             "expected {rank, size, join_timeout_s} with 0 <= rank < size, 2 <= size <= 64")
        _opt(msg, "draft", lambda x: isinstance(x, str) and x != "", "expected the draft model's folder")
        _check(not (msg.get("draft") and msg.get("distributed")), "draft: a distributed model has no draft model")
    elif kind == "generate":
        _id(msg)
        p = msg.get("prompt")
        _check(isinstance(p, dict), "prompt: expected an object")
        if p.get("kind") == "chat":
            _check_messages(p.get("messages"))
            _opt(p, "tools", lambda x: _check_tools(x) or True, "invalid")
            _opt(p, "template_kwargs", lambda x: isinstance(x, dict) and all(isinstance(k, str) for k in x), "expected an object")
        elif p.get("kind") == "text":
            _check(isinstance(p.get("text"), str), "prompt.text: expected a string")
        else:
            raise ProtocolError("prompt.kind: expected chat or text")
        _opt(msg, "max_tokens", lambda x: _is_int(x) and x > 0, "expected a positive integer")
        s = msg.get("sampling")
        _check(isinstance(s, dict), "sampling: expected an object")
        for key in ("temperature", "top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty"):
            _opt(s, key, _is_num, "expected a number")
        _opt(s, "top_k", lambda x: _is_int(x) and x >= 0, "expected a non-negative integer")
        _opt(s, "seed", _is_int, "expected an integer")
        _opt(s, "ignore_eos", lambda x: isinstance(x, bool), "expected a boolean")
        _opt(s, "logit_bias", lambda x: isinstance(x, dict) and len(x) <= 100_000
             and all(isinstance(k, str) and k.isdigit() and _is_num(b) for k, b in x.items()), "expected token ids mapped to numbers")
        _opt(msg, "logprobs", lambda x: _is_int(x) and 0 <= x <= 20, "expected an integer from 0 to 20")
        _check(isinstance(msg.get("parse_tools"), bool), "parse_tools: expected a boolean")
        _opt(msg, "split_reasoning", lambda x: isinstance(x, bool), "expected a boolean")
    elif kind in ("tokenize",):
        _id(msg)
        _check(isinstance(msg.get("text"), str), "text: expected a string")
        _check(isinstance(msg.get("add_special_tokens"), bool), "add_special_tokens: expected a boolean")
    elif kind == "detokenize":
        _id(msg)
        _check(isinstance(msg.get("tokens"), list) and all(_is_int(t) and t >= 0 for t in msg["tokens"]), "tokens: expected a list of token ids")
    elif kind == "chat_tokens":
        _id(msg)
        _check_messages(msg.get("messages"))
        _opt(msg, "template_kwargs", lambda x: isinstance(x, dict) and all(isinstance(k, str) for k in x), "expected an object")
        _opt(msg, "tools", lambda x: _check_tools(x) or True, "invalid")
    elif kind in ("cancel", "end", "memory"):
        _id(msg)
    elif kind == "score":
        _id(msg)
        tokens = msg.get("tokens")
        _check(isinstance(tokens, list) and len(tokens) >= 2 and all(_is_int(t) and t >= 0 for t in tokens), "tokens: expected at least two token ids")
        _check(_is_int(msg.get("first_scored")) and 1 <= msg["first_scored"] < len(tokens), "first_scored: expected an index into tokens after the first")
        _opt(msg, "top", lambda x: _is_int(x) and 0 <= x <= 20, "expected an integer from 0 to 20")
    elif kind == "shutdown":
        pass
    else:
        raise ProtocolError(f"unknown message type {kind!r}")


# ---------------------------------------------------------------------------------------------
# Reading requests: a thread turns stdin lines into validated messages on a queue, so the main
# thread can generate and still notice cancellations between steps.

inbox = queue.Queue()


def read_requests():
    try:
        for raw in sys.stdin.buffer:
            line = raw.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                validate(msg)
            except (ValueError, ProtocolError) as e:
                inbox.put(("invalid", f"{e} in {line[:200]!r}"))
                return
            inbox.put(("msg", msg))
    finally:
        inbox.put(("eof", None))


_steps = 0


def count_step():
    """Called once per generation step; the heartbeat reports the count so LMX sees progress."""
    global _steps
    _steps += 1


def flush():
    _proto.flush()


def heartbeat():
    # Lets LMX tell a worker that is alive from one that froze (SIGSTOP, a stuck pipe, a hard hang).
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        send({"type": "heartbeat", "steps": _steps})

