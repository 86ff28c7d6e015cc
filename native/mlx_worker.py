"""LMX's MLX worker: serves one MLX model to the LMX server over stdio.

LMX embeds this file, writes it next to the MLX runtime and starts it with the runtime's Python:

    python mlx_worker.py             serve (protocol below)
    python mlx_worker.py --self-test import mlx and mlx-lm, run a tiny generation, print JSON

Protocol (version 1, documented in docs/mlx.md): one JSON object per line. LMX writes requests to
stdin; the worker writes replies and events to its original stdout. File descriptor 1 is
re-pointed at stderr before anything else is imported, so a stray print() from a library can never
corrupt the stream; stderr is free-form log text that LMX copies into its own log.

Every message LMX sends is validated here before use; one that does not validate ends the worker
with a `fatal` message (LMX validates what it receives the same way), because a peer that speaks
the protocol wrongly cannot be trusted with the requests that follow.
"""

import json
import math
import os
import queue
import sys
import threading
import time
import traceback

PROTOCOL_VERSION = 1
HEARTBEAT_SECONDS = 1.0
# Penalties look this many tokens back, as the llama.cpp engine does (its lastTokens).
PENALTY_WINDOW = 64

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
    """Raises ProtocolError unless `msg` is a well-formed request of protocol version 1."""
    _check(isinstance(msg, dict), "expected a JSON object")
    kind = msg.get("type")
    if kind == "load":
        _id(msg)
        _check(isinstance(msg.get("path"), str) and msg["path"], "path: expected a string")
        _check(_is_int(msg.get("context_length")) and msg["context_length"] > 0, "context_length: expected a positive integer")
        _check(_is_int(msg.get("parallel")) and msg["parallel"] > 0, "parallel: expected a positive integer")
        _opt(msg, "prefill_step_size", lambda x: _is_int(x) and x > 0, "expected a positive integer")
        _opt(msg, "prompt_cache_bytes", lambda x: _is_int(x) and x >= 0, "expected a non-negative integer")
    elif kind == "generate":
        _id(msg)
        p = msg.get("prompt")
        _check(isinstance(p, dict), "prompt: expected an object")
        if p.get("kind") == "chat":
            _check_messages(p.get("messages"))
            _opt(p, "tools", lambda x: _check_tools(x) or True, "invalid")
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
        _check(isinstance(msg.get("stop"), list) and all(isinstance(x, str) and x for x in msg["stop"]), "stop: expected a list of non-empty strings")
        _check(isinstance(msg.get("parse_tools"), bool), "parse_tools: expected a boolean")
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
        _opt(msg, "tools", lambda x: _check_tools(x) or True, "invalid")
    elif kind in ("cancel", "memory"):
        _id(msg)
    elif kind == "score":
        _id(msg)
        tokens = msg.get("tokens")
        _check(isinstance(tokens, list) and len(tokens) >= 2 and all(_is_int(t) and t >= 0 for t in tokens), "tokens: expected at least two token ids")
        _check(_is_int(msg.get("first_scored")) and 1 <= msg["first_scored"] < len(tokens), "first_scored: expected an index into tokens after the first")
    elif kind == "shutdown":
        pass
    else:
        raise ProtocolError(f"unknown message type {kind!r}")


# ---------------------------------------------------------------------------------------------
# Reading requests: a thread turns stdin lines into validated messages on a queue, so the main
# thread can generate and still notice cancellations between steps.

_inbox = queue.Queue()


# A chat template is code from the model's files (jinja2, sandboxed by transformers, which caps
# range() but not loops, recursion or string growth). It renders on the main thread, between
# generation steps, so a template that never ends would stall every request of this model.
TEMPLATE_SECONDS = 2.0
TEMPLATE_MEMORY_BYTES = 256 * 1024 * 1024


class TemplateLimitError(Exception):
    pass


def _peak_rss():
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def render_template_with_limits(render):
    """Runs `render` with a wall-clock limit and a cap on how far it raises the process's peak
    memory. A timer signal checks both every 20 ms and raises between two Python steps of the
    render; one C-level step (a string doubling) can overshoot the memory cap once."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return render()
    started = time.monotonic()
    baseline = _peak_rss()

    def check(_signum, _frame):
        if time.monotonic() - started > TEMPLATE_SECONDS:
            raise TemplateLimitError(f"rendering took longer than {TEMPLATE_SECONDS:g} s")
        if _peak_rss() - baseline > TEMPLATE_MEMORY_BYTES:
            raise TemplateLimitError(f"rendering used more than {TEMPLATE_MEMORY_BYTES // 2**20} MB")

    previous = signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
    try:
        return render()
    except RecursionError as e:
        raise TemplateLimitError("the template recursed too deeply") from e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _reader():
    try:
        for raw in sys.stdin.buffer:
            line = raw.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                validate(msg)
            except (ValueError, ProtocolError) as e:
                _inbox.put(("invalid", f"{e} in {line[:200]!r}"))
                return
            _inbox.put(("msg", msg))
    finally:
        _inbox.put(("eof", None))


_steps = 0


def _heartbeat():
    # Lets LMX tell a worker that is alive from one that froze (SIGSTOP, a stuck pipe, a hard hang).
    while True:
        time.sleep(HEARTBEAT_SECONDS)
        send({"type": "heartbeat", "steps": _steps})


# ---------------------------------------------------------------------------------------------
# Text handling: stop strings and tool-call markers are matched on decoded text, across token
# boundaries. Text that could still turn into a stop string or a marker is held back.


class TextFilter:
    def __init__(self, stops, tool_start, tool_end):
        self.stops = stops
        self.tool_start = tool_start
        self.tool_end = tool_end
        self.buf = ""
        self.in_tool = False
        self.tool_text = ""
        self.tool_calls = []

    def _holdback(self, text, needles):
        """Length of the longest suffix of `text` that is a proper prefix of a needle."""
        best = 0
        for n in needles:
            for k in range(min(len(n) - 1, len(text)), best, -1):
                if text.endswith(n[:k]):
                    best = k
                    break
        return best

    def feed(self, text):
        """Returns (content to emit, whether a stop string was hit)."""
        self.buf += text
        out = []
        while True:
            if self.in_tool:
                if self.tool_end:
                    j = self.buf.find(self.tool_end)
                    if j == -1:
                        keep = self._holdback(self.buf, [self.tool_end])
                        self.tool_text += self.buf[: len(self.buf) - keep]
                        self.buf = self.buf[len(self.buf) - keep:]
                        return "".join(out), False
                    self.tool_calls.append(self.tool_text + self.buf[:j])
                    self.tool_text = ""
                    self.buf = self.buf[j + len(self.tool_end):]
                    self.in_tool = False
                    continue
                self.tool_text += self.buf
                self.buf = ""
                return "".join(out), False
            hits = [(self.buf.find(s), 0, s) for s in self.stops]
            if self.tool_start:
                hits.append((self.buf.find(self.tool_start), 1, self.tool_start))
            hits = [h for h in hits if h[0] != -1]
            if hits:
                i, is_tool, needle = min(hits)
                out.append(self.buf[:i])
                if not is_tool:
                    self.buf = ""
                    return "".join(out), True
                self.buf = self.buf[i + len(needle):]
                self.in_tool = True
                continue
            needles = self.stops + ([self.tool_start] if self.tool_start else [])
            keep = self._holdback(self.buf, needles)
            out.append(self.buf[: len(self.buf) - keep])
            self.buf = self.buf[len(self.buf) - keep:]
            return "".join(out), False

    def finish(self):
        """Text still held back once generation ended without a stop string."""
        if self.in_tool:
            self.tool_text += self.buf
            self.buf = ""
            if not self.tool_end:
                self.tool_calls.append(self.tool_text)
                self.tool_text = ""
            return ""
        rest, self.buf = self.buf, ""
        return rest


# ---------------------------------------------------------------------------------------------
# Sampling. Same order and defaults as LMX's llama.cpp engine: top-k first (which also makes the
# later steps cheap on a large vocabulary), then top-p and min-p over what is left, then
# temperature. A seed gives the request its own random key, so seeded requests are reproducible
# even while batched with others.


def make_sampler(mx, temperature, top_k, top_p, min_p, seed):
    if temperature <= 0:
        return lambda logprobs: mx.argmax(logprobs, axis=-1)
    key = [mx.random.key(seed)] if seed is not None else None

    def sample(logprobs):
        vocab = logprobs.shape[-1]
        values, index = logprobs, None
        if 0 < top_k < vocab:
            index = mx.argpartition(-logprobs, kth=top_k - 1, axis=-1)[..., :top_k]
            values = mx.take_along_axis(logprobs, index, axis=-1)
        if 0 < top_p < 1:
            probs = mx.softmax(values, axis=-1)
            ordered = mx.sort(probs, axis=-1)[..., ::-1]
            before = mx.cumsum(ordered, axis=-1) - ordered
            # The smallest probability still needed to reach top_p; the most likely token always stays.
            kept = mx.where(before < top_p, ordered, mx.array(float("inf"), ordered.dtype))
            threshold = mx.min(kept, axis=-1, keepdims=True)
            values = mx.where(probs < threshold, mx.array(-float("inf"), values.dtype), values)
        if min_p > 0:
            floor = mx.max(values, axis=-1, keepdims=True) + math.log(min_p)
            values = mx.where(values < floor, mx.array(-float("inf"), values.dtype), values)
        scaled = values * (1.0 / temperature)
        if key is not None:
            pair = mx.random.split(key[0])
            key[0] = pair[0]
            choice = mx.random.categorical(scaled, key=pair[1])
        else:
            choice = mx.random.categorical(scaled)
        if index is not None:
            choice = mx.take_along_axis(index, choice[..., None], axis=-1).squeeze(-1)
        return choice

    return sample


# ---------------------------------------------------------------------------------------------


class Request:
    def __init__(self, rid, uid, prompt_tokens, cached, max_tokens, detok, text_filter, tools):
        self.id = rid
        self.uid = uid
        self.prompt_tokens = prompt_tokens
        self.cached = cached
        self.max_tokens = max_tokens
        self.detok = detok
        self.filter = text_filter
        self.tools = tools
        self.completion_tokens = 0
        self.started = time.perf_counter()
        self.first = None


class Worker:
    def __init__(self):
        self.mx = None
        self.model = None
        self.tokenizer = None
        self.gen = None
        self.ctx = 0
        self.parallel = 1
        self.prefill_step = 512
        self.prompt_cache = None
        self.active = {}  # uid -> Request
        self.by_id = {}  # request id -> Request

    # -- loading ------------------------------------------------------------------------------

    def load(self, msg):
        started = time.perf_counter()
        import mlx.core as mx
        from mlx_lm import load as load_model
        from mlx_lm.models.cache import LRUPromptCache

        self.mx = mx
        self.model, self.tokenizer = load_model(msg["path"])
        self.ctx = msg["context_length"]
        self.parallel = msg["parallel"]
        self.prefill_step = msg.get("prefill_step_size") or 512
        budget = msg.get("prompt_cache_bytes")
        # Finished conversations keep their KV cache so the next turn only evaluates new tokens.
        self.prompt_cache = LRUPromptCache(max_size=max(4, 2 * self.parallel), max_bytes=budget if budget else 1 << 62)
        self._new_generator()
        tok = self.tokenizer
        send({
            "type": "loaded",
            "id": msg["id"],
            "model_type": str(getattr(self.model, "model_type", "") or ""),
            "vocab_size": len(tok),
            "has_chat_template": bool(tok.has_chat_template),
            "has_tool_calling": bool(tok.has_tool_calling),
            "eos_token_ids": sorted(int(t) for t in tok.eos_token_ids),
            # What the tokenizer puts before a text when asked for special tokens (BOS, if the model wants one).
            "bos_token_ids": [int(t) for t in self.bos_ids()],
            "load_ms": round((time.perf_counter() - started) * 1000, 1),
            "memory": self.memory_numbers(),
        })

    def _new_generator(self):
        from mlx_lm.generate import BatchGenerator

        self.gen = BatchGenerator(
            self.model,
            completion_batch_size=self.parallel,
            prefill_batch_size=self.parallel,
            prefill_step_size=self.prefill_step,
        )

    def memory_numbers(self):
        mx = self.mx
        if mx is None:
            return {"active_bytes": 0, "peak_bytes": 0, "cache_bytes": 0, "prompt_cache_bytes": 0}
        return {
            "active_bytes": int(mx.get_active_memory()),
            "peak_bytes": int(mx.get_peak_memory()),
            "cache_bytes": int(mx.get_cache_memory()),
            "prompt_cache_bytes": int(self.prompt_cache.nbytes) if self.prompt_cache is not None else 0,
        }

    def require_model(self, rid):
        if self.model is None:
            send({"type": "error", "id": rid, "code": "not_loaded", "message": "no model is loaded in this worker"})
            return False
        return True

    # -- prompts ------------------------------------------------------------------------------

    def chat_tokens(self, messages, tools):
        tok = self.tokenizer
        converted = []
        for m in messages:
            item = {"role": m["role"], "content": m["content"]}
            if m["role"] == "tool":
                item["tool_call_id"] = m["tool_call_id"]
            if m.get("tool_calls"):
                calls = []
                for c in m["tool_calls"]:
                    try:
                        args = json.loads(c["arguments"])
                    except ValueError:
                        args = c["arguments"]
                    calls.append({"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": args}})
                item["tool_calls"] = calls
            converted.append(item)
        if not tok.has_chat_template:
            # Models without a template get a plain transcript, as mlx-lm's own server does.
            text = "".join(f"{m['role'].upper()}: {m['content']}\n" for m in converted) + "ASSISTANT:"
            return list(tok.encode(text))
        kwargs = {}
        if tools:
            kwargs["tools"] = [{"type": "function", "function": {k: v for k, v in t.items() if v is not None}} for t in tools]
        return list(render_template_with_limits(lambda: tok.apply_chat_template(converted, add_generation_prompt=True, tokenize=True, **kwargs)))

    def text_tokens(self, text):
        tok = self.tokenizer
        bos = tok.bos_token
        # Like mlx-lm's stream_generate: add the BOS token unless the prompt already starts with it.
        return list(tok.encode(text, add_special_tokens=bos is None or not text.startswith(bos)))

    # -- generation ---------------------------------------------------------------------------

    def generate(self, msg):
        rid = msg["id"]
        if not self.require_model(rid):
            return
        if rid in self.by_id:
            send({"type": "error", "id": rid, "code": "duplicate_id", "message": f"request id {rid} is already running"})
            return
        from mlx_lm.generate import StopSequences
        from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache
        from mlx_lm.sample_utils import make_logits_processors

        mx = self.mx
        p = msg["prompt"]
        tools = p.get("tools") or []
        try:
            prompt = self.chat_tokens(p["messages"], tools) if p["kind"] == "chat" else self.text_tokens(p["text"])
        except TemplateLimitError as e:
            send({"type": "error", "id": rid, "code": "invalid_chat_template", "message": f"the model's chat template was refused: {e}"})
            return
        except Exception as e:  # a template can fail on odd message sequences
            send({"type": "error", "id": rid, "code": "template_error", "message": f"cannot apply the chat template: {e}"})
            return
        n = len(prompt)
        if n == 0:
            send({"type": "error", "id": rid, "code": "empty_prompt", "message": "the prompt has no tokens"})
            return
        requested = msg.get("max_tokens")
        if (requested is not None and n + requested > self.ctx) or (requested is None and n >= self.ctx):
            send({"type": "error", "id": rid, "code": "context_length_exceeded", "message": "prompt does not fit the context",
                  "prompt_tokens": n, "context_length": self.ctx})
            return
        max_tokens = requested if requested is not None else self.ctx - n

        cache, rest = self.prompt_cache.fetch_nearest_cache("model", prompt)
        if cache is not None and not rest:
            # An exact hit still needs one token to evaluate for the first prediction.
            if can_trim_prompt_cache(cache):
                trim_prompt_cache(cache, 1)
                rest = prompt[-1:]
            else:
                cache, rest = None, prompt
        cached = n - len(rest)

        s = msg["sampling"]
        sampler = make_sampler(mx, float(s.get("temperature", 0.8) if s.get("temperature") is not None else 0.8),
                               int(s.get("top_k") if s.get("top_k") is not None else 40),
                               float(s.get("top_p") if s.get("top_p") is not None else 0.95),
                               float(s.get("min_p") if s.get("min_p") is not None else 0.05),
                               s.get("seed"))
        rep = s.get("repeat_penalty")
        tok = self.tokenizer
        ignore_eos = bool(s.get("ignore_eos"))
        processors = make_logits_processors(
            # ignore_eos: end-of-sequence tokens can never be sampled, so generation runs to max_tokens.
            logit_bias={int(t): -1e9 for t in tok.eos_token_ids} if ignore_eos else None,
            repetition_penalty=rep if rep is not None and rep != 1 else None, repetition_context_size=PENALTY_WINDOW,
            presence_penalty=s.get("presence_penalty"), presence_context_size=PENALTY_WINDOW,
            frequency_penalty=s.get("frequency_penalty"), frequency_context_size=PENALTY_WINDOW,
        )
        parse_tools = msg["parse_tools"] and bool(tools) and tok.has_tool_calling
        text_filter = TextFilter(list(msg["stop"]), tok.tool_call_start if parse_tools else None, tok.tool_call_end if parse_tools else None)
        (uid,) = self.gen.insert(
            [rest],
            max_tokens=[max_tokens],
            caches=[cache],
            all_tokens=[prompt[:cached]],
            samplers=[sampler],
            logits_processors=[processors],
            stop_sequences=[StopSequences([] if ignore_eos else [(int(t),) for t in tok.eos_token_ids])],
        )
        req = Request(rid, uid, n, cached, max_tokens, tok.detokenizer, text_filter, tools if parse_tools else None)
        self.active[uid] = req
        self.by_id[rid] = req
        send({"type": "started", "id": rid, "prompt_tokens": n, "cached_tokens": cached, "max_tokens": max_tokens})

    def cancel(self, rid):
        req = self.by_id.pop(rid, None)
        if req is None:
            return  # already finished: its final message is on the way or sent
        self.active.pop(req.uid, None)
        self.gen.remove([req.uid])
        send({"type": "error", "id": rid, "code": "cancelled", "message": "cancelled"})

    def has_work(self):
        return bool(self.active)

    def step(self):
        global _steps
        try:
            self._step()
        except Exception as e:
            # One bad step fails the requests in the batch, not the worker: the model stays loaded.
            log(traceback.format_exc())
            self.fail_all("generation_failed", f"generation failed: {e}")
        _steps += 1

    def _step(self):
        prompt_responses, responses = self.gen.next()
        for r in prompt_responses:
            req = self.active.get(r.uid)
            if req is not None and not r.end_of_prompt:
                send({"type": "progress", "id": req.id, "processed": int(r.progress[0]) + req.cached, "total": req.prompt_tokens})
        finished = []
        for r in responses:
            req = self.active.get(r.uid)
            if req is None:
                continue
            if req.first is None:
                req.first = time.perf_counter()
            if r.finish_reason == "stop":
                # The end-of-sequence token itself is not text.
                req.detok.finalize()
            else:
                req.completion_tokens += 1
                req.detok.add_token(r.token)
                if r.finish_reason == "length":
                    req.detok.finalize()
            text, hit_stop = req.filter.feed(req.detok.last_segment)
            reason = "stop" if hit_stop else r.finish_reason
            if reason is None:
                if text:
                    send({"type": "text", "id": req.id, "text": text})
                continue
            if not hit_stop:
                text += req.filter.finish()
            if text:
                send({"type": "text", "id": req.id, "text": text})
            if r.finish_reason is not None and r.prompt_cache is not None:
                self.prompt_cache.insert_cache("model", list(r.all_tokens), r.prompt_cache)
            finished.append((req, reason, r.finish_reason is None))
        stopped_early = [req.uid for req, _, early in finished if early]
        if stopped_early:
            caches = self.gen.remove(stopped_early, return_prompt_caches=True)
            for cache, tokens in caches.values():
                self.prompt_cache.insert_cache("model", list(tokens), cache)
        for req, reason, _ in finished:
            self.finish(req, reason)

    def finish(self, req, reason):
        self.active.pop(req.uid, None)
        self.by_id.pop(req.id, None)
        now = time.perf_counter()
        first = req.first if req.first is not None else now
        calls, unparsed = [], []
        if req.tools is not None:
            for raw in req.filter.tool_calls:
                try:
                    parsed = self.tokenizer.tool_parser(raw, req.tools)
                except Exception as e:
                    log(f"cannot parse a tool call ({e}): {raw[:200]!r}")
                    unparsed.append(raw)
                    continue
                for c in parsed if isinstance(parsed, list) else [parsed]:
                    if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                        unparsed.append(raw)
                        continue
                    args = c.get("arguments", {})
                    calls.append({"name": c["name"], "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)})
            if req.filter.tool_text:
                unparsed.append(req.filter.tool_text)
        send({
            "type": "done",
            "id": req.id,
            "finish_reason": reason,
            "tool_calls": calls,
            "unparsed_tool_calls": unparsed,
            "prompt_tokens": req.prompt_tokens,
            "cached_tokens": req.cached,
            "completion_tokens": req.completion_tokens,
            "prefill_ms": round((first - req.started) * 1000, 3),
            "decode_ms": round((now - first) * 1000, 3),
            "peak_memory_bytes": int(self.mx.get_peak_memory()),
        })

    def score(self, msg):
        from mlx_lm.models.cache import make_prompt_cache

        mx = self.mx
        tokens, first = msg["tokens"], msg["first_scored"]
        if len(tokens) > self.ctx:
            send({"type": "error", "id": msg["id"], "code": "context_length_exceeded", "message": "the scored text does not fit the context",
                  "prompt_tokens": len(tokens), "context_length": self.ctx})
            return
        cache = make_prompt_cache(self.model)
        out = []
        pos = 0
        # Chunks as in prefill; logits are only evaluated where a token is scored, the rest only fills the cache.
        while pos < len(tokens) - 1:
            end = min(len(tokens) - 1, pos + self.prefill_step)
            logits = self.model(mx.array([tokens[pos:end]]), cache=cache)
            lo = max(pos, first - 1)
            if lo < end:
                sel = logits[0, lo - pos:end - pos, :].astype(mx.float32)
                logprobs = sel - mx.logsumexp(sel, axis=-1, keepdims=True)
                picked = mx.take_along_axis(logprobs, mx.array(tokens[lo + 1:end + 1])[:, None], axis=-1)
                out.extend(float(x) for x in picked.reshape(-1).tolist())
            else:
                mx.eval([c.state for c in cache])
            pos = end
        send({"type": "scores", "id": msg["id"], "logprobs": [x if math.isfinite(x) else -1e30 for x in out]})

    def bos_ids(self):
        tok = self.tokenizer
        with_special = tok.encode("x", add_special_tokens=True)
        without = tok.encode("x", add_special_tokens=False)
        return list(with_special[: len(with_special) - len(without)]) if len(with_special) > len(without) and with_special[-len(without):] == without else []

    def fail_all(self, code, message):
        for req in list(self.active.values()):
            send({"type": "error", "id": req.id, "code": code, "message": message})
        self.active.clear()
        self.by_id.clear()
        self._new_generator()

    # -- dispatch -----------------------------------------------------------------------------

    def handle(self, msg):
        kind = msg["type"]
        if kind == "load":
            if self.model is not None:
                send({"type": "error", "id": msg["id"], "code": "already_loaded", "message": "this worker already holds a model"})
                return
            try:
                self.load(msg)
            except Exception as e:
                log(traceback.format_exc())
                code = "runtime_broken" if isinstance(e, ImportError) else "load_failed"
                send({"type": "error", "id": msg["id"], "code": code, "message": f"{type(e).__name__}: {e}"})
        elif kind == "generate":
            self.generate(msg)
        elif kind == "cancel":
            self.cancel(msg["id"])
        elif kind == "tokenize":
            if self.require_model(msg["id"]):
                send({"type": "tokens", "id": msg["id"], "tokens": list(self.tokenizer.encode(msg["text"], add_special_tokens=msg["add_special_tokens"]))})
        elif kind == "detokenize":
            if self.require_model(msg["id"]):
                send({"type": "text_of", "id": msg["id"], "text": self.tokenizer.decode(msg["tokens"])})
        elif kind == "chat_tokens":
            if self.require_model(msg["id"]):
                try:
                    tokens = self.chat_tokens(msg["messages"], msg.get("tools") or [])
                except Exception as e:
                    send({"type": "error", "id": msg["id"], "code": "template_error", "message": f"cannot apply the chat template: {e}"})
                    return
                send({"type": "tokens", "id": msg["id"], "tokens": tokens})
        elif kind == "memory":
            send({"type": "memory", "id": msg["id"], "running": len(self.active), **self.memory_numbers()})
        elif kind == "score":
            if self.require_model(msg["id"]):
                self.score(msg)


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
    threading.Thread(target=_reader, daemon=True).start()
    threading.Thread(target=_heartbeat, daemon=True).start()
    send({"type": "hello", "protocol": PROTOCOL_VERSION, "pid": os.getpid(), **versions()})
    worker = Worker()
    while True:
        try:
            item = _inbox.get(block=not worker.has_work())
        except queue.Empty:
            item = None
        while item is not None:
            kind, payload = item
            if kind == "eof":
                return 0
            if kind == "invalid":
                send({"type": "fatal", "message": f"invalid message from LMX: {payload}"})
                return 2
            if payload["type"] == "shutdown":
                return 0
            try:
                worker.handle(payload)
            except Exception as e:
                log(traceback.format_exc())
                rid = payload.get("id")
                if rid is not None:
                    send({"type": "error", "id": rid, "code": "worker_error", "message": f"{type(e).__name__}: {e}"})
            try:
                item = _inbox.get_nowait()
            except queue.Empty:
                item = None
        if worker.has_work():
            worker.step()


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


if __name__ == "__main__":
    if "--self-test" in sys.argv[1:]:
        sys.exit(self_test())
    code = serve()
    _proto.flush()
    # Skip interpreter teardown: mlx's and the tokenizer's native threads can make it slow.
    os._exit(code)
